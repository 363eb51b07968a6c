//! Sealed `Mcp-Session-Id` tokens.
//!
//! A session id is AES-256-GCM over a compact binary payload (format version, session nonce,
//! subject binding, negotiated protocol version, client capability bits, issued-at, absolute
//! expiry), encoded base64url without padding (visible ASCII, as the spec requires). Any
//! replica holding the same key can open it without a shared store; only revocations (DELETE)
//! need shared state. Sealing costs one AES-GCM operation (no KDF per request): the key is
//! derived once at start.
//!
//! The subject binding is the first 16 bytes of SHA-256(sub), compared in constant time, so a
//! session id presented by another caller is treated exactly like an unknown one.
//!
//! Wire layout (format version 1):
//!
//! ```text
//! id        = base64url-no-pad( gcm_nonce[12] || ciphertext[51] || tag[16] )   -> 106 chars
//! plaintext = format(1) || nonce[16] || subject[16] || version(1) || caps(1)
//!             || issued_at(u64 BE) || expires_at(u64 BE)
//! AAD       = format(1)
//! ```
//!
//! The id has a fixed length, so anything else is rejected as malformed before any
//! cryptography runs; decoding and decryption work in stack buffers (the only allocation of a
//! seal is the returned string, and `open` allocates nothing).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::seal::{self, Sealer};
use crate::version::ProtocolVersion;

/// Client capabilities as bit flags: remembered in a legacy session, read from a modern
/// request's `_meta` (see [`caps::from_json`]), checked before the gateway relies on one.
pub mod caps {
    use serde_json::{json, Map, Value};

    /// Client declared `roots`.
    pub const ROOTS: u8 = 1;
    /// Client declared `sampling`.
    pub const SAMPLING: u8 = 2;
    /// Client declared `elicitation` (any mode).
    pub const ELICITATION: u8 = 4;
    /// Client supports form-mode elicitation (`elicitation.form`, or an empty `elicitation`
    /// object, which the spec reads as form only).
    pub const ELICITATION_FORM: u8 = 8;
    /// Client supports URL-mode elicitation (`elicitation.url`).
    pub const ELICITATION_URL: u8 = 16;
    /// Client supports tool use in sampling (`sampling.tools`).
    pub const SAMPLING_TOOLS: u8 = 32;
    /// Client supports context inclusion in sampling (`sampling.context`).
    pub const SAMPLING_CONTEXT: u8 = 64;

    /// Reads a `ClientCapabilities` object into bits. A capability counts as declared when its
    /// member is present (the spec's "present if the client supports"), whatever its value.
    pub fn from_json(caps: &Value) -> u8 {
        let mut bits = 0;
        if caps.get("roots").is_some() {
            bits |= ROOTS;
        }
        if let Some(s) = caps.get("sampling") {
            bits |= SAMPLING;
            if s.get("tools").is_some() {
                bits |= SAMPLING_TOOLS;
            }
            if s.get("context").is_some() {
                bits |= SAMPLING_CONTEXT;
            }
        }
        if let Some(e) = caps.get("elicitation") {
            bits |= ELICITATION;
            let form = e.get("form").is_some();
            let url = e.get("url").is_some();
            if form || !url {
                bits |= ELICITATION_FORM;
            }
            if url {
                bits |= ELICITATION_URL;
            }
        }
        bits
    }

    /// The `ClientCapabilities` object naming the capabilities in `bits` (the shape of
    /// `data.requiredCapabilities` in a -32021 error), e.g. `{"sampling":{}}`.
    pub fn to_json(bits: u8) -> Value {
        let mut out = Map::new();
        if bits & ROOTS != 0 {
            out.insert("roots".into(), json!({}));
        }
        if bits & (SAMPLING | SAMPLING_TOOLS | SAMPLING_CONTEXT) != 0 {
            let mut s = Map::new();
            if bits & SAMPLING_TOOLS != 0 {
                s.insert("tools".into(), json!({}));
            }
            if bits & SAMPLING_CONTEXT != 0 {
                s.insert("context".into(), json!({}));
            }
            out.insert("sampling".into(), Value::Object(s));
        }
        if bits & (ELICITATION | ELICITATION_FORM | ELICITATION_URL) != 0 {
            let mut e = Map::new();
            if bits & ELICITATION_FORM != 0 {
                e.insert("form".into(), json!({}));
            }
            if bits & ELICITATION_URL != 0 {
                e.insert("url".into(), json!({}));
            }
            out.insert("elicitation".into(), Value::Object(e));
        }
        Value::Object(out)
    }
}

