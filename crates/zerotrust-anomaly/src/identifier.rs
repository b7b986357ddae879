//! Identifiers that requests are counted against.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use http::Extensions;
use sha2::{Digest as _, Sha256};
use zerotrust_core::{Principal, PrincipalKind};

use crate::client_address::DEFAULT_IPV6_PREFIX_LEN;
use crate::network::mask;

/// The maximum length in bytes of an identifier value kept as it is. Longer values are replaced by
/// their SHA-256 digest, so a caller cannot make the stores keep large keys.
pub const MAX_VALUE_LEN: usize = 256;

/// The kind of an [`Identifier`]. Each kind has its own [`AnomalyPolicy`](crate::AnomalyPolicy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum IdentifierKind {
    /// A service principal, by service name.
    Service,
    /// An API-key principal, by key id.
    ApiKey,
    /// A token subject that is not a service.
    Subject,
    /// A client address: an IPv4 address or an IPv6 network, /64 by default.
    ClientAddress,
    /// A workload by the SPIFFE ID in its client certificate.
    SpiffeId,
    /// A client address counted once per response with status 401, so that
    /// credential guessing is blocked by its own thresholds.
    AuthenticationFailure,
}

impl IdentifierKind {
    /// All kinds, in declaration order.
    pub const ALL: [IdentifierKind; 6] = [
        IdentifierKind::Service,
        IdentifierKind::ApiKey,
        IdentifierKind::Subject,
        IdentifierKind::ClientAddress,
        IdentifierKind::SpiffeId,
        IdentifierKind::AuthenticationFailure,
    ];

    /// Returns the stable lower-case name used in events and store keys.
    pub const fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::Service => "service",
            IdentifierKind::ApiKey => "api_key",
            IdentifierKind::Subject => "subject",
            IdentifierKind::ClientAddress => "client_address",
            IdentifierKind::SpiffeId => "spiffe_id",
            IdentifierKind::AuthenticationFailure => "authentication_failure",
        }
    }
}

impl fmt::Display for IdentifierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The caller that a request is counted against.
///
/// Displays as `<kind>:<value>`, such as `api_key:key_123`, `service:gateway` or
/// `client_address:2001:db8:1:2::/64`; events carry that form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identifier {
    kind: IdentifierKind,
    value: String,
}

impl Identifier {
    /// Creates an identifier. A value longer than [`MAX_VALUE_LEN`] bytes is
    /// replaced by `sha256:<hex digest>`.
    pub fn new(kind: IdentifierKind, value: impl Into<String>) -> Self {
        let mut value = value.into();
        if value.len() > MAX_VALUE_LEN {
            let digest = Sha256::digest(value.as_bytes());
            value = format!("sha256:{}", hex(&digest));
        }
        Self { kind, value }
    }

    /// Creates a client-address identifier. IPv4-mapped IPv6 addresses count as
    /// their IPv4 address, and other IPv6 addresses are grouped by their /64
    /// network, because a single host or site is commonly assigned a whole /64
    /// and can send from any address in it.
    pub fn client_address(ip: IpAddr) -> Self {
        Self::client_network(ip, DEFAULT_IPV6_PREFIX_LEN)
    }

    /// Creates a client-address identifier that groups IPv6 addresses by their
    /// first `ipv6_prefix_len` bits (at most 128), shown as `network/len`.
    /// IPv4 and IPv4-mapped addresses are kept whole.
    pub fn client_network(ip: IpAddr, ipv6_prefix_len: u8) -> Self {
        let value = match ip.to_canonical() {
            IpAddr::V4(v4) => v4.to_string(),
            v6 @ IpAddr::V6(_) => {
                let prefix_len = ipv6_prefix_len.min(128);
                format!("{}/{prefix_len}", mask(v6, prefix_len))
            }
        };
        Self {
            kind: IdentifierKind::ClientAddress,
            value,
        }
    }

    /// Returns this client address as an [`IdentifierKind::AuthenticationFailure`]
    /// identifier with the same value, or `None` for other kinds.
    pub fn to_authentication_failure(&self) -> Option<Self> {
        (self.kind == IdentifierKind::ClientAddress).then(|| Self {
            kind: IdentifierKind::AuthenticationFailure,
            value: self.value.clone(),
        })
    }

