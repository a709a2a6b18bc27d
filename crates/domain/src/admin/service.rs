//! The admin use cases: admin accounts and sign-in, the customers grid, Force Sign In, the
//! password settings and the audit log. Permission checks are the GraphQL guards' job (one
//! place); these take the principal for the audit trail.

use std::{collections::HashMap, sync::Arc};

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::{AdminStore, NewAdmin};
use crate::{
    Error, Result,
    accounts::Wiring,
    admin::{
        AdminPrincipal, AdminUser, AuditAction, AuditEntry, AuditQuery, CustomerQuery, NewAudit,
        Page, Role, Username,
    },
    customer::Customer,
    kernel::client::ClientInfo,
    settings::{LimitMethod, Settings},
};

/// A partial update of the settings, with the API's field names for errors.
#[derive(Debug, Clone, Default)]
pub struct SettingsUpdate {
    pub reset_link_lifetime_hours: Option<i64>,
    pub reset_request_limit_method: Option<LimitMethod>,
    pub max_reset_requests_per_hour: Option<i64>,
    pub min_seconds_between_reset_requests: Option<i64>,
    pub min_password_length: Option<i64>,
    pub required_character_classes: Option<i64>,
    pub allow_whitespace: Option<bool>,
    pub lockout_failures: Option<i64>,
    pub lockout_minutes: Option<i64>,
    pub customer_token_lifetime_minutes: Option<i64>,
    pub admin_token_lifetime_minutes: Option<i64>,
    pub max_failed_sign_ins_per_ip_per_hour: Option<i64>,
    pub max_registrations_per_ip_per_hour: Option<i64>,
    pub min_password_score: Option<i64>,
    pub reset_by_link: Option<bool>,
    pub reset_by_code: Option<bool>,
    pub reset_code_lifetime_minutes: Option<i64>,
    pub remember_browser_days: Option<i64>,
    pub sign_in_by_code: Option<bool>,
    pub lockout_network_prefix_v4: Option<i64>,
    pub lockout_network_prefix_v6: Option<i64>,
    pub challenge_after_name_failures: Option<i64>,
    pub challenge_after_network_failures: Option<i64>,
    pub challenge_max_number: Option<i64>,
    pub breached_password_sign_in: Option<crate::settings::BreachedPasswordSignIn>,
}

/// Every numeric password setting and the values it may take, as `updatePasswordSettings`
/// checks them and the console's settings page offers them (one table for both).
pub const SETTING_RANGES: [(&str, i64, i64); 19] = [
    ("resetLinkLifetimeHours", 1, 168),
    // A code is short: 10^8 possibilities, a few guesses per flow.
    ("resetCodeLifetimeMinutes", 1, 60),
    ("maxResetRequestsPerHour", 0, 1000),
    ("minSecondsBetweenResetRequests", 0, 86_400),
    ("minPasswordLength", 6, 256),
    ("requiredCharacterClasses", 0, 4),
    ("minPasswordScore", 0, 4),
    // Lockout cannot be switched off: it is the per-account limit on password guesses.
    ("lockoutFailures", 1, 100),
    ("lockoutMinutes", 1, 1440),
    ("customerTokenLifetimeMinutes", 5, 10_080),
    ("adminTokenLifetimeMinutes", 5, 1440),
    ("maxFailedSignInsPerIpPerHour", 1, 100_000),
    ("maxRegistrationsPerIpPerHour", 1, 100_000),
    // A grant skips the second factor, never the password; a month at most.
    ("rememberBrowserDays", 0, 30),
    // What one network is for a customer's lockout: at most a /8 (IPv4) or a /16 (IPv6).
    ("lockoutNetworkPrefixV4", 8, 32),
    // Never finer than a /64: one subscriber holds a whole /64.
    ("lockoutNetworkPrefixV6", 16, 64),
    // 0: never ask for a challenge on this count.
    ("challengeAfterNameFailures", 0, 10_000),
    ("challengeAfterNetworkFailures", 0, 100_000),
    // About 0.1 s of a phone's time per 100,000 at the low end; 10 million is a minute.
    ("challengeMaxNumber", 1_000, 10_000_000),
];

