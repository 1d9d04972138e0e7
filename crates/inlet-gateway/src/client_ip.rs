//! The client's address: the TCP peer, or, when the peer is a trusted proxy, the nearest
//! untrusted address in `X-Forwarded-For` (read right to left, as each proxy appends).

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| part.trim().parse().ok())
        .collect();
    // All hops trusted: the leftmost is the best we know.
    forwarded.iter().rev().find(|ip| !is_trusted(ip)).or(forwarded.first()).copied().unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().expect("value"));
        h
    }

    #[test]
    fn trusts_forwarded_for_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let proxy: IpAddr = "10.1.2.3".parse().expect("ip");
        let stranger: IpAddr = "198.51.100.9".parse().expect("ip");
        let h = headers("1.2.3.4, 203.0.113.5, 10.0.0.7");
        assert_eq!(client_ip(proxy, &h, &trusted).to_string(), "203.0.113.5", "spoofed leftmost hop is ignored");
        assert_eq!(client_ip(stranger, &h, &trusted), stranger, "an untrusted peer cannot claim an address");
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
        assert_eq!(client_ip(proxy, &headers("10.0.0.1, 10.0.0.2"), &trusted).to_string(), "10.0.0.1");
        assert_eq!(client_ip(proxy, &headers("garbage"), &trusted), proxy);
    }
}
