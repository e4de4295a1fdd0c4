//! Tokens verified recently, so that authentication costs no database round
//! trip at steady state.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use ubiops_domain::token::TokenHash;

use crate::auth::Principal;

/// How long a verified token is trusted before the database is asked again:
/// the bound on how long a revoked token keeps working.
pub const DEFAULT_TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);

/// More live tokens than this in the cache clears it; only valid tokens are
/// cached, so this is a guard, not a working limit.
const MAX_ENTRIES: usize = 10_000;

/// Verified tokens by their SHA-256 hash (the raw token is never kept). Each
/// entry is trusted for `ttl` after it was read from the database, then
/// checked again, so a token revoked in the database (by the CLI or by any of
/// several server processes sharing it) is refused by every process within
/// `ttl`. Nothing is shared between processes, so nothing needs invalidating
/// across them. Unknown and revoked tokens are not cached: a new token works at
/// once, and a refused one is refused by the database every time.
///
/// A plain map behind a read-write lock: the hit path is a read lock and one
/// lookup, and a TTL with a size guard is all this needs.
pub struct TokenCache {
    ttl: Duration,
    entries: RwLock<HashMap<TokenHash, Verified>>,
}

struct Verified {
    principal: Principal,
    at: Instant,
}

impl TokenCache {
    /// `ttl` zero: no caching, every request asks the database.
    pub fn new(ttl: Duration) -> Self {
        TokenCache {
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The principal of a token verified less than `ttl` ago.
    pub(crate) fn get(&self, hash: &TokenHash) -> Option<Principal> {
        let entries = self.entries.read();
        entries
            .get(hash)
            .filter(|verified| verified.at.elapsed() < self.ttl)
            .map(|verified| verified.principal.clone())
    }

    /// Remembers a token just verified against the database.
    pub(crate) fn insert(&self, hash: TokenHash, principal: Principal) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.write();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, verified| verified.at.elapsed() < self.ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        let at = Instant::now();
        entries.insert(hash, Verified { principal, at });
    }

    /// Forgets a token the database no longer accepts.
    pub(crate) fn remove(&self, hash: &TokenHash) {
        let mut entries = self.entries.write();
        entries.remove(hash);
    }
}

#[cfg(test)]
mod tests {
    use ubiops_storage::Actor;

    use super::*;

    fn principal(email: &str) -> Principal {
        Principal {
            actor: Actor {
                email: email.to_owned(),
            },
            project_scope: None,
        }
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = TokenCache::new(Duration::from_millis(20));
        cache.insert([1; 32], principal("a@example.com"));
        assert_eq!(cache.get(&[1; 32]).unwrap().actor.email, "a@example.com");
        assert!(cache.get(&[2; 32]).is_none());
        std::thread::sleep(Duration::from_millis(20));
        assert!(cache.get(&[1; 32]).is_none(), "expired after the ttl");
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let cache = TokenCache::new(Duration::ZERO);
        cache.insert([1; 32], principal("a@example.com"));
        assert!(cache.get(&[1; 32]).is_none());
    }

    #[test]
    fn removed_entries_are_gone_and_the_size_is_bounded() {
        let cache = TokenCache::new(Duration::from_secs(60));
        cache.insert([1; 32], principal("a@example.com"));
        cache.remove(&[1; 32]);
        assert!(cache.get(&[1; 32]).is_none());
        for i in 0..=MAX_ENTRIES {
            let mut hash = [0; 32];
            hash[..8].copy_from_slice(&(i as u64).to_le_bytes());
            cache.insert(hash, principal("a@example.com"));
        }
        assert!(cache.entries.read().len() <= MAX_ENTRIES);
    }
}
