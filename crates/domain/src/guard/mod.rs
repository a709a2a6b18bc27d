//! Attack protection that cannot be aimed at a customer: the proof-of-work challenge a store
//! under attack asks for before it checks a password, mails a reset link or registers anyone.
//!
//! Wrong passwords are the signal. Sign-in counts them per name (over every network) and per
//! network (over every name) without refusing anything (`sign_in`); when either count within
//! [`ATTACK_SIGNAL_WINDOW`] reaches its threshold in the settings, `generateCustomerToken`
//! for that name, "Forgot Your Password?" for that address, and every one of the three from
//! that network must first carry a solved challenge. A customer's own browser solves it in a
//! moment; a bot pays for every guess. Names with and without an account count alike, so
//! whether the challenge is asked says nothing about whether an account exists.

pub mod work;

use std::sync::Arc;

use crate::{
    Error, Result,
    clock::Clock,
    kernel::{client::ClientInfo, sha256_hex},
    limits::{Check, LimitError, LimitKey, Limiter, NetworkKey, PrincipalKind, Rule},
    settings::{ATTACK_SIGNAL_WINDOW, Settings},
};
pub use work::{WORK_LIFETIME, WorkChallenge, WorkKey, WorkRejection};

/// Asks for, and accepts once, solved challenges while a name or a network is under attack.
pub struct AttackGuard {
    limiter: Arc<dyn Limiter>,
    clock: Arc<dyn Clock>,
    key: WorkKey,
    captcha: Option<Arc<dyn CaptchaVerifier>>,
}

/// A third-party CAPTCHA's verification (Turnstile, hCaptcha, reCAPTCHA: their `siteverify`),
/// for stores that already show one: its token may stand in for a solved challenge.
#[async_trait::async_trait]
pub trait CaptchaVerifier: Send + Sync {
    /// Whether the provider accepts `token`, sent by the client at `ip`. Anything but a clear
    /// yes (an error, a timeout, another answer) is no.
    async fn verify(&self, token: &str, ip: Option<std::net::IpAddr>) -> bool;
}

/// How long past its lifetime a spent solution is remembered (clocks of replicas differ).
const SPENT_MARGIN: chrono::Duration = chrono::Duration::minutes(5);

/// Longest CAPTCHA token sent on to its provider (Turnstile's are at most 2,048 characters).
const MAX_CAPTCHA_TOKEN: usize = 4096;

impl AttackGuard {
    pub fn new(limiter: Arc<dyn Limiter>, clock: Arc<dyn Clock>, key: WorkKey) -> Self {
        Self {
            limiter,
            clock,
            key,
            captcha: None,
        }
    }

    /// Accepts a third-party CAPTCHA's token (checked by `captcha`) where a solution is asked.
    pub fn with_captcha(mut self, captcha: Arc<dyn CaptchaVerifier>) -> Self {
        self.captcha = Some(captcha);
        self
    }

    /// Wrong passwords for `name` (a customer's normalised address) from every network within
    /// [`ATTACK_SIGNAL_WINDOW`], settled ones only.
    pub async fn name_failures(&self, name: &str) -> Result<u32> {
        let history = self
            .limiter
            .histories(&[name_signal(name, 0)], self.clock.now())
            .await?;
        Ok(history.first().map_or(0, failures))
    }

    /// What spends `payload` once, if it is a challenge issued for `scope` and solved, or
    /// (where the store verifies one) an accepted CAPTCHA token; why not otherwise.
    async fn proof(
        &self,
        payload: &str,
        scope: &str,
        client: &ClientInfo,
        now: chrono::DateTime<chrono::Utc>,
    ) -> std::result::Result<String, WorkRejection> {
        match (self.key.check(payload, now), &self.captcha) {
            // One issued for another name or network (cheaper, or another's) is no proof here.
            (Ok(solved), _) if solved.scope != scope => Err(WorkRejection::Invalid),
            (Ok(solved), _) => Ok(solved.challenge),
            (Err(WorkRejection::Invalid), Some(captcha))
                if !work::is_work_payload(payload) && payload.len() <= MAX_CAPTCHA_TOKEN =>
            {
                let token = payload.trim();
                if captcha.verify(token, client.ip).await {
                    Ok(format!("captcha:{}", sha256_hex(token.as_bytes())))
                } else {
                    Err(WorkRejection::Invalid)
                }
            }
            (Err(rejection), _) => Err(rejection),
        }
    }

    /// The network `client` belongs to under `settings`.
    pub fn network(client: &ClientInfo, settings: &Settings) -> NetworkKey {
        NetworkKey::of(
            client,
            settings.attack.network_v4_prefix,
            settings.attack.network_v6_prefix,
        )
    }

