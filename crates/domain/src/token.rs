//! API tokens. A token is a random secret shown once; only its SHA-256 hash is
//! stored. The secret has 256 bits of entropy, so a fast hash is enough: there
//! is nothing to brute-force that a slow password hash would protect.
//! Tokens are only ever compared as hashes (by the database's index, see
//! `Store::find_token`), which is what makes that comparison safe against
//! timing: an attacker cannot choose the bytes of the hash being compared.

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::ValidationError;

pub type TokenHash = [u8; 32];

/// A fresh random token: 64 hexadecimal characters.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn hash_token(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// Extracts the token from an `Authorization` header value. The 3.x clients
/// send the configured value verbatim (`Token <t>`), 4.x adds `Token ` itself,
/// and generic HTTP tools send `Bearer <t>`: the scheme is case-insensitive.
pub fn token_from_authorization(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    let known_scheme =
        scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer");
    (known_scheme && !token.is_empty() && !token.contains(' ')).then_some(token)
}

/// The email a token acts as: shown in audit events and as `created_by`.
pub fn validate_email(email: &str) -> Result<(), ValidationError> {
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(email.split_once('@'), Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    if valid {
        Ok(())
    } else {
        Err(ValidationError::new(format!(
            "Invalid email '{email}': use an address like user@example.com"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_stably() {
        let (a, b) = (generate_token(), generate_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
    }

    #[test]
    fn authorization_schemes() {
        assert_eq!(token_from_authorization("Token abc"), Some("abc"));
        assert_eq!(token_from_authorization("token abc"), Some("abc"));
        assert_eq!(token_from_authorization("Bearer abc"), Some("abc"));
        assert_eq!(token_from_authorization("BEARER  abc "), Some("abc"));
        assert_eq!(token_from_authorization("abc"), None);
        assert_eq!(token_from_authorization("Basic abc"), None);
        assert_eq!(token_from_authorization("Token "), None);
        assert_eq!(token_from_authorization("Token a b"), None);
    }

    #[test]
    fn emails() {
        assert!(validate_email("user@example.com").is_ok());
        for bad in ["", "user", "@x", "a@", "a b@c", "a@b@c"] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
    }
}
