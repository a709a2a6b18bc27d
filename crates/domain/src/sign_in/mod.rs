//! The one sign-in core, for customers and admins alike: reserve the attempt, verify the
//! password, count or clear failures, upgrade old hashes, issue the session.
//!
//! Order matters. The attempt is reserved with the [`Limiter`] *before* the request waits for a
//! hashing slot: per client address (wrong passwords over every account) and per sign-in name
//! (the lockout budget, counted for names with and without an account, so both answer alike).
//! A burst of concurrent guesses therefore gets exactly the budget's worth of hashes, and the
//! guess after it is refused without one, even when it is the right password.

mod store;

pub use store::{CredentialStore, NewSession, Rehash, StoredCredentials, VerifiedHashes};

pub use crate::settings::lockout;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    Error, Result,
    clock::Clock,
    guard::AttackGuard,
    kernel::client::ClientInfo,
    limits::{Check, ClientKey, LimitError, LimitKey, Limiter, PrincipalKind, Rule},
    password::PasswordCandidate,
    ports::{PasswordHasher, Verification},
    settings::Settings,
    settings::lockout::is_locked,
    stored_hash::PasswordState,
    token::{TokenCodec, TokenKind},
};

/// The window of the per-client limit on wrong passwords.
const CLIENT_WINDOW: chrono::Duration = chrono::Duration::hours(1);

/// A sign-in refused only because other checks of the same name are still running waits for
/// them to settle, at most this long (a hashing queue longer than that is an attack, and its
/// guesses are answered as refused)...
const MAX_IN_FLIGHT_WAIT: std::time::Duration = std::time::Duration::from_secs(20);
/// ...trying again when this replica settles one of them, and at least this often (a
/// settlement on another replica).
const IN_FLIGHT_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// A freshly issued access token. The raw token exists only here, on its way to the client.
#[derive(Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    /// The password it was signed in with is on the breached list: the customer is asked to
    /// change it.
    pub password_change_required: bool,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A password check that passed.
#[derive(Debug, Clone)]
pub struct Verified {
    pub id: Uuid,
    pub hashes: VerifiedHashes,
}

/// Live sessions per customer and per admin unless configured (`LATCHKEY_MAX_SESSIONS`).
pub const DEFAULT_MAX_SESSIONS: u32 = 100;

/// Successful sign-ins per account per hour unless configured
/// (`LATCHKEY_MAX_SIGN_INS_PER_HOUR`).
pub const DEFAULT_MAX_SIGN_INS_PER_HOUR: u32 = 100;

/// How many sessions one account may make and hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCaps {
    /// Live sessions per principal: a sign-in beyond it revokes the oldest.
    pub max_live: u32,
    /// Successful sign-ins per principal per hour: one beyond it is RATE_LIMITED (someone
    /// holding the password is minting sessions faster than any person signs in).
    pub sign_ins_per_hour: u32,
}

impl Default for SessionCaps {
    fn default() -> Self {
        Self {
            max_live: DEFAULT_MAX_SESSIONS,
            sign_ins_per_hour: DEFAULT_MAX_SIGN_INS_PER_HOUR,
        }
    }
}

pub struct SignIn {
    store: Arc<dyn CredentialStore>,
    limiter: Arc<dyn Limiter>,
    hasher: Arc<dyn PasswordHasher>,
    tokens: TokenCodec,
    clock: Arc<dyn Clock>,
    caps: SessionCaps,
}

impl SignIn {
    pub fn new(
        store: Arc<dyn CredentialStore>,
        limiter: Arc<dyn Limiter>,
        hasher: Arc<dyn PasswordHasher>,
        tokens: TokenCodec,
        clock: Arc<dyn Clock>,
        caps: SessionCaps,
    ) -> Self {
        Self {
            store,
            limiter,
            hasher,
            tokens,
            clock,
            caps: SessionCaps {
                max_live: caps.max_live.max(1),
                sign_ins_per_hour: caps.sign_ins_per_hour.max(1),
            },
        }
    }

