//! Every rate limit of the service, in one place: what is counted ([`LimitKey`]), how much is
//! allowed ([`Rule`]), and the one port that checks and records atomically ([`Limiter`]).
//!
//! A limited operation *reserves* before it does the expensive or sensitive part (hashing a
//! password, looking a token up): the reservation counts the attempt and refuses it when the
//! budget is spent, in one step that holds under concurrency and across replicas. Operations
//! whose success should not count (a correct password, a valid reset link) give their
//! reservation back afterwards.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{Result, kernel::client::ClientInfo};

/// Whose password a sign-in checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    Customer,
    Admin,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Admin => "admin",
        }
    }
}

/// The client address a limit counts by. Requests whose address is unknown (no peer address
/// reached the server) share one bucket, so they are limited too.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey(String);

impl ClientKey {
    /// The client's address, IPv6 narrowed to its /64: one subscriber (a home line, a cloud
    /// machine) holds a whole /64 and could otherwise rotate through it for fresh budgets.
    pub fn of(client: &ClientInfo) -> Self {
        match client.ip {
            None => Self("unknown".to_owned()),
            Some(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(v4.to_string()),
                None => {
                    let s = v6.segments();
                    let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                    Self(format!("{net}/64"))
                }
            },
            Some(v4) => Self(v4.to_string()),
        }
    }
}

/// The network a client's address belongs to: its IPv4 /24 or IPv6 /48 by default (as wide as
/// the store's settings say). A home line, an office or a mobile carrier's pool of addresses is
/// one network; an attacker's rented addresses are usually others.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NetworkKey(String);