/// `value` if it is within the setting's range (`SETTING_RANGES`).
fn checked(field: &'static str, value: Option<i64>) -> Result<Option<i64>> {
    let (lo, hi) = SETTING_RANGES
        .iter()
        .find(|(name, _, _)| *name == field)
        .map(|(_, lo, hi)| (*lo, *hi))
        .ok_or_else(|| Error::internal(format!("no range for {field}")))?;
    match value {
        Some(v) if !(lo..=hi).contains(&v) => Err(Error::bad_input(
            field,
            format!("must be between {lo} and {hi}"),
        )),
        other => Ok(other),
    }
}

impl SettingsUpdate {
    /// Applies the update to `current`, refusing negative or absurd values. Nothing is applied
    /// unless every field is valid.
    pub fn apply(&self, current: &Settings) -> Result<Settings> {
        let mut s = current.clone();
        if let Some(h) = checked("resetLinkLifetimeHours", self.reset_link_lifetime_hours)? {
            s.reset.link_lifetime = Duration::hours(h);
        }
        if let Some(m) = self.reset_request_limit_method {
            s.reset.limit.method = m;
        }
        if let Some(n) = checked("maxResetRequestsPerHour", self.max_reset_requests_per_hour)? {
            s.reset.limit.max_per_hour = n as u32;
        }
        if let Some(n) = checked(
            "minSecondsBetweenResetRequests",
            self.min_seconds_between_reset_requests,
        )? {
            s.reset.limit.min_interval = Duration::seconds(n);
        }
        if let Some(n) = checked("minPasswordLength", self.min_password_length)? {
            s.password.min_length = n as u32;
        }
        if let Some(n) = checked("requiredCharacterClasses", self.required_character_classes)? {
            s.password.required_character_classes = n as u8;
        }
        if let Some(b) = self.allow_whitespace {
            s.password.allow_whitespace = b;
        }
        if let Some(n) = checked("minPasswordScore", self.min_password_score)? {
            s.password.min_score = n as u8;
        }
        if let Some(n) = checked("lockoutFailures", self.lockout_failures)? {
            s.lockout.failures = n as u32;
        }
        if let Some(n) = checked("lockoutMinutes", self.lockout_minutes)? {
            s.lockout.duration = Duration::minutes(n);
        }
        if let Some(n) = checked(
            "customerTokenLifetimeMinutes",
            self.customer_token_lifetime_minutes,
        )? {
            s.customer_token_lifetime = Duration::minutes(n);
        }
        if let Some(n) = checked(
            "adminTokenLifetimeMinutes",
            self.admin_token_lifetime_minutes,
        )? {
            s.admin_token_lifetime = Duration::minutes(n);
        }
        if let Some(n) = checked(
            "maxFailedSignInsPerIpPerHour",
            self.max_failed_sign_ins_per_ip_per_hour,
        )? {
            s.clients.failed_sign_ins_per_ip_per_hour = n as u32;
        }
        if let Some(n) = checked(
            "maxRegistrationsPerIpPerHour",
            self.max_registrations_per_ip_per_hour,
        )? {
            s.clients.registrations_per_ip_per_hour = n as u32;
        }
        if let Some(n) = checked("resetCodeLifetimeMinutes", self.reset_code_lifetime_minutes)? {
            s.reset.code_lifetime = Duration::minutes(n);
        }
        if let Some(b) = self.reset_by_link {
            s.reset.by_link = b;
        }
        if let Some(b) = self.reset_by_code {
            s.reset.by_code = b;
        }
        if let Some(b) = self.sign_in_by_code {
            s.sign_in_by_code = b;
        }
        if let Some(n) = checked("rememberBrowserDays", self.remember_browser_days)? {
            s.remember_browser = Duration::days(n);
        }
        if let Some(n) = checked("lockoutNetworkPrefixV4", self.lockout_network_prefix_v4)? {
            s.attack.network_v4_prefix = n as u8;
        }
        if let Some(n) = checked("lockoutNetworkPrefixV6", self.lockout_network_prefix_v6)? {
            s.attack.network_v6_prefix = n as u8;
        }
        if let Some(n) = checked(
            "challengeAfterNameFailures",
            self.challenge_after_name_failures,
        )? {
            s.attack.challenge_after_name_failures = n as u32;
        }
        if let Some(n) = checked(
            "challengeAfterNetworkFailures",
            self.challenge_after_network_failures,
        )? {
            s.attack.challenge_after_network_failures = n as u32;
        }
        if let Some(n) = checked("challengeMaxNumber", self.challenge_max_number)? {
            s.attack.challenge_max_number = n as u32;
        }
        if let Some(b) = self.breached_password_sign_in {
            s.breached_password = b;
        }
        if !s.reset.by_link && !s.reset.by_code {
            return Err(Error::bad_input(
                "resetByLink",
                "a store resets passwords by link, by code, or both: not by neither",
            ));
        }
        Ok(s)
    }
}

