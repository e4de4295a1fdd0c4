//! Encryption at rest for secret environment variables: AES-256-GCM with a
//! random nonce per value. Each sealed value records the id of the key that
//! sealed it, so keys can rotate: new values use the current key, values
//! sealed with a previous key still open.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::ValidationError;

const NONCE_LENGTH: usize = 12;

/// A value sealed by [`Keyring::seal`]: `nonce || ciphertext || tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("no configured key has id {0}: was UBIOPS_SECRET_KEY changed without listing the old key in UBIOPS_PREVIOUS_SECRET_KEYS?")]
    UnknownKey(String),
    #[error(
        "a sealed value with key id {0} failed authentication: it was altered or the key is wrong"
    )]
    Tampered(String),
}

struct SecretKey {
    id: String,
    cipher: Aes256Gcm,
}

impl SecretKey {
    fn from_hex(hex_key: &str) -> Result<Self, ValidationError> {
        let bytes = hex::decode(hex_key.trim())
            .ok()
            .filter(|bytes| bytes.len() == 32)
            .ok_or_else(|| {
                ValidationError::new("a secret key must be 64 hexadecimal characters (32 bytes), e.g. from `openssl rand -hex 32`")
            })?;
        // The id names the key without revealing it.
        let digest = Sha256::digest([b"ubiops-secret-key:".as_slice(), &bytes].concat());
        Ok(SecretKey {
            id: hex::encode(&digest[..8]),
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
        })
    }
}

/// The current key and any previous ones. Its Debug output shows key ids only.
pub struct Keyring {
    current: SecretKey,
    previous: Vec<SecretKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Keyring {
    pub fn from_hex(current: &str, previous: &[&str]) -> Result<Self, ValidationError> {
        Ok(Keyring {
            current: SecretKey::from_hex(current)?,
            previous: previous
                .iter()
                .map(|key| SecretKey::from_hex(key))
                .collect::<Result<_, _>>()?,
        })
    }

    /// A fresh random key, hex-encoded.
    pub fn generate_key_hex() -> String {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        hex::encode(bytes)
    }

    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    pub fn seal(&self, plaintext: &str) -> Sealed {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .current
            .cipher
            .encrypt(&nonce, plaintext.as_bytes())
            .expect("AES-GCM encryption of an in-memory value cannot fail");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ciphertext);
        Sealed {
            key_id: self.current.id.clone(),
            bytes,
        }
    }

    pub fn open(&self, sealed: &Sealed) -> Result<String, SecretError> {
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|key| key.id == sealed.key_id)
            .ok_or_else(|| SecretError::UnknownKey(sealed.key_id.clone()))?;
        let tampered = || SecretError::Tampered(sealed.key_id.clone());
        if sealed.bytes.len() < NONCE_LENGTH {
            return Err(tampered());
        }
        let (nonce, ciphertext) = sealed.bytes.split_at(NONCE_LENGTH);
        let plaintext = key
            .cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| tampered())?;
        String::from_utf8(plaintext).map_err(|_| tampered())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_without_the_plaintext_in_the_bytes() {
        let keyring = Keyring::from_hex(&Keyring::generate_key_hex(), &[]).unwrap();
        let sealed = keyring.seal("hunter2-secret-value");
        assert!(!sealed.bytes.windows(6).any(|w| w == b"hunter"));
        assert_eq!(keyring.open(&sealed).unwrap(), "hunter2-secret-value");
        // A fresh nonce each time.
        assert_ne!(keyring.seal("same").bytes, keyring.seal("same").bytes);
        assert_eq!(keyring.open(&keyring.seal("")).unwrap(), "");
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let (old, new) = (Keyring::generate_key_hex(), Keyring::generate_key_hex());
        let before = Keyring::from_hex(&old, &[]).unwrap();
        let sealed = before.seal("value");
        let after = Keyring::from_hex(&new, &[&old]).unwrap();
        assert_eq!(after.open(&sealed).unwrap(), "value");
        assert_ne!(after.seal("value").key_id, sealed.key_id);
        let forgotten = Keyring::from_hex(&new, &[]).unwrap();
        assert!(matches!(
            forgotten.open(&sealed),
            Err(SecretError::UnknownKey(_))
        ));
    }

    #[test]
    fn tampering_is_detected() {
        let keyring = Keyring::from_hex(&Keyring::generate_key_hex(), &[]).unwrap();
        let mut sealed = keyring.seal("value");
        let last = sealed.bytes.len() - 1;
        sealed.bytes[last] ^= 1;
        assert!(matches!(
            keyring.open(&sealed),
            Err(SecretError::Tampered(_))
        ));
        sealed.bytes.truncate(3);
        assert!(keyring.open(&sealed).is_err());
    }

    #[test]
    fn bad_keys_are_refused_and_never_shown() {
        assert!(Keyring::from_hex("abc", &[]).is_err());
        assert!(Keyring::from_hex(&"zz".repeat(32), &[]).is_err());
        let key = Keyring::generate_key_hex();
        let keyring = Keyring::from_hex(&key, &[]).unwrap();
        assert!(!format!("{keyring:?}").contains(&key));
    }
}