    /// Lets a request through when neither `name` (a customer's normalised address, when the
    /// operation has one) nor the client's network is under attack, or when `solution` is a
    /// challenge issued for what is under attack (that name, or else that network), solved in
    /// time and not used before (it is spent here). Otherwise `ChallengeRequired`, with a fresh
    /// challenge whose work grows with the attack: twice as much for each further threshold's
    /// worth of wrong passwords within the hour, up to [`MAX_WORK_DOUBLINGS`] times.
    pub async fn admit(
        &self,
        name: Option<&str>,
        client: &ClientInfo,
        settings: &Settings,
        solution: Option<&str>,
    ) -> Result<()> {
        let Some(attack) = self.under_attack(name, client, settings).await? else {
            return Ok(());
        };
        let now = self.clock.now();
        let rejection = match solution.filter(|s| !s.trim().is_empty()) {
            None => WorkRejection::Required,
            Some(payload) => match self.proof(payload, &attack.scope, client, now).await {
                Err(rejection) => rejection,
                Ok(spent) => {
                    // Kept past the challenge's lifetime by a margin, so a replica whose clock
                    // runs behind the issuer's cannot take it again.
                    let spend = [Check::new(
                        LimitKey::SpentWorkChallenge(spent),
                        Rule::per(1, WORK_LIFETIME + SPENT_MARGIN),
                    )];
                    match self.limiter.reserve(&spend, now).await {
                        Ok(spent) => {
                            spent.keep();
                            return Ok(());
                        }
                        Err(LimitError::Refused(_)) => WorkRejection::Spent,
                        Err(LimitError::Failed(e)) => return Err(e),
                    }
                }
            },
        };
        tracing::info!(
            event = "challenge_required",
            by = attack.by,
            reason = rejection.as_str(),
            work = attack.max_number
        );
        Err(Error::ChallengeRequired {
            challenge: Box::new(self.key.issue(attack.max_number, now, &attack.scope)?),
            reason: rejection,
        })
    }

    /// What is under attack, if anything: the name first, else the network.
    async fn under_attack(
        &self,
        name: Option<&str>,
        client: &ClientInfo,
        settings: &Settings,
    ) -> Result<Option<Attack>> {
        let policy = &settings.attack;
        let network = Self::network(client, settings);
        let mut checks = Vec::with_capacity(2);
        let mut targets = Vec::with_capacity(2);
        if let Some(name) = name.filter(|_| policy.challenge_after_name_failures > 0) {
            checks.push(name_signal(name, policy.challenge_after_name_failures));
            targets.push(("name", format!("name\0{name}")));
        }
        if policy.challenge_after_network_failures > 0 {
            let target = format!("network\0{}", network.as_str());
            checks.push(network_signal(
                network,
                policy.challenge_after_network_failures,
            ));
            targets.push(("network", target));
        }
        if checks.is_empty() {
            return Ok(None);
        }
        let histories = self.limiter.histories(&checks, self.clock.now()).await?;
        Ok(checks
            .iter()
            .zip(&histories)
            .zip(targets)
            .find(|((check, h), _)| failures(h) >= check.rule.max)
            .map(|((check, h), (by, target))| {
                let doublings = (failures(h) / check.rule.max.max(1))
                    .saturating_sub(1)
                    .min(MAX_WORK_DOUBLINGS);
                Attack {
                    by,
                    scope: sha256_hex(target.as_bytes())[..32].to_owned(),
                    max_number: policy
                        .challenge_max_number
                        .saturating_mul(1 << doublings)
                        .min(MAX_WORK),
                }
            }))
    }
}

/// The count of wrong passwords for a customer's name over every network: recorded (in flight
/// until the attempt settles) by every customer sign-in, read here; with `max` 0 it never
/// refuses.
pub(crate) fn name_signal(name: &str, max: u32) -> Check {
    Check::in_flight(
        LimitKey::SignInByAccount(PrincipalKind::Customer, name.to_owned()),
        Rule::per(max, ATTACK_SIGNAL_WINDOW),
    )
}

/// The count of wrong passwords from one network over every customer's name (the same way).
pub(crate) fn network_signal(network: NetworkKey, max: u32) -> Check {
    Check::in_flight(
        LimitKey::SignInFailuresFrom(PrincipalKind::Customer, network),
        Rule::per(max, ATTACK_SIGNAL_WINDOW),
    )
}

/// Settled failures only: attempts still being checked may be right passwords (a busy office
/// signing in at nine is no attack).
fn failures(h: &crate::limits::KeyHistory) -> u32 {
    h.count.saturating_sub(h.in_flight)
}

/// How many times the work doubles for a name or network under a long attack (each further
/// threshold's worth of wrong passwords within the hour doubles it).
pub const MAX_WORK_DOUBLINGS: u32 = 4;

/// The most work ever asked (the settings' own ceiling).
const MAX_WORK: u32 = 10_000_000;

/// What is under attack, and the challenge it asks for.
struct Attack {
    by: &'static str,
    /// Written into the challenge: a solution counts only for what it was asked for.
    scope: String,
    max_number: u32,
}
