//! Where the use cases read the settings in force from.

use async_trait::async_trait;

use crate::{Result, settings::Settings};

/// Where the current settings come from.
#[async_trait]
pub trait SettingsSource: Send + Sync {
    async fn current(&self) -> Result<Settings>;
}

/// Fixed settings (the defaults unless given others).
#[derive(Debug, Clone, Default)]
pub struct StaticSettings(pub Settings);

#[async_trait]
impl SettingsSource for StaticSettings {
    async fn current(&self) -> Result<Settings> {
        Ok(self.0.clone())
    }
}
