//! GraphQL types of the admin API.

use async_graphql::{Enum, ID, InputObject, SimpleObject};
use chrono::{DateTime, Utc};
use domain::{admin, settings};

use crate::types::{Customer, PasswordState};

/// An access token for the admin API. Send it as `Authorization: Bearer <token>`.
#[derive(SimpleObject)]
pub struct AdminToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    /// Set only by `completeAdminSignIn(rememberBrowser: true)` where the store offers it:
    /// this browser's grant to skip the second factor (never the password) until
    /// `deviceGrantExpiresAt`. Keep it on this device and send it with `startAdminSignIn`.
    pub device_grant: Option<String>,
    pub device_grant_expires_at: Option<DateTime<Utc>>,
}

impl From<domain::sign_in::IssuedToken> for AdminToken {
    fn from(issued: domain::sign_in::IssuedToken) -> Self {
        Self {
            token: issued.token,
            expires_at: issued.expires_at,
            device_grant: None,
            device_grant_expires_at: None,
        }
    }
}

/// The signed-in admin: who they are and what their role lets them do. Consoles show a control
/// only when its permission is listed.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Admin {
    pub id: ID,
    pub username: String,
    pub role: AdminRole,
    pub permissions: Vec<AdminPermission>,
    /// Where invitations go; admins made by `latchkey admin create` may have none.
    pub email: Option<String>,
    /// A disabled admin can neither sign in nor use a token.
    pub disabled: bool,
}

/// An admin's role; `permissions` lists what it allows.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum AdminRole {
    /// Everything: customers, bulk actions, settings, the audit log, admin users.
    Administrator,
    /// Customers: look up, send a reset link, Force Sign In.
    Support,
    /// Customers: look up only.
    Viewer,
}

impl From<admin::Role> for AdminRole {
    fn from(r: admin::Role) -> Self {
        match r {
            admin::Role::Administrator => Self::Administrator,
            admin::Role::Support => Self::Support,
            admin::Role::Viewer => Self::Viewer,
        }
    }
}

impl From<AdminRole> for admin::Role {
    fn from(r: AdminRole) -> Self {
        match r {
            AdminRole::Administrator => Self::Administrator,
            AdminRole::Support => Self::Support,
            AdminRole::Viewer => Self::Viewer,
        }
    }
}

/// What an admin role allows.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum AdminPermission {
    CustomersRead,
    CustomersResetPassword,
    CustomersRevokeTokens,
    SettingsRead,
    SettingsManage,
    AuditRead,
    /// Bulk actions and their jobs (with the single action's own permission).
    CustomersBulk,
    /// Deleting customer accounts.
    CustomersDelete,
    /// Admin users: list, invite, change role, disable, Force Sign In.
    AdminUsersManage,
    /// Recovering accounts frozen by "this wasn't me" (`adminRecoverCustomer`).
    CustomersRecover,
    /// `customerDataExport(customerId)`: everything stored about any customer.
    CustomersExport,
    /// Security-event subscriptions (the Integrations page).
    IntegrationsManage,
}

impl From<admin::Permission> for AdminPermission {
    fn from(p: admin::Permission) -> Self {
        match p {
            admin::Permission::CustomersRead => Self::CustomersRead,
            admin::Permission::CustomersResetPassword => Self::CustomersResetPassword,
            admin::Permission::CustomersRevokeTokens => Self::CustomersRevokeTokens,
            admin::Permission::SettingsRead => Self::SettingsRead,
            admin::Permission::SettingsManage => Self::SettingsManage,
            admin::Permission::AuditRead => Self::AuditRead,
            admin::Permission::CustomersBulk => Self::CustomersBulk,
            admin::Permission::CustomersDelete => Self::CustomersDelete,
            admin::Permission::AdminUsersManage => Self::AdminUsersManage,
            admin::Permission::CustomersRecover => Self::CustomersRecover,
            admin::Permission::CustomersExport => Self::CustomersExport,
            admin::Permission::IntegrationsManage => Self::IntegrationsManage,
        }
    }
}