/// The payload format written by this build; also bound as AAD so a future format cannot be
/// confused with this one.
const FORMAT_VERSION: u8 = 1;
/// The AAD of every seal: the format version.
const AAD: [u8; 1] = [FORMAT_VERSION];
/// Plaintext length: format + nonce + subject + version code + caps + issued_at + expires_at.
const PAYLOAD_LEN: usize = 1 + 16 + 16 + 1 + 1 + 8 + 8;
/// Decoded id length.
const SEALED_LEN: usize = PAYLOAD_LEN + seal::OVERHEAD;
/// Encoded id length (base64 without padding).
const ID_LEN: usize = (SEALED_LEN * 4).div_ceil(3);

/// Offsets of the plaintext fields.
const OFF_NONCE: usize = 1;
const OFF_SUBJECT: usize = OFF_NONCE + 16;
const OFF_VERSION: usize = OFF_SUBJECT + 16;
const OFF_CAPS: usize = OFF_VERSION + 1;
const OFF_ISSUED: usize = OFF_CAPS + 1;
const OFF_EXPIRES: usize = OFF_ISSUED + 8;

/// What a session id carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionClaims {
    /// 16 random bytes making the id unique (also the key for revocation and replay buffers).
    pub nonce: [u8; 16],
    /// First 16 bytes of SHA-256 of the subject the session belongs to.
    pub subject: [u8; 16],
    /// The negotiated protocol version.
    pub version: ProtocolVersion,
    /// Client capability bits ([`caps`]).
    pub client_caps: u8,
    /// Issued at, seconds since the Unix epoch.
    pub issued_at: u64,
    /// Absolute expiry, seconds since the Unix epoch.
    pub expires_at: u64,
}

impl SessionClaims {
    /// The subject binding of `sub`.
    pub fn bind_subject(sub: &str) -> [u8; 16] {
        let digest = Sha256::digest(sub.as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        out
    }

    /// Whether this session belongs to `sub` (constant-time comparison).
    pub fn belongs_to(&self, sub: &str) -> bool {
        ct_eq(&self.subject, &Self::bind_subject(sub))
    }

    /// The nonce as 32 lowercase hex characters (log- and map-friendly session key).
    pub fn key(&self) -> String {
        seal::hex16(&self.nonce)
    }

    /// Serialises the claims into the fixed plaintext layout.
    fn encode(&self) -> [u8; PAYLOAD_LEN] {
        let mut p = [0u8; PAYLOAD_LEN];
        p[0] = FORMAT_VERSION;
        p[OFF_NONCE..OFF_SUBJECT].copy_from_slice(&self.nonce);
        p[OFF_SUBJECT..OFF_VERSION].copy_from_slice(&self.subject);
        p[OFF_VERSION] = self.version.code();
        p[OFF_CAPS] = self.client_caps;
        p[OFF_ISSUED..OFF_EXPIRES].copy_from_slice(&self.issued_at.to_be_bytes());
        p[OFF_EXPIRES..].copy_from_slice(&self.expires_at.to_be_bytes());
        p
    }

    /// Parses an authenticated plaintext; an unknown format or version code is malformed.
    fn decode(p: &[u8; PAYLOAD_LEN]) -> Result<Self, SessionError> {
        if p[0] != FORMAT_VERSION {
            return Err(SessionError::Malformed);
        }
        // Sessions exist only in the legacy era; a modern version code is never sealed.
        let version = ProtocolVersion::from_code(p[OFF_VERSION])
            .filter(|v| v.era() == crate::version::Era::Legacy)
            .ok_or(SessionError::Malformed)?;
        Ok(SessionClaims {
            nonce: array_at(p, OFF_NONCE),
            subject: array_at(p, OFF_SUBJECT),
            version,
            client_caps: p[OFF_CAPS],
            issued_at: u64::from_be_bytes(array_at(p, OFF_ISSUED)),
            expires_at: u64::from_be_bytes(array_at(p, OFF_EXPIRES)),
        })
    }
}

/// Copies `N` bytes at `at` out of the plaintext (offsets are compile-time constants).
fn array_at<const N: usize>(p: &[u8; PAYLOAD_LEN], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&p[at..at + N]);
    out
}

