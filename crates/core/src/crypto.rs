//! Wappi tokens at rest: AES-256-GCM with the owner's user id as associated data, so a
//! ciphertext copied into another user's row does not decrypt.
//!
//! Stored form: `v1:` followed by standard base64 (with padding) of `nonce (12 bytes) ||
//! ciphertext || tag (16 bytes)`. The version prefix leaves room for a key rotation or another
//! cipher later. The nonce comes from the caller (the `Entropy` port), because the core draws
//! no randomness itself; it must be fresh random bytes for every encryption.

use crate::model::secret::Secret;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::fmt;

/// The prefix of the current stored format.
const V1: &str = "v1:";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why a key could not be loaded or a stored token could not be read. The texts never
/// contain the key, the token or the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("the encryption key is not valid base64")]
    KeyNotBase64,
    #[error("the encryption key must be 32 bytes (base64 of 32 random bytes), got {0} bytes")]
    KeyLength(usize),
    #[error("the stored token is not in a known format")]
    Format,
    /// Wrong key, wrong user (associated data) or a changed ciphertext: GCM cannot tell which.
    #[error("the stored token does not decrypt with this key for this user")]
    Decrypt,
    #[error("the decrypted token is not UTF-8")]
    NotUtf8,
}

/// Encrypts and decrypts Wappi tokens with one AES-256-GCM key.
#[derive(Clone)]
pub struct TokenCipher {
    aead: Aes256Gcm,
}

impl fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenCipher(***)")
    }
}

impl TokenCipher {
    /// Loads a key given as standard base64 of exactly 32 bytes (surrounding whitespace is
    /// ignored), e.g. the output of `openssl rand -base64 32`.
    pub fn from_base64_key(s: &str) -> Result<Self, CryptoError> {
        let bytes = STANDARD
            .decode(s.trim())
            .map_err(|_| CryptoError::KeyNotBase64)?;
        let aead =
            Aes256Gcm::new_from_slice(&bytes).map_err(|_| CryptoError::KeyLength(bytes.len()))?;
        Ok(TokenCipher { aead })
    }

    /// Encrypts `plain` bound to `aad` (the owner's user id) with a fresh random `nonce`;
    /// returns the stored form (`v1:` + base64).
    pub fn encrypt(&self, plain: &Secret, aad: &[u8], nonce: [u8; 12]) -> String {
        let sealed = self
            .aead
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain.expose().as_bytes(),
                    aad,
                },
            )
            // AES-GCM only fails on plaintexts of more than 64 GiB.
            .expect("AES-GCM encryption of a token cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        format!("{V1}{}", STANDARD.encode(out))
    }

    /// Decrypts a stored token; fails unless the key and `aad` are the ones it was sealed
    /// with and nothing was changed.
    pub fn decrypt(&self, stored: &str, aad: &[u8]) -> Result<Secret, CryptoError> {
        let b64 = stored.trim().strip_prefix(V1).ok_or(CryptoError::Format)?;
        let raw = STANDARD.decode(b64).map_err(|_| CryptoError::Format)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Format);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let plain = self
            .aead
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
            .map_err(|_| CryptoError::Decrypt)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| CryptoError::NotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="; // bytes 0..32
    const OTHER_KEY: &str = "HxcUDR0aBQkSEQQbCxMWDwoHAh4BDgYDEBkMCAAYFRw=";

    fn cipher(key: &str) -> TokenCipher {
        TokenCipher::from_base64_key(key).unwrap()
    }

    fn token() -> Secret {
        Secret::new("sentinel-wappi-token-0123456789abcdef")
    }

    #[test]
    fn round_trip() {
        let c = cipher(KEY);
        let stored = c.encrypt(&token(), b"42", [7; 12]);
        assert!(stored.starts_with("v1:"));
        assert!(!stored.contains("sentinel"));
        assert_eq!(c.decrypt(&stored, b"42").unwrap(), token());
        // Another nonce, another ciphertext, same token.
        let again = c.encrypt(&token(), b"42", [8; 12]);
        assert_ne!(again, stored);
        assert_eq!(c.decrypt(&again, b"42").unwrap(), token());
        assert_eq!(
            c.decrypt(&c.encrypt(&Secret::new(""), b"", [0; 12]), b"")
                .unwrap(),
            Secret::new("")
        );
    }

    #[test]
    fn wrong_aad_fails() {
        let c = cipher(KEY);
        let stored = c.encrypt(&token(), b"42", [1; 12]);
        assert_eq!(c.decrypt(&stored, b"43"), Err(CryptoError::Decrypt));
        assert_eq!(c.decrypt(&stored, b""), Err(CryptoError::Decrypt));
    }

    #[test]
    fn wrong_key_fails() {
        let stored = cipher(KEY).encrypt(&token(), b"42", [1; 12]);
        assert_eq!(
            cipher(OTHER_KEY).decrypt(&stored, b"42"),
            Err(CryptoError::Decrypt)
        );
    }

    #[test]
    fn tampering_fails() {
        let c = cipher(KEY);
        let stored = c.encrypt(&token(), b"42", [1; 12]);
        let mut raw = STANDARD.decode(&stored[3..]).unwrap();
        for i in [0, NONCE_LEN, raw.len() - 1] {
            raw[i] ^= 1;
            let forged = format!("v1:{}", STANDARD.encode(&raw));
            assert_eq!(
                c.decrypt(&forged, b"42"),
                Err(CryptoError::Decrypt),
                "byte {i}"
            );
            raw[i] ^= 1;
        }
        let cases = [
            "",
            "v1:",
            "v2:AAAA",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            "v1:not base64!",
            "v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBka", // 27 bytes: shorter than nonce + tag
        ];
        for bad in cases {
            assert_eq!(c.decrypt(bad, b"42"), Err(CryptoError::Format), "{bad:?}");
        }
        let truncated = &stored[..stored.len() - 4];
        assert!(c.decrypt(truncated, b"42").is_err());
    }

    #[test]
    fn bad_keys() {
        let cases = [
            ("", CryptoError::KeyLength(0)),
            (
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd",
                CryptoError::KeyLength(30),
            ),
            (
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gIQ==",
                CryptoError::KeyLength(34),
            ),
            ("this is not base64 at all", CryptoError::KeyNotBase64),
        ];
        for (key, want) in cases {
            let err = TokenCipher::from_base64_key(key).unwrap_err();
            assert_eq!(err, want, "{key:?}");
            assert!(
                key.is_empty() || !err.to_string().contains(key),
                "the key is not echoed"
            );
        }
        assert!(TokenCipher::from_base64_key(&format!("  {KEY}\n")).is_ok());
    }

    #[test]
    fn debug_hides_the_key() {
        let shown = format!("{:?}", cipher(KEY));
        assert_eq!(shown, "TokenCipher(***)");
    }
}
