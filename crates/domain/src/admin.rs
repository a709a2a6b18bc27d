//! The admin side: admin users, roles and permissions, the customers grid
//! query, and the audit log.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Error, Result};

/// What an admin may do. Every admin operation and admin-only field names exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    CustomersRead,
    CustomersResetPassword,
    CustomersRevokeTokens,
    SettingsRead,
    SettingsManage,
    AuditRead,
    /// Bulk actions (with the single action's own permission) and their jobs.
    CustomersBulk,
    /// Deleting a customer account (administrators only by default).
    CustomersDelete,
    /// Admin users: list, invite, change role, disable, Force Sign In.
    AdminUsersManage,
    /// Recovering an account frozen by "this wasn't me" (administrators only by default):
    /// whoever has it decides who owns the account.
    CustomersRecover,
    /// `customerDataExport(customerId)`: everything stored about a customer, more than the
    /// console shows (administrators only by default).
    CustomersExport,
}

impl Permission {
    pub const ALL: [Permission; 11] = [
        Self::CustomersRead,
        Self::CustomersResetPassword,
        Self::CustomersRevokeTokens,
        Self::SettingsRead,
        Self::SettingsManage,
        Self::AuditRead,
        Self::CustomersBulk,
        Self::CustomersDelete,
        Self::AdminUsersManage,
        Self::CustomersRecover,
        Self::CustomersExport,
    ];
}

/// An admin has one role; a role is a fixed set of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Administrator,
    Support,
    Viewer,
}

impl Role {
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Self::Administrator => &Permission::ALL,
            Self::Support => &[CustomersRead, CustomersResetPassword, CustomersRevokeTokens],
            Self::Viewer => &[CustomersRead],
        }
    }

    /// Default deny: only permissions listed for the role.
    pub fn allows(self, permission: Permission) -> bool {
        self.permissions().contains(&permission)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Administrator => "administrator",
            Self::Support => "support",
            Self::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "administrator" => Some(Self::Administrator),
            "support" => Some(Self::Support),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }
}

/// An admin's login name: 3–64 characters of letters, digits, `.`, `_`, `-`, `@`; unique
/// whatever its case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Option<Self> {
        let name = raw.trim();
        let ok = (3..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
        ok.then(|| Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    /// The sign-in name for input that cannot be a username: a short digest behind a `:`
    /// (which no username contains), so it is counted per name yet never matches an account
    /// and never stores the raw input.
    pub fn unparsable_key(raw: &str) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(raw.as_bytes());
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("invalid:{hex}")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUser {
    pub id: Uuid,
    pub username: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// Where invitations go; admins made by the CLI may have none.
    pub email: Option<String>,
    /// A disabled admin can neither sign in nor use a token.
    pub disabled: bool,
}

/// A signed-in admin.
#[derive(Debug, Clone)]
pub struct AdminPrincipal {
    pub admin: AdminUser,
    pub session_id: Uuid,
}

/// What the audit log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    AdminResetPassword,
    RevokeCustomerTokens,
    UpdatePasswordSettings,
    /// `latchkey import customers`, run from a shell (the actor is the OS user and host).
    ImportCustomers,
    /// A bulk job started (its detail names the job, the action and the count).
    StartBulkAction,
    CancelBulkJob,
    /// An admin deleted a customer (the entry keeps the id only).
    DeleteCustomer,
    /// A customer deleted their own account (the actor is the customer's id).
    DeleteOwnAccount,
    /// Admin users (the target's id in `detail`).
    CreateAdminUser,
    UpdateAdminUser,
    RevokeAdminTokens,
    /// An admin exported a customer's data (`customerDataExport(customerId)`).
    ExportCustomerData,
    /// An admin recovered an account frozen by "this wasn't me" (`adminRecoverCustomer`).
    RecoverCustomer,
    /// The address a frozen account had moved to gave it back (`releaseCustomerAccount`; the
    /// actor is the customer's id).
    ReleaseFrozenAccount,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AdminResetPassword => "ADMIN_RESET_PASSWORD",
            Self::RevokeCustomerTokens => "REVOKE_CUSTOMER_TOKENS",
            Self::UpdatePasswordSettings => "UPDATE_PASSWORD_SETTINGS",
            Self::ImportCustomers => "IMPORT_CUSTOMERS",
            Self::StartBulkAction => "START_BULK_ACTION",
            Self::CancelBulkJob => "CANCEL_BULK_JOB",
            Self::DeleteCustomer => "DELETE_CUSTOMER",
            Self::DeleteOwnAccount => "DELETE_OWN_ACCOUNT",
            Self::CreateAdminUser => "CREATE_ADMIN_USER",
            Self::UpdateAdminUser => "UPDATE_ADMIN_USER",
            Self::RevokeAdminTokens => "REVOKE_ADMIN_TOKENS",
            Self::ExportCustomerData => "EXPORT_CUSTOMER_DATA",
            Self::RecoverCustomer => "RECOVER_CUSTOMER",
            Self::ReleaseFrozenAccount => "RELEASE_FROZEN_ACCOUNT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ADMIN_RESET_PASSWORD" => Some(Self::AdminResetPassword),
            "REVOKE_CUSTOMER_TOKENS" => Some(Self::RevokeCustomerTokens),
            "UPDATE_PASSWORD_SETTINGS" => Some(Self::UpdatePasswordSettings),
            "IMPORT_CUSTOMERS" => Some(Self::ImportCustomers),
            "START_BULK_ACTION" => Some(Self::StartBulkAction),
            "CANCEL_BULK_JOB" => Some(Self::CancelBulkJob),
            "DELETE_CUSTOMER" => Some(Self::DeleteCustomer),
            "DELETE_OWN_ACCOUNT" => Some(Self::DeleteOwnAccount),
            "CREATE_ADMIN_USER" => Some(Self::CreateAdminUser),
            "UPDATE_ADMIN_USER" => Some(Self::UpdateAdminUser),
            "REVOKE_ADMIN_TOKENS" => Some(Self::RevokeAdminTokens),
            "EXPORT_CUSTOMER_DATA" => Some(Self::ExportCustomerData),
            "RECOVER_CUSTOMER" => Some(Self::RecoverCustomer),
            "RELEASE_FROZEN_ACCOUNT" => Some(Self::ReleaseFrozenAccount),
            _ => None,
        }
    }
}

