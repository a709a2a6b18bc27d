//! Mail, as the use cases see it before any template or transport: which lane delivers a
//! message. (The outbox's rows and the mail kinds are in [`crate::ports`].)

/// Which worker delivers a message. Each lane is claimed by its own worker, so a bulk job's
/// million messages never stand in front of a customer's "Forgot Your Password?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MailLane {
    /// The storefront's mail and one admin's actions: sent as soon as possible.
    Interactive,
    /// Bulk jobs' mail: sent when the interactive lane leaves room, at a capped rate.
    Bulk,
}

impl MailLane {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interactive => "interactive",
            Self::Bulk => "bulk",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "interactive" => Some(Self::Interactive),
            "bulk" => Some(Self::Bulk),
            _ => None,
        }
    }
}
