//! Admins' second factors, one folder:
//!
//! - `totp.rs` authenticator-app codes (RFC 6238), `passkey.rs` passkeys and security keys
//!   (WebAuthn), `recovery.rs` the ten single-use recovery codes, `grant.rs` "Remember this
//!   browser";
//! - `challenge.rs` the sealed challenge a right password answers, and the wrong-code budget;
//! - the use cases of [`AdminFactors`]: `two_step.rs` the sign-in after the password (a code, a
//!   passkey or a remembered browser), `enrol.rs` adding factors (and the first one a store
//!   requires), `manage.rs` removing them, new recovery codes and the reset of a lost factor;
//! - `store.rs` the port they are kept through.
//!
//! An admin enrols a TOTP factor in two steps: [`AdminFactors::start_totp`] makes a secret
//! (shown once, as a QR code's `otpauth://` URI and as a key to type) and stores it sealed and
//! unconfirmed; [`AdminFactors::confirm_totp`] takes a code the app shows and only then does the
//! factor count. The first confirmed factor comes with a set of recovery codes, shown once.
//! [`AdminFactors::verify`] is the factor step of a sign-in: a code from any confirmed factor
//! (each step accepted once), or an unused recovery code (spent).

pub mod challenge;
mod enrol;
pub mod grant;
mod manage;
pub mod passkey;
pub mod recovery;
mod store;
pub mod totp;
mod two_step;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use challenge::{
    CHALLENGE_LIFETIME, Challenge, ChallengeKey, ENROLMENT_LIFETIME, MAX_WRONG_FACTOR_CODES,
    Purpose,
};
pub use grant::DeviceGrant;
pub use recovery::{RECOVERY_CODES, RecoveryCode, RecoveryKey};
pub use store::{FactorKind, FactorStore, Removal, StoredFactor};
pub use totp::TotpSecret;

use crate::keys::Sealer;
use crate::outbox::{MailKind, MailSignal, NewMail};
use crate::reset::RawResetToken;
use crate::{
    Error, Result,
    accounts::Wiring,
    admin::{AdminPrincipal, AdminUser, AuditAction, NewAudit, Permission, Username},
    kernel::client::ClientInfo,
    limits::{Check, LimitKey, PrincipalKind, Rule},
    password::PasswordCandidate,
    sign_in::{IssuedToken, hash_fingerprint},
};
use grant::{NewGrant, RememberedBrowser};
use passkey::{Passkeys, StoredPasskey};

/// Factors one admin may hold (an app on each device, named).
pub const MAX_FACTORS: usize = 10;
/// An enrolment left unconfirmed this long is removed when the admin starts another.
const STALE_ENROLMENT: chrono::Duration = chrono::Duration::hours(1);

/// Whether the store requires every admin to sign in with a second factor
/// (`LATCHKEY_ADMIN_2FA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FactorPolicy {
    /// An admin without a factor who signs in with the right password gets only a challenge
    /// to enrol one ([`SignInStep::EnrolmentNeeded`]); the last factor cannot be removed.
    #[default]
    Required,
    /// An admin without a factor signs in with the password alone (development).
    Optional,
}
const MAX_NAME_CHARS: usize = 64;

/// A TOTP factor being enrolled: what the admin's app needs, shown once. Its `Debug` shows
/// neither the secret nor the URI that carries it.
pub struct TotpEnrolment {
    pub factor_id: Uuid,
    pub secret: TotpSecret,
    /// `otpauth://totp/…`, for a QR code.
    pub uri: String,
}

impl std::fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpEnrolment")
            .field("factor_id", &self.factor_id)
            .finish_non_exhaustive()
    }
}

/// A factor as the admin sees it in their list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Factor {
    pub id: Uuid,
    pub kind: FactorKind,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// False until a right code was typed at enrolment; such a factor signs nobody in.
    pub confirmed: bool,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What proved the factor step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorUsed {
    Totp { factor_id: Uuid },
    Passkey { factor_id: Uuid },
    RecoveryCode,
}

/// What the password step of an admin's sign-in answers. Its `Debug` shows no challenge or
/// token.
pub enum SignInStep {
    /// No second factor to ask for: signed in.
    SignedIn(IssuedToken),
    /// The password was right; a code from a factor (or a recovery code) must follow, with
    /// this challenge, before `expires_at`.
    FactorNeeded {
        challenge: String,
        expires_at: DateTime<Utc>,
        /// How long a grant to skip the factor on this browser would live, if asked for with
        /// the code (zero: the store offers none).
        remember_browser: chrono::Duration,
        /// Where the admin has passkeys: the options for `navigator.credentials.get` (JSON).
        passkey_options: Option<String>,
    },
    /// The password was right, but the store requires a second factor and the admin has
    /// none: this challenge can do one thing, enrol the first one
    /// ([`AdminFactors::start_enrolment`], [`AdminFactors::complete_enrolment`]).
    EnrolmentNeeded {
        challenge: String,
        expires_at: DateTime<Utc>,
    },
}

impl std::fmt::Debug for SignInStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SignedIn(token) => f.debug_tuple("SignedIn").field(token).finish(),
            Self::FactorNeeded { expires_at, .. } => f
                .debug_struct("FactorNeeded")
                .field("expires_at", expires_at)
                .finish_non_exhaustive(),
            Self::EnrolmentNeeded { expires_at, .. } => f
                .debug_struct("EnrolmentNeeded")
                .field("expires_at", expires_at)
                .finish_non_exhaustive(),
        }
    }
}

/// An enrolment the store required, finished: the admin's first session and recovery codes.
pub struct Enrolled {
    pub token: IssuedToken,
    pub recovery_codes: Vec<RecoveryCode>,
}