impl NetworkKey {
    /// The network of `client`'s address: its first `v4_prefix` bits (IPv4, and IPv4 mapped
    /// into IPv6) or `v6_prefix` bits (IPv6). Clients without an address share one network.
    pub fn of(client: &ClientInfo, v4_prefix: u8, v6_prefix: u8) -> Self {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let v4 = |a: Ipv4Addr| {
            let bits = v4_prefix.min(32);
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            format!("{}/{bits}", Ipv4Addr::from(u32::from(a) & mask))
        };
        match client.ip {
            None => Self("unknown".to_owned()),
            Some(IpAddr::V4(a)) => Self(v4(a)),
            Some(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
                Some(mapped) => Self(v4(mapped)),
                None => {
                    let bits = v6_prefix.min(128);
                    let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
                    Self(format!("{}/{bits}", Ipv6Addr::from(u128::from(a) & mask)))
                }
            },
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What one limit counts. Each variant is one budget; the storage key is built here and
/// nowhere else.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// `requestPasswordReset` by the (normalised) address asked for, known or not.
    ResetRequestByEmail(String),
    ResetRequestByIp(ClientKey),
    /// The admin's "Reset Password" for one customer.
    ResetRequestByCustomer(Uuid),
    /// An emailed link that is not valid, by client: reset links, email-change confirmations
    /// and cancellations, and admin invitations share this one budget.
    InvalidLinkByIp(ClientKey),
    /// Wrong passwords from one client, over every password-checking operation of one kind of
    /// principal (storefront guesses do not lock admins out of the console).
    SignInByIp(PrincipalKind, ClientKey),
    /// Password checks of one sign-in name (email or username), whether or not such an
    /// account exists, so the answer looks the same for both.
    SignInByAccount(PrincipalKind, String),
    /// Wrong passwords for one customer's sign-in name from one network: the customer's
    /// lockout, which stops guesses from that network only (so an attacker's networks cannot
    /// lock the customer out of theirs).
    SignInByAccountFrom(PrincipalKind, String, NetworkKey),
    /// Wrong passwords from one network over every name: a signal (it never refuses) that
    /// turns the proof-of-work challenge on for the network.
    SignInFailuresFrom(PrincipalKind, NetworkKey),
    /// A solved proof-of-work challenge, by its challenge: each is accepted once.
    SpentWorkChallenge(String),
    /// The mail to the customer whose sign-in name (normalised address) is under attack, its
    /// unlock link: once a window, counted for names with and without an account alike.
    LockoutMailFor(String),
    /// Successful sign-ins of one account (sessions minted).
    SignInsOf(PrincipalKind, Uuid),
    /// `createCustomer` by client.
    RegistrationByIp(ClientKey),
    /// `requestCustomerEmailChange` by customer (each sends two messages).
    EmailChangeByCustomer(Uuid),
    /// `requestCustomerEmailChange` by client: each mails an address nobody has confirmed,
    /// so many accounts of one client cannot add up to a mailing list.
    EmailChangeByIp(ClientKey),
    /// The console's "Forgot your password?" by the username asked for, known or not.
    AdminResetByUsername(String),
    AdminResetByIp(ClientKey),
    /// Wrong one-time codes typed for one address (normalised, known or not), over all its
    /// flows and all clients.
    WrongCodesByEmail(String),
    /// Wrong second-factor codes typed for one admin, over every sign-in challenge: a short
    /// window, and a day.
    WrongFactorCodesOf(Uuid),
    WrongFactorCodesPerDayOf(Uuid),
    /// `customerDataExport` by whoever asks (a customer's id, or an admin's): each reads
    /// everything stored about a customer.
    DataExportBy(Uuid),
}

impl LimitKey {
    /// The key as stored with each recorded event.
    pub fn storage_key(&self) -> String {
        match self {
            Self::ResetRequestByEmail(email) => format!("reset:email:{email}"),
            Self::ResetRequestByIp(ip) => format!("reset:ip:{}", ip.0),
            Self::ResetRequestByCustomer(id) => format!("reset:customer:{id}"),
            // Named before it covered every kind of link: kept, so a rolling upgrade keeps
            // one count.
            Self::InvalidLinkByIp(ip) => format!("reset-failure:ip:{}", ip.0),
            Self::SignInByIp(kind, ip) => format!("sign-in:ip:{}:{}", kind.as_str(), ip.0),
            Self::SignInByAccount(kind, login) => format!("sign-in:{}:{login}", kind.as_str()),
            Self::SignInByAccountFrom(kind, login, net) => {
                format!("{}{}", Self::networks_of(*kind, login), net.0)
            }
            Self::SignInFailuresFrom(kind, net) => {
                format!("sign-in:network:{}:{}", kind.as_str(), net.0)
            }
            Self::SpentWorkChallenge(challenge) => format!("work:{challenge}"),
            Self::LockoutMailFor(email) => format!("lockout-mail:{email}"),
            Self::SignInsOf(kind, id) => format!("sign-ins:{}:{id}", kind.as_str()),
            Self::RegistrationByIp(ip) => format!("registration:ip:{}", ip.0),
            Self::EmailChangeByCustomer(id) => format!("email-change:customer:{id}"),
            Self::EmailChangeByIp(ip) => format!("email-change:ip:{}", ip.0),
            Self::AdminResetByUsername(name) => format!("admin-reset:username:{name}"),
            Self::AdminResetByIp(ip) => format!("admin-reset:ip:{}", ip.0),
            Self::DataExportBy(id) => format!("data-export:{id}"),
            Self::WrongCodesByEmail(email) => format!("code-failure:email:{email}"),
            Self::WrongFactorCodesOf(id) => format!("factor-failure:{id}"),
            Self::WrongFactorCodesPerDayOf(id) => format!("factor-failure:day:{id}"),
        }
    }

    /// What every [`Self::SignInByAccountFrom`] key of one name starts with (no name has a
    /// space: addresses and usernames are parsed without one), so all its networks' lockouts
    /// can be cleared together.
    pub fn networks_of(kind: PrincipalKind, login: &str) -> String {
        format!("sign-in:{}:{login} from ", kind.as_str())
    }

    /// A stable 64-bit id of the key, the same on every replica (PostgreSQL advisory locks).
    pub fn lock_id(&self) -> i64 {
        let digest = Sha256::digest(self.storage_key().as_bytes());
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(bytes)
    }
}

/// How much one key allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Events allowed within `window`; 0 means no count cap (only `min_interval` applies).
    pub max: u32,
    pub window: Duration,
    /// Minimum time between two events of the key; zero means none.
    pub min_interval: Duration,
}

impl Rule {
    pub fn per(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            min_interval: Duration::zero(),
        }
    }

    /// How long a recorded event matters to this rule.
    pub fn retention(&self) -> Duration {
        self.window.max(self.min_interval)
    }
}

/// One key under its rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub key: LimitKey,
    pub rule: Rule,
    /// The event stays *in flight* until the reservation is kept or released with
    /// [`Limiter::keep`]/[`Limiter::release`]: a refusal caused only by in-flight events says
    /// so ([`Refused::in_flight`]), and the caller may wait for them to settle.
    pub in_flight: bool,
}

impl Check {
    pub fn new(key: LimitKey, rule: Rule) -> Self {
        Self {
            key,
            rule,
            in_flight: false,
        }
    }

