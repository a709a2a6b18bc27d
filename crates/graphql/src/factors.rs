//! Admins' second factors: the two-step sign-in, enrolling an authenticator app, recovery
//! codes, and the factors shown on an admin.

use async_graphql::{ComplexObject, Context, Enum, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use domain::{
    admin::Permission,
    factors::{self, RecoveryCode, SignInStep},
};

use crate::{
    ApiError,
    admin::parse_id,
    admin_types::{Admin, AdminToken, RevokeAdminTokensResult},
    context::{admin, request, services},
    guard::RequirePermission,
};

/// What the password step of an admin's sign-in answered: exactly one of `token` and
/// `challenge` is set.
#[derive(SimpleObject)]
pub struct AdminSignInStep {
    /// Set when no second factor is asked (the store does not require one and the admin has
    /// none, or this browser's `deviceGrant` is live): signed in.
    pub token: Option<AdminToken>,
    /// Set when a second factor must follow, before `challengeExpiresAt`. With
    /// `enrolmentRequired` false: a code from one of the admin's factors (or a recovery code)
    /// goes to `completeAdminSignIn` (5 minutes). With `enrolmentRequired` true: the store
    /// requires a second factor and the admin has none; the challenge can do one thing,
    /// enrol one (`startAdminEnrolment`, then `completeAdminEnrolment`; 15 minutes).
    pub challenge: Option<String>,
    /// With a factor challenge, where the admin has passkeys: the options for the browser's
    /// `navigator.credentials.get` (JSON; its `publicKey` is what
    /// `PublicKeyCredential.parseRequestOptionsFromJSON` takes). The answer goes to
    /// `completeAdminSignInWithPasskey`.
    pub passkey_options: Option<String>,
    pub challenge_expires_at: Option<DateTime<Utc>>,
    pub enrolment_required: bool,
    /// With a factor challenge: for how many days `completeAdminSignIn(rememberBrowser:
    /// true)` would let this browser skip the factor (0: the store offers no such grant).
    pub remember_browser_days: i32,
}

/// A first factor enrolled at sign-in: the admin is signed in.
#[derive(SimpleObject)]
pub struct AdminEnrolment {
    pub token: AdminToken,
    /// 10 single-use recovery codes, shown this once (store them offline).
    pub recovery_codes: Vec<String>,
}

/// A kind of second factor.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum AdminFactorKind {
    /// An authenticator app (TOTP, RFC 6238: 6 digits, 30 seconds).
    Totp,
    /// A passkey or a security key (WebAuthn).
    Passkey,
    /// A kind this server version does not know: it counts, but signs nobody in here.
    Other,
}