impl From<&admin::AdminUser> for Admin {
    fn from(a: &admin::AdminUser) -> Self {
        Self {
            id: ID(a.id.to_string()),
            username: a.username.clone(),
            role: a.role.into(),
            permissions: a.role.permissions().iter().map(|&p| p.into()).collect(),
            email: a.email.clone(),
            disabled: a.disabled,
        }
    }
}

/// The result of Force Sign In.
#[derive(SimpleObject)]
pub struct RevokeCustomerTokensResult {
    /// How many live access tokens were revoked (0 for a customer who had none).
    pub revoked_count: i32,
}

/// The result of Force Sign In for an admin.
#[derive(SimpleObject)]
pub struct RevokeAdminTokensResult {
    /// How many live admin tokens were revoked.
    pub revoked_count: i32,
}

/// Which customers the grid shows (and a bulk action selects). Every field given narrows it.
#[derive(InputObject, Default)]
pub struct CustomerFilter {
    /// The email, first name or last name contains it, whatever its case or width
    /// (`ＴＡＮＡＫＡ` finds `tanaka`, `ﾀﾅｶ` finds `タナカ`); names match in either order
    /// ("taro tanaka", "tanaka taro"). Three characters or more match anywhere; one or two
    /// match the start of a word on PostgreSQL (a whole word for one character), anywhere
    /// on SQLite. At most 100 characters.
    pub search: Option<String>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    /// Only customers whose password is in this state (after an import: who still has a
    /// legacy hash, who has none yet).
    pub password_state: Option<PasswordState>,
    /// Only the customer with this id on the platform they were imported from.
    pub external_id: Option<String>,
    /// Locked out of sign-in now (`true`), or not (`false`).
    pub locked: Option<bool>,
    /// Has a live session now (`true`), or none (`false`).
    pub signed_in: Option<bool>,
    /// The newest reset email was requested at or after this time.
    pub last_reset_from: Option<DateTime<Utc>>,
    /// The newest reset email was requested at or before this time.
    pub last_reset_to: Option<DateTime<Utc>>,
}