    /// A check whose event counts as in flight until it is kept or released (a password that
    /// is still being checked: it may turn out right and give its place back).
    pub fn in_flight(key: LimitKey, rule: Rule) -> Self {
        Self {
            in_flight: true,
            ..Self::new(key, rule)
        }
    }
}

/// Invalid emailed links (of every kind) allowed per client IP within [`FAILURE_WINDOW`].
pub const MAX_INVALID_LINKS: u32 = 10;
pub const FAILURE_WINDOW: Duration = Duration::minutes(15);

/// How long an in-flight event can stay unsettled before it counts as kept (a process that
/// stopped between reserving and settling never settles its events).
pub const IN_FLIGHT_FOR_AT_MOST: Duration = Duration::seconds(60);

/// Earlier events of one key that still count under its rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyHistory {
    pub count: u32,
    /// Of `count`, the events still in flight (reserved, not yet kept or released).
    pub in_flight: u32,
    pub oldest: Option<DateTime<Utc>>,
    pub latest: Option<DateTime<Utc>>,
}

/// Why a reservation was refused: the first check (in the order given) that tripped, and how
/// long until the whole reservation would be allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub key: LimitKey,
    pub retry_after_seconds: u64,
    /// True when the refusal is caused only by events still in flight: once they settle (a
    /// correct password gives its place back) the same reservation may pass.
    pub in_flight: bool,
}

/// Why a reservation did not pass: refused by a limit, or the limiter could not answer.
/// `?` turns a refusal into `RATE_LIMITED` (with its retry-after) where that is the answer;
/// callers that answer otherwise (a sign-in name's budget answers as a wrong password) match.
#[derive(Debug)]
pub enum LimitError {
    Refused(Refused),
    Failed(crate::Error),
}

impl From<crate::Error> for LimitError {
    fn from(e: crate::Error) -> Self {
        Self::Failed(e)
    }
}

impl From<LimitError> for crate::Error {
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::Refused(r) => Self::RateLimited {
                retry_after_seconds: r.retry_after_seconds,
            },
            LimitError::Failed(e) => e,
        }
    }
}

/// Events recorded by a granted reservation; give them back with [`Limiter::release`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "a reservation is either kept (the attempt counts) or released"]
pub struct Reservation {
    pub event_ids: Vec<Uuid>,
    /// The keys of the in-flight events (whose waiters a settlement wakes); empty when no
    /// check was in flight.
    pub keys: Vec<LimitKey>,
}

impl Reservation {
    /// Some events were recorded in flight: keep the reservation with [`Limiter::keep`].
    pub fn in_flight(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Keeps a reservation without in-flight events: the attempt counts. Says so at the call
    /// site. (One with in-flight events is kept with [`Limiter::keep`].)
    pub fn keep(self) {
        debug_assert!(
            !self.in_flight(),
            "keep in-flight events with Limiter::keep"
        );
    }
}

/// The decision for one reservation, from each check's history (same order as `checks`).
pub fn decide(
    checks: &[Check],
    histories: &[KeyHistory],
    now: DateTime<Utc>,
) -> std::result::Result<(), Refused> {
    let mut wait = Duration::zero();
    let mut first: Option<&LimitKey> = None;
    let mut settled_refuses = false;
    for (check, h) in checks.iter().zip(histories) {
        let mut this = Duration::zero();
        let mut settled_trips = false;
        // A concurrent request may have recorded a little after this one's `now`: such an
        // event is "just now", never "in the future".
        if let Some(latest) = h
            .latest
            .filter(|_| check.rule.min_interval > Duration::zero())
        {
            let since = (now - latest).max(Duration::zero());
            if since < check.rule.min_interval {
                this = this.max(check.rule.min_interval - since);
                settled_trips = true;
            }
        }
        if let Some(oldest) = h
            .oldest
            .filter(|_| check.rule.max > 0 && h.count >= check.rule.max)
        {
            let window_left = oldest + check.rule.window - now;
            if window_left > Duration::zero() {
                this = this.max(window_left);
                settled_trips |= h.count.saturating_sub(h.in_flight) >= check.rule.max;
            }
        }
        if this > Duration::zero() {
            first.get_or_insert(&check.key);
            wait = wait.max(this);
            settled_refuses |= settled_trips;
        }
    }
    match first {
        None => Ok(()),
        Some(key) => {
            // Round up: retrying after the given seconds must succeed.
            let secs = wait.num_seconds() + i64::from(wait.subsec_nanos() > 0);
            Err(Refused {
                key: key.clone(),
                retry_after_seconds: u64::try_from(secs.max(1)).unwrap_or(1),
                in_flight: !settled_refuses,
            })
        }
    }
}

/// Decisions for reservations made together (group commit), in arrival order. `stored` holds
/// each key's history as stored before the batch, by [`LimitKey::storage_key`]; each
/// reservation also sees the ones accepted before it in the batch (recorded at `now`), so a
/// batch decides exactly as the same reservations one after another would.
pub fn decide_in_order(
    batch: &[&[Check]],
    stored: &std::collections::HashMap<String, KeyHistory>,
    now: DateTime<Utc>,
) -> Vec<std::result::Result<(), Refused>> {
    let mut seen = stored.clone();
    batch
        .iter()
        .map(|checks| {
            let keys: Vec<String> = checks.iter().map(|c| c.key.storage_key()).collect();
            let histories: Vec<KeyHistory> = keys
                .iter()
                .map(|k| seen.get(k).cloned().unwrap_or_default())
                .collect();
            let decision = decide(checks, &histories, now);
            if decision.is_ok() {
                for key in keys {
                    let h = seen.entry(key).or_default();
                    h.count = h.count.saturating_add(1);
                    h.oldest = Some(h.oldest.map_or(now, |o| o.min(now)));
                    h.latest = Some(h.latest.map_or(now, |l| l.max(now)));
                }
            }
            decision
        })
        .collect()
}

/// Counting with check-and-record in one atomic step, exact across replicas.
#[async_trait]
pub trait Limiter: Send + Sync {
    /// Records one event for every check if all of them allow one more, else records nothing.
    async fn reserve(
        &self,
        checks: &[Check],
        now: DateTime<Utc>,
    ) -> std::result::Result<Reservation, LimitError>;

