//! The one authenticated-encryption envelope of the gateway: AES-256-GCM with a random
//! 96-bit nonce, laid out as `nonce (12) | ciphertext | tag (16)`, with associated data that
//! separates what is sealed (a session id, a request state, a vault record can never be
//! opened as one another, even under the same key).
//!
//! It works in place on a buffer the caller owns, so a fixed-size token (a session id) is
//! sealed and opened without touching the heap; the callers lay out their own plaintext and
//! encode the result.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use rand::RngCore;

/// Bytes of the random nonce at the front of a sealed buffer.
pub const NONCE_LEN: usize = 12;
/// Bytes of the authentication tag at the end of a sealed buffer.
pub const TAG_LEN: usize = 16;
/// Bytes a seal adds to a plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Why a buffer could not be sealed or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The buffer is shorter than the nonce and the tag.
    #[error("sealed data is too short")]
    TooShort,
    /// The tag does not match: altered, forged, sealed under another key or for another
    /// purpose (associated data).
    #[error("sealed data failed authentication")]
    Tampered,
    /// AES-GCM refused the plaintext (only beyond 2^36 bytes).
    #[error("plaintext too large to seal")]
    TooLarge,
}

/// Seals and opens under one 32-byte key.
#[derive(Clone)]
pub struct Sealer {
    /// The expanded key, built once so each seal or open is one AEAD operation.
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// A sealer for `key`.
    pub fn new(key: &[u8; 32]) -> Self {
        Sealer {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// Seals in place: `buf` holds `[0; NONCE_LEN] | plaintext | [0; TAG_LEN]`; the nonce is
    /// drawn, the plaintext encrypted and the tag written.
    pub fn seal_in_place(&self, aad: &[u8], buf: &mut [u8]) -> Result<(), SealError> {
        if buf.len() < OVERHEAD {
            return Err(SealError::TooShort);
        }
        let (nonce, rest) = buf.split_at_mut(NONCE_LEN);
        // ThreadRng is a CSPRNG (ChaCha12) seeded and periodically reseeded from the OS; it
        // avoids a syscall per seal.
        rand::thread_rng().fill_bytes(nonce);
        let body_len = rest.len() - TAG_LEN;
        let (body, tag_out) = rest.split_at_mut(body_len);
        let tag = self
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(nonce), aad, body)
            .map_err(|_| SealError::TooLarge)?;
        tag_out.copy_from_slice(&tag);
        Ok(())
    }

    /// Opens in place: authenticates `buf` (as [`seal_in_place`](Self::seal_in_place) left
    /// it) under `aad` and returns the plaintext, decrypted within `buf`.
    pub fn open_in_place<'b>(&self, aad: &[u8], buf: &'b mut [u8]) -> Result<&'b [u8], SealError> {
        if buf.len() < OVERHEAD {
            return Err(SealError::TooShort);
        }
        let (nonce, rest) = buf.split_at_mut(NONCE_LEN);
        let body_len = rest.len() - TAG_LEN;
        let (body, tag) = rest.split_at_mut(body_len);
        self.cipher
            .decrypt_in_place_detached(Nonce::from_slice(nonce), aad, body, Tag::from_slice(tag))
            .map_err(|_| SealError::Tampered)?;
        Ok(body)
    }

    /// Seals `plaintext` into a new buffer.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut buf = vec![0u8; plaintext.len() + OVERHEAD];
        buf[NONCE_LEN..NONCE_LEN + plaintext.len()].copy_from_slice(plaintext);
        self.seal_in_place(aad, &mut buf)?;
        Ok(buf)
    }

    /// Opens a sealed buffer into its plaintext.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut buf = sealed.to_vec();
        let plain = self.open_in_place(aad, &mut buf)?;
        Ok(plain.to_vec())
    }
}

/// 16 bytes as 32 lowercase hex characters (log- and map-friendly keys of sealed things).
pub fn hex16(bytes: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(32);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_separation() {
        let s = Sealer::new(&[3u8; 32]);
        let sealed = s.seal(b"a", b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + OVERHEAD);
        assert_eq!(s.open(b"a", &sealed).unwrap(), b"hello");
        // Another purpose, another key, one flipped bit: refused.
        assert_eq!(s.open(b"b", &sealed), Err(SealError::Tampered));
        assert_eq!(
            Sealer::new(&[4u8; 32]).open(b"a", &sealed),
            Err(SealError::Tampered)
        );
        let mut bad = sealed.clone();
        bad[NONCE_LEN] ^= 1;
        assert_eq!(s.open(b"a", &bad), Err(SealError::Tampered));
        assert_eq!(
            s.open(b"a", &sealed[..OVERHEAD - 1]),
            Err(SealError::TooShort)
        );
        // Two seals of the same plaintext differ (random nonce).
        assert_ne!(s.seal(b"a", b"hello").unwrap(), sealed);
        // An empty plaintext is fine.
        let empty = s.seal(b"a", b"").unwrap();
        assert_eq!(s.open(b"a", &empty).unwrap(), b"");
    }

    #[test]
    fn hex_is_lowercase_and_fixed_width() {
        let mut b = [0u8; 16];
        b[0] = 0xab;
        b[15] = 0x01;
        assert_eq!(hex16(&b), "ab000000000000000000000000000001");
    }
}