pub struct Admins {
    store: Arc<dyn AdminStore>,
    parts: Wiring,
}

impl Admins {
    pub fn new(store: Arc<dyn AdminStore>, parts: Wiring) -> Self {
        Self { store, parts }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.parts.clock.now()
    }

    /// `latchkey admin create`. The password follows the customer policy, and at least 12
    /// characters: admins hold the keys to every account.
    #[tracing::instrument(name = "admins.create_admin", skip_all)]
    pub async fn create_admin(
        &self,
        username: &str,
        password: &str,
        role: &str,
        email: Option<&str>,
    ) -> Result<AdminUser> {
        let email = email
            .map(|e| crate::accounts::parse_email_field("email", e))
            .transpose()?;
        let username = Username::parse(username).ok_or_else(|| {
            Error::bad_input("username", "3 to 64 letters, digits, '.', '_', '-' or '@'")
        })?;
        let role = Role::parse(role)
            .ok_or_else(|| Error::bad_input("role", "one of administrator, support, viewer"))?;
        let mut policy = self.parts.settings.current().await?.password;
        policy.min_length = policy.min_length.max(12);
        let password = self
            .parts
            .new_password(password, &policy, &[username.as_str()])?;
        let password_hash = self.parts.hasher.hash(&password).await?;
        self.store
            .create_admin(NewAdmin {
                id: Uuid::now_v7(),
                username,
                role,
                password_hash,
                now: self.parts.clock.now(),
                email,
            })
            .await?
            .ok_or_else(|| Error::bad_input("username", "is taken"))
    }

    /// Signs out the admin token the request was made with; it is refused from now on.
    #[tracing::instrument(name = "admins.sign_out", skip_all)]
    pub async fn sign_out(&self, principal: &AdminPrincipal) -> Result<()> {
        self.store
            .revoke_admin_session(principal.session_id, self.parts.clock.now())
            .await?;
        tracing::info!(event = "admin_signed_out", admin_id = %principal.admin.id);
        Ok(())
    }

    pub async fn customers(&self, query: &CustomerQuery) -> Result<Page<Customer>> {
        self.store
            .customers_page(query, self.parts.clock.now())
            .await
    }