    /// Gives a reservation back: its events stop counting.
    async fn release(&self, reservation: Reservation) -> Result<()>;

    /// Keeps a reservation: its in-flight events settle and count from now on as any other.
    async fn keep(&self, reservation: Reservation) -> Result<()>;

    /// Waits until an in-flight event of `key` may have settled, or `at_most` has passed
    /// (settlements on other replicas are seen only then).
    async fn settled(&self, key: &LimitKey, at_most: std::time::Duration);

    /// Forgets every event of `key` (a correct password clears the failures of its account).
    async fn clear(&self, key: &LimitKey) -> Result<()>;

    /// Forgets every event of every key whose storage key starts with `prefix` (all the
    /// networks' lockouts of one name, [`LimitKey::networks_of`]).
    async fn clear_prefixed(&self, prefix: &str) -> Result<()>;

    /// The history of each check's key under its rule (same order), recording nothing: how
    /// close a key is to a threshold that does not refuse but changes what is asked.
    async fn histories(&self, checks: &[Check], now: DateTime<Utc>) -> Result<Vec<KeyHistory>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> ClientKey {
        ClientKey(s.to_owned())
    }

    #[test]
    fn keys_are_distinct_per_budget_and_stable() {
        let keys = [
            LimitKey::ResetRequestByEmail("a@example.com".into()),
            LimitKey::ResetRequestByIp(ip("1.2.3.4")),
            LimitKey::InvalidLinkByIp(ip("1.2.3.4")),
            LimitKey::SignInByIp(PrincipalKind::Customer, ip("1.2.3.4")),
            LimitKey::SignInByIp(PrincipalKind::Admin, ip("1.2.3.4")),
            LimitKey::SignInByAccount(PrincipalKind::Customer, "a@example.com".into()),
            LimitKey::SignInByAccount(PrincipalKind::Admin, "a@example.com".into()),
            LimitKey::RegistrationByIp(ip("1.2.3.4")),
        ];
        let stored: std::collections::HashSet<_> = keys.iter().map(|k| k.storage_key()).collect();
        assert_eq!(stored.len(), keys.len());
        assert_eq!(keys[1].lock_id(), keys[1].clone().lock_id());
        assert_ne!(keys[1].lock_id(), keys[2].lock_id());
        // Keys written by earlier versions keep counting after an upgrade.
        assert_eq!(keys[1].storage_key(), "reset:ip:1.2.3.4");
        assert_eq!(keys[2].storage_key(), "reset-failure:ip:1.2.3.4");
    }

