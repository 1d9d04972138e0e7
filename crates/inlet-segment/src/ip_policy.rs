//! What becomes of a client's IP address before anything is stored: the one place where the
//! address is kept whole, cut to its network, or dropped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// A source's IP policy, applied to `context.ip` (the client's address, or the one the message
/// carries) before the event reaches the WAL: the raw address is never stored or forwarded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpPolicy {
    /// The address as it is.
    Full,
    /// IPv4 cut to its /24, IPv6 to its /48: the network a geolocation needs (country, region,
    /// usually city), not the subscriber line. The default: an address is personal data under
    /// PIPA and the GDPR, and analytics needs only the network.
    #[default]
    Truncate,
    /// No address at all.
    Drop,
}

impl IpPolicy {
    pub fn apply(self, ip: IpAddr) -> Option<IpAddr> {
        match (self, ip.to_canonical()) {
            (IpPolicy::Full, _) => Some(ip),
            (IpPolicy::Drop, _) => None,
            (IpPolicy::Truncate, IpAddr::V4(v4)) => {
                let [a, b, c, _] = v4.octets();
                Some(IpAddr::V4(Ipv4Addr::new(a, b, c, 0)))
            }
            (IpPolicy::Truncate, IpAddr::V6(v6)) => {
                let s = v6.segments();
                Some(IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0)))
            }
        }
    }

    /// `context.ip` as a message carried it: an address is cut as [`IpPolicy::apply`] says;
    /// text that is not an address is kept only under `full` (it could be anything).
    pub fn apply_text(self, text: &str) -> Option<String> {
        match text.trim().parse::<IpAddr>() {
            Ok(ip) => self.apply(ip).map(|ip| ip.to_string()),
            Err(_) if self == IpPolicy::Full => Some(text.to_owned()),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn truncation_keeps_the_network_only() {
        assert_eq!(IpPolicy::Truncate.apply(ip("203.0.113.77")), Some(ip("203.0.113.0")));
        assert_eq!(IpPolicy::Truncate.apply(ip("2001:db8:abcd:1234::99")), Some(ip("2001:db8:abcd::")));
        assert_eq!(IpPolicy::Truncate.apply(ip("::ffff:198.51.100.9")), Some(ip("198.51.100.0")), "v4-mapped");
        assert_eq!(IpPolicy::Full.apply(ip("203.0.113.77")), Some(ip("203.0.113.77")));
        assert_eq!(IpPolicy::Drop.apply(ip("203.0.113.77")), None);
        assert_eq!(IpPolicy::Truncate.apply_text(" 10.1.2.3 "), Some("10.1.2.0".into()));
        assert_eq!(IpPolicy::Truncate.apply_text("unknown"), None);
        assert_eq!(IpPolicy::Full.apply_text("unknown"), Some("unknown".into()));
    }
}
