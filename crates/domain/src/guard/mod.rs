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
    kernel::client::ClientInfo,
    limits::{Check, LimitError, LimitKey, Limiter, NetworkKey, PrincipalKind, Rule},
    settings::{ATTACK_SIGNAL_WINDOW, Settings},
};
pub use work::{WORK_LIFETIME, WorkChallenge, WorkKey, WorkRejection};

/// Asks for, and accepts once, solved challenges while a name or a network is under attack.
pub struct AttackGuard {
    limiter: Arc<dyn Limiter>,
    clock: Arc<dyn Clock>,
    key: WorkKey,
}

impl AttackGuard {
    pub fn new(limiter: Arc<dyn Limiter>, clock: Arc<dyn Clock>, key: WorkKey) -> Self {
        Self {
            limiter,
            clock,
            key,
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
    /// challenge solved in time and not used before (it is spent here). Otherwise
    /// `ChallengeRequired`, with a fresh challenge.
    pub async fn admit(
        &self,
        name: Option<&str>,
        client: &ClientInfo,
        settings: &Settings,
        solution: Option<&str>,
    ) -> Result<()> {
        let Some(why) = self.under_attack(name, client, settings).await? else {
            return Ok(());
        };
        let now = self.clock.now();
        let rejection = match solution.filter(|s| !s.trim().is_empty()) {
            None => WorkRejection::Required,
            Some(payload) => match self.key.check(payload, now) {
                Err(rejection) => rejection,
                Ok(solved) => {
                    let spend = [Check::new(
                        LimitKey::SpentWorkChallenge(solved.challenge),
                        Rule::per(1, WORK_LIFETIME),
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
            by = why,
            reason = rejection.as_str()
        );
        Err(Error::ChallengeRequired {
            challenge: Box::new(self.key.issue(settings.attack.challenge_max_number, now)?),
            reason: rejection,
        })
    }

    /// Which count is over its threshold: `Some("name")` or `Some("network")`, or `None`.
    async fn under_attack(
        &self,
        name: Option<&str>,
        client: &ClientInfo,
        settings: &Settings,
    ) -> Result<Option<&'static str>> {
        let policy = &settings.attack;
        let mut checks = Vec::with_capacity(2);
        let mut labels = Vec::with_capacity(2);
        if let Some(name) = name.filter(|_| policy.challenge_after_name_failures > 0) {
            checks.push(Check::new(
                LimitKey::SignInByAccount(PrincipalKind::Customer, name.to_owned()),
                Rule::per(policy.challenge_after_name_failures, ATTACK_SIGNAL_WINDOW),
            ));
            labels.push("name");
        }
        if policy.challenge_after_network_failures > 0 {
            checks.push(Check::new(
                LimitKey::SignInFailuresFrom(
                    PrincipalKind::Customer,
                    Self::network(client, settings),
                ),
                Rule::per(
                    policy.challenge_after_network_failures,
                    ATTACK_SIGNAL_WINDOW,
                ),
            ));
            labels.push("network");
        }
        if checks.is_empty() {
            return Ok(None);
        }
        let histories = self.limiter.histories(&checks, self.clock.now()).await?;
        Ok(checks
            .iter()
            .zip(&histories)
            .zip(labels)
            .find(|((check, h), _)| h.count >= check.rule.max)
            .map(|(_, label)| label))
    }
}