impl CustomerFilter {
    pub fn into_domain(self) -> Result<domain::admin::CustomerFilter, domain::Error> {
        Ok(domain::admin::CustomerFilter {
            search: self
                .search
                .as_deref()
                .map(domain::search::Search::parse)
                .transpose()?
                .flatten(),
            created_from: self.created_from,
            created_to: self.created_to,
            password_state: self.password_state.map(Into::into),
            external_id: self.external_id,
            locked: self.locked,
            signed_in: self.signed_in,
            last_reset_from: self.last_reset_from,
            last_reset_to: self.last_reset_to,
        })
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum CustomerSortField {
    CreatedAt,
    Email,
    Name,
}

impl From<CustomerSortField> for admin::CustomerSortField {
    fn from(f: CustomerSortField) -> Self {
        match f {
            CustomerSortField::CreatedAt => Self::CreatedAt,
            CustomerSortField::Email => Self::Email,
            CustomerSortField::Name => Self::Name,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum SortDirection {
    Asc,
    Desc,
}

/// Default: newest first.
#[derive(InputObject)]
pub struct CustomerSort {
    pub field: CustomerSortField,
    #[graphql(default_with = "SortDirection::Asc")]
    pub direction: SortDirection,
}

#[derive(SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    /// Pass as `after` to get the next page.
    pub end_cursor: Option<String>,
}

#[derive(SimpleObject)]
pub struct CustomerEdge {
    pub cursor: String,
    pub node: Customer,
}

#[derive(SimpleObject)]
pub struct CustomerConnection {
    pub edges: Vec<CustomerEdge>,
    pub page_info: PageInfo,
    /// Customers matching the filter, on all pages: exact up to 1,000, an estimate above
    /// (then `totalCountIsEstimate` is true).
    pub total_count: i32,
    /// `totalCount` is an estimate: more than 1,000 customers match. PostgreSQL's comes
    /// from its planner's statistics, SQLite's from the share of an even sample of 2,000 customers that
    /// match.
    pub total_count_is_estimate: bool,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum ResetRequestLimitMethod {
    ByIpAndEmail,
    ByIp,
    ByEmail,
    Off,
}

impl From<settings::LimitMethod> for ResetRequestLimitMethod {
    fn from(m: settings::LimitMethod) -> Self {
        match m {
            settings::LimitMethod::ByIpAndEmail => Self::ByIpAndEmail,
            settings::LimitMethod::ByIp => Self::ByIp,
            settings::LimitMethod::ByEmail => Self::ByEmail,
            settings::LimitMethod::Off => Self::Off,
        }
    }
}

impl From<ResetRequestLimitMethod> for settings::LimitMethod {
    fn from(m: ResetRequestLimitMethod) -> Self {
        match m {
            ResetRequestLimitMethod::ByIpAndEmail => Self::ByIpAndEmail,
            ResetRequestLimitMethod::ByIp => Self::ByIp,
            ResetRequestLimitMethod::ByEmail => Self::ByEmail,
            ResetRequestLimitMethod::Off => Self::Off,
        }
    }
}

/// The password, reset and session settings.
#[derive(SimpleObject)]
pub struct PasswordSettings {
    pub reset_link_lifetime_hours: i32,
    pub reset_request_limit_method: ResetRequestLimitMethod,
    /// 0: no hourly cap.
    pub max_reset_requests_per_hour: i32,
    pub min_seconds_between_reset_requests: i32,
    pub min_password_length: i32,
    /// Of lower case, upper case, digits, other: 0–4.
    pub required_character_classes: i32,
    /// Whether passwords may contain spaces (the hardened profile turns this on).
    pub allow_whitespace: bool,
    /// The least zxcvbn strength score (0–4) a new password must reach; 1 by default (more
    /// than about a thousand guesses), 3 in the hardened profile, 0 turns the estimate off.
    /// Breached passwords are refused whatever this says.
    pub min_password_score: i32,
    /// Failed sign-ins within `lockoutMinutes` that lock a sign-in name (1–100; lockout cannot
    /// be turned off). A customer's name is locked from the network the failures came from
    /// only (see `lockoutNetworkPrefixV4`); an admin's from everywhere. Concurrent attempts
    /// count before their password is checked, so a burst of guesses gets this many checks
    /// and no more.
    pub lockout_failures: i32,
    pub lockout_minutes: i32,
    pub customer_token_lifetime_minutes: i32,
    pub admin_token_lifetime_minutes: i32,
    /// Wrong passwords one client address may send per hour, over every account (sign-in,
    /// admin sign-in, current password on change); then RATE_LIMITED. Correct ones are free.
    pub max_failed_sign_ins_per_ip_per_hour: i32,
    /// `createCustomer` calls one client address may make per hour; then RATE_LIMITED.
    pub max_registrations_per_ip_per_hour: i32,
    /// Storefront reset mails carry a link (admins' "Reset Password" and bulk resets always
    /// do). At least one of `resetByLink` and `resetByCode` is on.
    pub reset_by_link: bool,
    /// The storefront may reset by a code typed in the browser that asked
    /// (`requestPasswordResetCode`, `resetPasswordWithCode`).
    pub reset_by_code: bool,
    /// How long a mailed code works, for a reset or a sign-in (1–60 minutes; 15 by
    /// default).
    pub reset_code_lifetime_minutes: i32,
    /// Customers may sign in with a mailed one-time code, typed in the browser that asked,
    /// instead of their password (`requestSignInCode`, `signInWithCode`); off by default.
    pub sign_in_by_code: bool,
    /// "Remember this browser" for admins: how many days a browser may skip the second factor
    /// after one (never the password); 0 to 30, 0 (the default) offers no such grant.
    pub remember_browser_days: i32,
    /// The leading bits of an IPv4 address that make one network for a customer's lockout
    /// (8–32; 24 by default): wrong passwords from one network lock the name from that network
    /// only.
    pub lockout_network_prefix_v4: i32,
    /// The same for IPv6 (16–64; 48 by default: one subscriber holds a whole /64).
    pub lockout_network_prefix_v6: i32,
    /// Wrong passwords for one sign-in name, from any network, within an hour that make
    /// sign-in and "Forgot Your Password?" for that name ask for a solved proof-of-work
    /// challenge (CHALLENGE_REQUIRED) first; 0 never does. 10 by default.
    pub challenge_after_name_failures: i32,
    /// Wrong passwords from one network, over every name, within an hour that make sign-in,
    /// "Forgot Your Password?" and registration from that network ask for a solved challenge
    /// first; 0 never does. 20 by default.
    pub challenge_after_network_failures: i32,
    /// The challenge's work: its secret number lies in 0..challengeMaxNumber (1,000 to
    /// 10,000,000; 100,000 by default), so a client hashes half of that on average.
    pub challenge_max_number: i32,
    /// What a customer's right password that is on the breached list does at sign-in.
    pub breached_password_sign_in: BreachedPasswordSignIn,
}

/// What a customer's right password that is on the breached list (the one that refuses it as
/// a new password) does at sign-in.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "settings::BreachedPasswordSignIn")]
pub enum BreachedPasswordSignIn {
    /// Signs in; `passwordChangeRequired` is true on the token and on `customer` until a new
    /// password is set, and the customer is mailed the first time (the default).
    Flag,
    /// Refused exactly as a wrong password is (AUTHENTICATION_FAILED: a credential-stuffing
    /// list learns nothing), and a reset link is mailed (within the reset request limits).
    Refuse,
}

fn int(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl From<settings::Settings> for PasswordSettings {
    fn from(s: settings::Settings) -> Self {
        Self {
            reset_link_lifetime_hours: int(s.reset.link_lifetime.num_hours()),
            reset_request_limit_method: s.reset.limit.method.into(),
            max_reset_requests_per_hour: int(i64::from(s.reset.limit.max_per_hour)),
            min_seconds_between_reset_requests: int(s.reset.limit.min_interval.num_seconds()),
            min_password_length: int(i64::from(s.password.min_length)),
            required_character_classes: i32::from(s.password.required_character_classes),
            allow_whitespace: s.password.allow_whitespace,
            min_password_score: i32::from(s.password.min_score),
            lockout_failures: int(i64::from(s.lockout.failures)),
            lockout_minutes: int(s.lockout.duration.num_minutes()),
            customer_token_lifetime_minutes: int(s.customer_token_lifetime.num_minutes()),
            admin_token_lifetime_minutes: int(s.admin_token_lifetime.num_minutes()),
            max_failed_sign_ins_per_ip_per_hour: int(i64::from(
                s.clients.failed_sign_ins_per_ip_per_hour,
            )),
            max_registrations_per_ip_per_hour: int(i64::from(
                s.clients.registrations_per_ip_per_hour,
            )),
            reset_by_link: s.reset.by_link,
            reset_by_code: s.reset.by_code,
            reset_code_lifetime_minutes: int(s.reset.code_lifetime.num_minutes()),
            sign_in_by_code: s.sign_in_by_code,
            remember_browser_days: int(s.remember_browser.num_days()),
            lockout_network_prefix_v4: i32::from(s.attack.network_v4_prefix),
            lockout_network_prefix_v6: i32::from(s.attack.network_v6_prefix),
            challenge_after_name_failures: int(i64::from(s.attack.challenge_after_name_failures)),
            challenge_after_network_failures: int(i64::from(
                s.attack.challenge_after_network_failures,
            )),
            challenge_max_number: int(i64::from(s.attack.challenge_max_number)),
            breached_password_sign_in: s.breached_password.into(),
        }
    }
}

/// Fields left out keep their value. Out-of-range values → BAD_USER_INPUT, nothing changed.
#[derive(InputObject, Default)]
pub struct PasswordSettingsInput {
    pub reset_link_lifetime_hours: Option<i32>,
    pub reset_request_limit_method: Option<ResetRequestLimitMethod>,
    pub max_reset_requests_per_hour: Option<i32>,
    pub min_seconds_between_reset_requests: Option<i32>,
    pub min_password_length: Option<i32>,
    pub required_character_classes: Option<i32>,
    pub allow_whitespace: Option<bool>,
    pub min_password_score: Option<i32>,
    pub lockout_failures: Option<i32>,
    pub lockout_minutes: Option<i32>,
    pub customer_token_lifetime_minutes: Option<i32>,
    pub admin_token_lifetime_minutes: Option<i32>,
    pub max_failed_sign_ins_per_ip_per_hour: Option<i32>,
    pub max_registrations_per_ip_per_hour: Option<i32>,
    pub reset_by_link: Option<bool>,
    pub reset_by_code: Option<bool>,
    pub reset_code_lifetime_minutes: Option<i32>,
    pub sign_in_by_code: Option<bool>,
    pub remember_browser_days: Option<i32>,
    pub lockout_network_prefix_v4: Option<i32>,
    pub lockout_network_prefix_v6: Option<i32>,
    pub challenge_after_name_failures: Option<i32>,
    pub challenge_after_network_failures: Option<i32>,
    pub challenge_max_number: Option<i32>,
    pub breached_password_sign_in: Option<BreachedPasswordSignIn>,
}

impl From<PasswordSettingsInput> for domain::admin::SettingsUpdate {
    fn from(i: PasswordSettingsInput) -> Self {
        let wide = |v: Option<i32>| v.map(i64::from);
        Self {
            reset_link_lifetime_hours: wide(i.reset_link_lifetime_hours),
            reset_request_limit_method: i.reset_request_limit_method.map(Into::into),
            max_reset_requests_per_hour: wide(i.max_reset_requests_per_hour),
            min_seconds_between_reset_requests: wide(i.min_seconds_between_reset_requests),
            min_password_length: wide(i.min_password_length),
            required_character_classes: wide(i.required_character_classes),
            allow_whitespace: i.allow_whitespace,
            min_password_score: wide(i.min_password_score),
            lockout_failures: wide(i.lockout_failures),
            lockout_minutes: wide(i.lockout_minutes),
            customer_token_lifetime_minutes: wide(i.customer_token_lifetime_minutes),
            admin_token_lifetime_minutes: wide(i.admin_token_lifetime_minutes),
            max_failed_sign_ins_per_ip_per_hour: wide(i.max_failed_sign_ins_per_ip_per_hour),
            max_registrations_per_ip_per_hour: wide(i.max_registrations_per_ip_per_hour),
            reset_by_link: i.reset_by_link,
            reset_by_code: i.reset_by_code,
            reset_code_lifetime_minutes: wide(i.reset_code_lifetime_minutes),
            sign_in_by_code: i.sign_in_by_code,
            remember_browser_days: wide(i.remember_browser_days),
            lockout_network_prefix_v4: wide(i.lockout_network_prefix_v4),
            lockout_network_prefix_v6: wide(i.lockout_network_prefix_v6),
            challenge_after_name_failures: wide(i.challenge_after_name_failures),
            challenge_after_network_failures: wide(i.challenge_after_network_failures),
            challenge_max_number: wide(i.challenge_max_number),
            breached_password_sign_in: i.breached_password_sign_in.map(Into::into),
        }
    }
}

/// What an audit entry records.
// The domain's audit actions, one for one: `remote` derives the conversions both ways.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "admin::AuditAction")]
pub enum AuditAction {
    AdminResetPassword,
    RevokeCustomerTokens,
    UpdatePasswordSettings,
    ImportCustomers,
    /// A bulk job started; `detail` names the job, the action and the count.
    StartBulkAction,
    CancelBulkJob,
    /// An admin deleted the customer; the entry keeps only the id.
    DeleteCustomer,
    /// The customer deleted their own account; the actor is `customer`.
    DeleteOwnAccount,
    /// Admin users; `detail` names the admin's id and what changed.
    CreateAdminUser,
    UpdateAdminUser,
    RevokeAdminTokens,
    /// An admin exported the customer's data (`customerDataExport(customerId)`).
    ExportCustomerData,
    /// An admin recovered an account frozen by "this wasn't me"; `detail` says whether it
    /// kept its address or moved to one the admin chose.
    RecoverCustomer,
    /// The address a frozen account had moved to gave it back to the address from before
    /// (`releaseCustomerAccount`); the actor is `customer`.
    ReleaseFrozenAccount,
    /// "This wasn't me" from a security mail signed the customer out everywhere and voided
    /// the password; the actor is `customer`.
    ReportedNotMe,
    /// The admin confirmed a second factor of their own; `detail` names the factor's id.
    EnrolAdminFactor,
    /// The admin removed a second factor of their own; `detail` names the factor's id.
    RemoveAdminFactor,
    /// The admin replaced their recovery codes with a new set.
    NewRecoveryCodes,
    /// Another admin's factors removed and sessions ended (`resetAdminFactors`, or an operator's
    /// `latchkey admin reset-2fa`); `detail` names that admin's id.
    ResetAdminFactors,
    /// The admin cleared the customer's sign-in lockout, from every network (`unlockCustomer`).
    UnlockCustomer,
    /// A security-event subscription created, changed, deleted, its secret rotated or its dead
    /// deliveries replayed; `detail` says which.
    ManageIntegration,
}

/// One admin action: who did what to which customer, when, from where.
#[derive(SimpleObject)]
pub struct AuditEntry {
    pub id: ID,
    pub at: DateTime<Utc>,
    /// The admin's username; for an import, the OS user and host that ran it (`os:user@host`).
    pub actor: String,
    pub action: AuditAction,
    pub customer_id: Option<ID>,
    pub client_ip: Option<String>,
    /// What an action over many customers did, e.g. an import's counts.
    pub detail: Option<String>,
}

impl From<admin::AuditEntry> for AuditEntry {
    fn from(e: admin::AuditEntry) -> Self {
        Self {
            id: ID(e.id.to_string()),
            at: e.at,
            actor: e.actor,
            action: e.action.into(),
            customer_id: e.customer_id.map(|id| ID(id.to_string())),
            client_ip: e.client_ip,
            detail: e.detail,
        }
    }
}

#[derive(SimpleObject)]
pub struct AuditEntryEdge {
    pub cursor: String,
    pub node: AuditEntry,
}

#[derive(SimpleObject)]
pub struct AuditEntryConnection {
    pub edges: Vec<AuditEntryEdge>,
    pub page_info: PageInfo,
    pub total_count: i32,
}

#[derive(InputObject, Default)]
pub struct AuditLogFilter {
    pub action: Option<AuditAction>,
    pub customer_id: Option<ID>,
}

/// A message not delivered yet: retrying with backoff, or dead-lettered (`DEAD`) after its
/// last attempt. The reset link is never shown.
#[derive(SimpleObject)]
pub struct UndeliveredMail {
    pub id: ID,
    /// Which worker sends it: INTERACTIVE (storefront and single admin actions) or BULK.
    pub lane: MailLane,
    /// `password_reset` or `password_changed`.
    pub kind: String,
    pub recipient: String,
    /// `PENDING`, `SENDING` or `DEAD`.
    pub status: String,
    pub attempts: i32,
    /// The SMTP server's last answer or the connection error.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    /// Seconds since it was queued. The list is oldest first, so the first entry's age is how
    /// far behind delivery is (also the metric `latchkey_mail_oldest_pending_seconds`).
    pub age_seconds: i64,
}

/// Which worker delivers a message: bulk jobs' mail never stands in front of the rest.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum MailLane {
    Interactive,
    Bulk,
}

impl From<domain::ports::MailLane> for MailLane {
    fn from(l: domain::ports::MailLane) -> Self {
        match l {
            domain::ports::MailLane::Interactive => Self::Interactive,
            domain::ports::MailLane::Bulk => Self::Bulk,
        }
    }
}

impl From<MailLane> for domain::ports::MailLane {
    fn from(l: MailLane) -> Self {
        match l {
            MailLane::Interactive => Self::Interactive,
            MailLane::Bulk => Self::Bulk,
        }
    }
}

impl UndeliveredMail {
    /// `m` as seen at `now` (its age).
    pub fn at(m: admin::UndeliveredMail, now: DateTime<Utc>) -> Self {
        Self {
            id: ID(m.id.to_string()),
            lane: m.lane.into(),
            kind: m.kind,
            recipient: m.recipient,
            status: m.status.to_ascii_uppercase(),
            attempts: i32::try_from(m.attempts).unwrap_or(i32::MAX),
            last_error: m.last_error,
            created_at: m.created_at,
            next_attempt_at: m.next_attempt_at,
            age_seconds: (now - m.created_at).num_seconds().max(0),
        }
    }
}
