//! Admin users managed from the console and the API (permission ADMIN_USERS_MANAGE): list,
//! invite, change role, disable, Force Sign In.
//!
//! - An invited admin sets their own password from an emailed link; nobody ever types a
//!   password for another person. The link follows the reset rules: 256 random bits, SHA-256
//!   stored, single use, as long-lived as a reset link, superseded by a newer one.
//! - The last active administrator cannot be demoted or disabled: the console must always have
//!   someone who can manage it.
//! - Every change is audited (the target admin's id in `detail`; no password, no token).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::{
    Error, Result,
    accounts::{Wiring, parse_email_field},
    admin::{AdminPrincipal, AdminUser, AuditAction, NewAudit, Role, Username},
    customer::Locale,
    email::Email,
    kernel::client::ClientInfo,
    limits::{Check, ClientKey, LimitKey, Rule},
    password::NewPassword,
    ports::{MailKind, MailSignal, NewMail},
    reset::RawResetToken,
};

/// What an admin password token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminTokenPurpose {
    Invitation,
    Reset,
}

impl AdminTokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invitation => "invitation",
            Self::Reset => "reset",
        }
    }
}

/// An invited admin about to be stored, with the invitation and its mail.
#[derive(Debug, Clone)]
pub struct NewInvitedAdmin {
    pub id: Uuid,
    pub username: Username,
    pub email: Email,
    pub role: Role,
    /// A hash of 256 random bits nobody knows: the account has no usable password until the
    /// invitation is accepted.
    pub password_hash: String,
    pub now: DateTime<Utc>,
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
    pub mail: NewMail,
    pub audit: NewAudit,
}

/// An admin password reset as asked for, before anything is known about the username.
#[derive(Debug, Clone)]
pub struct AdminResetRequest {
    pub username_key: String,
    pub token_hash: String,
    pub link: String,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The outbox row's id, if one is written.
    pub mail_id: Uuid,
}

/// "Forgot your password?" requests per client address and per username per hour.
pub const MAX_ADMIN_RESETS_PER_HOUR: u32 = 5;
/// How long an admin's "Forgot your password?" link works: a console account opens more than
/// a customer's, so its links live shorter than customers' (24 hours by default).
pub const ADMIN_RESET_LINK_LIFETIME: Duration = Duration::hours(1);
/// How long an invitation works: the new admin may not read it at once.
pub const INVITATION_LINK_LIFETIME: Duration = Duration::hours(24);

/// A stored admin password token, found by its hash.
#[derive(Debug, Clone)]
pub struct StoredAdminToken {
    pub id: Uuid,
    pub admin_id: Uuid,
    /// The admin's username and address: context the password policy holds a new password
    /// against (a password made of them is refused).
    pub username: String,
    pub email: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub superseded_at: Option<DateTime<Utc>>,
}

/// What `updateAdminUser` asks for; `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct AdminChange {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminUpdate {
    Updated(AdminUser),
    NotFound,
    /// It would leave no active administrator; nothing changed.
    LastAdministrator,
}

