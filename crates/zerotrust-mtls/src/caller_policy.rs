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

/// An allow-list of callers, by exact SPIFFE ID, by trust domain, by path prefix
/// or by a predicate, with an optional deny-list.
///
/// A peer is allowed when no deny entry matches and at least one allow entry
/// does: deny-lists win. An empty policy allows no caller. Path prefixes match
/// whole segments, so `/ns/prod` matches `/ns/prod/orders` but not
/// `/ns/production`.
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
    allow: Entries,
    deny: Entries,
}

/// One side of a policy: the entries that allow, or those that deny.
#[derive(Clone, Default)]
struct Entries {
    spiffe_ids: HashSet<SpiffeId>,
    trust_domains: HashSet<TrustDomain>,
    path_prefixes: Vec<(TrustDomain, String)>,
    predicates: Vec<Predicate>,
}

impl Entries {
    fn is_empty(&self) -> bool {
        self.spiffe_ids.is_empty()
            && self.trust_domains.is_empty()
            && self.path_prefixes.is_empty()
            && self.predicates.is_empty()
    }

    fn matches(&self, peer: &PeerIdentity) -> bool {
        if let Some(id) = peer.spiffe_id() {
            if self.spiffe_ids.contains(id) || self.trust_domains.iter().any(|domain| id.is_member_of(domain)) {
                return true;
            }
            let prefix_matches = self.path_prefixes.iter().any(|(domain, prefix)| {
                id.is_member_of(domain) && path_has_prefix(id.path(), prefix)
            });
            if prefix_matches {
                return true;
            }
        }
        self.predicates.iter().any(|predicate| predicate(peer))
    }

    fn describe(&self) -> Vec<String> {
        let mut out: Vec<String> = self.spiffe_ids.iter().map(ToString::to_string).collect();
        out.extend(self.trust_domains.iter().map(|td| format!("trust domain {td}")));
        out.extend(self.path_prefixes.iter().map(|(td, p)| format!("spiffe://{td}{p}/*")));
        if !self.predicates.is_empty() {
            out.push(format!("{} predicate(s)", self.predicates.len()));
        }
        out
    }
}

/// Returns `true` if `path` equals `prefix` or continues it with a `/`.
fn path_has_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

impl fmt::Debug for CallerPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallerPolicy")
            .field("allow", &self.allow.describe())
            .field("deny", &self.deny.describe())
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
        let id = parse_id(id)?;
        self.allow.spiffe_ids.insert(id);
        Ok(self)
    }

    /// Allows every peer whose SPIFFE ID is in `trust_domain`, such as `zerotrust.test`.
    pub fn allow_trust_domain(mut self, trust_domain: &str) -> Result<Self, CallerPolicyError> {
        let parsed = parse_trust_domain(trust_domain)?;
        self.allow.trust_domains.insert(parsed);
        Ok(self)
    }

    /// Allows every peer whose SPIFFE ID starts with `prefix` on a segment
    /// boundary, such as `spiffe://example.org/ns/prod`.
    pub fn allow_path_prefix(mut self, prefix: &str) -> Result<Self, CallerPolicyError> {
        let entry = parse_prefix(prefix)?;
        self.allow.path_prefixes.push(entry);
        Ok(self)
    }

    /// Denies the peer whose SPIFFE ID is exactly `id`, whatever the allow entries say.
    pub fn deny_spiffe_id(mut self, id: &str) -> Result<Self, CallerPolicyError> {
        let parsed = parse_id(id)?;
        self.deny.spiffe_ids.insert(parsed);
        Ok(self)
    }

    /// Denies every peer in `trust_domain`.
    pub fn deny_trust_domain(mut self, trust_domain: &str) -> Result<Self, CallerPolicyError> {
        let parsed = parse_trust_domain(trust_domain)?;
        self.deny.trust_domains.insert(parsed);
        Ok(self)
    }

    /// Denies every peer whose SPIFFE ID starts with `prefix` on a segment boundary.
    pub fn deny_path_prefix(mut self, prefix: &str) -> Result<Self, CallerPolicyError> {
        let entry = parse_prefix(prefix)?;
        self.deny.path_prefixes.push(entry);
        Ok(self)
    }

    /// Denies every peer for which `predicate` returns `true`.
    pub fn deny_if(mut self, predicate: impl Fn(&PeerIdentity) -> bool + Send + Sync + 'static) -> Self {
        self.deny.predicates.push(Arc::new(predicate));
        self
    }

    /// Allows every peer for which `predicate` returns `true`.
    pub fn allow_if(mut self, predicate: impl Fn(&PeerIdentity) -> bool + Send + Sync + 'static) -> Self {
        self.allow.predicates.push(Arc::new(predicate));
        self
    }

    /// Returns `true` if the policy has no allow entries, so it allows no caller.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty()
    }

    /// Returns `true` if `peer` may call: no deny entry matches and an allow entry does.
    pub fn allows(&self, peer: &PeerIdentity) -> bool {
        !self.deny.matches(peer) && self.allow.matches(peer)
    }
}

