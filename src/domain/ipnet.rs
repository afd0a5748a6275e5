//! Address blocks and what a client counts as: the rules behind trusted proxies and per-client
//! limits, free of any HTTP type (the transport reads the headers; `config` checks the list).

use std::net::IpAddr;

/// An address block: `10.0.0.0/8`, `fd00::/8`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr.parse::<IpAddr>().ok()?, Some(prefix.parse().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Parses a comma-separated list; every entry that is not an address or block is reported.
pub fn parse_list(list: &str) -> Result<Vec<IpNet>, Vec<String>> {
    let mut nets = Vec::new();
    let mut bad = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match IpNet::parse(entry) {
            Some(net) => nets.push(net),
            None => bad.push(entry.to_owned()),
        }
    }
    if bad.is_empty() { Ok(nets) } else { Err(bad) }
}

/// What per-client limits count an address as: an IPv4 address alone, an IPv6 address by its
/// /64. One IPv6 subscriber usually holds a whole /64 (often much more) and can pick any
/// address in it, so counting per /128 would give one client 2^64 budgets.
pub fn subject(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & (u128::MAX << 64);
            format!("{}/64", std::net::Ipv6Addr::from(prefix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn blocks_and_single_addresses() {
        let net = IpNet::parse("10.1.0.0/16").expect("net");
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")), "v4-mapped v6 is v4");
        let one = IpNet::parse("127.0.0.1").expect("net");
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let all = IpNet::parse("0.0.0.0/0").expect("net");
        assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("::1")));
        let v6 = IpNet::parse("fd00::/8").expect("net");
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        for bad in ["", "10.0.0.0/33", "::/129", "nope", "10.0.0.0/x"] {
            assert_eq!(IpNet::parse(bad), None, "{bad}");
        }
        assert_eq!(parse_list(" 10.0.0.0/8, ::1 ").map(|l| l.len()), Ok(2));
        assert_eq!(
            parse_list("10.0.0.0/8,bad,1.2.3.4/40"),
            Err(vec!["bad".into(), "1.2.3.4/40".into()])
        );
        assert_eq!(parse_list(""), Ok(Vec::new()));
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        assert_eq!(subject(ip("203.0.113.9")), "203.0.113.9");
        assert_eq!(subject(ip("::ffff:203.0.113.9")), "203.0.113.9");
        assert_eq!(subject(ip("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
        assert_eq!(
            subject(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            subject(ip("2001:db8:1:2::7"))
        );
        assert_ne!(
            subject(ip("2001:db8:1:3::1")),
            subject(ip("2001:db8:1:2::1"))
        );
    }
}
