//! The admin-editable settings, with the defaults of the Adobe Commerce admin guide.

pub mod source;

use chrono::Duration;

pub mod lockout;

use crate::password::PasswordPolicy;
use lockout::LockoutPolicy;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub password: PasswordPolicy,
    pub lockout: LockoutPolicy,
    pub reset: ResetPolicy,
    pub clients: ClientLimits,
    pub attack: AttackPolicy,
    /// What a right password that is on the breached list does at a customer's sign-in.
    pub breached_password: BreachedPasswordSignIn,
    pub customer_token_lifetime: Duration,
    pub admin_token_lifetime: Duration,
    /// Customers may sign in with a mailed one-time code instead of their password
    /// (`requestSignInCode`, `signInWithCode`); off by default.
    pub sign_in_by_code: bool,
    /// How long an admin's browser may skip the second factor after one ("Remember this
    /// browser"; never the password). Zero, the default: the store offers no such grant.
    pub remember_browser: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            password: PasswordPolicy::default(),
            lockout: LockoutPolicy::default(),
            reset: ResetPolicy::default(),
            clients: ClientLimits::default(),
            attack: AttackPolicy::default(),
            breached_password: BreachedPasswordSignIn::Flag,
            customer_token_lifetime: Duration::hours(1),
            admin_token_lifetime: Duration::hours(4),
            sign_in_by_code: false,
            remember_browser: Duration::zero(),
        }
    }
}

/// Password reset links and how often they may be requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetPolicy {
    /// How long an emailed link stays valid. Source documents: 24 hours.
    pub link_lifetime: Duration,
    pub limit: ResetLimit,
    /// Storefront reset mails carry a link (admins' and bulk resets always do).
    pub by_link: bool,
    /// The storefront may start a reset by code (`requestPasswordResetCode`).
    pub by_code: bool,
    /// How long a mailed code works (never longer than the link it stands beside).
    pub code_lifetime: Duration,
}

impl Default for ResetPolicy {
    fn default() -> Self {
        Self {
            link_lifetime: Duration::hours(24),
            limit: ResetLimit::default(),
            by_link: true,
            by_code: true,
            code_lifetime: Duration::minutes(15),
        }
    }
}

/// Which facts a reset request is counted by (Magento's "Password Reset Protection Type").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitMethod {
    /// Both the client IP and the email address are counted; either limit trips.
    ByIpAndEmail,
    ByIp,
    ByEmail,
    Off,
}

impl LimitMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ByIpAndEmail => "BY_IP_AND_EMAIL",
            Self::ByIp => "BY_IP",
            Self::ByEmail => "BY_EMAIL",
            Self::Off => "OFF",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "BY_IP_AND_EMAIL" => Some(Self::ByIpAndEmail),
            "BY_IP" => Some(Self::ByIp),
            "BY_EMAIL" => Some(Self::ByEmail),
            "OFF" => Some(Self::Off),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetLimit {
    pub method: LimitMethod,
    /// Requests per key within any hour; 0 means no hourly cap.
    pub max_per_hour: u32,
    /// Minimum time between two requests of one key; zero means none.
    pub min_interval: Duration,
}

impl Default for ResetLimit {
    fn default() -> Self {
        Self {
            method: LimitMethod::ByIpAndEmail,
            max_per_hour: 5,
            min_interval: Duration::minutes(10),
        }
    }
}

/// What one client address may do per hour, over every account (the per-account budget is the
/// lockout). Behind a proxy these count the address `LATCHKEY_TRUSTED_PROXIES` lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Wrong passwords (sign-in, admin sign-in, current password on change) per hour. A
    /// correct password does not count.
    pub failed_sign_ins_per_ip_per_hour: u32,
    /// `createCustomer` calls per hour, whatever their outcome after validation.
    pub registrations_per_ip_per_hour: u32,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            failed_sign_ins_per_ip_per_hour: 100,
            registrations_per_ip_per_hour: 30,
        }
    }
}

/// What a customer's right password that is on the breached list (the list that refuses it as a
/// new password) does at sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreachedPasswordSignIn {
    /// Signs in, and the customer is asked to change it (`passwordChangeRequired`, a notice
    /// mail the first time).
    Flag,
    /// Refused as a wrong password is (the answer tells a credential-stuffing list nothing),
    /// and a reset link is mailed.
    Refuse,
}

impl BreachedPasswordSignIn {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Flag => "FLAG",
            Self::Refuse => "REFUSE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "FLAG" => Some(Self::Flag),
            "REFUSE" => Some(Self::Refuse),
            _ => None,
        }
    }
}

/// How a store under attack answers: which addresses count as one network for the customers'
/// lockout, and when sign-in, "Forgot Your Password?" and registration ask for a solved
/// proof-of-work challenge first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttackPolicy {
    /// Leading bits of an IPv4 address that make one network (default 24).
    pub network_v4_prefix: u8,
    /// Leading bits of an IPv6 address that make one network (default 48).
    pub network_v6_prefix: u8,
    /// Wrong passwords for one sign-in name, from any network, within
    /// [`ATTACK_SIGNAL_WINDOW`] that turn the challenge on for that name; 0 never does.
    pub challenge_after_name_failures: u32,
    /// Wrong passwords from one network, over every name, within [`ATTACK_SIGNAL_WINDOW`] that
    /// turn the challenge on for that network; 0 never does.
    pub challenge_after_network_failures: u32,
    /// The challenge's work: the secret number lies in `0..=max_number`, so a client tries
    /// half of it on average (SHA-256 each).
    pub challenge_max_number: u32,
}

/// How long wrong passwords count towards turning the challenge on.
pub const ATTACK_SIGNAL_WINDOW: Duration = Duration::hours(1);

impl Default for AttackPolicy {
    fn default() -> Self {
        Self {
            network_v4_prefix: 24,
            network_v6_prefix: 48,
            challenge_after_name_failures: 10,
            challenge_after_network_failures: 20,
            challenge_max_number: 100_000,
        }
    }
}
