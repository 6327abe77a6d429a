//! Where a request comes from: the source lockouts, the per-source throttle and the audit
//! trail count it by. Decided once, at the edge where the request reached us
//! ([`resolve`]): a socket of pg_oauth's listener, or PostgREST's connection. A forwarded
//! address (a proxy's header) counts only when the edge is a proxy we trust: a listener peer
//! in `pg_oauth.http_trusted_proxies`, or a PostgREST session whose login role is in
//! `pg_oauth.http_proxy_roles`. Nobody else chooses their source with a header.

use serde_json::Value;

use crate::config::gucs;
use crate::pg::backend;
use crate::store::audit::{truncate, MAX_SOURCE_CHARS};

/// Where a request reached us.
#[derive(Debug, Clone, Copy)]
pub enum Edge {
    /// A connection to pg_oauth's listener, from this peer.
    Listener(std::net::IpAddr),
    /// PostgREST, through the `oauth.http_*` functions, on the current database connection.
    PostgRest,
}

/// The source of a request that reached us at `edge` with `headers`: an address, or None for
/// "this database connection's own address" (read when a failure is recorded).
pub fn resolve(edge: Edge, headers: &Value) -> Option<String> {
    match edge {
        Edge::Listener(peer) => Some(source_of_peer(
            peer,
            headers,
            gucs::string(&gucs::HTTP_TRUSTED_PROXIES).as_deref(),
        )),
        Edge::PostgRest => postgrest_source(headers),
    }
}

/// The source of a request over PostgREST: the address its proxy's header names
/// (`source_from_headers`), when the session is PostgREST's own (its login role is one of
/// `pg_oauth.http_proxy_roles`); else none, and the connection's address counts. Any role
/// that may call the endpoint functions can `SET request.headers` itself: it must not choose
/// its source that way.
fn postgrest_source(headers: &serde_json::Value) -> Option<String> {
    is_trusted_proxy(Edge::PostgRest)
        .then(|| source_from_headers(headers))
        .flatten()
}

/// Whether what reached us at `edge` came through a proxy we trust to speak for its client
/// in headers (its address, its TLS certificate): a listener peer in
/// `pg_oauth.http_trusted_proxies`, or a PostgREST session whose login role is one of
/// `pg_oauth.http_proxy_roles`.
pub fn is_trusted_proxy(edge: Edge) -> bool {
    match edge {
        Edge::Listener(peer) => gucs::string(&gucs::HTTP_TRUSTED_PROXIES)
            .is_some_and(|trusted| is_trusted(peer, &trusted)),
        Edge::PostgRest => gucs::string(&gucs::HTTP_PROXY_ROLES).is_some_and(|proxies| {
            let login = backend::session_user();
            proxies.split(',').any(|role| role.trim() == login)
        }),
    }
}

/// The caller's address from the header named by `pg_oauth.http_client_address_header`
/// (its last entry: the one the nearest proxy added).
fn source_from_headers(headers: &serde_json::Value) -> Option<String> {
    let name = gucs::string(&gucs::HTTP_CLIENT_ADDRESS_HEADER)?.to_ascii_lowercase();
    let value = headers.get(name.as_str())?.as_str()?;
    let last = value.rsplit(',').next()?.trim();
    let clean: String = last.chars().filter(|c| !c.is_control()).collect();
    (!clean.is_empty()).then(|| truncate(&clean, MAX_SOURCE_CHARS))
}

/// Whether `peer` is one of `trusted`: comma-separated addresses or CIDR networks
/// (`10.0.0.0/8`, `::1`, `fd00::/8`). IPv4-mapped IPv6 addresses (a dual-stack socket's view
/// of an IPv4 peer, `::ffff:127.0.0.1`) count as the IPv4 address.
pub fn is_trusted(peer: std::net::IpAddr, trusted: &str) -> bool {
    let peer = peer.to_canonical();
    trusted
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .any(|entry| {
            let (address, bits) = match entry.split_once('/') {
                Some((address, bits)) => (address, bits.trim().parse::<u32>().ok()),
                None => (entry, None),
            };
            let Ok(network) = address.trim().parse::<std::net::IpAddr>() else {
                return false;
            };
            // An IPv6 network (also `::ffff:a.b.c.d/n`) is matched against the peer written as
            // IPv6, an IPv4 network against the peer written as IPv4 where it can be.
            match (network, peer) {
                (std::net::IpAddr::V4(n), std::net::IpAddr::V4(p)) => {
                    prefix_matches(&n.octets(), &p.octets(), bits.unwrap_or(32))
                }
                (std::net::IpAddr::V6(n), p) => {
                    let p = match p {
                        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                        std::net::IpAddr::V6(v6) => v6,
                    };
                    prefix_matches(&n.octets(), &p.octets(), bits.unwrap_or(128))
                }
                _ => false,
            }
        })
}

/// Whether the first `bits` bits of `a` and `b` are equal (`bits` past their length: no).
fn prefix_matches(a: &[u8], b: &[u8], bits: u32) -> bool {
    if bits as usize > a.len() * 8 {
        return false;
    }
    let (bytes, rest) = ((bits / 8) as usize, bits % 8);
    a[..bytes] == b[..bytes] && (rest == 0 || (a[bytes] ^ b[bytes]) & (0xffu8 << (8 - rest)) == 0)
}

/// The source of a request that came in on a socket from `peer` (pg_oauth's listener): the
/// peer, or, for a peer in `trusted_proxies`, the address its client-address header names.
/// IPv4-mapped peers are written as IPv4 addresses.
fn source_of_peer(
    peer: std::net::IpAddr,
    headers: &serde_json::Value,
    trusted_proxies: Option<&str>,
) -> String {
    if trusted_proxies.is_some_and(|t| is_trusted(peer, t)) {
        if let Some(forwarded) = source_from_headers(headers) {
            return forwarded;
        }
    }
    peer.to_canonical().to_string()
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn trusted_proxies_are_addresses_or_networks_of_either_family() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let list = "127.0.0.1, 10.1.0.0/16, fd00::/8, ::1";
        for trusted in [
            "127.0.0.1",
            "::ffff:127.0.0.1",
            "10.1.200.3",
            "fd12::1",
            "::1",
        ] {
            assert!(is_trusted(ip(trusted), list), "{trusted}");
        }
        for refused in ["127.0.0.2", "10.2.0.1", "fe80::1", "::2", "::ffff:10.2.0.1"] {
            assert!(!is_trusted(ip(refused), list), "{refused}");
        }
        assert!(is_trusted(ip("192.0.2.77"), "192.0.2.64/26"));
        assert!(!is_trusted(ip("192.0.2.128"), "192.0.2.64/26"));
        assert!(
            !is_trusted(ip("192.0.2.1"), "192.0.2.0/33"),
            "no such prefix"
        );
        assert!(is_trusted(ip("::ffff:192.0.2.1"), "::ffff:192.0.2.0/120"));
        assert!(!is_trusted(ip("127.0.0.1"), "not-an-address, "));
    }
}