fn parse_id(value: &str) -> Result<SpiffeId, CallerPolicyError> {
    parse_spiffe_id(value).map_err(|source| CallerPolicyError {
        what: "SPIFFE ID",
        value: value.to_owned(),
        source,
    })
}

fn parse_trust_domain(value: &str) -> Result<TrustDomain, CallerPolicyError> {
    let error = |source| CallerPolicyError {
        what: "trust domain",
        value: value.to_owned(),
        source,
    };
    // The `spiffe` crate lower-cases trust domains; an upper-case one is refused
    // rather than silently matched.
    if value.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(error(SpiffeIdError::BadTrustDomainChar));
    }
    TrustDomain::new(value).map_err(error)
}

/// Parses a prefix, which must itself be a valid SPIFFE ID with a path.
fn parse_prefix(value: &str) -> Result<(TrustDomain, String), CallerPolicyError> {
    let id = parse_spiffe_id(value).map_err(|source| CallerPolicyError {
        what: "SPIFFE ID path prefix",
        value: value.to_owned(),
        source,
    })?;
    if id.path().is_empty() {
        return Err(CallerPolicyError {
            what: "SPIFFE ID path prefix (use allow_trust_domain for a whole trust domain)",
            value: value.to_owned(),
            source: SpiffeIdError::Empty,
        });
    }
    let domain = parse_trust_domain(id.trust_domain_name())?;
    Ok((domain, id.path().to_owned()))
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
    fn path_prefix_matches_whole_segments() {
        let policy = CallerPolicy::new().allow_path_prefix("spiffe://zerotrust.test/ns/prod").unwrap();

        assert!(policy.allows(&peer("spiffe://zerotrust.test/ns/prod")));
        assert!(policy.allows(&peer("spiffe://zerotrust.test/ns/prod/orders")));
        assert!(!policy.allows(&peer("spiffe://zerotrust.test/ns/production")));
        assert!(!policy.allows(&peer("spiffe://other.test/ns/prod/orders")));
    }

    #[test]
    fn deny_entries_win_over_allow() {
        let policy = CallerPolicy::new()
            .allow_trust_domain("zerotrust.test")
            .unwrap()
            .deny_spiffe_id("spiffe://zerotrust.test/legacy")
            .unwrap()
            .deny_path_prefix("spiffe://zerotrust.test/ns/dev")
            .unwrap();

        assert!(policy.allows(&peer("spiffe://zerotrust.test/gateway")));
        assert!(!policy.allows(&peer("spiffe://zerotrust.test/legacy")));
        assert!(!policy.allows(&peer("spiffe://zerotrust.test/ns/dev/orders")));
        assert!(policy.allows(&peer("spiffe://zerotrust.test/ns/devtools")));
    }

    #[test]
    fn deny_trust_domain_and_predicate() {
        let policy = CallerPolicy::new()
            .allow_if(|_| true)
            .deny_trust_domain("other.test")
            .unwrap()
            .deny_if(|p| p.spiffe_id().is_some_and(|id| id.path() == "/blocked"));

        assert!(policy.allows(&peer("spiffe://zerotrust.test/gateway")));
        assert!(!policy.allows(&peer("spiffe://other.test/gateway")));
        assert!(!policy.allows(&peer("spiffe://zerotrust.test/blocked")));
    }

    #[test]
    fn invalid_entries_are_errors() {
        let upper = CallerPolicy::new().allow_trust_domain("ZeroTrust.test").unwrap_err();
        let bad_id = CallerPolicy::new().allow_spiffe_id("spiffe://zerotrust.test/a/../b").unwrap_err();

        assert!(upper.to_string().contains("ZeroTrust.test"));
        assert!(bad_id.to_string().contains("SPIFFE ID"));
        assert!(CallerPolicy::new().allow_path_prefix("spiffe://zerotrust.test").is_err());
        assert!(CallerPolicy::new().allow_path_prefix("spiffe://zerotrust.test/ns/").is_err());
    }
}
