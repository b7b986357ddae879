//! The client address of a request: the socket peer, or the address that
//! trusted proxies recorded in `Forwarded` or `X-Forwarded-For`.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use http::header::FORWARDED;

use crate::error::AnomalyConfigError;
use crate::identifier::Identifier;
use crate::network::IpNetwork;

/// The largest number of proxy hops read from the right of a forwarding header.
/// A longer chain of trusted proxies resolves to the last trusted hop reached.
pub const MAX_FORWARDED_HOPS: usize = 32;

/// The default IPv6 prefix length by which client addresses are grouped.
pub const DEFAULT_IPV6_PREFIX_LEN: u8 = 64;

/// The header in which the trusted proxies record the client address.
///
/// Only one is read: if proxies append to `X-Forwarded-For` but pass a
/// client's own `Forwarded` header through, reading `Forwarded` would let the
/// client choose its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyHeader {
    /// `Forwarded` (RFC 7239), by the `for=` parameter of each element.
    Forwarded,
    /// `X-Forwarded-For`, a comma-separated list of addresses.
    XForwardedFor,
}

impl ProxyHeader {
    fn name(self) -> &'static str {
        match self {
            ProxyHeader::Forwarded => FORWARDED.as_str(),
            ProxyHeader::XForwardedFor => "x-forwarded-for",
        }
    }
}

/// Finds the client address of a request.
///
/// By default it is the socket peer, and forwarding headers are ignored. With
/// [`trust_proxies`](Self::trust_proxies), a request whose socket peer is in a
/// trusted network has its client address taken from the configured header:
///
/// 1. The addresses are read from right to left, because each proxy appends the
///    address it received the request from, and only the entries that trusted
///    proxies appended can be believed.
/// 2. The first address that is not in a trusted network is the client.
/// 3. An entry that is not an IP address (`unknown`, an obfuscated identifier,
///    junk) ends the walk, and the last trusted proxy reached is the client,
///    because nothing left of it can be believed.
/// 4. If every address is trusted, the leftmost one is the client.
///
/// IPv4-mapped IPv6 addresses are treated as IPv4 throughout.
#[derive(Debug, Clone)]
pub struct ClientAddressResolver {
    trusted_proxies: Vec<IpNetwork>,
    header: ProxyHeader,
    ipv6_prefix_len: u8,
}

impl Default for ClientAddressResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientAddressResolver {
    /// Creates a resolver that uses the socket peer and groups IPv6 addresses by
    /// [`DEFAULT_IPV6_PREFIX_LEN`].
    pub fn new() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            header: ProxyHeader::XForwardedFor,
            ipv6_prefix_len: DEFAULT_IPV6_PREFIX_LEN,
        }
    }

    /// Reads `header` on requests whose socket peer is in one of `networks`.
    /// Replaces any networks set before.
    pub fn trust_proxies(
        mut self,
        header: ProxyHeader,
        networks: impl IntoIterator<Item = IpNetwork>,
    ) -> Self {
        self.header = header;
        self.trusted_proxies = networks.into_iter().collect();
        self
    }

    /// Groups IPv6 client addresses by their first `prefix_len` bits. By default
    /// [`DEFAULT_IPV6_PREFIX_LEN`]; 128 counts each IPv6 address on its own.
    ///
    /// # Errors
    ///
    /// [`AnomalyConfigError::InvalidPrefixLength`] if `prefix_len` exceeds 128.
    pub fn ipv6_prefix_len(mut self, prefix_len: u8) -> Result<Self, AnomalyConfigError> {
        if prefix_len > 128 {
            return Err(AnomalyConfigError::InvalidPrefixLength {
                prefix_len,
                max: 128,
            });
        }
        self.ipv6_prefix_len = prefix_len;
        Ok(self)
    }

    /// Returns the client address of a request from socket peer `peer`.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }

        let entries = header_entries(headers, self.header);
        let mut client = peer;
        for entry in entries.iter().rev().take(MAX_FORWARDED_HOPS) {
            let address = match entry {
                Some(entry) => match self.header {
                    ProxyHeader::Forwarded => parse_forwarded_element(entry),
                    ProxyHeader::XForwardedFor => parse_node(entry.trim()),
                },
                None => None,
            };
            let Some(address) = address else {
                return client;
            };

            let address = address.to_canonical();
            if !self.is_trusted(address) {
                return address;
            }
            client = address;
        }
        client
    }

    /// Returns the client-address identifier of a request from socket peer
    /// `peer`, grouped by the configured IPv6 prefix length.
    pub fn identifier(&self, peer: IpAddr, headers: &HeaderMap) -> Identifier {
        Identifier::client_network(self.resolve(peer, headers), self.ipv6_prefix_len)
    }

    /// Returns the identifier for the `ConnectInfo<SocketAddr>` in `extensions`,
    /// or `None` without one.
    pub(crate) fn identify_request(
        &self,
        headers: &HeaderMap,
        extensions: &http::Extensions,
    ) -> Option<Identifier> {
        let axum::extract::ConnectInfo(peer) =
            extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()?;
        Some(self.identifier(peer.ip(), headers))
    }

    fn is_trusted(&self, address: IpAddr) -> bool {
        self.trusted_proxies
            .iter()
            .any(|network| network.contains(address))
    }
}