/// Constant-time equality of two subject bindings: the time taken does not depend on where
/// the first differing byte is, so a caller cannot probe another subject's binding.
pub(crate) fn ct_eq(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Why a presented session id is not usable (all map to HTTP 404 for the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Not base64url, wrong length or unknown format version.
    #[error("malformed session id")]
    Malformed,
    /// Authentication tag mismatch: forged, altered, or sealed under another key.
    #[error("session id failed authentication")]
    Tampered,
    /// Past its absolute expiry.
    #[error("session expired")]
    Expired,
}

/// Seals and opens session ids under one 32-byte key.
#[derive(Clone)]
pub struct SessionSealer {
    sealer: Sealer,
}

impl std::fmt::Debug for SessionSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionSealer(..)")
    }
}

impl SessionSealer {
    /// A sealer for `key` (32 bytes; callers derive it from configuration).
    pub fn new(key: &[u8; 32]) -> Self {
        SessionSealer {
            sealer: Sealer::new(key),
        }
    }

    /// Seals `claims` into a session id (random 96-bit AES-GCM nonce per id), on the stack.
    pub fn seal(&self, claims: &SessionClaims) -> String {
        self.seal_payload(&claims.encode())
    }

    /// Encrypts an already encoded plaintext into an id.
    fn seal_payload(&self, payload: &[u8; PAYLOAD_LEN]) -> String {
        let mut buf = [0u8; SEALED_LEN];
        buf[seal::NONCE_LEN..seal::NONCE_LEN + PAYLOAD_LEN].copy_from_slice(payload);
        match self.sealer.seal_in_place(&AAD, &mut buf) {
            Ok(()) => URL_SAFE_NO_PAD.encode(buf),
            // AES-GCM only refuses plaintexts beyond 2^36 bytes; ours is a fixed 51 bytes.
            Err(e) => unreachable!("sealing a {PAYLOAD_LEN}-byte session id failed: {e}"),
        }
    }

