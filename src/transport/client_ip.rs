//! Which IP a request counts against: the peer, unless the peer is a configured trusted proxy,
//! in which case `X-Forwarded-For` is read from the right, skipping trusted hops, so a client
//! cannot pick its own address by sending the header itself.

use std::net::IpAddr;

use axum::http::HeaderMap;

use crate::domain::ipnet::IpNet;
#[cfg(test)]
use crate::domain::ipnet::parse_list;

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The client's address as far as it can be trusted.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    // Each trusted proxy appended the address it saw; the first untrusted one from the right
    // is the client. Anything left of it was written by the client and proves nothing.
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            break;
        };
        client = ip.to_canonical();
        if !is_trusted(client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn xff(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, value.parse().expect("header"));
        headers
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = parse_list("10.0.0.0/8").expect("list");
        let headers = xff("6.6.6.6, 1.2.3.4, 10.0.0.7");
        // An untrusted peer's header is ignored.
        assert_eq!(client_ip(ip("5.5.5.5"), &headers, &trusted), ip("5.5.5.5"));
        assert_eq!(client_ip(ip("10.0.0.1"), &headers, &[]), ip("10.0.0.1"));
        // Through two trusted hops: the first untrusted address from the right.
        assert_eq!(client_ip(ip("10.0.0.1"), &headers, &trusted), ip("1.2.3.4"));
        // No header, or garbage: the nearest address known.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &xff("junk"), &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &xff("1.1.1.1, junk, 10.0.0.3"), &trusted),
            ip("10.0.0.3")
        );
        // Several header lines are one list.
        let mut two = xff("9.9.9.9");
        two.append(X_FORWARDED_FOR, "10.0.0.5".parse().expect("header"));
        assert_eq!(client_ip(ip("10.0.0.1"), &two, &trusted), ip("9.9.9.9"));
    }
}