/// Splits every line of `header` into its comma-separated entries, in order. A
/// line that is not visible ASCII becomes one `None` entry.
fn header_entries(headers: &HeaderMap, header: ProxyHeader) -> Vec<Option<&str>> {
    let mut entries = Vec::new();
    for value in headers.get_all(header.name()) {
        match value.to_str() {
            Ok(line) => entries.extend(line.split(',').map(Some)),
            Err(_) => entries.push(None),
        }
    }
    entries
}

/// Returns the address in the `for=` parameter of one `Forwarded` element
/// (RFC 7239 section 4), or `None` if it has none or it is not an IP address.
fn parse_forwarded_element(element: &str) -> Option<IpAddr> {
    let mut found = None;
    for pair in element.split(';') {
        let (name, value) = pair.trim().split_once('=')?;
        if name.eq_ignore_ascii_case("for") {
            if found.is_some() {
                // RFC 7239 section 4: a parameter must not occur twice in an element.
                return None;
            }
            found = Some(value);
        }
    }

    let value = found?;
    let value = match value.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"')?,
        None => value,
    };
    parse_node(value)
}

/// Parses a node (RFC 7239 section 6): `192.0.2.1`, `192.0.2.1:8080`,
/// `[2001:db8::1]` or `[2001:db8::1]:8080`. `X-Forwarded-For` entries use the
/// same forms, and a bare IPv6 address is accepted too.
fn parse_node(value: &str) -> Option<IpAddr> {
    if let Ok(address) = value.parse::<IpAddr>() {
        return Some(address);
    }
    if let Some(rest) = value.strip_prefix('[') {
        let (address, after) = rest.split_once(']')?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(valid_port);
        return if port_ok {
            address.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
        } else {
            None
        };
    }
    let (address, port) = value.split_once(':')?;
    if !valid_port(port) {
        return None;
    }
    address.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Accepts a decimal port, or an obfuscated port (`_` followed by letters,
/// digits, `.`, `_` or `-`) as RFC 7239 section 6.3 allows.
fn valid_port(port: &str) -> bool {
    if let Some(obfuscated) = port.strip_prefix('_') {
        return !obfuscated.is_empty()
            && obfuscated
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    }
    port.len() <= 5 && port.parse::<u16>().is_ok() && port.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(value: &str) -> IpAddr {
        value.parse().unwrap()
    }

    fn headers(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn behind_proxies(header: ProxyHeader) -> ClientAddressResolver {
        ClientAddressResolver::new().trust_proxies(
            header,
            ["10.0.0.0/8", "fd00::/8"].map(|n| n.parse().unwrap()),
        )
    }

    #[test]
    fn socket_peer_is_used_by_default() {
        let resolver = ClientAddressResolver::new();
        let spoofed = headers("x-forwarded-for", &["198.51.100.1"]);

        assert_eq!(resolver.resolve(ip("10.0.0.1"), &spoofed), ip("10.0.0.1"));
    }

    #[test]
    fn headers_from_untrusted_peer_are_ignored() {
        let resolver = behind_proxies(ProxyHeader::XForwardedFor);
        let spoofed = headers("x-forwarded-for", &["198.51.100.1"]);

        assert_eq!(
            resolver.resolve(ip("203.0.113.5"), &spoofed),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn rightmost_untrusted_address_is_client() {
        let resolver = behind_proxies(ProxyHeader::XForwardedFor);
        let chain = headers(
            "x-forwarded-for",
            &["198.51.100.1, 203.0.113.7", "10.0.0.2, 10.0.0.3"],
        );

        assert_eq!(resolver.resolve(ip("10.0.0.4"), &chain), ip("203.0.113.7"));
    }

    #[test]
    fn missing_header_gives_proxy_address() {
        let resolver = behind_proxies(ProxyHeader::XForwardedFor);

        assert_eq!(
            resolver.resolve(ip("10.0.0.4"), &HeaderMap::new()),
            ip("10.0.0.4")
        );
    }

    #[test]
    fn junk_entry_stops_at_last_trusted_hop() {
        let resolver = behind_proxies(ProxyHeader::XForwardedFor);
        let chain = headers("x-forwarded-for", &["198.51.100.1, unknown, 10.0.0.2"]);

        assert_eq!(resolver.resolve(ip("10.0.0.4"), &chain), ip("10.0.0.2"));
    }

    #[test]
    fn all_trusted_gives_leftmost() {
        let resolver = behind_proxies(ProxyHeader::XForwardedFor);
        let chain = headers("x-forwarded-for", &["10.0.0.1, 10.0.0.2"]);

        assert_eq!(resolver.resolve(ip("10.0.0.4"), &chain), ip("10.0.0.1"));
    }

    #[test]
    fn only_configured_header_is_read() {
        let resolver = behind_proxies(ProxyHeader::XForwardedFor);
        let forwarded = headers("forwarded", &["for=198.51.100.1"]);

        assert_eq!(resolver.resolve(ip("10.0.0.4"), &forwarded), ip("10.0.0.4"));
    }

    #[test]
    fn forwarded_for_parameter_forms_parse() {
        let resolver = behind_proxies(ProxyHeader::Forwarded);
        let cases = [
            ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
            ("For=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17"),
            ("for=\"192.0.2.60:8080\"", "192.0.2.60"),
            ("for=\"[2001:db8::1]\"", "2001:db8::1"),
            ("proto=https; for=192.0.2.61", "192.0.2.61"),
            ("for=\"192.0.2.62:_hidden\"", "192.0.2.62"),
            ("for=192.0.2.43, for=198.51.100.17", "198.51.100.17"),
        ];

        for (value, expected) in cases {
            let request = headers("forwarded", &[value]);
            assert_eq!(
                resolver.resolve(ip("10.0.0.4"), &request),
                ip(expected),
                "{value}"
            );
        }
    }

    #[test]
    fn forwarded_junk_gives_proxy_address() {
        let resolver = behind_proxies(ProxyHeader::Forwarded);
        let junk = [
            "for=unknown",
            "for=_hidden",
            "for=\"192.0.2.60",
            "for=192.0.2.60;for=192.0.2.61",
            "proto=http",
            "for=[2001:db8::1]x",
            "for=192.0.2.60:99999",
            "for=2001:db8::1:80x",
            "for=",
            "",
            ";;;",
        ];

        for value in junk {
            let request = headers("forwarded", &[value]);
            assert_eq!(
                resolver.resolve(ip("10.0.0.4"), &request),
                ip("10.0.0.4"),
                "{value:?}"
            );
        }
    }

    #[test]
    fn mapped_ipv4_peer_and_entries_count_as_ipv4() {
        let resolver = behind_proxies(ProxyHeader::XForwardedFor);
        let chain = headers("x-forwarded-for", &["::ffff:198.51.100.1"]);

        let client = resolver.resolve(ip("::ffff:10.0.0.4"), &chain);

        assert_eq!(client, ip("198.51.100.1"));
    }

    #[test]
    fn ipv6_prefix_length_sets_grouping() {
        let per_address = ClientAddressResolver::new().ipv6_prefix_len(128).unwrap();
        let per_48 = ClientAddressResolver::new().ipv6_prefix_len(48).unwrap();
        let address = ip("2001:db8:1:2::7");

        assert_eq!(
            per_address.identifier(address, &HeaderMap::new()).value(),
            "2001:db8:1:2::7/128"
        );
        assert_eq!(
            per_48.identifier(address, &HeaderMap::new()).value(),
            "2001:db8:1::/48"
        );
        assert!(ClientAddressResolver::new().ipv6_prefix_len(129).is_err());
    }

    #[test]
    fn long_chain_stops_after_max_hops() {
        let resolver = behind_proxies(ProxyHeader::XForwardedFor);
        let mut chain = vec!["198.51.100.1".to_owned()];
        chain.extend((0..MAX_FORWARDED_HOPS + 5).map(|i| format!("10.0.{}.{}", i / 250, i % 250)));
        let request = headers("x-forwarded-for", &[&chain.join(",")]);

        let client = resolver.resolve(ip("10.0.0.4"), &request);

        assert!(resolver.is_trusted(client), "{client}");
    }

    /// A small deterministic generator, so the property tests need no extra crate
    /// and fail the same way on every run.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[(self.next() % items.len() as u64) as usize]
        }
    }

    const FRAGMENTS: &[&str] = &[
        "for=",
        "For=",
        "\"",
        "[",
        "]",
        ":",
        "::",
        ",",
        ";",
        " ",
        "=",
        "_x",
        "unknown",
        "10.0.0.1",
        "198.51.100.7",
        "2001:db8::1",
        "fd00::2",
        "::ffff:10.1.1.1",
        "99999",
        "8080",
        "proto=http",
        "by=",
        "\t",
        "%",
        "256.1.1.1",
        "1.2.3",
        "-",
        "é",
    ];

    fn random_value(rng: &mut XorShift) -> String {
        let parts = 1 + rng.next() % 12;
        (0..parts).map(|_| rng.pick(FRAGMENTS)).collect()
    }

    #[test]
    fn resolve_survives_random_headers() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let peers = [
            ip("10.0.0.4"),
            ip("203.0.113.5"),
            ip("fd00::9"),
            ip("::ffff:10.0.0.4"),
        ];

        for round in 0..5_000 {
            let header = if round % 2 == 0 {
                ProxyHeader::Forwarded
            } else {
                ProxyHeader::XForwardedFor
            };
            let resolver = behind_proxies(header);
            let mut request = HeaderMap::new();
            for _ in 0..(rng.next() % 3) {
                if let Ok(value) = HeaderValue::from_str(&random_value(&mut rng)) {
                    request.append(header.name(), value);
                }
            }
            let peer = peers[round % peers.len()];

            let client = resolver.resolve(peer, &request);

            if !resolver.is_trusted(peer) {
                assert_eq!(client, peer, "untrusted peer {peer} with {request:?}");
            }
            assert_eq!(client, client.to_canonical(), "mapped address returned");
        }
    }

    #[test]
    fn non_ascii_header_line_is_junk() {
        let resolver = behind_proxies(ProxyHeader::XForwardedFor);
        let mut request = HeaderMap::new();
        request.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"198.51.100.1, \xff").unwrap(),
        );

        assert_eq!(resolver.resolve(ip("10.0.0.4"), &request), ip("10.0.0.4"));
    }
}