/// An audit row to write in the transaction of the action.
#[derive(Debug, Clone)]
pub struct NewAudit {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor_id: Uuid,
    pub actor: String,
    pub action: AuditAction,
    pub customer_id: Option<Uuid>,
    pub client_ip: Option<String>,
    /// What an action over many customers did (an import's counts); no personal data.
    pub detail: Option<String>,
}

impl NewAudit {
    /// What `principal` did at `at`, from `client`: the one way an admin's entry is made.
    pub fn by(
        principal: &AdminPrincipal,
        action: AuditAction,
        at: DateTime<Utc>,
        client: &crate::customer::ClientInfo,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            at,
            actor_id: principal.admin.id,
            actor: principal.admin.username.clone(),
            action,
            customer_id: None,
            client_ip: client.ip.clone(),
            detail: None,
        }
    }

    /// What a customer did to their own account: the actor is `customer` and the customer's
    /// id, never a name.
    pub fn by_customer(customer_id: Uuid, action: AuditAction, at: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::now_v7(),
            at,
            actor_id: customer_id,
            actor: "customer".to_owned(),
            action,
            customer_id: Some(customer_id),
            client_ip: None,
            detail: None,
        }
    }

    /// The customer the entry is about.
    pub fn about(mut self, customer_id: Uuid) -> Self {
        self.customer_id = Some(customer_id);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The client address (entries by customers leave it out unless given).
    pub fn from_ip(mut self, ip: Option<String>) -> Self {
        self.client_ip = ip;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: AuditAction,
    pub customer_id: Option<Uuid>,
    pub client_ip: Option<String>,
    pub detail: Option<String>,
}

/// A message that has not been delivered: retrying, or dead-lettered after its last attempt.
/// Never carries the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndeliveredMail {
    pub id: Uuid,
    pub lane: crate::mail::MailLane,
    pub kind: String,
    pub recipient: String,
    /// `pending`, `sending` or `dead`.
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
}

/// A keyset cursor as clients see it: its JSON in URL-safe base64, opaque to them.
pub fn encode_cursor<T: Serialize>(cursor: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(cursor).unwrap_or_default())
}

