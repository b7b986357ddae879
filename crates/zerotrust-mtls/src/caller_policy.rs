//! Allow-lists of callers by SPIFFE ID.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use spiffe::{SpiffeId, SpiffeIdError, TrustDomain};
use zerotrust_core::PeerIdentity;

use crate::identity::parse_spiffe_id;

type Predicate = Arc<dyn Fn(&PeerIdentity) -> bool + Send + Sync>;

/// An invalid entry for a [`CallerPolicy`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid {what} {value:?}: {source}")]
pub struct CallerPolicyError {
    what: &'static str,
    value: String,
    #[source]
    source: SpiffeIdError,
}

/// An allow-list of callers: by exact SPIFFE ID, by trust domain, or by a predicate.
///
/// A peer is allowed when any entry matches. An empty policy allows no caller.
///
/// ```
/// use zerotrust_mtls::CallerPolicy;
///
/// let policy = CallerPolicy::new()
///     .allow_spiffe_id("spiffe://zerotrust.test/gateway")
///     .unwrap();
/// assert!(!policy.is_empty());
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct CallerPolicy {
    spiffe_ids: HashSet<SpiffeId>,
    trust_domains: HashSet<TrustDomain>,
    predicates: Vec<Predicate>,
}

impl fmt::Debug for CallerPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallerPolicy")
            .field("spiffe_ids", &self.spiffe_ids.iter().map(ToString::to_string).collect::<Vec<_>>())
            .field("trust_domains", &self.trust_domains.iter().map(ToString::to_string).collect::<Vec<_>>())
            .field("predicates", &self.predicates.len())
            .finish()
    }
}

impl CallerPolicy {
    /// Starts an empty policy, which allows no caller.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows the peer whose SPIFFE ID is exactly `id`.
    pub fn allow_spiffe_id(mut self, id: &str) -> Result<Self, CallerPolicyError> {
        let id = parse_spiffe_id(id).map_err(|source| CallerPolicyError {
            what: "SPIFFE ID",
            value: id.to_owned(),
            source,
        })?;
        self.spiffe_ids.insert(id);
        Ok(self)
    }

    /// Allows every peer whose SPIFFE ID is in `trust_domain`, such as `zerotrust.test`.
    pub fn allow_trust_domain(mut self, trust_domain: &str) -> Result<Self, CallerPolicyError> {
        let error = |source| CallerPolicyError {
            what: "trust domain",
            value: trust_domain.to_owned(),
            source,
        };
        if trust_domain.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(error(SpiffeIdError::BadTrustDomainChar));
        }
        let parsed = TrustDomain::new(trust_domain).map_err(error)?;
        self.trust_domains.insert(parsed);
        Ok(self)
    }

    /// Allows every peer for which `predicate` returns `true`.
    pub fn allow_if(mut self, predicate: impl Fn(&PeerIdentity) -> bool + Send + Sync + 'static) -> Self {
        self.predicates.push(Arc::new(predicate));
        self
    }

    /// Returns `true` if the policy has no entries.
    pub fn is_empty(&self) -> bool {
        self.spiffe_ids.is_empty() && self.trust_domains.is_empty() && self.predicates.is_empty()
    }

    /// Returns `true` if `peer` may call.
    pub fn allows(&self, peer: &PeerIdentity) -> bool {
        if let Some(id) = peer.spiffe_id()
            && (self.spiffe_ids.contains(id)
                || self.trust_domains.iter().any(|domain| id.is_member_of(domain)))
        {
            return true;
        }
        self.predicates.iter().any(|predicate| predicate(peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;
    use zerotrust_core::CertificateFingerprint;

    fn peer(id: &str) -> PeerIdentity {
        let now = SystemTime::now();
        PeerIdentity::new(
            Some(SpiffeId::new(id).unwrap()),
            vec![],
            CertificateFingerprint::from_sha256([7; 32]),
            now,
            now,
        )
    }

    #[test]
    fn exact_id_matches_only_itself() {
        let policy = CallerPolicy::new().allow_spiffe_id("spiffe://zerotrust.test/gateway").unwrap();

        assert!(policy.allows(&peer("spiffe://zerotrust.test/gateway")));
        assert!(!policy.allows(&peer("spiffe://zerotrust.test/gateway/admin")));
        assert!(!policy.allows(&peer("spiffe://other.test/gateway")));
    }

    #[test]
    fn trust_domain_matches_its_members() {
        let policy = CallerPolicy::new().allow_trust_domain("zerotrust.test").unwrap();

        assert!(policy.allows(&peer("spiffe://zerotrust.test/anything/at/all")));
        assert!(!policy.allows(&peer("spiffe://zerotrust.test.evil/gateway")));
    }

    #[test]
    fn predicate_and_empty_policy() {
        let empty = CallerPolicy::new();
        let by_dns = CallerPolicy::new().allow_if(|p| p.fingerprint().as_bytes()[0] == 7);

        assert!(!empty.allows(&peer("spiffe://zerotrust.test/gateway")));
        assert!(by_dns.allows(&peer("spiffe://zerotrust.test/gateway")));
    }

    #[test]
    fn invalid_entries_are_errors() {
        let upper = CallerPolicy::new().allow_trust_domain("ZeroTrust.test").unwrap_err();
        let bad_id = CallerPolicy::new().allow_spiffe_id("spiffe://zerotrust.test/a/../b").unwrap_err();

        assert!(upper.to_string().contains("ZeroTrust.test"));
        assert!(bad_id.to_string().contains("SPIFFE ID"));
    }
}
