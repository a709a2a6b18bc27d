//! The port admins' second factors are kept through.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    Result,
    admin::{AdminUser, NewAudit},
    factors::grant::{DeviceGrant, NewGrant},
    outbox::NewMail,
};

/// A factor as stored: its secret sealed (see [`crate::keys::Sealer`], `{admin_id}/{factor_id}` as the
/// name), `confirmed_at` set once the admin typed a right code (a factor never confirmed signs
/// nobody in), `last_used_step` the newest TOTP step it accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFactor {
    pub id: Uuid,
    pub admin_id: Uuid,
    pub kind: FactorKind,
    pub name: String,
    pub sealed_secret: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub last_used_step: Option<u64>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What a factor's removal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Removed,
    NotFound,
    /// Refused: it would have left the admin no confirmed factor.
    LastKept,
}

/// What a factor is: an authenticator app's TOTP secret, or a passkey (a security key too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorKind {
    Totp,
    Passkey,
    /// A kind this build does not know (written by a newer one): it counts as the admin's
    /// factor, so nobody is let around it, but it signs nobody in here.
    Unknown,
}

impl FactorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Totp => "totp",
            Self::Passkey => "passkey",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Self {
        [Self::Totp, Self::Passkey]
            .into_iter()
            .find(|k| k.as_str() == s)
            .unwrap_or(Self::Unknown)
    }
}

#[async_trait]
pub trait FactorStore: Send + Sync {
    /// Stores an unconfirmed TOTP factor, and removes the admin's enrolments left unconfirmed
    /// since before `stale_before` (abandoned, they would fill the admin's ten places).
    async fn add_totp(&self, factor: StoredFactor, stale_before: DateTime<Utc>) -> Result<()>;

    /// Stores a passkey, confirmed (the browser's ceremony proved it), writing `audit` in the
    /// same transaction.
    async fn add_passkey(&self, factor: StoredFactor, audit: NewAudit) -> Result<()>;

    /// Stores a passkey's state after a sign-in (its counter), and when it was used.
    async fn update_passkey(
        &self,
        factor_id: Uuid,
        sealed_secret: Vec<u8>,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// The admin with this id (enabled or not), for a step that has no session yet.
    async fn admin(&self, admin_id: Uuid) -> Result<Option<AdminUser>>;

    /// The admin whose username has this key (an operator names them).
    async fn admin_named(&self, username_key: &str) -> Result<Option<AdminUser>>;

    /// Removes every factor and recovery code of the admin and ends their sessions, writing
    /// `audit` and queueing `notice` in the same transaction: how many sessions ended.
    async fn reset_factors(
        &self,
        admin_id: Uuid,
        now: DateTime<Utc>,
        audit: NewAudit,
        notice: Option<NewMail>,
    ) -> Result<u64>;

    /// The admin's factors, confirmed or not, oldest first.
    async fn factors(&self, admin_id: Uuid) -> Result<Vec<StoredFactor>>;

    /// Records that the confirmed factor `factor_id` accepted `step` at `now`, in one statement
    /// that matches only while every step it accepted is older: of two requests with one code,
    /// exactly one sees `true`.
    async fn use_totp_step(&self, factor_id: Uuid, step: u64, now: DateTime<Utc>) -> Result<bool>;

    /// Confirms the unconfirmed factor `factor_id` with `step` (the same guard as
    /// [`Self::use_totp_step`]) and writes `audit` in the same transaction; false, and nothing
    /// written, when it was confirmed already, removed, or the step was used.
    async fn confirm_totp(
        &self,
        factor_id: Uuid,
        step: u64,
        now: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<bool>;

    /// Removes one of the admin's factors and writes `audit` in the same transaction (with the
    /// last confirmed factor, the recovery codes go too); nothing is written when the admin had
    /// no such factor, or, with `keep_one`, when it would leave them no confirmed factor.
    async fn remove_factor(
        &self,
        admin_id: Uuid,
        factor_id: Uuid,
        keep_one: bool,
        audit: NewAudit,
    ) -> Result<Removal>;

    /// Replaces the admin's recovery codes with these hashes (and writes `audit`, if any, in
    /// the same transaction).
    async fn replace_recovery_codes(
        &self,
        admin_id: Uuid,
        hashes: Vec<String>,
        now: DateTime<Utc>,
        audit: Option<NewAudit>,
    ) -> Result<()>;

    /// Spends the admin's unused recovery code with this hash, in one statement: of two
    /// requests with one code, exactly one sees `true`.
    async fn use_recovery_code(
        &self,
        admin_id: Uuid,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Recovery codes the admin has left.
    async fn recovery_codes_left(&self, admin_id: Uuid) -> Result<u64>;

    /// Records that the challenge with this hash signed someone in, in one statement: of two
    /// requests with one challenge, exactly one sees `true`. Kept until `expires_at`.
    async fn spend_challenge(&self, hash: String, expires_at: DateTime<Utc>) -> Result<bool>;

    /// Stores a browser's grant to skip the second factor.
    async fn add_grant(&self, grant: NewGrant) -> Result<()>;

    /// Marks the admin's live grant with this secret hash used at `now`; false when the
    /// admin has no such live grant (another admin's, expired, revoked, unknown).
    async fn use_grant(
        &self,
        admin_id: Uuid,
        secret_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// The admin's live grants, newest first.
    async fn grants(&self, admin_id: Uuid, now: DateTime<Utc>) -> Result<Vec<DeviceGrant>>;

    /// Revokes one of the admin's live grants; false when they have no such live grant.
    async fn revoke_grant(
        &self,
        admin_id: Uuid,
        grant_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool>;
}
