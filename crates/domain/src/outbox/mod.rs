//! What goes into the outbox: the kinds of mail, a message to queue, and the signal that wakes
//! the mail worker after a commit.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::customer::Customer;

pub use crate::mail::MailLane;

/// What an outbox row is about; the mail worker renders it in the customer's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    PasswordReset,
    PasswordChanged,
    /// To the new address: the link that applies an email change.
    EmailChangeConfirm,
    /// To the old address: an email change was asked for; the link cancels it.
    EmailChangeNotice,
    /// To a new admin: the link to set their own password.
    AdminInvitation,
    /// The console's "Forgot your password?".
    AdminPasswordReset,
    /// To an admin whose password was just set (an invitation or a reset link used).
    AdminPasswordChanged,
    /// To the address a "this wasn't me" removed from the account: the account is frozen
    /// until the store has checked who owns it.
    AccountFrozen,
    /// After "this wasn't me" from a security mail: what was done, and the next step.
    AccountReported,
    /// A one-time code to sign in with, in the browser that asked.
    SignInCode,
    /// To an admin whose second factors another admin (or an operator) removed: every
    /// session ended, and the next sign-in enrols a factor again.
    AdminFactorsReset,
    /// A customer signed in with a password on the breached list: change it (with "this
    /// wasn't me").
    BreachedPassword,
    /// Many wrong passwords for a customer's name: what it means, an unlock link, and "this
    /// wasn't me".
    SignInLocked,
}

impl MailKind {
    pub const ALL: [Self; 13] = [
        Self::PasswordReset,
        Self::PasswordChanged,
        Self::EmailChangeConfirm,
        Self::EmailChangeNotice,
        Self::AdminInvitation,
        Self::AdminPasswordReset,
        Self::AccountFrozen,
        Self::AdminPasswordChanged,
        Self::AccountReported,
        Self::SignInCode,
        Self::AdminFactorsReset,
        Self::BreachedPassword,
        Self::SignInLocked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PasswordReset => "password_reset",
            Self::PasswordChanged => "password_changed",
            Self::EmailChangeConfirm => "email_change_confirm",
            Self::EmailChangeNotice => "email_change_notice",
            Self::AdminInvitation => "admin_invitation",
            Self::AdminPasswordReset => "admin_password_reset",
            Self::AccountFrozen => "account_frozen",
            Self::AdminPasswordChanged => "admin_password_changed",
            Self::AdminFactorsReset => "admin_factors_reset",
            Self::AccountReported => "account_reported",
            Self::SignInCode => "sign_in_code",
            Self::BreachedPassword => "breached_password",
            Self::SignInLocked => "sign_in_locked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A message to queue for a known customer (or an admin: no customer).
#[derive(Debug, Clone)]
pub struct NewMail {
    pub id: Uuid,
    pub kind: MailKind,
    pub customer_id: Option<Uuid>,
    /// The address stored on the account; for an email change's confirmation, the new one.
    pub recipient: String,
    pub locale: crate::customer::Locale,
    pub created_at: DateTime<Utc>,
    /// A link carrying a raw token, and until when it works: kept in the outbox row until the
    /// message is sent, then scrubbed.
    pub link: Option<(String, DateTime<Utc>)>,
}

impl NewMail {
    pub fn password_changed(customer: &Customer, now: DateTime<Utc>) -> Self {
        Self::to_customer(MailKind::PasswordChanged, customer, now)
    }

    pub fn breached_password(customer: &Customer, now: DateTime<Utc>) -> Self {
        Self::to_customer(MailKind::BreachedPassword, customer, now)
    }

    pub fn sign_in_locked(customer: &Customer, now: DateTime<Utc>) -> Self {
        Self::to_customer(MailKind::SignInLocked, customer, now)
    }

    pub fn account_reported(customer: &Customer, now: DateTime<Utc>) -> Self {
        Self::to_customer(MailKind::AccountReported, customer, now)
    }

    fn to_customer(kind: MailKind, customer: &Customer, now: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::now_v7(),
            kind,
            customer_id: Some(customer.id),
            recipient: customer.email.as_str().to_owned(),
            locale: customer.locale,
            created_at: now,
            link: None,
        }
    }
}

/// Wakes the mail worker after a commit that queued mail (it also polls).
pub trait MailSignal: Send + Sync {
    fn notify(&self);
}