    pub async fn active_token_counts(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, u64>> {
        self.store
            .active_token_counts(ids, self.parts.clock.now())
            .await
    }

    pub async fn password_facts(
        &self,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, crate::admin::PasswordFacts>> {
        self.store.password_facts(ids).await
    }

    pub async fn last_reset_requests(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, DateTime<Utc>>> {
        self.store.last_reset_requests(ids).await
    }

    fn audit(
        &self,
        principal: &AdminPrincipal,
        action: AuditAction,
        customer_id: Option<Uuid>,
        client: &ClientInfo,
    ) -> NewAudit {
        let audit = NewAudit::by(principal, action, self.parts.clock.now(), client);
        match customer_id {
            Some(id) => audit.about(id),
            None => audit,
        }
    }

    /// Force Sign In. NotFound for an unknown customer; 0 for one with no live tokens.
    #[tracing::instrument(name = "admins.revoke_customer_tokens", skip_all)]
    pub async fn revoke_customer_tokens(
        &self,
        principal: &AdminPrincipal,
        customer_id: Uuid,
        client: &ClientInfo,
    ) -> Result<u64> {
        let audit = self.audit(
            principal,
            AuditAction::RevokeCustomerTokens,
            Some(customer_id),
            client,
        );
        let revoked = self
            .store
            .revoke_all_sessions(customer_id, self.parts.clock.now(), audit)
            .await?
            .ok_or(Error::NotFound)?;
        tracing::info!(event = "force_sign_in", admin_id = %principal.admin.id, customer_id = %customer_id, revoked);
        Ok(revoked)
    }

    /// "Unlock": the customer's wrong passwords stop counting, from every network, so no
    /// network is locked out and their name no longer asks for a challenge. NotFound for an
    /// unknown customer. Audited.
    #[tracing::instrument(name = "admins.unlock_customer", skip_all)]
    pub async fn unlock_customer(
        &self,
        principal: &AdminPrincipal,
        customer_id: Uuid,
        client: &ClientInfo,
    ) -> Result<()> {
        let audit = self.audit(
            principal,
            AuditAction::UnlockCustomer,
            Some(customer_id),
            client,
        );
        let login = self
            .store
            .unlock_customer(customer_id, audit)
            .await?
            .ok_or(Error::NotFound)?;
        self.parts
            .sign_in
            .forget_failures(crate::limits::PrincipalKind::Customer, &login)
            .await?;
        tracing::info!(event = "customer_unlocked", admin_id = %principal.admin.id, customer_id = %customer_id);
        Ok(())
    }

    pub async fn settings(&self) -> Result<Settings> {
        self.parts.settings.current().await
    }

    #[tracing::instrument(name = "admins.update_settings", skip_all)]
    pub async fn update_settings(
        &self,
        principal: &AdminPrincipal,
        update: &SettingsUpdate,
        client: &ClientInfo,
    ) -> Result<Settings> {
        let next = update.apply(&self.parts.settings.current().await?)?;
        let audit = self.audit(principal, AuditAction::UpdatePasswordSettings, None, client);
        self.store.update_settings(&next, audit).await?;
        tracing::info!(event = "settings_updated", admin_id = %principal.admin.id);
        Ok(next)
    }

    pub async fn audit_log(&self, query: &AuditQuery) -> Result<Page<AuditEntry>> {
        self.store.audit_page(query).await
    }

    pub async fn undelivered_mail(
        &self,
        first: u64,
        lane: Option<crate::mail::MailLane>,
    ) -> Result<Vec<crate::admin::UndeliveredMail>> {
        self.store.undelivered_mail(first, lane).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_updates_are_validated_as_a_whole() {
        let current = Settings::default();
        let ok = SettingsUpdate {
            min_password_length: Some(15),
            allow_whitespace: Some(true),
            ..Default::default()
        }
        .apply(&current)
        .unwrap();
        assert_eq!(ok.password.min_length, 15);
        assert!(ok.password.allow_whitespace);
        assert_eq!(ok.lockout, current.lockout);
        for bad in [
            SettingsUpdate {
                reset_link_lifetime_hours: Some(0),
                ..Default::default()
            },
            SettingsUpdate {
                max_reset_requests_per_hour: Some(-1),
                ..Default::default()
            },
            SettingsUpdate {
                min_password_length: Some(5),
                ..Default::default()
            },
            SettingsUpdate {
                required_character_classes: Some(5),
                ..Default::default()
            },
            SettingsUpdate {
                lockout_failures: Some(101),
                ..Default::default()
            },
            SettingsUpdate {
                lockout_failures: Some(0),
                ..Default::default()
            },
            SettingsUpdate {
                min_password_score: Some(5),
                ..Default::default()
            },
            SettingsUpdate {
                max_failed_sign_ins_per_ip_per_hour: Some(0),
                ..Default::default()
            },
            SettingsUpdate {
                customer_token_lifetime_minutes: Some(i64::MAX),
                ..Default::default()
            },
        ] {
            assert!(bad.apply(&current).is_err(), "{bad:?}");
        }
    }
}
