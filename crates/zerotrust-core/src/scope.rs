//! Space-separated OAuth-style scopes.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// A set of scopes such as `orders:read orders:write` (RFC 6749 section 3.3 syntax).
///
/// Cheap to clone. Scopes are compared exactly, so `orders:read` does not imply
/// `orders:*` or the other way round.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Scopes(Arc<BTreeSet<String>>);

impl Scopes {
    /// Parses a space-separated scope string. Empty tokens are skipped.
    pub fn parse(value: &str) -> Self {
        value.split(' ').filter(|s| !s.is_empty()).collect()
    }

    /// Returns `true` if the set contains `scope` exactly.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    /// Iterates over the scopes in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Returns `true` if there are no scopes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Returns the number of scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl<S: Into<String>> FromIterator<S> for Scopes {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Scopes(Arc::new(iter.into_iter().map(Into::into).collect()))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for scope in self.iter() {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(scope)?;
            first = false;
        }
        Ok(())
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_skips_empty_tokens() {
        let scopes = Scopes::parse("  orders:read   orders:write ");

        assert_eq!(scopes.len(), 2);
        assert!(scopes.contains("orders:read"));
        assert!(scopes.contains("orders:write"));
        assert_eq!(scopes.to_string(), "orders:read orders:write");
    }

    #[test]
    fn contains_is_exact() {
        let scopes = Scopes::parse("orders:read");

        assert!(!scopes.contains("orders"));
        assert!(!scopes.contains("ORDERS:READ"));
    }
}