    /// Creates the identifier of an authenticated principal.
    pub fn from_principal(principal: &Principal) -> Self {
        match principal.kind() {
            PrincipalKind::Service => Self::new(
                IdentifierKind::Service,
                principal.service_name().unwrap_or(principal.id()),
            ),
            PrincipalKind::ApiKey => Self::new(IdentifierKind::ApiKey, principal.id()),
            // Subjects, and principal kinds added to the core crate later, are
            // counted by their id under their own policy.
            _ => Self::new(IdentifierKind::Subject, principal.id()),
        }
    }

    /// Derives the default identifier from request extensions: the [`Principal`]
    /// if an authentication layer set one, else the client address from axum's
    /// `ConnectInfo<SocketAddr>`, else `None`.
    pub fn from_extensions(extensions: &Extensions) -> Option<Self> {
        if let Some(principal) = extensions.get::<Principal>() {
            return Some(Self::from_principal(principal));
        }
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| Self::client_address(address.ip()))
    }

    /// Returns the kind.
    pub fn kind(&self) -> IdentifierKind {
        self.kind
    }

    /// Returns the value, such as a key id or an address.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use zerotrust_core::{CredentialKind, Scopes};

    fn address(ip: &str) -> Identifier {
        Identifier::client_address(ip.parse().unwrap())
    }

    #[test]
    fn ipv6_addresses_group_by_64() {
        let first = address("2001:db8:1:2:aaaa:bbbb:cccc:dddd");
        let same_network = address("2001:db8:1:2::1");
        let other_network = address("2001:db8:1:3::1");

        assert_eq!(first.value(), "2001:db8:1:2::/64");
        assert_eq!(first, same_network);
        assert_ne!(first, other_network);
        assert_eq!(first.to_string(), "client_address:2001:db8:1:2::/64");
    }

    #[test]
    fn mapped_ipv4_counts_as_ipv4() {
        let mapped = address("::ffff:203.0.113.7");
        let plain = address("203.0.113.7");

        assert_eq!(mapped, plain);
        assert_eq!(mapped.value(), "203.0.113.7");
        assert_eq!(mapped.kind(), IdentifierKind::ClientAddress);
    }

    #[test]
    fn ipv4_addresses_stay_distinct() {
        assert_ne!(address("203.0.113.7"), address("203.0.113.8"));
    }

    #[test]
    fn principal_takes_precedence_over_address() {
        let mut extensions = Extensions::new();
        extensions.insert(ConnectInfo(SocketAddr::from((Ipv4Addr::LOCALHOST, 4000))));
        assert_eq!(
            Identifier::from_extensions(&extensions),
            Some(address("127.0.0.1"))
        );

        extensions.insert(Principal::service("gateway"));
        let identifier = Identifier::from_extensions(&extensions).unwrap();

        assert_eq!(identifier.kind(), IdentifierKind::Service);
        assert_eq!(identifier.value(), "gateway");
        assert_eq!(identifier.to_string(), "service:gateway");
    }

    #[test]
    fn principal_kinds_map_to_identifier_kinds() {
        let key = Principal::api_key("key_1", "acme", Scopes::default());
        let subject = Principal::new(
            PrincipalKind::Subject,
            "alice",
            Scopes::default(),
            CredentialKind::BearerToken,
        );

        assert_eq!(
            Identifier::from_principal(&key),
            Identifier::new(IdentifierKind::ApiKey, "key_1")
        );
        assert_eq!(
            Identifier::from_principal(&subject),
            Identifier::new(IdentifierKind::Subject, "alice")
        );
    }

    #[test]
    fn no_principal_or_address_gives_none() {
        assert_eq!(Identifier::from_extensions(&Extensions::new()), None);
    }

    #[test]
    fn long_values_are_replaced_by_digest() {
        let long = "a".repeat(MAX_VALUE_LEN + 1);
        let at_limit = "a".repeat(MAX_VALUE_LEN);

        let hashed = Identifier::new(IdentifierKind::Subject, long);

        assert!(hashed.value().starts_with("sha256:"));
        assert_eq!(hashed.value().len(), "sha256:".len() + 64);
        assert_eq!(
            Identifier::new(IdentifierKind::Subject, at_limit.clone()).value(),
            at_limit
        );
    }
}
