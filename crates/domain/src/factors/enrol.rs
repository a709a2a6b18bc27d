//! Enrolling factors: an authenticator app or a passkey by a signed-in admin, and the first
//! factor a store requires, with the enrolment challenge.

use super::*;

impl AdminFactors {
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
    pub(super) async fn passkeys_of(&self, admin_id: Uuid) -> Result<Vec<(Uuid, StoredPasskey)>> {
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

    pub(super) fn seal_passkey(
        &self,
        admin_id: Uuid,
        id: Uuid,
        passkey: &StoredPasskey,
    ) -> Result<Vec<u8>> {
        let bytes =
            serde_json::to_vec(passkey).map_err(|e| Error::internal(format!("passkey: {e}")))?;
        self.sealer.seal(&sealed_name(admin_id, id), &bytes)
    }

    /// The enrolment challenge, if it opens and its proof still stands (the password not
    /// changed since, the admin not renamed or disabled) for an admin who still has no
    /// confirmed factor: AUTHENTICATION_FAILED otherwise.
    pub(super) async fn open_enrolment(&self, challenge: &str) -> Result<(Challenge, AdminUser)> {
        let challenge = self
            .challenges
            .open(challenge, self.parts.clock.now(), Purpose::Enrol)
            .ok_or(Error::AuthenticationFailed)?;
        if !self.proof_stands(&challenge).await?
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
    pub(super) async fn held(&self, admin_id: Uuid) -> Result<usize> {
        let stale_before = self.parts.clock.now() - STALE_ENROLMENT;
        Ok(self
            .store
            .factors(admin_id)
            .await?
            .iter()
            .filter(|f| f.confirmed_at.is_some() || f.created_at >= stale_before)
            .count())
    }

    pub(super) async fn add_totp(&self, admin: &AdminUser, name: &str) -> Result<TotpEnrolment> {
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
    pub(super) async fn confirm(
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

/// A factor's name as the admin typed it, trimmed: 1 to 64 characters.
pub(super) fn checked_name(name: &str) -> Result<&str> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::bad_input(
            "name",
            "name the factor (1 to 64 characters), e.g. the device it is on",
        ));
    }
    Ok(name)
}