impl std::fmt::Debug for Enrolled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolled")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

pub struct AdminFactors {
    passkeys: Option<Passkeys>,
    store: Arc<dyn FactorStore>,
    parts: Wiring,
    mail: Arc<dyn MailSignal>,
    policy: FactorPolicy,
    sealer: Sealer,
    recovery_key: RecoveryKey,
    challenges: ChallengeKey,
}

impl AdminFactors {
    /// `key_encryption_secret` seals the TOTP secrets at rest (the same secret that seals the
    /// signing keys, under a key of its own).
    pub fn new(
        store: Arc<dyn FactorStore>,
        parts: Wiring,
        mail: Arc<dyn MailSignal>,
        key_encryption_secret: &[u8],
        policy: FactorPolicy,
    ) -> Result<Self> {
        Ok(Self {
            passkeys: None,
            store,
            parts,
            mail,
            policy,
            sealer: Sealer::new(key_encryption_secret, "admin-totp sealing v1")?,
            recovery_key: RecoveryKey::derive(key_encryption_secret)?,
            challenges: ChallengeKey::derive(key_encryption_secret)?,
        })
    }

    /// Whether what a challenge proved still stands: its admin still has, under the same
    /// sign-in name, the password hash it verified.
    async fn proof_stands(&self, challenge: &Challenge) -> Result<bool> {
        Ok(self
            .parts
            .sign_in
            .proof_stands(
                PrincipalKind::Admin,
                challenge.admin_id,
                &challenge.login,
                &challenge.fingerprint,
            )
            .await?
            .is_some())
    }

    /// Offers passkeys, with this relying party (`None`: the server offers none).
    pub fn with_passkeys(mut self, passkeys: Option<Passkeys>) -> Self {
        self.passkeys = passkeys;
        self
    }

    /// The signed-in admin's password again, before their factors change: a stolen admin
    /// token alone can neither add a factor of the thief's nor remove the owner's. Counted
    /// like a sign-in (a wrong one moves the same lockout); AUTHENTICATION_FAILED otherwise.
    async fn confirm_password(
        &self,
        principal: &AdminPrincipal,
        password: &str,
        client: &ClientInfo,
    ) -> Result<()> {
        let candidate = PasswordCandidate::parse(password).ok_or(Error::AuthenticationFailed)?;
        let settings = self.parts.settings.current().await?;
        let login = Username::sign_in_key(&principal.admin.username);
        let verified = self
            .parts
            .sign_in
            .verify(PrincipalKind::Admin, &login, &candidate, client, &settings)
            .await?;
        if verified.id != principal.admin.id {
            return Err(Error::AuthenticationFailed);
        }
        Ok(())
    }

    /// An admin's factors, oldest first: the viewer's own, or anyone's for a viewer who
    /// manages admin users (FORBIDDEN otherwise).
    pub async fn factors_of(&self, viewer: &AdminPrincipal, admin_id: Uuid) -> Result<Vec<Factor>> {
        if viewer.admin.id != admin_id && !viewer.admin.role.allows(Permission::AdminUsersManage) {
            return Err(Error::Forbidden);
        }
        Ok(self
            .store
            .factors(admin_id)
            .await?
            .into_iter()
            .map(|f| Factor {
                id: f.id,
                kind: f.kind,
                name: f.name,
                created_at: f.created_at,
                confirmed: f.confirmed_at.is_some(),
                last_used_at: f.last_used_at,
            })
            .collect())
    }

    /// Whether the admin has a factor that can sign them in.
    pub async fn has_confirmed_factor(&self, admin_id: Uuid) -> Result<bool> {
        Ok(self
            .store
            .factors(admin_id)
            .await?
            .iter()
            .any(|f| f.confirmed_at.is_some()))
    }

    /// Recovery codes the admin has left.
    pub async fn recovery_codes_left(&self, admin_id: Uuid) -> Result<u64> {
        self.store.recovery_codes_left(admin_id).await
    }

    async fn issue_recovery_codes(
        &self,
        admin_id: Uuid,
        now: DateTime<Utc>,
        audit: Option<NewAudit>,
    ) -> Result<Vec<RecoveryCode>> {
        let codes = RecoveryCode::generate_set()?;
        self.store
            .replace_recovery_codes(
                admin_id,
                codes
                    .iter()
                    .map(|c| c.hash(&self.recovery_key, admin_id))
                    .collect(),
                now,
                audit,
            )
            .await?;
        tracing::info!(event = "admin_recovery_codes_issued", admin_id = %admin_id);
        Ok(codes)
    }

    fn secret(&self, factor: &StoredFactor) -> Result<TotpSecret> {
        self.sealer
            .open(
                &sealed_name(factor.admin_id, factor.id),
                &factor.sealed_secret,
            )
            .and_then(TotpSecret::from_bytes)
            .ok_or_else(|| {
                Error::internal(format!(
                    "admin factor {} does not open with this key-encryption secret",
                    factor.id
                ))
            })
    }
}

/// A passkey registration under way: the options for `navigator.credentials.create` (JSON;
/// its `publicKey` is what `PublicKeyCredential.parseCreationOptionsFromJSON` takes) and the
/// sealed state to bring back with the browser's answer. Its `Debug` shows neither.
pub struct PasskeyEnrolment {
    pub challenge: String,
    pub options: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for PasskeyEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasskeyEnrolment")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The name a factor's secret is sealed under: its admin and itself, so a row moved to another
/// admin (or another row's secret copied in) does not open.
fn sealed_name(admin_id: Uuid, factor_id: Uuid) -> String {
    format!("{admin_id}/{factor_id}")
}
