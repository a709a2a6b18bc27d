//! Deleting a customer, and the export of what Latchkey holds about one.
//!
//! Deletion removes the account and everything that names the person: sessions, reset links and
//! requests, email changes, mail to them (sent or not; sent rows still name the address), the
//! limit counters keyed by their address, and their place in bulk jobs. The audit log keeps its
//! entries, which hold the customer's id and no personal data, plus one for the deletion, so
//! who did what stays provable. The address can register again afterwards.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    Error, Result,
    accounts::{CustomerPrincipal, Wiring},
    admin::{AdminPrincipal, AuditAction, NewAudit},
    kernel::client::ClientInfo,
    limits::{Check, LimitKey, PrincipalKind, Rule},
    password::PasswordCandidate,
};

/// The limit counters stored under keys that name the customer: their id, and each address
/// in `email_keys` (the account's addresses, now and before, that no other customer holds).
pub fn limit_keys(customer_id: Uuid, email_keys: &[String]) -> Vec<String> {
    let by_id = [
        LimitKey::ResetRequestByCustomer(customer_id),
        LimitKey::EmailChangeByCustomer(customer_id),
        LimitKey::DataExportBy(customer_id),
        LimitKey::SignInsOf(PrincipalKind::Customer, customer_id),
    ];
    let by_address = email_keys.iter().flat_map(|key| {
        [
            LimitKey::ResetRequestByEmail(key.clone()),
            LimitKey::SignInByAccount(PrincipalKind::Customer, key.clone()),
            LimitKey::WrongCodesByEmail(key.clone()),
            LimitKey::LockoutMailFor(key.clone()),
        ]
    });
    by_id
        .into_iter()
        .chain(by_address)
        .map(|k| k.storage_key())
        .collect()
}

/// What the keys of limit counters that name one of `email_keys` per network start with (a
/// customer's lockout from each network, [`LimitKey::networks_of`]).
pub fn limit_key_prefixes(email_keys: &[String]) -> Vec<String> {
    email_keys
        .iter()
        .map(|key| LimitKey::networks_of(PrincipalKind::Customer, key))
        .collect()
}

