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

/// Which peers may call: by exact SPIFFE ID, by trust domain, or by a predicate.
///
/// A peer is allowed when any entry matches. An empty policy allows nobody.
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
    /// Starts an empty policy, which allows nobody.
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
