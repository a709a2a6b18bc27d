//! The caller, as far as a request says: the client address and user agent.

use std::net::IpAddr;

/// Facts about the caller that sessions record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// Parsed once, where the request arrives (after trusted proxies are peeled off).
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl ClientInfo {
    /// Bounds the user agent so a client cannot store kilobytes per session.
    pub fn new(ip: Option<IpAddr>, user_agent: Option<&str>) -> Self {
        let user_agent = user_agent
            .map(|ua| ua.chars().filter(|c| !c.is_control()).take(256).collect())
            .filter(|ua: &String| !ua.is_empty());
        Self { ip, user_agent }
    }
}