    #[test]
    fn networks_are_the_configured_prefix_of_the_address() {
        let net = |ip: &str, v4: u8, v6: u8| {
            NetworkKey::of(&ClientInfo::new(ip.parse().ok(), None), v4, v6).0
        };
        assert_eq!(net("203.0.113.77", 24, 48), "203.0.113.0/24");
        assert_eq!(net("203.0.113.77", 32, 48), "203.0.113.77/32");
        assert_eq!(net("203.0.113.77", 16, 48), "203.0.0.0/16");
        assert_eq!(net("::ffff:203.0.113.9", 24, 48), "203.0.113.0/24");
        assert_eq!(net("2001:db8:1:2:aaaa::1", 24, 48), "2001:db8:1::/48");
        assert_eq!(
            net("2001:db8:1:ffff::1", 24, 48),
            net("2001:db8:1::9", 24, 48)
        );
        assert_ne!(net("2001:db8:2::1", 24, 48), net("2001:db8:1::1", 24, 48));
        assert_eq!(net("2001:db8:1:2::1", 24, 64), "2001:db8:1:2::/64");
        assert_eq!(net("10.0.0.1", 0, 0), "0.0.0.0/0");
        assert_eq!(NetworkKey::of(&ClientInfo::default(), 24, 48).0, "unknown");
        // One name's lockouts from every network share a prefix no other name's key has.
        let a = LimitKey::SignInByAccountFrom(
            PrincipalKind::Customer,
            "a@x.example".into(),
            NetworkKey("1.2.3.0/24".into()),
        );
        let prefix = LimitKey::networks_of(PrincipalKind::Customer, "a@x.example");
        assert!(a.storage_key().starts_with(&prefix));
        assert!(
            !LimitKey::networks_of(PrincipalKind::Customer, "a@x.example.org").starts_with(&prefix)
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_and_mapped_v4_as_v4() {
        let key = |ip: &str| ClientKey::of(&ClientInfo::new(ip.parse().ok(), None)).0;
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff:1:2:3"), key("2001:db8:1:2::9"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("::ffff:203.0.113.9"), "203.0.113.9");
        assert_eq!(key("203.0.113.9"), "203.0.113.9");
        assert_eq!(ClientKey::of(&ClientInfo::default()).0, "unknown");
    }

    #[test]
    fn a_rule_caps_the_count_in_its_window_and_spaces_events() {
        let now = Utc::now();
        let rule = Rule {
            max: 5,
            window: Duration::hours(1),
            min_interval: Duration::minutes(10),
        };
        let check = [Check::new(
            LimitKey::SignInByIp(PrincipalKind::Customer, ip("x")),
            rule,
        )];
        assert_eq!(decide(&check, &[KeyHistory::default()], now), Ok(()));
        let recent = KeyHistory {
            count: 1,
            in_flight: 0,
            oldest: Some(now - Duration::minutes(4)),
            latest: Some(now - Duration::minutes(4)),
        };
        assert_eq!(
            decide(&check, &[recent], now)
                .unwrap_err()
                .retry_after_seconds,
            360
        );
        let full = KeyHistory {
            count: 5,
            in_flight: 0,
            oldest: Some(now - Duration::minutes(50)),
            latest: Some(now - Duration::minutes(20)),
        };
        assert_eq!(
            decide(&check, &[full], now)
                .unwrap_err()
                .retry_after_seconds,
            600
        );
        let unlimited = [Check::new(
            LimitKey::SignInByIp(PrincipalKind::Customer, ip("x")),
            Rule { max: 0, ..rule },
        )];
        let spaced = KeyHistory {
            latest: Some(now - Duration::minutes(20)),
            ..full
        };
        assert_eq!(decide(&unlimited, &[spaced], now), Ok(()));
    }

    #[test]
    fn an_event_recorded_just_after_this_requests_clock_does_not_refuse_it() {
        let now = Utc::now();
        let later = KeyHistory {
            count: 1,
            in_flight: 0,
            oldest: Some(now + Duration::milliseconds(3)),
            latest: Some(now + Duration::milliseconds(3)),
        };
        let per_hour = [Check::new(
            LimitKey::SignInByIp(PrincipalKind::Customer, ip("x")),
            Rule::per(100, Duration::hours(1)),
        )];
        assert_eq!(decide(&per_hour, &[later], now), Ok(()));
        let spaced = [Check::new(
            LimitKey::SignInByIp(PrincipalKind::Customer, ip("x")),
            Rule {
                min_interval: Duration::minutes(10),
                ..Rule::per(100, Duration::hours(1))
            },
        )];
        assert_eq!(
            decide(&spaced, &[later], now)
                .unwrap_err()
                .retry_after_seconds,
            600
        );
    }

    #[test]
    fn the_first_check_that_trips_is_named_and_the_longest_wait_given() {
        let now = Utc::now();
        let checks = [
            Check::new(
                LimitKey::SignInByIp(PrincipalKind::Customer, ip("x")),
                Rule::per(100, Duration::hours(1)),
            ),
            Check::new(
                LimitKey::SignInByAccount(PrincipalKind::Customer, "a".into()),
                Rule::per(2, Duration::minutes(10)),
            ),
        ];
        let open = KeyHistory::default();
        let spent = KeyHistory {
            count: 2,
            in_flight: 0,
            oldest: Some(now - Duration::minutes(1)),
            latest: Some(now),
        };
        let refused = decide(&checks, &[open, spent], now).unwrap_err();
        assert_eq!(refused.key, checks[1].key);
        assert_eq!(refused.retry_after_seconds, 540);
        assert!(!refused.in_flight);
    }

    #[test]
    fn a_refusal_caused_only_by_attempts_in_flight_says_so() {
        let now = Utc::now();
        let checks = [Check::in_flight(
            LimitKey::SignInByAccount(PrincipalKind::Customer, "a".into()),
            Rule::per(10, Duration::minutes(10)),
        )];
        let busy = |count, in_flight| KeyHistory {
            count,
            in_flight,
            oldest: Some(now - Duration::seconds(1)),
            latest: Some(now),
        };
        // Ten passwords still being checked: the eleventh may pass once they settle.
        assert!(decide(&checks, &[busy(10, 10)], now).unwrap_err().in_flight);
        assert!(decide(&checks, &[busy(12, 3)], now).unwrap_err().in_flight);
        // Ten settled failures refuse it whatever is in flight.
        assert!(!decide(&checks, &[busy(13, 3)], now).unwrap_err().in_flight);
        assert!(!decide(&checks, &[busy(10, 0)], now).unwrap_err().in_flight);
        // A spent minimum interval is never in flight.
        let spaced = [Check::in_flight(
            checks[0].key.clone(),
            Rule {
                min_interval: Duration::minutes(1),
                ..Rule::per(10, Duration::minutes(10))
            },
        )];
        assert!(!decide(&spaced, &[busy(1, 1)], now).unwrap_err().in_flight);
    }

    #[test]
    fn a_batch_decides_as_the_same_reservations_one_after_another() {
        let now = Utc::now();
        let rule = Rule {
            max: 2,
            window: Duration::hours(1),
            min_interval: Duration::zero(),
        };
        let by_ip = Check::new(LimitKey::ResetRequestByIp(ip("1.2.3.4")), rule);
        let by = |email: &str| {
            [
                by_ip.clone(),
                Check::new(LimitKey::ResetRequestByEmail(email.into()), rule),
            ]
        };
        let (a, b, c) = (by("a@x"), by("b@x"), by("c@x"));
        // One earlier request from this client is stored: two more fit, the third is refused.
        let stored = std::collections::HashMap::from([(
            by_ip.key.storage_key(),
            KeyHistory {
                count: 1,
                in_flight: 0,
                oldest: Some(now - Duration::minutes(30)),
                latest: Some(now - Duration::minutes(30)),
            },
        )]);
        let decisions = decide_in_order(&[&a, &b, &c], &stored, now);
        assert_eq!(decisions[0], Ok(()));
        assert_eq!(decisions[1].as_ref().unwrap_err().retry_after_seconds, 1800);
        assert!(decisions[2].is_err());
        // A refused reservation does not count: with room for one, the first and then the
        // second address's own spacing decide.
        let spaced = Rule {
            max: 0,
            window: Duration::hours(1),
            min_interval: Duration::minutes(10),
        };
        let twice = [Check::new(
            LimitKey::ResetRequestByEmail("a@x".into()),
            spaced,
        )];
        let other = [Check::new(
            LimitKey::ResetRequestByEmail("b@x".into()),
            spaced,
        )];
        let decisions = decide_in_order(
            &[&twice, &twice, &other],
            &std::collections::HashMap::new(),
            now,
        );
        assert_eq!(decisions[0], Ok(()));
        assert_eq!(decisions[1].as_ref().unwrap_err().retry_after_seconds, 600);
        assert_eq!(decisions[2], Ok(()));
    }
}
