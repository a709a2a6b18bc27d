//! Settings stored in one database row. A server keeps the row it read while its session
//! cache is trusted: a change appends to the session log (a trigger), which empties the kept
//! row on every replica, and the change's request answers once every replica has applied it
//! (as a revocation does). Without a trusted cache every use reads the row.

use async_trait::async_trait;
use chrono::Duration;
use domain::{
    Result,
    lockout::LockoutPolicy,
    password::PasswordPolicy,
    ports::SettingsSource,
    settings::{
        AttackPolicy, BreachedPasswordSignIn, ClientLimits, LimitMethod, ResetLimit, ResetPolicy,
        Settings,
    },
};
use sea_orm::{DatabaseConnection, EntityTrait};

use crate::{coherence::Coherence, db::db_err, entities::settings};

fn to_settings(m: settings::Model) -> Settings {
    let defaults = Settings::default();
    let non_negative = |v: i32| u32::try_from(v).unwrap_or(0);
    Settings {
        password: PasswordPolicy {
            min_length: non_negative(m.min_password_length),
            required_character_classes: u8::try_from(m.required_character_classes.clamp(0, 4))
                .unwrap_or(0),
            allow_whitespace: m.allow_whitespace,
            min_score: u8::try_from(m.min_password_score.clamp(0, 4)).unwrap_or(0),
        },
        lockout: LockoutPolicy {
            // Lockout cannot be turned off; a row from before that rule reads as one failure.
            failures: non_negative(m.lockout_failures).max(1),
            duration: Duration::minutes(i64::from(m.lockout_minutes.max(0))),
        },
        reset: ResetPolicy {
            link_lifetime: Duration::hours(i64::from(m.reset_link_lifetime_hours.max(1))),
            limit: ResetLimit {
                method: LimitMethod::parse(&m.reset_request_limit_method)
                    .unwrap_or(defaults.reset.limit.method),
                max_per_hour: non_negative(m.max_reset_requests_per_hour),
                min_interval: Duration::seconds(i64::from(
                    m.min_seconds_between_reset_requests.max(0),
                )),
            },
            // A store cannot turn both ways off: with neither, the link stays.
            by_link: m.reset_by_link || !m.reset_by_code,
            by_code: m.reset_by_code,
            code_lifetime: Duration::minutes(i64::from(m.reset_code_lifetime_minutes.max(1))),
        },
        clients: ClientLimits {
            failed_sign_ins_per_ip_per_hour: non_negative(m.max_failed_sign_ins_per_ip_per_hour)
                .max(1),
            registrations_per_ip_per_hour: non_negative(m.max_registrations_per_ip_per_hour).max(1),
        },
        attack: AttackPolicy {
            network_v4_prefix: u8::try_from(m.network_v4_prefix.clamp(8, 32)).unwrap_or(24),
            network_v6_prefix: u8::try_from(m.network_v6_prefix.clamp(16, 64)).unwrap_or(48),
            challenge_after_name_failures: non_negative(m.challenge_after_name_failures),
            challenge_after_network_failures: non_negative(m.challenge_after_network_failures),
            challenge_max_number: non_negative(m.challenge_max_number).clamp(1_000, 10_000_000),
        },
        breached_password: BreachedPasswordSignIn::parse(&m.breached_password_sign_in)
            .unwrap_or(defaults.breached_password),
        customer_token_lifetime: Duration::minutes(i64::from(
            m.customer_token_lifetime_minutes.max(1),
        )),
        admin_token_lifetime: Duration::minutes(i64::from(m.admin_token_lifetime_minutes.max(1))),
        sign_in_by_code: m.sign_in_by_code,
        remember_browser: Duration::days(i64::from(m.remember_browser_days.clamp(0, 30))),
    }
}

/// Settings, one row, kept while the session cache is trusted.
#[derive(Debug, Clone)]
pub struct SqlSettings {
    pub(crate) db: DatabaseConnection,
    pub(crate) cache: Coherence,
}

#[async_trait]
impl SettingsSource for SqlSettings {
    async fn current(&self) -> Result<Settings> {
        if let Some(kept) = self.cache.settings() {
            return Ok(kept);
        }
        let ticket = self.cache.settings_ticket();
        let read = settings::Entity::find_by_id(1)
            .one(&self.db)
            .await
            .map_err(db_err)?
            .map(to_settings)
            .unwrap_or_default();
        self.cache.keep_settings(ticket, &read);
        Ok(read)
    }
}
