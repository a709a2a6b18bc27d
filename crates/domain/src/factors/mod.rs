//! Admins' second factors: authenticator-app codes (TOTP, `totp.rs`) and single-use recovery
//! codes (`recovery.rs`), kept through the port in `store.rs`.
//!
//! An admin enrols a TOTP factor in two steps: [`AdminFactors::start_totp`] makes a secret
//! (shown once, as a QR code's `otpauth://` URI and as a key to type) and stores it sealed and
//! unconfirmed; [`AdminFactors::confirm_totp`] takes a code the app shows and only then does the
//! factor count. The first confirmed factor comes with a set of recovery codes, shown once.
//! [`AdminFactors::verify`] is the factor step of a sign-in: a code from any confirmed factor
//! (each step accepted once), or an unused recovery code (spent).

pub mod challenge;
pub mod grant;
pub mod passkey;
pub mod recovery;
mod store;
pub mod totp;

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

    /// Offers passkeys, with this relying party (`None`: the server offers none).
    pub fn with_passkeys(mut self, passkeys: Option<Passkeys>) -> Self {
        self.passkeys = passkeys;
        self
    }

    /// The password step of an admin's sign-in, with the same limits, lockout and
    /// indistinguishable failures as a one-step sign-in. An admin with a factor gets a
    /// challenge for [`Self::complete_sign_in`]; one without gets an enrolment challenge where
    /// the store requires a factor ([`FactorPolicy::Required`]), and is signed in where it does
    /// not.
    pub async fn start_sign_in(
        &self,
        username: &str,
        password: &str,
        client: ClientInfo,
    ) -> Result<SignInStep> {
        self.start_sign_in_remembered(username, password, client, None)
            .await
    }

    /// The same, from a browser that may hold a grant to skip the factor ("Remember this
    /// browser"): with the right password and a live grant of this admin, where the store
    /// still offers grants, the admin is signed in; a grant never stands in for the password,
    /// and any other grant is as if none was sent.
    #[tracing::instrument(name = "factors.start_sign_in", skip_all)]
    pub async fn start_sign_in_remembered(
        &self,
        username: &str,
        password: &str,
        client: ClientInfo,
        grant: Option<&str>,
    ) -> Result<SignInStep> {
        let candidate = PasswordCandidate::parse(password).ok_or(Error::AuthenticationFailed)?;
        let settings = self.parts.settings.current().await?;
        let login = Username::sign_in_key(username);
        let sign_in = &self.parts.sign_in;
        let verified = sign_in
            .verify(PrincipalKind::Admin, &login, &candidate, &client, &settings)
            .await?;
        let has_factor = self.has_confirmed_factor(verified.id).await?;
        let remembered = match grant.and_then(RawResetToken::parse) {
            Some(secret) if has_factor && settings.remember_browser > chrono::Duration::zero() => {
                self.store
                    .use_grant(verified.id, &secret.hash(), self.parts.clock.now())
                    .await?
            }
            _ => false,
        };
        if remembered {
            tracing::info!(event = "admin_factor_remembered", admin_id = %verified.id);
        }
        if remembered || (!has_factor && self.policy == FactorPolicy::Optional) {
            return sign_in
                .mint(
                    PrincipalKind::Admin,
                    &login,
                    &candidate,
                    verified,
                    client,
                    &settings,
                )
                .await
                .map(SignInStep::SignedIn);
        }
        // The hash as stored now (an upgraded one replaced the one read).
        let stored = verified
            .hashes
            .0
            .last()
            .ok_or_else(|| Error::internal("a verified password without its hash"))?;
        let (purpose, lifetime) = if has_factor {
            (Purpose::SignIn, CHALLENGE_LIFETIME)
        } else {
            (Purpose::Enrol, ENROLMENT_LIFETIME)
        };
        let expires_at = self.parts.clock.now() + lifetime;
        let request = match (&self.passkeys, has_factor) {
            (Some(passkeys), true) => {
                let keys = self.passkeys_of(verified.id).await?;
                if keys.is_empty() {
                    None
                } else {
                    let keys: Vec<StoredPasskey> = keys.into_iter().map(|(_, k)| k).collect();
                    Some(passkeys.request(&keys)?)
                }
            }
            _ => None,
        };
        let (passkey_options, passkey) = match request {
            Some(r) => (
                Some(r.options),
                Some(
                    serde_json::to_string(&r.state)
                        .map_err(|e| Error::internal(format!("passkey state: {e}")))?,
                ),
            ),
            None => (None, None),
        };
        let challenge = self.challenges.seal(&Challenge {
            purpose,
            admin_id: verified.id,
            login,
            fingerprint: hash_fingerprint(stored),
            expires: expires_at.timestamp(),
            passkey,
        })?;
        if has_factor {
            tracing::info!(event = "admin_factor_asked", admin_id = %verified.id);
            Ok(SignInStep::FactorNeeded {
                challenge,
                expires_at,
                remember_browser: settings.remember_browser,
                passkey_options,
            })
        } else {
            tracing::info!(event = "admin_enrolment_asked", admin_id = %verified.id);
            Ok(SignInStep::EnrolmentNeeded {
                challenge,
                expires_at,
            })
        }
    }

    /// The factor step: a code from one of the admin's factors or a recovery code, with the
    /// challenge the password step answered. Wrong codes count per admin over every
    /// challenge ([`MAX_WRONG_FACTOR_CODES`] in 15 minutes, then RATE_LIMITED); a bad or
    /// expired challenge, a wrong code and a password changed in between all answer
    /// AUTHENTICATION_FAILED.
    pub async fn complete_sign_in(
        &self,
        challenge: &str,
        code: &str,
        client: ClientInfo,
    ) -> Result<IssuedToken> {
        self.complete_sign_in_remembering(challenge, code, client, false)
            .await
            .map(|(token, _)| token)
    }

    /// The same; with `remember`, where the store offers it, also a grant for this browser to
    /// skip the factor for the store's `remember_browser` days (the secret, shown once).
    #[tracing::instrument(name = "factors.complete_sign_in", skip_all)]
    pub async fn complete_sign_in_remembering(
        &self,
        challenge: &str,
        code: &str,
        client: ClientInfo,
        remember: bool,
    ) -> Result<(IssuedToken, Option<RememberedBrowser>)> {
        self.complete_factor_step(challenge, Proof::Code(code), client, remember)
            .await
    }

    /// The factor step with a passkey: `credential` is what the browser's
    /// `navigator.credentials.get` answered (its `toJSON()`), for the options `start_sign_in`
    /// gave. Counted and answered like a wrong code when it does not check out.
    #[tracing::instrument(name = "factors.complete_sign_in_with_passkey", skip_all)]
    pub async fn complete_sign_in_with_passkey(
        &self,
        challenge: &str,
        credential: &str,
        client: ClientInfo,
        remember: bool,
    ) -> Result<(IssuedToken, Option<RememberedBrowser>)> {
        self.complete_factor_step(challenge, Proof::Passkey(credential), client, remember)
            .await
    }

    async fn complete_factor_step(
        &self,
        challenge: &str,
        proof: Proof<'_>,
        client: ClientInfo,
        remember: bool,
    ) -> Result<(IssuedToken, Option<RememberedBrowser>)> {
        let now = self.parts.clock.now();
        let sealed = challenge;
        let challenge = self
            .challenges
            .open(sealed, now, Purpose::SignIn)
            .ok_or(Error::AuthenticationFailed)?;
        // A challenge whose proof no longer stands (the password changed, the admin renamed)
        // spends no code: a recovery code is not burnt on a sign-in that cannot succeed.
        let sign_in = &self.parts.sign_in;
        if sign_in
            .proof_stands(
                PrincipalKind::Admin,
                challenge.admin_id,
                &challenge.login,
                &challenge.fingerprint,
            )
            .await?
            .is_none()
        {
            return Err(Error::AuthenticationFailed);
        }
        let budget = [
            Check::new(
                LimitKey::WrongFactorCodesOf(challenge.admin_id),
                Rule::per(MAX_WRONG_FACTOR_CODES, challenge::WRONG_FACTOR_WINDOW),
            ),
            Check::new(
                LimitKey::WrongFactorCodesPerDayOf(challenge.admin_id),
                Rule::per(
                    challenge::MAX_WRONG_FACTOR_CODES_PER_DAY,
                    chrono::Duration::days(1),
                ),
            ),
        ];
        let reservation = self.parts.limiter.reserve(&budget, now).await?;
        let used = match proof {
            Proof::Code(code) => self.verify(challenge.admin_id, code).await?,
            Proof::Passkey(credential) => self.verify_passkey(&challenge, credential).await?,
        };
        // A challenge signs in once: a passkey's answer, which nothing else spends, cannot be
        // replayed with it, and one challenge cannot mint two sessions.
        let used = match used {
            Some(used)
                if self
                    .store
                    .spend_challenge(challenge::digest(sealed), challenge.expires_at())
                    .await? =>
            {
                Some(used)
            }
            _ => None,
        };
        if used.is_none() {
            reservation.keep();
            tracing::info!(event = "admin_factor_failed", admin_id = %challenge.admin_id);
            return Err(Error::AuthenticationFailed);
        }
        self.parts.limiter.release(reservation).await?;
        let settings = self.parts.settings.current().await?;
        let user_agent = client.user_agent.clone();
        let token = sign_in
            .sign_in_after_factor(
                PrincipalKind::Admin,
                challenge.admin_id,
                &challenge.login,
                &challenge.fingerprint,
                client,
                &settings,
            )
            .await?;
        if !remember || settings.remember_browser <= chrono::Duration::zero() {
            return Ok((token, None));
        }
        let secret = RawResetToken::generate()?;
        let expires_at = now + settings.remember_browser;
        self.store
            .add_grant(NewGrant {
                id: Uuid::now_v7(),
                admin_id: challenge.admin_id,
                secret_hash: secret.hash(),
                created_at: now,
                expires_at,
                user_agent,
            })
            .await?;
        tracing::info!(event = "admin_browser_remembered", admin_id = %challenge.admin_id);
        Ok((
            token,
            Some(RememberedBrowser {
                secret: secret.expose().to_owned(),
                expires_at,
            }),
        ))
    }

    /// Whether this server can offer passkeys (its public URL has a domain name).
    pub fn passkeys_offered(&self) -> bool {
        self.passkeys.is_some()
    }

    /// Starts registering a passkey (or a security key) named `name` for the signed-in admin,
    /// after their password. BAD_USER_INPUT where the server offers no passkeys, for a bad
    /// name, or past 10 factors.
    #[tracing::instrument(name = "factors.start_passkey", skip_all)]
    pub async fn start_passkey(
        &self,
        principal: &AdminPrincipal,
        name: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<PasskeyEnrolment> {
        let Some(passkeys) = &self.passkeys else {
            return Err(Error::bad_input(
                "name",
                "this server offers no passkeys: its public URL needs a domain name",
            ));
        };
        let name = checked_name(name)?;
        let admin = &principal.admin;
        if self.held(admin.id).await? >= MAX_FACTORS {
            return Err(Error::bad_input(
                "name",
                "an admin holds at most 10 factors: remove one first",
            ));
        }
        self.confirm_password(principal, password, client).await?;
        let existing: Vec<StoredPasskey> = self
            .passkeys_of(admin.id)
            .await?
            .into_iter()
            .map(|(_, k)| k)
            .collect();
        let registration = passkeys.register(admin.id, &admin.username, &existing)?;
        let expires_at = self.parts.clock.now() + ENROLMENT_LIFETIME;
        let challenge = self.challenges.seal_as(
            PASSKEY_ENROLMENT,
            &PasskeyEnrolmentState {
                admin_id: admin.id,
                name: name.to_owned(),
                state: serde_json::to_string(&registration.state)
                    .map_err(|e| Error::internal(format!("passkey state: {e}")))?,
                expires: expires_at.timestamp(),
            },
        )?;
        Ok(PasskeyEnrolment {
            challenge,
            options: registration.options,
            expires_at,
        })
    }

    /// Finishes it with what the browser's `navigator.credentials.create` answered (its
    /// `toJSON()`): BAD_USER_INPUT when it does not check out (another origin, another
    /// challenge, no user verification). Audited as ENROL_ADMIN_FACTOR; the admin's first
    /// factor comes with their recovery codes.
    #[tracing::instrument(name = "factors.complete_passkey", skip_all)]
    pub async fn complete_passkey(
        &self,
        principal: &AdminPrincipal,
        challenge: &str,
        credential: &str,
        client: &ClientInfo,
    ) -> Result<(Factor, Option<Vec<RecoveryCode>>)> {
        let refused = || {
            Error::bad_input(
                "credential",
                "the browser's answer does not match this registration: start again",
            )
        };
        let passkeys = self.passkeys.as_ref().ok_or_else(refused)?;
        let now = self.parts.clock.now();
        let admin = &principal.admin;
        let started: PasskeyEnrolmentState = self
            .challenges
            .open_as(PASSKEY_ENROLMENT, challenge)
            .filter(|s: &PasskeyEnrolmentState| {
                s.admin_id == admin.id && s.expires > now.timestamp()
            })
            .ok_or_else(refused)?;
        let state = serde_json::from_str(&started.state).map_err(|_| refused())?;
        let passkey = passkeys
            .registered(credential, &state)
            .ok_or_else(refused)?;
        // One registration, one passkey: the same answer again (or a key already held) adds
        // nothing.
        let held = self.passkeys_of(admin.id).await?;
        if held
            .iter()
            .any(|(_, key)| key.0.cred_id() == passkey.0.cred_id())
            || !self
                .store
                .spend_challenge(
                    challenge::digest(challenge),
                    DateTime::from_timestamp(started.expires, 0).unwrap_or(now),
                )
                .await?
        {
            return Err(refused());
        }
        let id = Uuid::now_v7();
        let sealed = self.seal_passkey(admin.id, id, &passkey)?;
        let audit = NewAudit::by(principal, AuditAction::EnrolAdminFactor, now, client)
            .detail(format!("factor {id}"));
        self.store
            .add_passkey(
                StoredFactor {
                    id,
                    admin_id: admin.id,
                    kind: FactorKind::Passkey,
                    name: started.name.clone(),
                    sealed_secret: sealed,
                    created_at: now,
                    confirmed_at: Some(now),
                    last_used_step: None,
                    last_used_at: None,
                },
                audit,
            )
            .await?;
        tracing::info!(event = "admin_passkey_added", admin_id = %admin.id, factor_id = %id);
        let codes = if self.store.recovery_codes_left(admin.id).await? > 0 {
            None
        } else {
            Some(self.issue_recovery_codes(admin.id, now, None).await?)
        };
        Ok((
            Factor {
                id,
                kind: FactorKind::Passkey,
                name: started.name,
                created_at: now,
                confirmed: true,
                last_used_at: None,
            },
            codes,
        ))
    }

    /// The admin's passkeys, opened.
    async fn passkeys_of(&self, admin_id: Uuid) -> Result<Vec<(Uuid, StoredPasskey)>> {
        Ok(self
            .store
            .factors(admin_id)
            .await?
            .into_iter()
            .filter(|f| f.kind == FactorKind::Passkey && f.confirmed_at.is_some())
            .filter_map(|f| {
                // One passkey that does not open must not lock the admin out of the others.
                let key = self
                    .sealer
                    .open(&sealed_name(f.admin_id, f.id), &f.sealed_secret)
                    .and_then(|bytes| serde_json::from_slice::<StoredPasskey>(&bytes).ok());
                if key.is_none() {
                    tracing::error!(factor_id = %f.id, "an admin passkey is unusable");
                }
                key.map(|k| (f.id, k))
            })
            .collect())
    }

    fn seal_passkey(&self, admin_id: Uuid, id: Uuid, passkey: &StoredPasskey) -> Result<Vec<u8>> {
        let bytes =
            serde_json::to_vec(passkey).map_err(|e| Error::internal(format!("passkey: {e}")))?;
        self.sealer.seal(&sealed_name(admin_id, id), &bytes)
    }

    /// The factor step's passkey: which of the admin's passkeys answered the challenge's
    /// ceremony (its counter stored), or `None`.
    async fn verify_passkey(
        &self,
        challenge: &Challenge,
        credential: &str,
    ) -> Result<Option<FactorUsed>> {
        let (Some(passkeys), Some(state)) = (&self.passkeys, &challenge.passkey) else {
            return Ok(None);
        };
        let Ok(state) = serde_json::from_str(state) else {
            return Ok(None);
        };
        let keys = self.passkeys_of(challenge.admin_id).await?;
        let Some((id, key)) = passkeys.answered(credential, &state, keys) else {
            return Ok(None);
        };
        let sealed = self.seal_passkey(challenge.admin_id, id, &key)?;
        self.store
            .update_passkey(id, sealed, self.parts.clock.now())
            .await?;
        tracing::info!(event = "admin_passkey_used", admin_id = %challenge.admin_id, factor_id = %id);
        Ok(Some(FactorUsed::Passkey { factor_id: id }))
    }

    /// The signed-in admin's live grants ("remembered browsers"), newest first.
    pub async fn grants(&self, principal: &AdminPrincipal) -> Result<Vec<DeviceGrant>> {
        self.store
            .grants(principal.admin.id, self.parts.clock.now())
            .await
    }

    /// Revokes one of the signed-in admin's grants: that browser asks for the factor again.
    /// NOT_FOUND for a grant not theirs or not live.
    pub async fn revoke_grant(&self, principal: &AdminPrincipal, grant_id: Uuid) -> Result<()> {
        if self
            .store
            .revoke_grant(principal.admin.id, grant_id, self.parts.clock.now())
            .await?
        {
            tracing::info!(event = "admin_grant_revoked", admin_id = %principal.admin.id);
            Ok(())
        } else {
            Err(Error::NotFound)
        }
    }

    /// The one-step sign-in that admin apps built before second factors call: a token for an
    /// admin without a factor; for one with a factor, after the right password only,
    /// SECOND_FACTOR_REQUIRED (a wrong password answers as it always did).
    #[tracing::instrument(name = "factors.sign_in", skip_all)]
    pub async fn sign_in(
        &self,
        username: &str,
        password: &str,
        client: ClientInfo,
    ) -> Result<IssuedToken> {
        match self.start_sign_in(username, password, client).await? {
            SignInStep::SignedIn(token) => Ok(token),
            SignInStep::FactorNeeded { .. } | SignInStep::EnrolmentNeeded { .. } => {
                Err(Error::SecondFactorRequired)
            }
        }
    }

    /// The enrolment challenge, if it opens and its proof still stands (the password not
    /// changed since, the admin not renamed or disabled) for an admin who still has no
    /// confirmed factor: AUTHENTICATION_FAILED otherwise.
    async fn open_enrolment(&self, challenge: &str) -> Result<(Challenge, AdminUser)> {
        let challenge = self
            .challenges
            .open(challenge, self.parts.clock.now(), Purpose::Enrol)
            .ok_or(Error::AuthenticationFailed)?;
        if self
            .parts
            .sign_in
            .proof_stands(
                PrincipalKind::Admin,
                challenge.admin_id,
                &challenge.login,
                &challenge.fingerprint,
            )
            .await?
            .is_none()
            || self.has_confirmed_factor(challenge.admin_id).await?
        {
            return Err(Error::AuthenticationFailed);
        }
        let admin = self
            .store
            .admin(challenge.admin_id)
            .await?
            .filter(|a| !a.disabled)
            .ok_or(Error::AuthenticationFailed)?;
        Ok((challenge, admin))
    }

    /// The first step of an enrolment the store required: an authenticator app named `name`,
    /// with the challenge `start_sign_in` answered (no session, no password again).
    #[tracing::instrument(name = "factors.start_enrolment", skip_all)]
    pub async fn start_enrolment(&self, challenge: &str, name: &str) -> Result<TotpEnrolment> {
        let (_, admin) = self.open_enrolment(challenge).await?;
        self.add_totp(&admin, name).await
    }

    /// The last step: a code from the app confirms it (BAD_USER_INPUT when wrong), and the
    /// admin is signed in, with their recovery codes. Audited as ENROL_ADMIN_FACTOR.
    #[tracing::instrument(name = "factors.complete_enrolment", skip_all)]
    pub async fn complete_enrolment(
        &self,
        challenge: &str,
        factor_id: Uuid,
        code: &str,
        client: ClientInfo,
    ) -> Result<Enrolled> {
        let (challenge, admin) = self.open_enrolment(challenge).await?;
        let now = self.parts.clock.now();
        self.confirm(&admin, factor_id, code, &client, now).await?;
        let recovery_codes = self.issue_recovery_codes(admin.id, now, None).await?;
        let settings = self.parts.settings.current().await?;
        let token = self
            .parts
            .sign_in
            .sign_in_after_factor(
                PrincipalKind::Admin,
                admin.id,
                &challenge.login,
                &challenge.fingerprint,
                client,
                &settings,
            )
            .await?;
        Ok(Enrolled {
            token,
            recovery_codes,
        })
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

    /// Starts enrolling an authenticator app named `name` ("Work phone"), after the admin's
    /// password.
    #[tracing::instrument(name = "factors.start_totp", skip_all)]
    pub async fn start_totp(
        &self,
        principal: &AdminPrincipal,
        name: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<TotpEnrolment> {
        self.confirm_password(principal, password, client).await?;
        self.add_totp(&principal.admin, name).await
    }

    /// Factors that count toward the admin's ten: confirmed ones, and enrolments under way.
    async fn held(&self, admin_id: Uuid) -> Result<usize> {
        let stale_before = self.parts.clock.now() - STALE_ENROLMENT;
        Ok(self
            .store
            .factors(admin_id)
            .await?
            .iter()
            .filter(|f| f.confirmed_at.is_some() || f.created_at >= stale_before)
            .count())
    }

    async fn add_totp(&self, admin: &AdminUser, name: &str) -> Result<TotpEnrolment> {
        let name = checked_name(name)?;
        let now = self.parts.clock.now();
        let stale_before = now - STALE_ENROLMENT;
        if self.held(admin.id).await? >= MAX_FACTORS {
            return Err(Error::bad_input(
                "name",
                "an admin holds at most 10 factors: remove one first",
            ));
        }
        let secret = TotpSecret::generate()?;
        let id = Uuid::now_v7();
        self.store
            .add_totp(
                StoredFactor {
                    id,
                    admin_id: admin.id,
                    kind: FactorKind::Totp,
                    name: name.to_owned(),
                    sealed_secret: self
                        .sealer
                        .seal(&sealed_name(admin.id, id), secret.expose())?,
                    created_at: now,
                    confirmed_at: None,
                    last_used_step: None,
                    last_used_at: None,
                },
                stale_before,
            )
            .await?;
        let uri = secret.otpauth_uri(&self.parts.store_name, &admin.username);
        tracing::info!(event = "admin_factor_started", admin_id = %admin.id, factor_id = %id);
        Ok(TotpEnrolment {
            factor_id: id,
            secret,
            uri,
        })
    }

    /// Confirms an enrolment with a code the app shows. The admin's first factor comes with a
    /// fresh set of recovery codes, returned once (`None` when the admin already has codes).
    #[tracing::instrument(name = "factors.confirm_totp", skip_all)]
    pub async fn confirm_totp(
        &self,
        principal: &AdminPrincipal,
        factor_id: Uuid,
        code: &str,
        client: &ClientInfo,
    ) -> Result<Option<Vec<RecoveryCode>>> {
        let now = self.parts.clock.now();
        let admin_id = principal.admin.id;
        self.confirm(&principal.admin, factor_id, code, client, now)
            .await?;
        if self.store.recovery_codes_left(admin_id).await? > 0 {
            return Ok(None);
        }
        self.issue_recovery_codes(admin_id, now, None)
            .await
            .map(Some)
    }

    /// Confirms `admin`'s unconfirmed factor `factor_id` with `code`, audited.
    async fn confirm(
        &self,
        admin: &AdminUser,
        factor_id: Uuid,
        code: &str,
        client: &ClientInfo,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let factor = self
            .store
            .factors(admin.id)
            .await?
            .into_iter()
            .find(|f| f.id == factor_id && f.confirmed_at.is_none())
            .ok_or(Error::NotFound)?;
        let wrong = || {
            Error::bad_input(
                "code",
                "that is not the code the app shows now: check the device's clock and try again",
            )
        };
        let step = self
            .secret(&factor)?
            .check(code, now, factor.last_used_step)
            .ok_or_else(wrong)?;
        let audit = NewAudit::by_admin(admin, AuditAction::EnrolAdminFactor, now, client)
            .detail(format!("factor {factor_id}"));
        if !self.store.confirm_totp(factor.id, step, now, audit).await? {
            return Err(wrong());
        }
        tracing::info!(event = "admin_factor_confirmed", admin_id = %admin.id, factor_id = %factor_id);
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

    /// Removes one of the admin's own factors, after their password. With the last confirmed
    /// factor go the recovery codes; where the store requires a factor the last one stays
    /// (checked again in the removal's transaction, so two removals at once cannot take the
    /// last two), and where it does not the admin signs in with the password alone again.
    #[tracing::instrument(name = "factors.remove", skip_all)]
    pub async fn remove(
        &self,
        principal: &AdminPrincipal,
        factor_id: Uuid,
        password: &str,
        client: &ClientInfo,
    ) -> Result<()> {
        let factors = self.store.factors(principal.admin.id).await?;
        let Some(factor) = factors.iter().find(|f| f.id == factor_id) else {
            return Err(Error::NotFound);
        };
        let last = || {
            Error::bad_input(
                "factorId",
                "this store requires a second factor: add another before removing the last",
            )
        };
        let keep_one = self.policy == FactorPolicy::Required;
        let confirmed = factors.iter().filter(|f| f.confirmed_at.is_some()).count();
        if keep_one && factor.confirmed_at.is_some() && confirmed == 1 {
            return Err(last());
        }
        self.confirm_password(principal, password, client).await?;
        let audit = NewAudit::by(
            principal,
            AuditAction::RemoveAdminFactor,
            self.parts.clock.now(),
            client,
        )
        .detail(format!("factor {factor_id}"));
        match self
            .store
            .remove_factor(principal.admin.id, factor_id, keep_one, audit)
            .await?
        {
            Removal::Removed => {}
            Removal::NotFound => return Err(Error::NotFound),
            Removal::LastKept => return Err(last()),
        }
        tracing::info!(event = "admin_factor_removed", admin_id = %principal.admin.id, factor_id = %factor_id);
        Ok(())
    }

    /// A new set of recovery codes (the old ones stop working), for an admin with a confirmed
    /// factor, after their password.
    #[tracing::instrument(name = "factors.new_recovery_codes", skip_all)]
    pub async fn new_recovery_codes(
        &self,
        principal: &AdminPrincipal,
        password: &str,
        client: &ClientInfo,
    ) -> Result<Vec<RecoveryCode>> {
        let admin_id = principal.admin.id;
        if !self.has_confirmed_factor(admin_id).await? {
            return Err(Error::bad_input(
                "factors",
                "enrol an authenticator app first: recovery codes stand in for a factor",
            ));
        }
        self.confirm_password(principal, password, client).await?;
        let now = self.parts.clock.now();
        let audit = NewAudit::by(principal, AuditAction::NewRecoveryCodes, now, client);
        self.issue_recovery_codes(admin_id, now, Some(audit)).await
    }

    /// "Reset Two-Factor Authentication" on the Admin Users page, for an admin who lost every
    /// factor and recovery code, after the acting admin's password: removes all of
    /// `admin_id`'s factors and codes and ends their sessions; they are mailed, and their next sign-in enrols a factor again (where the store
    /// requires one). Audited as RESET_ADMIN_FACTORS. Not for one's own factors
    /// (BAD_USER_INPUT: those are removed one by one, after the password); NOT_FOUND for no
    /// such admin. The sessions ended, how many.
    #[tracing::instrument(name = "factors.reset_for", skip_all)]
    pub async fn reset_for(
        &self,
        principal: &AdminPrincipal,
        admin_id: Uuid,
        password: &str,
        client: &ClientInfo,
    ) -> Result<u64> {
        if !principal.admin.role.allows(Permission::AdminUsersManage) {
            return Err(Error::Forbidden);
        }
        if principal.admin.id == admin_id {
            return Err(Error::bad_input(
                "adminId",
                "your own factors are removed one by one, after your password",
            ));
        }
        let target = self.store.admin(admin_id).await?.ok_or(Error::NotFound)?;
        // The acting administrator's password again: a stolen administrator token alone must
        // not strip another admin's factors.
        self.confirm_password(principal, password, client).await?;
        let now = self.parts.clock.now();
        let audit = NewAudit::by(principal, AuditAction::ResetAdminFactors, now, client)
            .detail(format!("admin {admin_id}"));
        self.reset(&target, now, audit).await
    }

    /// The same reset by an operator (`latchkey admin reset-2fa USERNAME`), for the last
    /// administrator who lost everything; `actor` names the OS user (`os:user@host`).
    #[tracing::instrument(name = "factors.reset_by_operator", skip_all)]
    pub async fn reset_by_operator(&self, username: &str, actor: String) -> Result<u64> {
        let target = self
            .store
            .admin_named(&Username::sign_in_key(username))
            .await?
            .ok_or(Error::NotFound)?;
        let now = self.parts.clock.now();
        let audit = NewAudit::by_operator(actor, AuditAction::ResetAdminFactors, now)
            .detail(format!("admin {}", target.id));
        self.reset(&target, now, audit).await
    }

    async fn reset(&self, target: &AdminUser, now: DateTime<Utc>, audit: NewAudit) -> Result<u64> {
        let notice = target.email.as_ref().map(|email| NewMail {
            id: Uuid::now_v7(),
            kind: MailKind::AdminFactorsReset,
            customer_id: None,
            recipient: email.clone(),
            locale: crate::customer::Locale::default(),
            created_at: now,
            link: None,
        });
        let mailed = notice.is_some();
        let ended = self
            .store
            .reset_factors(target.id, now, audit, notice)
            .await?;
        if mailed {
            self.mail.notify();
        }
        tracing::info!(event = "admin_factors_reset", admin_id = %target.id, sessions_ended = ended);
        Ok(ended)
    }

    /// Recovery codes the admin has left.
    pub async fn recovery_codes_left(&self, admin_id: Uuid) -> Result<u64> {
        self.store.recovery_codes_left(admin_id).await
    }

    /// The factor step: a code from any of the admin's confirmed factors (each step accepted
    /// once), or one of their unused recovery codes (spent). `None` for anything else.
    pub async fn verify(&self, admin_id: Uuid, code: &str) -> Result<Option<FactorUsed>> {
        let now = self.parts.clock.now();
        for factor in self.store.factors(admin_id).await? {
            if factor.confirmed_at.is_none() || factor.kind != FactorKind::Totp {
                continue;
            }
            // One factor that does not open (sealed under another secret) must not lock the
            // admin out of the others and their recovery codes.
            let secret = match self.secret(&factor) {
                Ok(secret) => secret,
                Err(e) => {
                    tracing::error!(error = %e, "an admin factor is unusable");
                    continue;
                }
            };
            let Some(step) = secret.check(code, now, factor.last_used_step) else {
                continue;
            };
            if self.store.use_totp_step(factor.id, step, now).await? {
                return Ok(Some(FactorUsed::Totp {
                    factor_id: factor.id,
                }));
            }
        }
        if let Some(recovery) = RecoveryCode::parse(code)
            && self
                .store
                .use_recovery_code(admin_id, &recovery.hash(&self.recovery_key, admin_id), now)
                .await?
        {
            tracing::info!(event = "admin_recovery_code_used", admin_id = %admin_id);
            return Ok(Some(FactorUsed::RecoveryCode));
        }
        Ok(None)
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

/// What the factor step was given.
enum Proof<'a> {
    /// A code from an authenticator app, or a recovery code.
    Code(&'a str),
    /// A passkey's answer (JSON).
    Passkey(&'a str),
}

/// A passkey being registered, sealed for the client to bring back with the browser's answer.
#[derive(serde::Serialize, serde::Deserialize)]
struct PasskeyEnrolmentState {
    admin_id: Uuid,
    name: String,
    state: String,
    expires: i64,
}

const PASSKEY_ENROLMENT: &str = "admin passkey enrolment";

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

/// A factor's name as the admin typed it, trimmed: 1 to 64 characters.
fn checked_name(name: &str) -> Result<&str> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::bad_input(
            "name",
            "name the factor (1 to 64 characters), e.g. the device it is on",
        ));
    }
    Ok(name)
}

/// The name a factor's secret is sealed under: its admin and itself, so a row moved to another
/// admin (or another row's secret copied in) does not open.
fn sealed_name(admin_id: Uuid, factor_id: Uuid) -> String {
    format!("{admin_id}/{factor_id}")
}