/// One of an admin's second factors, as named at enrolment.
#[derive(SimpleObject)]
pub struct AdminFactor {
    pub id: ID,
    pub kind: AdminFactorKind,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// False until a right code confirmed the enrolment; such a factor signs nobody in.
    pub confirmed: bool,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<factors::Factor> for AdminFactor {
    fn from(f: factors::Factor) -> Self {
        Self {
            id: ID(f.id.to_string()),
            kind: match f.kind {
                factors::FactorKind::Totp => AdminFactorKind::Totp,
                factors::FactorKind::Passkey => AdminFactorKind::Passkey,
                factors::FactorKind::Unknown => AdminFactorKind::Other,
            },
            name: f.name,
            created_at: f.created_at,
            confirmed: f.confirmed,
            last_used_at: f.last_used_at,
        }
    }
}

/// An authenticator app being enrolled: shown once. Scan `qrCodeSvg` (or type `secret`), then
/// confirm with a code the app shows (`confirmTotpEnrolment`).
#[derive(SimpleObject)]
pub struct TotpEnrolment {
    pub factor_id: ID,
    /// The key to type into an app that cannot scan (base32, no padding).
    pub secret: String,
    /// The `otpauth://totp/…` URI the QR code carries.
    pub uri: String,
    /// The QR code of `uri`, an SVG image drawn by this server (nothing is sent elsewhere).
    pub qr_code_svg: String,
}

/// A browser that may skip the second factor until `expiresAt`.
#[derive(SimpleObject)]
pub struct DeviceGrant {
    pub id: ID,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// The browser, as it named itself when the grant was made.
    pub user_agent: Option<String>,
}

/// A passkey registration under way: hand `options` to the browser's
/// `navigator.credentials.create` (JSON; its `publicKey` is what
/// `PublicKeyCredential.parseCreationOptionsFromJSON` takes), then its answer with `challenge`
/// to `completePasskeyEnrolment` before `expiresAt`.
#[derive(SimpleObject)]
pub struct PasskeyEnrolment {
    pub challenge: String,
    pub options: String,
    pub expires_at: DateTime<Utc>,
}

/// A confirmed enrolment.
#[derive(SimpleObject)]
pub struct FactorConfirmation {
    pub factor: AdminFactor,
    /// With the admin's first factor: 10 single-use recovery codes, shown this once (store
    /// them offline). Null when the admin already holds codes.
    pub recovery_codes: Option<Vec<String>>,
}

fn shown(codes: &[RecoveryCode]) -> Vec<String> {
    codes.iter().map(RecoveryCode::display).collect()
}

/// A factor step's token, with this browser's grant to skip the factor if one was made.
fn remembered(
    issued: domain::sign_in::IssuedToken,
    grant: Option<factors::grant::RememberedBrowser>,
) -> AdminToken {
    let mut token = AdminToken::from(issued);
    if let Some(grant) = grant {
        token.device_grant = Some(grant.secret);
        token.device_grant_expires_at = Some(grant.expires_at);
    }
    token
}

fn enrolment_answer(enrolment: factors::TotpEnrolment) -> Result<TotpEnrolment, ApiError> {
    Ok(TotpEnrolment {
        factor_id: ID(enrolment.factor_id.to_string()),
        secret: enrolment.secret.base32(),
        qr_code_svg: qr_svg(&enrolment.uri)?,
        uri: enrolment.uri,
    })
}

fn qr_svg(uri: &str) -> Result<String, ApiError> {
    let code = qrcode::QrCode::with_error_correction_level(uri, qrcode::EcLevel::M)
        .map_err(|_| ApiError::internal("the otpauth URI does not fit a QR code"))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build())
}

#[ComplexObject]
impl Admin {
    /// The admin's second factors, oldest first: your own, or anyone's with
    /// ADMIN_USERS_MANAGE (FORBIDDEN otherwise).
    async fn factors(&self, ctx: &Context<'_>) -> Result<Vec<AdminFactor>, ApiError> {
        let viewer = admin(ctx).await?;
        let id = parse_id(&self.id)?;
        Ok(services(ctx)?
            .factors
            .factors_of(&viewer, id)
            .await?
            .into_iter()
            .map(AdminFactor::from)
            .collect())
    }

    /// The browsers you let skip the second factor ("Remember this browser"), newest first:
    /// your own only (FORBIDDEN for another admin's).
    async fn device_grants(&self, ctx: &Context<'_>) -> Result<Vec<DeviceGrant>, ApiError> {
        let viewer = admin(ctx).await?;
        if parse_id(&self.id)? != viewer.admin.id {
            return Err(ApiError::from(domain::Error::Forbidden));
        }
        Ok(services(ctx)?
            .factors
            .grants(&viewer)
            .await?
            .into_iter()
            .map(|g| DeviceGrant {
                id: ID(g.id.to_string()),
                created_at: g.created_at,
                expires_at: g.expires_at,
                last_used_at: g.last_used_at,
                user_agent: g.user_agent,
            })
            .collect())
    }

