//! The client's IP: the socket peer, unless the peer is a configured trusted proxy, in which
//! case the right-most untrusted address of `X-Forwarded-For`. A spoofed header from anyone
//! else changes nothing.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses addresses (`10.0.0.1`) and networks (`10.0.0.0/8`).
    pub fn parse(entries: &[String]) -> anyhow::Result<Self> {
        entries
            .iter()
            .map(|e| {
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!("LATCHKEY_TRUSTED_PROXIES: {e:?} is not an address or CIDR")
                    })
            })
            .collect::<anyhow::Result<_>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map_while(|s| s.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .collect();
        hops.iter()
            .rev()
            .find(|ip| !self.trusts(**ip))
            .or(hops.first())
            .copied()
            .unwrap_or(peer)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(xff).unwrap());
        h
    }

    #[test]
    fn untrusted_peers_cannot_spoof_their_address() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(proxies.client_ip(peer, &headers("1.2.3.4")), peer);
        let none = TrustedProxies::default();
        assert_eq!(none.client_ip(peer, &headers("1.2.3.4")), peer);
    }

    #[test]
    fn trusted_proxies_forward_the_right_most_untrusted_hop() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into(), "192.168.1.1".into()]).unwrap();
        let peer: IpAddr = "10.1.1.1".parse().unwrap();
        // The client may prepend anything; only hops added by our proxies count.
        assert_eq!(
            proxies.client_ip(peer, &headers("6.6.6.6, 198.51.100.7, 192.168.1.1")),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(proxies.client_ip(peer, &HeaderMap::new()), peer);
    }

    #[test]
    fn ipv4_mapped_ipv6_peers_are_normalised() {
        let proxies = TrustedProxies::parse(&["127.0.0.1".into()]).unwrap();
        let peer: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(
            proxies.client_ip(peer, &headers("198.51.100.7")),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn bad_entries_are_refused_at_start() {
        assert!(TrustedProxies::parse(&["not-an-ip".into()]).is_err());
    }
}