    /// The limits one password check counts against: the client's budget of wrong passwords,
    /// then the lockout (`[1]`), then, for customers, the two counts that never refuse but
    /// turn the proof-of-work challenge on (the name over every network, the network over
    /// every name; see `guard`).
    ///
    /// A customer's lockout is kept per name *and network*: wrong passwords from an attacker's
    /// networks lock the name from those networks only, never from the customer's own. An
    /// admin's is kept per name over every network (the stricter rule: an admin account is
    /// worth more, and its console sign-in is one known place).
    fn checks(kind: PrincipalKind, login: &str, client: &ClientInfo, s: &Settings) -> Vec<Check> {
        let lockout = Rule::per(s.lockout.failures.max(1), s.lockout.duration);
        let mut checks = vec![Check::in_flight(
            LimitKey::SignInByIp(kind, ClientKey::of(client)),
            Rule::per(s.clients.failed_sign_ins_per_ip_per_hour, CLIENT_WINDOW),
        )];
        match kind {
            PrincipalKind::Admin => checks.push(Check::in_flight(
                LimitKey::SignInByAccount(kind, login.to_owned()),
                lockout,
            )),
            PrincipalKind::Customer => {
                let network = AttackGuard::network(client, s);
                checks.extend([
                    Check::in_flight(
                        LimitKey::SignInByAccountFrom(kind, login.to_owned(), network.clone()),
                        lockout,
                    ),
                    crate::guard::name_signal(login, 0),
                    crate::guard::network_signal(network, 0),
                ]);
            }
        }
        checks
    }

    /// Whether `login` is locked out from `client`'s network (for an admin: at all) by wrong
    /// passwords: checked where a session is minted by another proof (a mailed code), so a
    /// lockout holds on every path.
    pub(crate) async fn locked_out(
        &self,
        kind: PrincipalKind,
        login: &str,
        client: &ClientInfo,
        settings: &Settings,
    ) -> Result<bool> {
        let checks = Self::checks(kind, login, client, settings);
        Ok(self.lock_ends(&checks[1]).await?.is_some())
    }

    /// When the lockout `check` holds until, if the wrong passwords it has counted (settled)
    /// reach its rule: the oldest of them leaves the window then.
    async fn lock_ends(&self, check: &Check) -> Result<Option<DateTime<Utc>>> {
        let now = self.clock.now();
        let history = self
            .limiter
            .histories(std::slice::from_ref(check), now)
            .await?;
        Ok(history.first().and_then(|h| {
            (h.count.saturating_sub(h.in_flight) >= check.rule.max)
                .then(|| h.oldest.map(|oldest| oldest + check.rule.window))
                .flatten()
                .filter(|end| *end > now)
        }))
    }

