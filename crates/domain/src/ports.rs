//! The ports every feature shares, gathered under one path: what goes into the outbox, where
//! the settings come from, and password hashing. Each lives beside its feature; a feature's
//! own store port lives in its folder (`reset/store.rs`, `accounts/store.rs`, …).

pub use crate::{
    outbox::{MailKind, MailLane, MailSignal, NewMail},
    password::hasher::{PasswordHasher, Verification},
    settings::source::{SettingsSource, StaticSettings},
};
