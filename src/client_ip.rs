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

    /// Walks `X-Forwarded-For` from the right: each trusted hop vouches for the one to its
    /// left, and the first untrusted hop is the client. An entry that is not an address (not
    /// text, say) ends the walk too, at the nearest trusted hop: whatever is left of junk was
    /// written by someone we do not trust, so it cannot name the client. Entries are read one
    /// by one, so junk a client put on the left never spoils the address the proxy appended.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let entries: Vec<Option<&str>> = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|v| {
                v.as_bytes()
                    .split(|b| *b == b',')
                    .map(|entry| std::str::from_utf8(entry).ok())
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut nearest_trusted = peer;
        for entry in entries.into_iter().rev() {
            match entry.and_then(parse_hop) {
                Some(ip) if self.trusts(ip) => nearest_trusted = ip,
                Some(ip) => return ip,
                None => return nearest_trusted,
            }
        }
        nearest_trusted
    }
}

/// One `X-Forwarded-For` entry: an address, or an address with a port (`203.0.113.9:4711`,
/// `[2001:db8::1]:443`), as some proxies write them.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .map(|ip| ip.to_canonical())
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
    fn a_junk_hop_ends_the_walk_instead_of_letting_the_client_choose() {
        let proxies = TrustedProxies::parse(&["127.0.0.1".into()]).unwrap();
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let ip = |xff: &str| proxies.client_ip(peer, &headers(xff));
        // Reported: parsing stopped at `x` and took the client's own 203.0.113.9.
        assert_eq!(
            ip("203.0.113.9, x, 198.51.100.7"),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // Junk right next to our proxy: all we know is the proxy.
        assert_eq!(ip("198.51.100.7, x"), peer);
        assert_eq!(
            ip("203.0.113.9, , 198.51.100.7"),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // Ports, as some proxies add them.
        assert_eq!(
            ip("198.51.100.7:4711"),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            ip("[2001:db8::1]:443"),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn several_header_lines_are_one_list_and_unreadable_ones_end_the_walk() {
        let proxies = TrustedProxies::parse(&["127.0.0.1".into()]).unwrap();
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        h.append("x-forwarded-for", HeaderValue::from_static("198.51.100.7"));
        assert_eq!(
            proxies.client_ip(peer, &h),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        h.append("x-forwarded-for", HeaderValue::from_bytes(b"\xff").unwrap());
        assert_eq!(proxies.client_ip(peer, &h), peer);
        // Junk a client wrote to the left of the address its proxy appended (nginx's
        // `$proxy_add_x_forwarded_for`) spoils only itself: the client is still the address
        // the proxy saw, never the proxy.
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff, 198.51.100.7").unwrap(),
        );
        assert_eq!(
            proxies.client_ip(peer, &h),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
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