    /// Checks a password; every failure (no such account, wrong password, locked, over the
    /// account's budget) is `AuthenticationFailed`, and only the client's own limit answers
    /// `RateLimited`. `login == None` is a name that cannot exist (unparsable): it costs and
    /// counts like an unknown one.
    pub async fn verify(
        &self,
        kind: PrincipalKind,
        login: &str,
        candidate: &PasswordCandidate,
        client: &ClientInfo,
        settings: &Settings,
    ) -> Result<Verified> {
        let checks = Self::checks(kind, login, client, settings);
        let give_up_at = std::time::Instant::now() + MAX_IN_FLIGHT_WAIT;
        let reservation = loop {
            let refused = match self.limiter.reserve(&checks, self.clock.now()).await {
                Ok(r) => break r,
                Err(LimitError::Refused(refused)) => refused,
                Err(LimitError::Failed(e)) => return Err(e),
            };
            // Refused only because other checks of this name (or client) are still running:
            // they may be right passwords that give their places back (sixteen concurrent
            // sign-ins of one account must not lock it). Wait for them, a bounded time.
            let left = give_up_at.saturating_duration_since(std::time::Instant::now());
            if refused.in_flight && !left.is_zero() {
                self.limiter
                    .settled(&refused.key, left.min(IN_FLIGHT_POLL))
                    .await;
                continue;
            }
            tracing::info!(
                event = "sign_in_refused_by_limit",
                kind = kind.as_str(),
                limit = match refused.key {
                    LimitKey::SignInByIp(..) => "client",
                    _ => "account",
                }
            );
            return Err(match refused.key {
                LimitKey::SignInByIp(..) => Error::RateLimited {
                    retry_after_seconds: refused.retry_after_seconds,
                },
                _ => Error::AuthenticationFailed,
            });
        };
        let now = self.clock.now();
        let stored = self.store.credentials(kind, login).await?;
        // An admin's lock is the account row's; a customer's is the name's from this network,
        // which the reservation above has already applied.
        let row_locks = |until| kind == PrincipalKind::Admin && is_locked(until, now);
        let verification = self
            .hasher
            .verify(candidate, stored.as_ref().map(|c| c.password_hash.as_str()))
            .await?;
        match (stored, verification) {
            // Another platform's hash matched a password shorter than the policy allows (an
            // imported hash of a four-character password, say): upgrading it would carry a
            // password Latchkey never accepts into an argon2id hash. It is answered as a wrong
            // password, and the account needs a reset from now on (the verified hash is
            // replaced by none, only if it is still the stored one).
            (Some(c), Verification::Match { .. })
                if !row_locks(c.locked_until)
                    && PasswordState::of(&c.password_hash) == PasswordState::Legacy
                    && candidate.expose().chars().count()
                        < settings.password.min_length as usize =>
            {
                let void = Rehash {
                    replaces: c.password_hash.clone(),
                    new: crate::stored_hash::VOID_PASSWORD.to_owned(),
                };
                self.store.record_success(kind, c.id, Some(void)).await?;
                self.limiter.keep(reservation).await?;
                tracing::info!(event = "legacy_password_too_short", kind = kind.as_str(), id = %c.id);
                Err(Error::AuthenticationFailed)
            }
            (Some(c), Verification::Match { rehash }) if !row_locks(c.locked_until) => {
                let mut hashes = vec![c.password_hash.clone()];
                hashes.extend(rehash.iter().cloned());
                let rehash = rehash.map(|new| Rehash {
                    replaces: c.password_hash.clone(),
                    new,
                });
                self.store.record_success(kind, c.id, rehash).await?;
                // A correct password costs the client nothing and ends the run of failures.
                self.limiter.release(reservation).await?;
                self.limiter.clear(&checks[1].key).await?;
                Ok(Verified {
                    id: c.id,
                    hashes: VerifiedHashes(hashes),
                })
            }
            (Some(c), _) if row_locks(c.locked_until) => {
                self.limiter.keep(reservation).await?;
                Err(Error::AuthenticationFailed)
            }
            (stored, _) => {
                // The failure settles first: the limiter is where the lock is decided (a
                // sign-in waiting for this one then sees it); the account row notes the
                // failure and, when it locked the name, until when (for the admins' grid, and
                // for an admin the row is checked where the session is minted).
                self.limiter.keep(reservation).await?;
                let until = self.lock_ends(&checks[1]).await?;
                self.store.record_failure(kind, login, until).await?;
                if let Some(c) = stored {
                    tracing::info!(event = "sign_in_failed", kind = kind.as_str(), id = %c.id);
                }
                Err(Error::AuthenticationFailed)
            }
        }
    }