#[async_trait]
pub trait AdminUserStore: Send + Sync {
    async fn admin_users(&self) -> Result<Vec<AdminUser>>;
    /// In one transaction: the admin, the invitation token, its mail and the audit entry.
    /// `None` when the username is taken.
    async fn create_invited_admin(&self, new: NewInvitedAdmin) -> Result<Option<AdminUser>>;
    /// In one transaction, under a lock on the administrators (so two concurrent demotions
    /// cannot both pass the check): applies the change unless it leaves no active
    /// administrator; disabling also revokes every live session of the admin.
    async fn update_admin(
        &self,
        id: Uuid,
        change: AdminChange,
        now: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<AdminUpdate>;
    /// Revokes every live session of the admin and writes `audit`; `None` for no such admin.
    async fn revoke_admin_sessions(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<Option<u64>>;
    /// The console's "Forgot your password?", with the same statements whether or not an
    /// active admin with an email address has this username (they write rows only for one
    /// that has): supersedes the admin's outstanding links, stores the new token's hash and
    /// queues the mail to the admin's address.
    async fn request_admin_reset(&self, request: AdminResetRequest) -> Result<()>;
    async fn find_admin_token(&self, token_hash: &str) -> Result<Option<StoredAdminToken>>;
    /// In one transaction, only if the token is still unused, not superseded and not expired
    /// at `now`: consumes it, sets the password, clears lockout, revokes every session of
    /// the admin and queues `notice`. False when a concurrent use won.
    async fn complete_admin_token(
        &self,
        token_id: Uuid,
        admin_id: Uuid,
        password_hash: String,
        now: DateTime<Utc>,
        notice: Option<NewMail>,
    ) -> Result<bool>;
}

/// Where invitation links point: a template with `{token}`.
#[derive(Debug, Clone)]
pub struct AdminLinks {
    pub set_password: String,
}

impl AdminLinks {
    /// The console's built-in page under `public_url`.
    pub fn under(public_url: &str) -> Self {
        Self {
            set_password: format!("{public_url}/admin/set-password?token={{token}}"),
        }
    }
}

pub struct AdminUsers {
    store: Arc<dyn AdminUserStore>,
    parts: Wiring,
    links: AdminLinks,
    mail: Arc<dyn MailSignal>,
}

/// Admins hold the keys to every account: their passwords follow the customer policy and have
/// at least this many characters.
pub const ADMIN_MIN_PASSWORD_LENGTH: u32 = 12;

impl AdminUsers {
    pub fn new(
        store: Arc<dyn AdminUserStore>,
        parts: Wiring,
        links: AdminLinks,
        mail: Arc<dyn MailSignal>,
    ) -> Self {
        Self {
            store,
            parts,
            links,
            mail,
        }
    }

    pub async fn list(&self) -> Result<Vec<AdminUser>> {
        self.store.admin_users().await
    }

    fn audit(
        &self,
        principal: &AdminPrincipal,
        action: AuditAction,
        target: Uuid,
        detail: String,
        client: &ClientInfo,
    ) -> NewAudit {
        NewAudit::by(principal, action, self.parts.clock.now(), client)
            .detail(format!("admin {target}: {detail}"))
    }

    /// `createAdminUser`: the new admin gets an invitation link to set their own password.
    #[tracing::instrument(name = "admin_users.invite", skip_all)]
    pub async fn invite(
        &self,
        principal: &AdminPrincipal,
        username: &str,
        email: &str,
        role: &str,
        client: &ClientInfo,
    ) -> Result<AdminUser> {
        let username = Username::parse(username).ok_or_else(|| {
            Error::bad_input("username", "3 to 64 letters, digits, '.', '_', '-' or '@'")
        })?;
        let email = parse_email_field("email", email)?;
        let role = parse_role(role)?;
        let settings = self.parts.settings.current().await?;
        // Nobody knows this password: the account cannot sign in until the invitation is used.
        let unusable = RawResetToken::generate()?;
        let placeholder = NewPassword::parse(unusable.expose(), &settings.password, &[], &[])
            .map_err(Error::PasswordPolicy)?;
        let password_hash = self.parts.hasher.hash(&placeholder).await?;
        let token = RawResetToken::generate()?;
        let now = self.parts.clock.now();
        let expires_at = now + INVITATION_LINK_LIFETIME;
        let id = Uuid::now_v7();
        let link = self.links.set_password.replace("{token}", token.expose());
        let audit = self.audit(
            principal,
            AuditAction::CreateAdminUser,
            id,
            format!("role {}", role.as_str()),
            client,
        );
        let new = NewInvitedAdmin {
            id,
            username,
            email: email.clone(),
            role,
            password_hash,
            now,
            token_hash: token.hash(),
            expires_at,
            mail: NewMail {
                id: Uuid::now_v7(),
                kind: MailKind::AdminInvitation,
                customer_id: None,
                recipient: email.as_str().to_owned(),
                locale: Locale::default(),
                created_at: now,
                link: Some((link, expires_at)),
            },
            audit,
        };
        let created = self
            .store
            .create_invited_admin(new)
            .await?
            .ok_or_else(|| Error::bad_input("username", "is taken"))?;
        self.mail.notify();
        tracing::info!(event = "admin_invited", admin_id = %created.id, by = %principal.admin.id);
        Ok(created)
    }

    /// `updateAdminUser`: role and disabled flag. NotFound for an unknown admin; the last
    /// active administrator is refused (BAD_USER_INPUT) and nothing changes.
    #[tracing::instrument(name = "admin_users.update", skip_all)]
    pub async fn update(
        &self,
        principal: &AdminPrincipal,
        id: Uuid,
        role: Option<&str>,
        disabled: Option<bool>,
        client: &ClientInfo,
    ) -> Result<AdminUser> {
        let change = AdminChange {
            role: role.map(parse_role).transpose()?,
            disabled,
        };
        let mut detail = Vec::new();
        if let Some(r) = change.role {
            detail.push(format!("role {}", r.as_str()));
        }
        if let Some(d) = change.disabled {
            detail.push(if d { "disabled" } else { "enabled" }.to_owned());
        }
        let audit = self.audit(
            principal,
            AuditAction::UpdateAdminUser,
            id,
            detail.join(", "),
            client,
        );
        match self
            .store
            .update_admin(id, change, self.parts.clock.now(), audit)
            .await?
        {
            AdminUpdate::Updated(admin) => {
                tracing::info!(event = "admin_updated", admin_id = %id, by = %principal.admin.id);
                Ok(admin)
            }
            AdminUpdate::NotFound => Err(Error::NotFound),
            AdminUpdate::LastAdministrator => Err(Error::bad_input(
                "id",
                "is the last active administrator: make another admin an administrator first",
            )),
        }
    }

    /// `revokeAdminTokens`: Force Sign In for an admin.
    #[tracing::instrument(name = "admin_users.revoke_tokens", skip_all)]
    pub async fn revoke_tokens(
        &self,
        principal: &AdminPrincipal,
        id: Uuid,
        client: &ClientInfo,
    ) -> Result<u64> {
        let audit = self.audit(
            principal,
            AuditAction::RevokeAdminTokens,
            id,
            "signed out".to_owned(),
            client,
        );
        let revoked = self
            .store
            .revoke_admin_sessions(id, self.parts.clock.now(), audit)
            .await?
            .ok_or(Error::NotFound)?;
        tracing::info!(event = "admin_force_sign_in", admin_id = %id, by = %principal.admin.id, revoked);
        Ok(revoked)
    }

    /// The console's "Forgot your password?": always `Ok` for a well-formed request, whether or
    /// not the username exists, has an email address or is disabled; only a limit refuses.
    #[tracing::instrument(name = "admin_users.request_reset", skip_all)]
    pub async fn request_reset(&self, username: &str, client: &ClientInfo) -> Result<()> {
        let key = Username::sign_in_key(username);
        let now = self.parts.clock.now();
        let rule = Rule::per(MAX_ADMIN_RESETS_PER_HOUR, Duration::hours(1));
        let checks = [
            Check::new(LimitKey::AdminResetByIp(ClientKey::of(client)), rule),
            Check::new(LimitKey::AdminResetByUsername(key.clone()), rule),
        ];
        self.parts.spend(&checks, now).await?;
        let token = RawResetToken::generate()?;
        self.store
            .request_admin_reset(AdminResetRequest {
                username_key: key,
                token_hash: token.hash(),
                link: self.links.set_password.replace("{token}", token.expose()),
                now,
                expires_at: now + ADMIN_RESET_LINK_LIFETIME,
                mail_id: Uuid::now_v7(),
            })
            .await?;
        self.mail.notify();
        tracing::info!(event = "admin_password_reset_requested");
        Ok(())
    }

    /// `setAdminPassword`: the invitation (or admin reset) link. Works once, within its
    /// lifetime; RESET_TOKEN_INVALID / RESET_TOKEN_EXPIRED otherwise, as for customers.
    #[tracing::instrument(name = "admin_users.set_password", skip_all)]
    pub async fn set_password(
        &self,
        token: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<()> {
        let now = self.parts.clock.now();
        let lookup = async {
            let token = RawResetToken::parse(token).ok_or(Error::ResetTokenInvalid)?;
            let stored = self
                .store
                .find_admin_token(&token.hash())
                .await?
                .ok_or(Error::ResetTokenInvalid)?;
            if stored.used_at.is_some() || stored.superseded_at.is_some() {
                return Err(Error::ResetTokenInvalid);
            }
            if now >= stored.expires_at {
                return Err(Error::ResetTokenExpired);
            }
            Ok(stored)
        };
        let stored = self.parts.redeem_link(client, lookup).await?;
        let mut policy = self.parts.settings.current().await?.password;
        policy.min_length = policy.min_length.max(ADMIN_MIN_PASSWORD_LENGTH);
        let local = stored
            .email
            .as_deref()
            .and_then(|e| e.split('@').next())
            .unwrap_or_default();
        let password =
            self.parts
                .new_password(password, &policy, &[stored.username.as_str(), local])?;
        let hash = self.parts.hasher.hash(&password).await?;
        // The admin is told at their address, as a customer is of every password change.
        let notice = stored.email.as_ref().map(|email| NewMail {
            id: Uuid::now_v7(),
            kind: MailKind::AdminPasswordChanged,
            customer_id: None,
            recipient: email.clone(),
            locale: Locale::default(),
            created_at: now,
            link: None,
        });
        if !self
            .store
            .complete_admin_token(stored.id, stored.admin_id, hash, now, notice)
            .await?
        {
            return Err(Error::ResetTokenInvalid);
        }
        self.mail.notify();
        tracing::info!(event = "admin_password_set", admin_id = %stored.admin_id);
        Ok(())
    }
}

fn parse_role(role: &str) -> Result<Role> {
    Role::parse(role)
        .ok_or_else(|| Error::bad_input("role", "one of administrator, support, viewer"))
}