/// Everything stored about one customer, for `customerDataExport` (GDPR Art. 15 and 20).
/// Never a hash, a token or a link.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerExport {
    pub exported_at: DateTime<Utc>,
    /// Which page of the lists this is: each list holds at most [`EXPORT_PAGE_SIZE`] entries
    /// (oldest first); `more` says whether any list goes on on the next page.
    pub page: ExportPage,
    pub customer: ExportedCustomer,
    pub sessions: Vec<ExportedSession>,
    pub password_reset_links: Vec<ExportedResetLink>,
    pub email_changes: Vec<ExportedEmailChange>,
    pub mail: Vec<ExportedMail>,
    /// Admin actions about this customer.
    pub audit: Vec<ExportedAudit>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedCustomer {
    pub id: Uuid,
    pub email: String,
    pub firstname: String,
    pub lastname: String,
    pub locale: String,
    pub external_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub password_changed_at: DateTime<Utc>,
    pub failed_sign_ins: i32,
    pub locked_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedSession {
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedResetLink {
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedEmailChange {
    pub old_email: String,
    pub new_email: String,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedMail {
    pub kind: String,
    pub recipient: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// Entries per list on one page of an export: nearly every customer's fits on the first.
pub const EXPORT_PAGE_SIZE: u64 = 500;

/// One page of an export's lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportPage {
    /// From 1.
    pub number: u32,
    pub size: u64,
    /// Some list has entries past this page: ask for `number + 1`.
    pub more: bool,
}

impl ExportPage {
    /// The page asked for (`None`: the first); BAD_USER_INPUT below 1.
    pub fn asked(number: Option<i64>) -> Result<Self> {
        let number = number.unwrap_or(1);
        match u32::try_from(number) {
            Ok(n) if n >= 1 => Ok(Self {
                number: n,
                size: EXPORT_PAGE_SIZE,
                more: false,
            }),
            _ => Err(Error::bad_input("page", "must be 1 or more")),
        }
    }

    /// Entries to skip in each list before this page.
    pub fn offset(&self) -> u64 {
        u64::from(self.number - 1) * self.size
    }
}

/// How an export names whoever acted on the account when it was not the customer.
pub const STORE_STAFF: &str = "store staff";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedAudit {
    pub at: DateTime<Utc>,
    pub action: String,
    pub actor: String,
}

#[async_trait]
pub trait ErasureStore: Send + Sync {
    /// In one transaction: removes the customer and everything that names them (see the
    /// module's rules), and writes `audit`. False when there is no such customer.
    async fn delete_customer(&self, customer_id: Uuid, audit: NewAudit) -> Result<bool>;
    /// `None` when there is no such customer; otherwise writes `audit` (an admin's export)
    /// too.
    /// One `page` of each list.
    async fn export_customer(
        &self,
        customer_id: Uuid,
        now: DateTime<Utc>,
        page: ExportPage,
        audit: Option<NewAudit>,
    ) -> Result<Option<CustomerExport>>;
}

/// `customerDataExport` calls per caller (customer or admin) per hour.
pub const MAX_EXPORTS_PER_HOUR: u32 = 10;

pub struct Erasure {
    store: Arc<dyn ErasureStore>,
    parts: Wiring,
}

impl Erasure {
    pub fn new(store: Arc<dyn ErasureStore>, parts: Wiring) -> Self {
        Self { store, parts }
    }

    /// `deleteCustomer`: the customer deletes their own account, with the current password
    /// (checked like a sign-in, so a stolen session cannot do it).
    #[tracing::instrument(name = "erasure.delete_own_account", skip_all)]
    pub async fn delete_own_account(
        &self,
        principal: &CustomerPrincipal,
        current_password: &str,
        client: &ClientInfo,
    ) -> Result<()> {
        let candidate =
            PasswordCandidate::parse(current_password).ok_or(Error::AuthenticationFailed)?;
        let settings = self.parts.settings.current().await?;
        let customer = &principal.customer;
        self.parts
            .sign_in
            .verify(
                PrincipalKind::Customer,
                customer.email.key(),
                &candidate,
                client,
                &settings,
            )
            .await?;
        // The customer acted: their id, which the entry keeps anyway, and no name; their
        // address is personal data, not kept past the account.
        let audit = NewAudit::by_customer(
            customer.id,
            AuditAction::DeleteOwnAccount,
            self.parts.clock.now(),
        );
        if !self.store.delete_customer(customer.id, audit).await? {
            return Err(Error::Unauthenticated);
        }
        tracing::info!(event = "customer_deleted", customer_id = %customer.id, by = "self");
        Ok(())
    }

    /// `adminDeleteCustomer` (CUSTOMERS_DELETE, checked by the caller). NotFound for an
    /// unknown customer.
    #[tracing::instrument(name = "erasure.delete_by_admin", skip_all)]
    pub async fn delete_by_admin(
        &self,
        principal: &AdminPrincipal,
        customer_id: Uuid,
        client: &ClientInfo,
    ) -> Result<()> {
        let audit = NewAudit::by(
            principal,
            AuditAction::DeleteCustomer,
            self.parts.clock.now(),
            client,
        )
        .about(customer_id);
        if !self.store.delete_customer(customer_id, audit).await? {
            return Err(Error::NotFound);
        }
        tracing::info!(event = "customer_deleted", customer_id = %customer_id, admin_id = %principal.admin.id);
        Ok(())
    }

    /// `customerDataExport` for the signed-in customer: their own data.
    #[tracing::instrument(name = "erasure.export_own", skip_all)]
    pub async fn export_own(
        &self,
        principal: &CustomerPrincipal,
        page: ExportPage,
    ) -> Result<CustomerExport> {
        let now = self.parts.clock.now();
        self.spend_export_budget(principal.customer.id, now).await?;
        self.store
            .export_customer(principal.customer.id, now, page, None)
            .await?
            .ok_or(Error::NotFound)
    }

    /// An export reads everything stored about a customer: [`MAX_EXPORTS_PER_HOUR`] per
    /// caller (the GraphQL layer also prices the field so one document holds one export).
    async fn spend_export_budget(&self, caller: Uuid, now: DateTime<Utc>) -> Result<()> {
        let check = [Check::new(
            LimitKey::DataExportBy(caller),
            Rule::per(MAX_EXPORTS_PER_HOUR, chrono::Duration::hours(1)),
        )];
        self.parts.spend(&check, now).await
    }

    /// `customerDataExport(customerId)` for an admin with the permission (checked by the
    /// caller): any customer's data, audited as EXPORT_CUSTOMER_DATA, since it holds more
    /// than the console shows (session addresses, past email addresses, mail). NotFound for
    /// an unknown customer.
    #[tracing::instrument(name = "erasure.export_as_admin", skip_all)]
    pub async fn export_as_admin(
        &self,
        principal: &AdminPrincipal,
        customer_id: Uuid,
        page: ExportPage,
        client: &ClientInfo,
    ) -> Result<CustomerExport> {
        let now = self.parts.clock.now();
        self.spend_export_budget(principal.admin.id, now).await?;
        let audit = NewAudit::by(principal, AuditAction::ExportCustomerData, now, client)
            .about(customer_id);
        self.store
            .export_customer(customer_id, now, page, Some(audit))
            .await?
            .ok_or(Error::NotFound)
    }
}