    /// After [`Self::verify`] passed: counts the sign-in, stores a session while the account
    /// still has a hash the password was verified against, and signs a token for it. Only
    /// this crate's use cases call it, after every proof their sign-in asks for.
    pub(crate) async fn mint(
        &self,
        kind: PrincipalKind,
        login: &str,
        candidate: &PasswordCandidate,
        verified: Verified,
        client: ClientInfo,
        settings: &Settings,
    ) -> Result<IssuedToken> {
        let Verified { id, hashes } = verified;
        self.count_sign_in(kind, id).await?;
        let upgraded = hashes.0.len() > 1;
        let mut session = self.new_session(kind, id, hashes, client, settings);
        let mut stored = self.store.create_session(kind, session.clone()).await?;
        if !stored && upgraded {
            // Another sign-in upgraded the same legacy hash first, with its own salt: check
            // the password once more against what is stored now (a reset's new hash still
            // refuses the old password).
            let current = self.store.credentials(kind, login).await?;
            if let Some(now_stored) = current.filter(|c| c.id == id) {
                let again = self
                    .hasher
                    .verify(candidate, Some(now_stored.password_hash.as_str()))
                    .await?;
                if matches!(again, Verification::Match { .. }) {
                    session.verified = VerifiedHashes(vec![now_stored.password_hash]);
                    stored = self.store.create_session(kind, session.clone()).await?;
                }
            }
        }
        if !stored {
            // The password was changed (or the admin disabled) while this one was checked.
            tracing::info!(event = "sign_in_overtaken", kind = kind.as_str(), id = %id);
            return Err(Error::AuthenticationFailed);
        }
        self.sign(kind, &session)
    }

    /// A session for account `id`, signed in as `login`, proven by something other than its
    /// password (a one-time code from its mailbox, checked by the caller). The same caps as a
    /// password sign-in; stored only while the account still has the password hash read here
    /// (a password set meanwhile wins). `overtaken` is the answer when `login` names another
    /// account now (the address moved) or none.
    pub(crate) async fn sign_in_proven(
        &self,
        kind: PrincipalKind,
        id: Uuid,
        login: &str,
        client: ClientInfo,
        settings: &Settings,
        overtaken: Error,
    ) -> Result<IssuedToken> {
        let credentials = match self.store.credentials(kind, login).await? {
            Some(c) if c.id == id => c,
            _ => return Err(overtaken),
        };
        self.mint_proven(kind, login, credentials, client, settings)
            .await
    }

    /// A session for account `id` whose password was verified a moment ago (a sign-in that
    /// then asked for a second factor, now given), minted only while the stored password hash
    /// is still the one verified (`fingerprint`, see [`hash_fingerprint`]): a password changed
    /// in between wins. The same caps as any sign-in.
    pub(crate) async fn sign_in_after_factor(
        &self,
        kind: PrincipalKind,
        id: Uuid,
        login: &str,
        fingerprint: &str,
        client: ClientInfo,
        settings: &Settings,
    ) -> Result<IssuedToken> {
        let Some(credentials) = self.proof_stands(kind, id, login, fingerprint).await? else {
            tracing::info!(event = "sign_in_overtaken", kind = kind.as_str(), id = %id);
            return Err(Error::AuthenticationFailed);
        };
        self.mint_proven(kind, login, credentials, client, settings)
            .await
    }

    /// The session of a sign-in proven by something the caller checked: refused while the
    /// name is locked out from this network, counted, stored only while the account still has
    /// the password hash read in `credentials` (a password set meanwhile wins), signed.
    async fn mint_proven(
        &self,
        kind: PrincipalKind,
        login: &str,
        credentials: StoredCredentials,
        client: ClientInfo,
        settings: &Settings,
    ) -> Result<IssuedToken> {
        if self.locked_out(kind, login, &client, settings).await? {
            tracing::info!(event = "sign_in_locked_out", kind = kind.as_str(), id = %credentials.id);
            return Err(Error::AuthenticationFailed);
        }
        self.count_sign_in(kind, credentials.id).await?;
        let session = self.new_session(
            kind,
            credentials.id,
            VerifiedHashes(vec![credentials.password_hash]),
            client,
            settings,
        );
        if !self.store.create_session(kind, session.clone()).await? {
            tracing::info!(event = "sign_in_overtaken", kind = kind.as_str(), id = %credentials.id);
            return Err(Error::AuthenticationFailed);
        }
        self.sign(kind, &session)
    }

