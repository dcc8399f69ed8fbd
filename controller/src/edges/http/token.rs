//! Bearer tokens, for both homes: the per-evaluation results tokens and the API token of
//! `slipway run`. Generated from the operating system's generator (failing loudly, never a weak
//! token), kept only as SHA-256 hashes where Slipway stores them, compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A fresh token: 32 random bytes as 64 hex digits. Fails when the operating system cannot
/// give random bytes; the caller must not carry on without a token.
pub fn generate() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        std::io::Error::other(format!("the system's random number generator failed: {e}"))
    })?;
    Ok(crate::decide::hex(&bytes))
}

/// The SHA-256 of a token, as 64 hex digits: what is stored instead of the token.
pub fn hash(token: &str) -> String {
    crate::decide::hex(&digest(token.as_bytes()))
}

/// The SHA-256 of a token's bytes.
pub fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Whether `given` is the token whose hash is `stored_hash` (hex, as [`hash`] writes it).
pub fn matches_hash(given: &str, stored_hash: &str) -> bool {
    bool::from(hash(given).as_bytes().ct_eq(stored_hash.as_bytes()))
}

/// Whether `given` is `expected` (both raw tokens), in time that does not depend on where they
/// differ.
pub fn matches(given: &[u8], expected: &[u8]) -> bool {
    bool::from(digest(given).ct_eq(&digest(expected)))
}

/// The bearer token of an `Authorization` header value, if it carries one.
pub fn bearer(authorization: Option<&str>) -> Option<&str> {
    authorization
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The bearer token a request's headers carry, if any.
pub fn bearer_of(headers: &axum::http::HeaderMap) -> Option<String> {
    bearer(
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
    .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_distinct_and_hex() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_ne!(a, "0".repeat(64));
    }

    #[test]
    fn a_token_matches_its_hash_and_nothing_else() {
        let t = generate().unwrap();
        assert!(matches_hash(&t, &hash(&t)));
        assert!(!matches_hash("wrong", &hash(&t)));
        assert!(!matches_hash(&t, ""));
        assert!(matches(t.as_bytes(), t.as_bytes()));
        assert!(!matches(b"a", t.as_bytes()));
    }

    #[test]
    fn bearer_reads_only_bearer_headers() {
        assert_eq!(bearer(Some("Bearer abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