/// Reads a cursor made by [`encode_cursor`]; anything else (or longer than `max_len`) is
/// BAD_USER_INPUT on `after`.
pub fn decode_cursor<T: serde::de::DeserializeOwned>(s: &str, max_len: usize) -> Result<T> {
    let bad = || Error::bad_input("after", "is not a cursor from this list");
    if s.len() > max_len {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

/// Largest page any list returns.
pub const MAX_PAGE: u64 = 100;
pub const DEFAULT_PAGE: u64 = 20;

/// Clamps a requested page size: negative → error, above [`MAX_PAGE`] → error (clear, not
/// silently truncated), none → [`DEFAULT_PAGE`].
pub fn page_size(first: Option<i64>) -> Result<u64> {
    match first {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE as i64).contains(&n) => Ok(n as u64),
        Some(_) => Err(Error::bad_input(
            "first",
            format!("must be between 1 and {MAX_PAGE}"),
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CustomerSortField {
    CreatedAt,
    Email,
    Name,
}

/// Where a page of the customers grid starts: the sort key of the last row seen and its id.
/// Keyset paging, so inserts never shift pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerCursor {
    pub field: CustomerSortField,
    pub descending: bool,
    /// The sort values of the row: `[created_at]`, `[email_key]` or `[lastname, firstname]`.
    pub values: Vec<String>,
    pub id: Uuid,
}

impl CustomerCursor {
    pub fn encode(&self) -> String {
        encode_cursor(self)
    }

    pub fn decode(s: &str) -> Result<Self> {
        decode_cursor(s, 2048)
    }
}

/// Where a customer's password stands and where the account came from, for admins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordFacts {
    pub state: crate::stored_hash::PasswordState,
    /// The id on the platform the customer was imported from.
    pub external_id: Option<String>,
}

/// Which customers the grid (or a bulk action) is about. Every field narrows the selection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerFilter {
    /// The address or a name contains it (`crate::search`).
    pub search: Option<crate::search::Search>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    pub password_state: Option<crate::stored_hash::PasswordState>,
    /// Exact match on the old platform's id.
    pub external_id: Option<String>,
    /// Locked out of sign-in now (`true`), or not (`false`).
    pub locked: Option<bool>,
    /// Has a live session now (`true`), or none (`false`).
    pub signed_in: Option<bool>,
    /// The newest reset email was requested in this range.
    pub last_reset_from: Option<DateTime<Utc>>,
    pub last_reset_to: Option<DateTime<Utc>>,
}

impl CustomerFilter {
    /// Nothing but the search (if any) narrows it.
    pub fn is_search_only(&self) -> bool {
        Self {
            search: None,
            ..self.clone()
        } == Self::default()
    }
}

/// Past this many matches, `totalCount` is estimated instead of counted.
pub const EXACT_COUNT_UP_TO: u64 = 1000;

#[derive(Debug, Clone)]
pub struct CustomerQuery {
    pub filter: CustomerFilter,
    pub field: CustomerSortField,
    pub descending: bool,
    pub first: u64,
    pub after: Option<CustomerCursor>,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<(String, T)>,
    pub has_next_page: bool,
    pub total_count: u64,
    /// `total_count` is an estimate (more than [`EXACT_COUNT_UP_TO`] matched).
    pub total_count_is_estimate: bool,
}

/// Audit log paging: newest first, keyset on (at, id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCursor {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

impl AuditCursor {
    pub fn encode(&self) -> String {
        encode_cursor(self)
    }

    pub fn decode(s: &str) -> Result<Self> {
        decode_cursor(s, 1024)
    }
}

#[derive(Debug, Clone)]
pub struct AuditQuery {
    pub action: Option<AuditAction>,
    pub customer_id: Option<Uuid>,
    pub first: u64,
    pub after: Option<AuditCursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grant_exactly_the_spec_permissions() {
        use Permission::*;
        assert!(
            Permission::ALL
                .iter()
                .all(|p| Role::Administrator.allows(*p))
        );
        let support: Vec<_> = Permission::ALL
            .iter()
            .filter(|p| Role::Support.allows(**p))
            .collect();
        assert_eq!(
            support,
            [
                &CustomersRead,
                &CustomersResetPassword,
                &CustomersRevokeTokens
            ]
        );
        let viewer: Vec<_> = Permission::ALL
            .iter()
            .filter(|p| Role::Viewer.allows(**p))
            .collect();
        assert_eq!(viewer, [&CustomersRead]);
        assert_eq!(Role::parse("Support"), Some(Role::Support));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn usernames_are_bounded_and_plain() {
        assert_eq!(Username::parse(" Admin.One ").unwrap().key(), "admin.one");
        for bad in ["ab", "has space", "a\u{0}dmin", "ad\nmin", &"a".repeat(65)] {
            assert!(Username::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn page_sizes_are_capped() {
        assert_eq!(page_size(None).unwrap(), 20);
        assert_eq!(page_size(Some(100)).unwrap(), 100);
        assert!(page_size(Some(101)).is_err());
        assert!(page_size(Some(0)).is_err());
        assert!(page_size(Some(-1)).is_err());
        assert!(page_size(Some(1_000_000)).is_err());
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = CustomerCursor {
            field: CustomerSortField::Name,
            descending: true,
            values: vec!["Lee".into(), "Ann".into()],
            id: Uuid::nil(),
        };
        assert_eq!(CustomerCursor::decode(&c.encode()).unwrap(), c);
        for bad in ["", "not base64!", "e30", &"A".repeat(5000)] {
            assert!(CustomerCursor::decode(bad).is_err(), "{bad}");
        }
    }
}