    /// Opens a session id; `now` is seconds since the Unix epoch.
    pub fn open(&self, id: &str, now: u64) -> Result<SessionClaims, SessionError> {
        if id.len() != ID_LEN {
            return Err(SessionError::Malformed);
        }
        let mut buf = [0u8; SEALED_LEN];
        let decoded = URL_SAFE_NO_PAD
            .decode_slice(id.as_bytes(), &mut buf)
            .map_err(|_| SessionError::Malformed)?;
        if decoded != SEALED_LEN {
            return Err(SessionError::Malformed);
        }
        let body = self
            .sealer
            .open_in_place(&AAD, &mut buf)
            .map_err(|_| SessionError::Tampered)?;
        let plain: &[u8; PAYLOAD_LEN] = body.try_into().map_err(|_| SessionError::Malformed)?;
        let claims = SessionClaims::decode(plain)?;
        if now >= claims.expires_at {
            return Err(SessionError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7u8; 32];
    const NOW: u64 = 1_700_000_000;

    fn claims() -> SessionClaims {
        SessionClaims {
            nonce: [
                0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0xfc, 0xfd,
                0xfe, 0xff,
            ],
            subject: SessionClaims::bind_subject("alice"),
            version: ProtocolVersion::V2025_06_18,
            client_caps: caps::ROOTS | caps::ELICITATION,
            issued_at: NOW,
            expires_at: NOW + 3600,
        }
    }

    fn decode(id: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(id).unwrap()
    }

    #[test]
    fn layout_constants_match_the_documented_format() {
        assert_eq!(PAYLOAD_LEN, 51);
        assert_eq!(SEALED_LEN, 79);
        assert_eq!(ID_LEN, 106);
        assert_eq!(OFF_EXPIRES + 8, PAYLOAD_LEN);
    }

    #[test]
    fn round_trip_preserves_every_field() {
        let sealer = SessionSealer::new(&KEY);
        for version in crate::version::SUPPORTED {
            for caps_bits in [0, caps::ROOTS, caps::SAMPLING, 0xff] {
                let c = SessionClaims {
                    version,
                    client_caps: caps_bits,
                    issued_at: u64::MAX - 1,
                    expires_at: u64::MAX,
                    ..claims()
                };
                let id = sealer.seal(&c);
                assert_eq!(id.len(), ID_LEN);
                assert_eq!(sealer.open(&id, NOW).unwrap(), c);
            }
        }
    }

    #[test]
    fn a_clone_and_a_second_sealer_with_the_same_key_open_the_id() {
        let id = SessionSealer::new(&KEY).seal(&claims());
        let replica = SessionSealer::new(&KEY);
        assert_eq!(replica.open(&id, NOW).unwrap(), claims());
        assert_eq!(replica.clone().open(&id, NOW).unwrap(), claims());
    }

    #[test]
    fn plaintext_layout_is_the_documented_one() {
        let p = claims().encode();
        assert_eq!(p[0], 1);
        assert_eq!(&p[1..17], &claims().nonce);
        assert_eq!(&p[17..33], &claims().subject);
        assert_eq!(p[33], ProtocolVersion::V2025_06_18.code());
        assert_eq!(p[34], caps::ROOTS | caps::ELICITATION);
        assert_eq!(&p[35..43], &NOW.to_be_bytes());
        assert_eq!(&p[43..51], &(NOW + 3600).to_be_bytes());
        assert_eq!(SessionClaims::decode(&p).unwrap(), claims());
    }

    #[test]
    fn flipping_any_bit_of_the_sealed_bytes_is_tampered() {
        let sealer = SessionSealer::new(&KEY);
        let raw = decode(&sealer.seal(&claims()));
        assert_eq!(raw.len(), SEALED_LEN);
        for i in 0..raw.len() {
            for bit in 0..8 {
                let mut bad = raw.clone();
                bad[i] ^= 1 << bit;
                let id = URL_SAFE_NO_PAD.encode(&bad);
                assert_eq!(
                    sealer.open(&id, NOW),
                    Err(SessionError::Tampered),
                    "byte {i} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn changing_any_character_of_the_id_never_opens() {
        let sealer = SessionSealer::new(&KEY);
        let id = sealer.seal(&claims());
        for i in 0..id.len() {
            let mut bytes = id.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let bad = String::from_utf8(bytes).unwrap();
            let got = sealer.open(&bad, NOW);
            // The last character also carries padding bits, which base64 rejects outright.
            assert!(
                matches!(got, Err(SessionError::Tampered | SessionError::Malformed)),
                "position {i}: {got:?}"
            );
        }
    }

    #[test]
    fn another_key_is_tampered() {
        let id = SessionSealer::new(&KEY).seal(&claims());
        let mut other = KEY;
        other[31] ^= 1;
        assert_eq!(
            SessionSealer::new(&other).open(&id, NOW),
            Err(SessionError::Tampered)
        );
    }

    #[test]
    fn wrong_length_or_non_base64_is_malformed() {
        let sealer = SessionSealer::new(&KEY);
        let id = sealer.seal(&claims());
        let malformed = [
            String::new(),
            id[..ID_LEN - 1].to_owned(),
            id[..ID_LEN - 4].to_owned(),
            format!("{id}A"),
            format!("{id}=="),
            "!".repeat(ID_LEN),
            "é".repeat(ID_LEN / 2),
            // Standard-alphabet characters are not base64url.
            format!("+{}", &id[1..]),
            format!("{}/", &id[..ID_LEN - 1]),
            format!(" {}", &id[1..]),
            "not a session id".to_owned(),
            "00000000-0000-0000-0000-000000000000".to_owned(),
        ];
        for bad in &malformed {
            assert_eq!(
                sealer.open(bad, NOW),
                Err(SessionError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn non_canonical_trailing_bits_are_malformed() {
        let sealer = SessionSealer::new(&KEY);
        let id = sealer.seal(&claims());
        // 79 bytes end in one byte = 2 characters; the second keeps only 2 significant bits.
        let last = id.as_bytes()[ID_LEN - 1];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let pos = alphabet.iter().position(|&c| c == last).unwrap();
        let twin = alphabet[pos ^ 1];
        let bad = format!("{}{}", &id[..ID_LEN - 1], char::from(twin));
        assert_eq!(sealer.open(&bad, NOW), Err(SessionError::Malformed));
    }

    #[test]
    fn right_length_random_bytes_fail_authentication() {
        let sealer = SessionSealer::new(&KEY);
        let garbage = URL_SAFE_NO_PAD.encode([0x5au8; SEALED_LEN]);
        assert_eq!(garbage.len(), ID_LEN);
        assert_eq!(sealer.open(&garbage, NOW), Err(SessionError::Tampered));
        let zeros = "A".repeat(ID_LEN);
        assert_eq!(sealer.open(&zeros, NOW), Err(SessionError::Tampered));
    }

    #[test]
    fn unknown_format_or_version_code_inside_a_valid_seal_is_malformed() {
        let sealer = SessionSealer::new(&KEY);
        let mut p = claims().encode();
        p[0] = 2;
        assert_eq!(
            sealer.open(&sealer.seal_payload(&p), NOW),
            Err(SessionError::Malformed)
        );
        let mut p = claims().encode();
        p[OFF_VERSION] = 0;
        assert_eq!(
            sealer.open(&sealer.seal_payload(&p), NOW),
            Err(SessionError::Malformed)
        );
        let mut p = claims().encode();
        p[OFF_VERSION] = ProtocolVersion::V2026_07_28.code();
        assert_eq!(
            sealer.open(&sealer.seal_payload(&p), NOW),
            Err(SessionError::Malformed),
            "a modern version never lives in a session"
        );
        let p = claims().encode();
        assert_eq!(sealer.open(&sealer.seal_payload(&p), NOW), Ok(claims()));
    }

    #[test]
    fn expiry_is_exclusive_and_checked_after_authentication() {
        let sealer = SessionSealer::new(&KEY);
        let c = claims();
        let id = sealer.seal(&c);
        assert_eq!(sealer.open(&id, c.expires_at - 1), Ok(c.clone()));
        assert_eq!(sealer.open(&id, c.expires_at), Err(SessionError::Expired));
        assert_eq!(sealer.open(&id, u64::MAX), Err(SessionError::Expired));
        let mut other = KEY;
        other[0] ^= 0x80;
        assert_eq!(
            SessionSealer::new(&other).open(&id, u64::MAX),
            Err(SessionError::Tampered)
        );
        let already = SessionClaims {
            expires_at: 0,
            ..claims()
        };
        assert_eq!(
            sealer.open(&sealer.seal(&already), 0),
            Err(SessionError::Expired)
        );
    }

    #[test]
    fn subject_binding() {
        let c = claims();
        assert!(c.belongs_to("alice"));
        assert!(!c.belongs_to("bob"));
        assert!(!c.belongs_to("Alice"));
        assert!(!c.belongs_to(""));
        assert!(!c.belongs_to("alice "));
        let expected = Sha256::digest(b"alice");
        assert_eq!(SessionClaims::bind_subject("alice"), expected[..16]);
        assert_ne!(
            SessionClaims::bind_subject("alice"),
            SessionClaims::bind_subject("bob")
        );
        let opened = SessionSealer::new(&KEY)
            .open(&SessionSealer::new(&KEY).seal(&c), NOW)
            .unwrap();
        assert!(opened.belongs_to("alice"));
        assert!(!opened.belongs_to("mallory"));
    }

    #[test]
    fn constant_time_eq_compares_every_byte() {
        let a = [3u8; 16];
        assert!(ct_eq(&a, &a));
        for i in 0..16 {
            let mut b = a;
            b[i] ^= 0x01;
            assert!(!ct_eq(&a, &b), "byte {i}");
        }
    }

    #[test]
    fn ids_are_visible_ascii_and_unique() {
        let sealer = SessionSealer::new(&KEY);
        let mut seen = std::collections::HashSet::new();
        for i in 0..500u64 {
            let c = SessionClaims {
                issued_at: i,
                ..claims()
            };
            let id = sealer.seal(&c);
            assert!(
                id.bytes().all(|b| (0x21..=0x7e).contains(&b)),
                "non-visible character in {id}"
            );
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn two_seals_of_the_same_claims_differ() {
        let sealer = SessionSealer::new(&KEY);
        let a = sealer.seal(&claims());
        let b = sealer.seal(&claims());
        assert_ne!(a, b);
        assert_ne!(decode(&a)[..seal::NONCE_LEN], decode(&b)[..seal::NONCE_LEN]);
        assert_eq!(sealer.open(&a, NOW), sealer.open(&b, NOW));
    }

    #[test]
    fn key_is_lowercase_hex_of_the_nonce() {
        assert_eq!(claims().key(), "000102030405060708090a0bfcfdfeff");
        let zero = SessionClaims {
            nonce: [0; 16],
            ..claims()
        };
        assert_eq!(zero.key(), "0".repeat(32));
    }

    #[test]
    fn capability_bits_from_and_to_json() {
        use serde_json::json;
        assert_eq!(caps::from_json(&json!({})), 0);
        assert_eq!(caps::from_json(&json!(null)), 0);
        assert_eq!(caps::from_json(&json!({"roots": {}})), caps::ROOTS);
        assert_eq!(
            caps::from_json(&json!({"elicitation": {}})),
            caps::ELICITATION | caps::ELICITATION_FORM,
            "an empty elicitation object means form mode only"
        );
        assert_eq!(
            caps::from_json(&json!({"elicitation": {"url": {}}})),
            caps::ELICITATION | caps::ELICITATION_URL
        );
        assert_eq!(
            caps::from_json(&json!({"elicitation": {"url": {}, "form": {}}})),
            caps::ELICITATION | caps::ELICITATION_URL | caps::ELICITATION_FORM
        );
        assert_eq!(
            caps::from_json(&json!({"sampling": {"tools": {}}, "experimental": {"x": {}}})),
            caps::SAMPLING | caps::SAMPLING_TOOLS
        );
        assert_eq!(
            caps::from_json(&json!({"sampling": {"context": {}}})),
            caps::SAMPLING | caps::SAMPLING_CONTEXT
        );
        assert_eq!(caps::to_json(0), json!({}));
        assert_eq!(caps::to_json(caps::SAMPLING), json!({"sampling": {}}));
        assert_eq!(
            caps::to_json(caps::ELICITATION_URL),
            json!({"elicitation": {"url": {}}})
        );
        assert_eq!(
            caps::to_json(caps::ROOTS | caps::SAMPLING_TOOLS),
            json!({"roots": {}, "sampling": {"tools": {}}})
        );
        // Every combination survives a round trip through the JSON form.
        for bits in 0..=127u8 {
            let j = caps::to_json(bits);
            let back = caps::from_json(&j);
            // `to_json` of a bare mode bit implies the umbrella bit, nothing else.
            let mut expected = bits;
            if bits & (caps::SAMPLING_TOOLS | caps::SAMPLING_CONTEXT) != 0 {
                expected |= caps::SAMPLING;
            }
            if bits & (caps::ELICITATION_FORM | caps::ELICITATION_URL) != 0 {
                expected |= caps::ELICITATION;
            }
            if expected & caps::ELICITATION != 0 && expected & caps::ELICITATION_URL == 0 {
                expected |= caps::ELICITATION_FORM;
            }
            assert_eq!(back, expected, "bits {bits:#b} -> {j}");
        }
    }

    #[test]
    fn debug_does_not_leak_the_key() {
        let s = format!("{:?}", SessionSealer::new(&KEY));
        assert_eq!(s, "SessionSealer(..)");
    }
}