    /// Unused recovery codes the admin holds (same visibility as `factors`).
    async fn recovery_codes_left(&self, ctx: &Context<'_>) -> Result<i32, ApiError> {
        let viewer = admin(ctx).await?;
        let id = parse_id(&self.id)?;
        let services = services(ctx)?;
        // The same rule as the factors themselves.
        services.factors.factors_of(&viewer, id).await?;
        let left = services.factors.recovery_codes_left(id).await?;
        Ok(i32::try_from(left).unwrap_or(i32::MAX))
    }
}

#[derive(Default)]
pub struct FactorMutation;

#[Object]
impl FactorMutation {
    /// The password step of an admin's sign-in (the same limits, lockout and answers as
    /// `generateAdminToken`: AUTHENTICATION_FAILED for a wrong password, an unknown username
    /// or a locked account alike). An admin with a second factor gets `challenge` for
    /// `completeAdminSignIn` (or a `token`, from a browser whose `deviceGrant` is live); one
    /// without gets an enrolment `challenge` (`enrolmentRequired`) where the store requires a
    /// factor, and a `token` where it does not.
    async fn start_admin_sign_in(
        &self,
        ctx: &Context<'_>,
        username: String,
        #[graphql(secret)] password: String,
        #[graphql(
            secret,
            desc = "The grant this browser got with `rememberBrowser` (\"Remember this browser\"): with the right password and a live grant of this admin, the factor step is skipped. Any other value is as if none was sent."
        )]
        device_grant: Option<String>,
    ) -> Result<AdminSignInStep, ApiError> {
        let client = request(ctx).client.clone();
        let step = services(ctx)?
            .factors
            .start_sign_in_remembered(&username, &password, client, device_grant.as_deref())
            .await?;
        Ok(match step {
            SignInStep::SignedIn(issued) => AdminSignInStep {
                token: Some(issued.into()),
                challenge: None,
                passkey_options: None,
                challenge_expires_at: None,
                enrolment_required: false,
                remember_browser_days: 0,
            },
            SignInStep::FactorNeeded {
                challenge,
                expires_at,
                remember_browser,
                passkey_options,
            } => AdminSignInStep {
                token: None,
                challenge: Some(challenge),
                passkey_options,
                challenge_expires_at: Some(expires_at),
                enrolment_required: false,
                remember_browser_days: i32::try_from(remember_browser.num_days()).unwrap_or(0),
            },
            SignInStep::EnrolmentNeeded {
                challenge,
                expires_at,
            } => AdminSignInStep {
                token: None,
                challenge: Some(challenge),
                passkey_options: None,
                challenge_expires_at: Some(expires_at),
                enrolment_required: true,
                remember_browser_days: 0,
            },
        })
    }

    /// The factor step: the challenge from `startAdminSignIn` and a code from one of the
    /// admin's authenticator apps (each code works once) or an unused recovery code (spent).
    /// AUTHENTICATION_FAILED for a wrong code or an expired challenge; RATE_LIMITED after 5
    /// wrong codes in 15 minutes (or 20 a day) for the admin, whichever challenge they came
    /// with.
    async fn complete_admin_sign_in(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] challenge: String,
        #[graphql(secret)] code: String,
        #[graphql(
            default = false,
            desc = "\"Remember this browser\": also a grant for this browser to skip the factor (never the password) for the store's `rememberBrowserDays`, where the store offers it (`deviceGrant` on the answer)."
        )]
        remember_browser: bool,
    ) -> Result<AdminToken, ApiError> {
        let client = request(ctx).client.clone();
        let (issued, grant) = services(ctx)?
            .factors
            .complete_sign_in_remembering(&challenge, &code, client, remember_browser)
            .await?;
        Ok(remembered(issued, grant))
    }

    /// The factor step with a passkey: the challenge from `startAdminSignIn` and the browser's
    /// answer to `passkeyOptions` (`credential.toJSON()`, as a JSON string). Counted and
    /// answered like a wrong code when it does not check out.
    async fn complete_admin_sign_in_with_passkey(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] challenge: String,
        #[graphql(secret)] credential: String,
        #[graphql(default = false)] remember_browser: bool,
    ) -> Result<AdminToken, ApiError> {
        let client = request(ctx).client.clone();
        let (issued, grant) = services(ctx)?
            .factors
            .complete_sign_in_with_passkey(&challenge, &credential, client, remember_browser)
            .await?;
        Ok(remembered(issued, grant))
    }

    /// Starts adding a passkey (or a security key) named `name`, after your password.
    /// BAD_USER_INPUT where the server offers no passkeys (its public URL needs a domain
    /// name), for a bad name, or past 10 factors.
    async fn start_passkey_enrolment(
        &self,
        ctx: &Context<'_>,
        name: String,
        #[graphql(secret)] password: String,
    ) -> Result<PasskeyEnrolment, ApiError> {
        let principal = admin(ctx).await?;
        let started = services(ctx)?
            .factors
            .start_passkey(&principal, &name, &password, &request(ctx).client)
            .await?;
        Ok(PasskeyEnrolment {
            challenge: started.challenge,
            options: started.options,
            expires_at: started.expires_at,
        })
    }

    /// Finishes it with the browser's answer (`credential.toJSON()`, as a JSON string):
    /// BAD_USER_INPUT when it does not check out. Audited as ENROL_ADMIN_FACTOR; your first
    /// factor comes with your recovery codes.
    async fn complete_passkey_enrolment(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] challenge: String,
        #[graphql(secret)] credential: String,
    ) -> Result<FactorConfirmation, ApiError> {
        let principal = admin(ctx).await?;
        let (factor, codes) = services(ctx)?
            .factors
            .complete_passkey(&principal, &challenge, &credential, &request(ctx).client)
            .await?;
        Ok(FactorConfirmation {
            factor: factor.into(),
            recovery_codes: codes.as_deref().map(shown),
        })
    }

    /// Where the store requires a second factor and the admin has none: starts enrolling an
    /// authenticator app named `name`, with the challenge `startAdminSignIn` answered
    /// (`enrolmentRequired`). AUTHENTICATION_FAILED for a challenge that is expired, not an
    /// enrolment's, or whose password changed since; BAD_USER_INPUT for a bad name.
    async fn start_admin_enrolment(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] challenge: String,
        name: String,
    ) -> Result<TotpEnrolment, ApiError> {
        let enrolment = services(ctx)?
            .factors
            .start_enrolment(&challenge, &name)
            .await?;
        enrolment_answer(enrolment)
    }

    /// Finishes that enrolment with the code the app shows now (BAD_USER_INPUT when wrong):
    /// the admin is signed in and gets their recovery codes. Audited as ENROL_ADMIN_FACTOR.
    async fn complete_admin_enrolment(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] challenge: String,
        factor_id: ID,
        #[graphql(secret)] code: String,
    ) -> Result<AdminEnrolment, ApiError> {
        let id = parse_id(&factor_id)?;
        let enrolled = services(ctx)?
            .factors
            .complete_enrolment(&challenge, id, &code, request(ctx).client.clone())
            .await?;
        Ok(AdminEnrolment {
            token: enrolled.token.into(),
            recovery_codes: shown(&enrolled.recovery_codes),
        })
    }

    /// Starts enrolling an authenticator app named `name` ("Work phone"), after your password
    /// (AUTHENTICATION_FAILED when wrong). The factor counts once `confirmTotpEnrolment` takes
    /// a code from the app. At most 10 factors (BAD_USER_INPUT).
    async fn start_totp_enrolment(
        &self,
        ctx: &Context<'_>,
        name: String,
        #[graphql(secret)] password: String,
    ) -> Result<TotpEnrolment, ApiError> {
        let principal = admin(ctx).await?;
        let enrolment = services(ctx)?
            .factors
            .start_totp(&principal, &name, &password, &request(ctx).client)
            .await?;
        enrolment_answer(enrolment)
    }

    /// Confirms an enrolment with the code the app shows now (BAD_USER_INPUT when wrong;
    /// NOT_FOUND for a factor that is not yours or is confirmed already). Audited as
    /// ENROL_ADMIN_FACTOR. Your first factor comes with your recovery codes.
    async fn confirm_totp_enrolment(
        &self,
        ctx: &Context<'_>,
        factor_id: ID,
        #[graphql(secret)] code: String,
    ) -> Result<FactorConfirmation, ApiError> {
        let principal = admin(ctx).await?;
        let id = parse_id(&factor_id)?;
        let factors = &services(ctx)?.factors;
        let codes = factors
            .confirm_totp(&principal, id, &code, &request(ctx).client)
            .await?;
        let factor = factors
            .factors_of(&principal, principal.admin.id)
            .await?
            .into_iter()
            .find(|f| f.id == id)
            .ok_or_else(|| ApiError::from(domain::Error::NotFound))?;
        Ok(FactorConfirmation {
            factor: factor.into(),
            recovery_codes: codes.as_deref().map(shown),
        })
    }

    /// Removes one of your factors, after your password. With your last confirmed factor go
    /// your recovery codes; where the store requires a second factor, the last one stays
    /// (BAD_USER_INPUT). Audited as REMOVE_ADMIN_FACTOR; NOT_FOUND for a factor not yours.
    async fn remove_admin_factor(
        &self,
        ctx: &Context<'_>,
        factor_id: ID,
        #[graphql(secret)] password: String,
    ) -> Result<bool, ApiError> {
        let principal = admin(ctx).await?;
        let id = parse_id(&factor_id)?;
        services(ctx)?
            .factors
            .remove(&principal, id, &password, &request(ctx).client)
            .await?;
        Ok(true)
    }

    /// "Reset Two-Factor Authentication" for another admin who lost every factor and recovery
    /// code, after your password: removes them all and signs the admin out everywhere; they are mailed, and their
    /// next sign-in enrols a factor again. Audited as RESET_ADMIN_FACTORS. BAD_USER_INPUT for
    /// your own (remove those one by one); NOT_FOUND for no such admin. The sessions ended.
    #[graphql(guard = "RequirePermission(Permission::AdminUsersManage)")]
    async fn reset_admin_factors(
        &self,
        ctx: &Context<'_>,
        admin_id: ID,
        #[graphql(secret, desc = "Your own password (AUTHENTICATION_FAILED when wrong).")]
        password: String,
    ) -> Result<RevokeAdminTokensResult, ApiError> {
        let principal = admin(ctx).await?;
        let id = parse_id(&admin_id)?;
        let ended = services(ctx)?
            .factors
            .reset_for(&principal, id, &password, &request(ctx).client)
            .await?;
        Ok(RevokeAdminTokensResult {
            revoked_count: i32::try_from(ended).unwrap_or(i32::MAX),
        })
    }

    /// Revokes one of your remembered browsers: it asks for the second factor again. NOT_FOUND
    /// for a grant not yours or not live. (Force Sign In for an admin, a password set and a
    /// reset of their factors revoke all of them.)
    async fn revoke_device_grant(&self, ctx: &Context<'_>, id: ID) -> Result<bool, ApiError> {
        let principal = admin(ctx).await?;
        let id = parse_id(&id)?;
        services(ctx)?.factors.revoke_grant(&principal, id).await?;
        Ok(true)
    }

    /// A new set of 10 recovery codes, after your password; the old set stops working.
    /// Shown this once. Audited as NEW_RECOVERY_CODES; BAD_USER_INPUT without a confirmed
    /// factor.
    async fn generate_recovery_codes(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] password: String,
    ) -> Result<Vec<String>, ApiError> {
        let principal = admin(ctx).await?;
        let codes = services(ctx)?
            .factors
            .new_recovery_codes(&principal, &password, &request(ctx).client)
            .await?;
        Ok(shown(&codes))
    }
}
