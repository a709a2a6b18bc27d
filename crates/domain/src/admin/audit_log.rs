//! The audit log: what is recorded, written in the transaction of the action it records.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{AdminPrincipal, decode_cursor, encode_cursor};
use crate::Result;

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
    /// "This wasn't me" from a security mail secured the account (the actor is the
    /// customer's id).
    ReportedNotMe,
    /// An admin confirmed a second factor of their own (`detail` names the factor's id).
    EnrolAdminFactor,
    /// An admin removed a second factor of their own (`detail` names the factor's id).
    RemoveAdminFactor,
    /// An admin replaced their recovery codes with a new set.
    NewRecoveryCodes,
    /// Another admin's factors and recovery codes removed and their sessions ended (`detail`
    /// names the admin's id); by an admin, or by an operator (`latchkey admin reset-2fa`).
    ResetAdminFactors,
    /// An admin cleared a customer's sign-in lockout from every network, and the challenge
    /// their name asked for (`unlockCustomer`).
    UnlockCustomer,
    /// An administrator created, changed or deleted a security-event subscription, rotated
    /// its secret or replayed its dead deliveries (`detail` says which and what).
    ManageIntegration,
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
            Self::ReportedNotMe => "REPORTED_NOT_ME",
            Self::EnrolAdminFactor => "ENROL_ADMIN_FACTOR",
            Self::RemoveAdminFactor => "REMOVE_ADMIN_FACTOR",
            Self::NewRecoveryCodes => "NEW_RECOVERY_CODES",
            Self::ResetAdminFactors => "RESET_ADMIN_FACTORS",
            Self::UnlockCustomer => "UNLOCK_CUSTOMER",
            Self::ManageIntegration => "MANAGE_INTEGRATION",
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
            "REPORTED_NOT_ME" => Some(Self::ReportedNotMe),
            "ENROL_ADMIN_FACTOR" => Some(Self::EnrolAdminFactor),
            "REMOVE_ADMIN_FACTOR" => Some(Self::RemoveAdminFactor),
            "NEW_RECOVERY_CODES" => Some(Self::NewRecoveryCodes),
            "RESET_ADMIN_FACTORS" => Some(Self::ResetAdminFactors),
            "UNLOCK_CUSTOMER" => Some(Self::UnlockCustomer),
            "MANAGE_INTEGRATION" => Some(Self::ManageIntegration),
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
        client: &crate::kernel::client::ClientInfo,
    ) -> Self {
        Self::by_admin(&principal.admin, action, at, client)
    }

    /// What `admin` did before holding a session: enrolling the first factor a store requires
    /// (the password step proved who they are).
    pub fn by_admin(
        admin: &super::AdminUser,
        action: AuditAction,
        at: DateTime<Utc>,
        client: &crate::kernel::client::ClientInfo,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            at,
            actor_id: admin.id,
            actor: admin.username.clone(),
            action,
            customer_id: None,
            client_ip: client.ip.map(|ip| ip.to_string()),
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

    /// What an operator did from the command line (`actor` names the OS user, as
    /// `os:user@host`): no admin id, no client address.
    pub fn by_operator(actor: String, action: AuditAction, at: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::now_v7(),
            at,
            actor_id: Uuid::nil(),
            actor,
            action,
            customer_id: None,
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