    /// The credentials stored under `login` if they are still account `id`'s with the password
    /// hash whose fingerprint is `fingerprint` (not renamed, not changed since).
    pub(crate) async fn proof_stands(
        &self,
        kind: PrincipalKind,
        id: Uuid,
        login: &str,
        fingerprint: &str,
    ) -> Result<Option<StoredCredentials>> {
        Ok(self
            .store
            .credentials(kind, login)
            .await?
            .filter(|c| c.id == id && hash_fingerprint(&c.password_hash) == fingerprint))
    }

    /// Counted only once the proof is known good, so the answer tells nothing to a guesser;
    /// kept whatever follows.
    async fn count_sign_in(&self, kind: PrincipalKind, id: Uuid) -> Result<()> {
        let minted = [Check::new(
            LimitKey::SignInsOf(kind, id),
            Rule::per(self.caps.sign_ins_per_hour, chrono::Duration::hours(1)),
        )];
        match self.limiter.reserve(&minted, self.clock.now()).await {
            Ok(counted) => {
                counted.keep();
                Ok(())
            }
            Err(e) => {
                if matches!(e, LimitError::Refused(_)) {
                    tracing::info!(event = "sign_ins_per_hour_spent", kind = kind.as_str(), id = %id);
                }
                Err(e.into())
            }
        }
    }

    fn new_session(
        &self,
        kind: PrincipalKind,
        id: Uuid,
        verified: VerifiedHashes,
        client: ClientInfo,
        settings: &Settings,
    ) -> NewSession {
        let now = self.clock.now();
        let lifetime = match kind {
            PrincipalKind::Customer => settings.customer_token_lifetime,
            PrincipalKind::Admin => settings.admin_token_lifetime,
        };
        NewSession {
            id: crate::SessionId::new(),
            principal_id: id,
            created_at: now,
            expires_at: now + lifetime,
            client,
            verified,
            max_live: self.caps.max_live,
        }
    }

    fn sign(&self, kind: PrincipalKind, session: &NewSession) -> Result<IssuedToken> {
        let token_kind = match kind {
            PrincipalKind::Customer => TokenKind::Customer,
            PrincipalKind::Admin => TokenKind::Admin,
        };
        let token = self
            .tokens
            .sign(
                token_kind,
                session.principal_id,
                session.id,
                session.created_at,
                session.expires_at,
            )
            .map_err(Error::internal)?;
        Ok(IssuedToken {
            token,
            expires_at: session.expires_at,
            password_change_required: false,
        })
    }

    /// The customer's own network unlocked (the unlock link in their mail, opened there): the
    /// wrong passwords counted for `login` from `client`'s network no longer lock it. Other
    /// networks' locks, and the challenge the name asks for, stay.
    pub async fn forget_failures_from(
        &self,
        kind: PrincipalKind,
        login: &str,
        client: &ClientInfo,
        settings: &Settings,
    ) -> Result<()> {
        let checks = Self::checks(kind, login, client, settings);
        self.limiter.clear(&checks[1].key).await
    }

    /// After a password was set another way (reset, change), or the name was unlocked: its
    /// failures no longer count, from any network, and no longer ask for a challenge.
    pub async fn forget_failures(&self, kind: PrincipalKind, login: &str) -> Result<()> {
        self.limiter
            .clear(&LimitKey::SignInByAccount(kind, login.to_owned()))
            .await?;
        self.limiter
            .clear_prefixed(&LimitKey::networks_of(kind, login))
            .await
    }
}

/// A stored password hash's fingerprint (SHA-256, hex): what a two-step sign-in carries from
/// its password step to its factor step, so the session is minted only while the hash it
/// verified is still the stored one. Never the hash itself.
pub fn hash_fingerprint(stored_hash: &str) -> String {
    crate::kernel::sha256_hex(stored_hash.as_bytes())
}
