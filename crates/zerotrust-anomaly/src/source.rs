//! Identifier sources: where a layer takes each request's identifier from.

use std::fmt;
use std::sync::Arc;

use http::{Extensions, HeaderMap};
use zerotrust_core::{PeerIdentity, Principal, PrincipalKind};

use crate::client_address::ClientAddressResolver;
use crate::identifier::{Identifier, IdentifierKind};

/// A function that picks the identifier of a request from its headers and
/// extensions. Returning `None` leaves the request uncounted.
pub type IdentifyFn = dyn Fn(&HeaderMap, &Extensions) -> Option<Identifier> + Send + Sync;

/// Where a layer takes each request's identifier from.
///
/// A request for which the source finds nothing is not counted; a TRACE log on
/// the `zerotrust::anomaly` target records it.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum IdentifierSource {
    /// The [`Principal`] if an authentication layer set one, else the client
    /// address. This is the default.
    #[default]
    PrincipalOrClientAddress,
    /// The [`Principal`], of any kind.
    Principal,
    /// The key id of an API-key principal.
    ApiKeyId,
    /// The subject of a token principal that is not a service.
    TokenSubject,
    /// The SPIFFE ID of the client certificate, from the `Arc<PeerIdentity>`
    /// that the mTLS acceptor puts in the request extensions.
    SpiffeId,
    /// The client address, as the layer's [`ClientAddressResolver`] finds it.
    ClientAddress,
    /// A function of the request headers and extensions.
    Function(Arc<IdentifyFn>),
}

impl IdentifierSource {
    /// Creates a [`IdentifierSource::Function`] source.
    pub fn function(
        identify: impl Fn(&HeaderMap, &Extensions) -> Option<Identifier> + Send + Sync + 'static,
    ) -> Self {
        Self::Function(Arc::new(identify))
    }

    /// Returns the identifier of a request, or `None` if this source finds none.
    pub(crate) fn identify(
        &self,
        headers: &HeaderMap,
        extensions: &Extensions,
        addresses: &ClientAddressResolver,
    ) -> Option<Identifier> {
        let principal = || extensions.get::<Principal>();
        match self {
            IdentifierSource::PrincipalOrClientAddress => match principal() {
                Some(principal) => Some(Identifier::from_principal(principal)),
                None => addresses.identify_request(headers, extensions),
            },
            IdentifierSource::Principal => principal().map(Identifier::from_principal),
            IdentifierSource::ApiKeyId => principal()
                .filter(|principal| principal.kind() == PrincipalKind::ApiKey)
                .map(Identifier::from_principal),
            IdentifierSource::TokenSubject => principal()
                .filter(|principal| principal.kind() == PrincipalKind::Subject)
                .map(Identifier::from_principal),
            IdentifierSource::SpiffeId => {
                let peer = extensions.get::<Arc<PeerIdentity>>()?;
                let spiffe_id = peer.spiffe_id()?;
                Some(Identifier::new(
                    IdentifierKind::SpiffeId,
                    spiffe_id.to_string(),
                ))
            }
            IdentifierSource::ClientAddress => addresses.identify_request(headers, extensions),
            IdentifierSource::Function(identify) => identify(headers, extensions),
        }
    }
}

impl fmt::Debug for IdentifierSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            IdentifierSource::PrincipalOrClientAddress => "PrincipalOrClientAddress",
            IdentifierSource::Principal => "Principal",
            IdentifierSource::ApiKeyId => "ApiKeyId",
            IdentifierSource::TokenSubject => "TokenSubject",
            IdentifierSource::SpiffeId => "SpiffeId",
            IdentifierSource::ClientAddress => "ClientAddress",
            IdentifierSource::Function(_) => "Function(..)",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::SystemTime;

    use axum::extract::ConnectInfo;
    use zerotrust_core::{CertificateFingerprint, CredentialKind, Scopes, SpiffeId};

    fn extensions_with(principal: Option<Principal>, peer: bool) -> Extensions {
        let mut extensions = Extensions::new();
        extensions.insert(ConnectInfo(SocketAddr::from((
            Ipv4Addr::new(192, 0, 2, 9),
            4000,
        ))));
        if let Some(principal) = principal {
            extensions.insert(principal);
        }
        if peer {
            let now = SystemTime::now();
            let spiffe_id = SpiffeId::new("spiffe://zerotrust.test/gateway").unwrap();
            extensions.insert(Arc::new(PeerIdentity::new(
                Some(spiffe_id),
                Vec::new(),
                CertificateFingerprint::from_sha256([1; 32]),
                now,
                now,
            )));
        }
        extensions
    }

    fn identify(source: &IdentifierSource, extensions: &Extensions) -> Option<String> {
        source
            .identify(&HeaderMap::new(), extensions, &ClientAddressResolver::new())
            .map(|identifier| identifier.to_string())
    }

    #[test]
    fn each_source_picks_its_identifier() {
        let key = Principal::api_key("key_1", "acme", Scopes::default());
        let subject = Principal::new(
            PrincipalKind::Subject,
            "alice",
            Scopes::default(),
            CredentialKind::BearerToken,
        );
        let with_key = extensions_with(Some(key), true);
        let with_subject = extensions_with(Some(subject), false);
        let anonymous = extensions_with(None, false);

        let cases = [
            (
                IdentifierSource::default(),
                &with_key,
                Some("api_key:key_1"),
            ),
            (
                IdentifierSource::default(),
                &anonymous,
                Some("client_address:192.0.2.9"),
            ),
            (
                IdentifierSource::Principal,
                &with_subject,
                Some("subject:alice"),
            ),
            (IdentifierSource::Principal, &anonymous, None),
            (IdentifierSource::ApiKeyId, &with_key, Some("api_key:key_1")),
            (IdentifierSource::ApiKeyId, &with_subject, None),
            (
                IdentifierSource::TokenSubject,
                &with_subject,
                Some("subject:alice"),
            ),
            (IdentifierSource::TokenSubject, &with_key, None),
            (
                IdentifierSource::SpiffeId,
                &with_key,
                Some("spiffe_id:spiffe://zerotrust.test/gateway"),
            ),
            (IdentifierSource::SpiffeId, &with_subject, None),
            (
                IdentifierSource::ClientAddress,
                &with_key,
                Some("client_address:192.0.2.9"),
            ),
        ];

        for (source, extensions, expected) in cases {
            assert_eq!(
                identify(&source, extensions).as_deref(),
                expected,
                "{source:?}"
            );
        }
    }

    #[test]
    fn function_source_reads_headers() {
        let source = IdentifierSource::function(|headers, _| {
            let tenant = headers.get("x-tenant")?.to_str().ok()?;
            Some(Identifier::new(IdentifierKind::Subject, tenant))
        });
        let mut headers = HeaderMap::new();
        headers.insert("x-tenant", "acme".parse().unwrap());

        let found = source.identify(&headers, &Extensions::new(), &ClientAddressResolver::new());
        let missing = source.identify(
            &HeaderMap::new(),
            &Extensions::new(),
            &ClientAddressResolver::new(),
        );

        assert_eq!(
            found.map(|i| i.to_string()).as_deref(),
            Some("subject:acme")
        );
        assert_eq!(missing, None);
    }
}
