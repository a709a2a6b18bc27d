//! Where events may be sent. A subscription's URL is checked when it is saved, and the address
//! its host resolves to is checked again on every connection (the event worker's resolver), so
//! a name that resolves to an internal address later (DNS rebinding) is refused too.
//!
//! In production (unless the operator allows it): `https://` only, and no address of the
//! machine itself or of the networks behind it: loopback, private (RFC 1918, unique-local),
//! link-local (cloud metadata lives at 169.254.169.254), carrier-grade NAT, multicast,
//! reserved; IPv4 inside IPv6 (mapped, NAT64) is judged as the IPv4 address it carries. An
//! operator whose receivers are internal names their networks (`Network`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::Error;

/// The longest URL stored (as normalised).
const MAX_URL: usize = 2048;

/// An IP network, `10.20.0.0/16` or `fd00:1::/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn parse(raw: &str) -> Option<Self> {
        let (addr, prefix) = match raw.trim().split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let a = raw.trim().parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(u32::from(net)),
                u128::from(u32::from(ip)),
                32,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, bits: u8, prefix: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(bits - prefix);
    (a >> shift) == (b >> shift)
}

/// IPv4 carried in IPv6 (mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, the old
/// compatible `::a.b.c.d`) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            let embedded = Ipv4Addr::from(u32::try_from(u128::from(v6) & 0xffff_ffff).unwrap_or(0));
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (s[..6] == [0; 6] && u32::from(embedded) > 1)
            {
                return IpAddr::V4(embedded);
            }
            ip
        }
        v4 => v4,
    }
}

/// Not a public unicast address: the machine, its private networks, or nothing routable.
pub fn is_internal(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240 // reserved
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link local
        || (first & 0xffc0) == 0xfec0 // site local (deprecated)
}

/// Why a URL or an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointRefusal {
    /// Not an absolute http(s) URL with a host.
    Invalid,
    /// `http://` where only `https://` is allowed.
    NotHttps,
    /// A user name or password in the URL.
    Credentials,
    /// Loopback, private, link-local or otherwise internal.
    InternalAddress,
}

impl EndpointRefusal {
    pub fn message(self) -> &'static str {
        match self {
            Self::Invalid => "an absolute http(s) URL with a host",
            Self::NotHttps => "an https:// URL (plain http is allowed only outside production)",
            Self::Credentials => "a URL without a user name or password",
            Self::InternalAddress => {
                "a public address: loopback, private, link-local and reserved networks are refused \
                 (an operator may allow internal networks with LATCHKEY_EVENTS_ALLOWED_NETWORKS)"
            }
        }
    }

    pub fn into_error(self) -> Error {
        Error::BadUserInput {
            field: "url",
            message: self.message().to_owned(),
        }
    }
}

/// The rules for receivers' URLs and addresses.
#[derive(Debug, Clone, Default)]
pub struct EndpointPolicy {
    /// `http://` allowed (outside production).
    pub allow_http: bool,
    /// Any address, internal ones included (outside production).
    pub allow_internal: bool,
    /// Internal networks the operator allows even so.
    pub allowed_networks: Vec<Network>,
}

impl EndpointPolicy {
    /// Production's rules: https only, public addresses and the operator's networks.
    pub fn strict(allowed_networks: Vec<Network>) -> Self {
        Self {
            allow_http: false,
            allow_internal: false,
            allowed_networks,
        }
    }

    /// Development's: anything that is a URL.
    pub fn open() -> Self {
        Self {
            allow_http: true,
            allow_internal: true,
            allowed_networks: Vec::new(),
        }
    }

    /// The URL as it will be called.
    pub fn check_url(&self, raw: &str) -> Result<String, EndpointRefusal> {
        let url = url::Url::parse(raw.trim()).map_err(|_| EndpointRefusal::Invalid)?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => return Err(EndpointRefusal::NotHttps),
            _ => return Err(EndpointRefusal::Invalid),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(EndpointRefusal::Credentials);
        }
        match url.host() {
            None => return Err(EndpointRefusal::Invalid),
            Some(url::Host::Ipv4(ip)) => self.check_address(IpAddr::V4(ip))?,
            Some(url::Host::Ipv6(ip)) => self.check_address(IpAddr::V6(ip))?,
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if !self.allow_internal && (name == "localhost" || name.ends_with(".localhost")) {
                    return Err(EndpointRefusal::InternalAddress);
                }
            }
        }
        let mut url = url;
        url.set_fragment(None);
        let url = url.to_string();
        if url.len() > MAX_URL {
            return Err(EndpointRefusal::Invalid);
        }
        Ok(url)
    }

    /// An address a receiver's name resolved to (or its literal address).
    pub fn check_address(&self, ip: IpAddr) -> Result<(), EndpointRefusal> {
        if self.allow_internal
            || !is_internal(ip)
            || self.allowed_networks.iter().any(|n| n.contains(ip))
        {
            Ok(())
        } else {
            Err(EndpointRefusal::InternalAddress)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_refuses_internal_and_plain_http_urls() {
        let p = EndpointPolicy::strict(vec![Network::parse("10.20.0.0/16").unwrap()]);
        for bad in [
            "https://127.0.0.1/hook",
            "https://[::1]/hook",
            "https://localhost/hook",
            "https://api.localhost./hook",
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.5/hook",
            "https://192.168.1.1/hook",
            "https://172.16.0.1/hook",
            "https://100.64.0.1/hook",
            "https://0.0.0.0/hook",
            "https://[::ffff:127.0.0.1]/hook",
            "https://[64:ff9b::a9fe:a9fe]/hook",
            "https://[fd00::1]/hook",
            "https://[fe80::1]/hook",
            "https://2130706433/hook",
            "https://0x7f.1/hook",
        ] {
            assert_eq!(
                p.check_url(bad),
                Err(EndpointRefusal::InternalAddress),
                "{bad}"
            );
        }
        assert_eq!(
            p.check_url("http://hooks.example.com/x"),
            Err(EndpointRefusal::NotHttps)
        );
        assert_eq!(
            p.check_url("https://user:pw@hooks.example.com/x"),
            Err(EndpointRefusal::Credentials)
        );
        assert_eq!(p.check_url("ftp://x/"), Err(EndpointRefusal::Invalid));
        assert_eq!(p.check_url("not a url"), Err(EndpointRefusal::Invalid));
        assert!(
            p.check_url("https://hooks.example.com/x#frag").unwrap()
                == "https://hooks.example.com/x"
        );
        assert!(
            p.check_url("https://10.20.3.4/hook").is_ok(),
            "the operator's network"
        );
        assert!(p.check_url("https://93.184.216.34/hook").is_ok());
    }

    #[test]
    fn development_allows_a_receiver_on_this_machine() {
        assert!(
            EndpointPolicy::open()
                .check_url("http://127.0.0.1:9/x")
                .is_ok()
        );
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        let n = Network::parse("fd00:1::/32").unwrap();
        assert!(n.contains("fd00:1:2::3".parse().unwrap()));
        assert!(!n.contains("fd00:2::3".parse().unwrap()));
        assert!(Network::parse("10.0.0.0/33").is_none());
        assert!(
            Network::parse("10.0.0.1")
                .unwrap()
                .contains("10.0.0.1".parse().unwrap())
        );
    }
}
