//! The sign-in's steps after the password: the challenge, the code or passkey that completes
//! it (once), and the browsers remembered to skip it.

use super::*;

impl AdminFactors {
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

    pub(super) async fn complete_factor_step(
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
        if !self.proof_stands(&challenge).await? {
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

    /// The factor step's passkey: which of the admin's passkeys answered the challenge's
    /// ceremony (its counter stored), or `None`.
    pub(super) async fn verify_passkey(
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
}

/// What the factor step was given.
pub(super) enum Proof<'a> {
    /// A code from an authenticator app, or a recovery code.
    Code(&'a str),
    /// A passkey's answer (JSON).
    Passkey(&'a str),
}
