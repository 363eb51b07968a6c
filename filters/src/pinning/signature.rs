//! Ed25519 keys in the forms Cortex uses, and signatures over a baseline file's signed blocks.

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use serde_json::{Map, Value};

use super::file::SIGNED_BLOCKS;
use super::{hex, PinningError, Signing};
use crate::canonical;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the key's 32 bytes follow.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// DER prefix of an Ed25519 PKCS#8 v1 private key (RFC 8410): the 32-byte seed follows.
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Standard base64, padding optional (as Node's decoder takes it).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The DER inside a PEM block labelled `label`, or the DER of bare base64. Literal `\n`
/// sequences count as newlines (env files often carry PEM on one line).
fn pem_der(text: &str, label: &str, what: &str) -> Result<Vec<u8>, PinningError> {
    let text = text.replace("\\n", "\n");
    let text = text.trim();
    let body = if let Some(rest) = text.strip_prefix("-----BEGIN ") {
        let (found, rest) = rest
            .split_once("-----")
            .ok_or_else(|| PinningError::Key(format!("{what}: malformed PEM header")))?;
        if found != label {
            return Err(PinningError::Key(format!(
                "{what}: expected a PEM `{label}`, got `{found}`{}",
                if found.contains("PRIVATE") && label == "PUBLIC KEY" {
                    " (a private key must not be given where the public key goes)"
                } else {
                    ""
                }
            )));
        }
        let end = format!("-----END {label}-----");
        rest.split_once(end.as_str())
            .map(|(body, _)| body)
            .ok_or_else(|| PinningError::Key(format!("{what}: PEM without `{end}`")))?
    } else {
        text
    };
    let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    BASE64
        .decode(compact)
        .map_err(|_| PinningError::Key(format!("{what}: the key is not valid base64")))
}

/// An Ed25519 public key that verifies baseline signatures.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerifyingKey([u8; 32]);

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", hex(&self.0))
    }
}

impl VerifyingKey {
    /// From an SPKI `PUBLIC KEY` PEM (or its base64 body), as `CORTEX_BASELINE_PUBLIC_KEY`
    /// holds it.
    pub fn from_pem(text: &str) -> Result<VerifyingKey, PinningError> {
        let what = "CORTEX_BASELINE_PUBLIC_KEY";
        let der = pem_der(text, "PUBLIC KEY", what)?;
        if der.starts_with(&PKCS8_PREFIX[..5]) {
            return Err(PinningError::Key(format!(
                "{what}: this is a private key; give the public key (`-----BEGIN PUBLIC KEY-----`)"
            )));
        }
        match der.strip_prefix(&SPKI_PREFIX[..]) {
            Some(key) if key.len() == 32 => {
                let mut raw = [0u8; 32];
                raw.copy_from_slice(key);
                Ok(VerifyingKey(raw))
            }
            _ => Err(PinningError::Key(format!(
                "{what}: not an Ed25519 public key (SPKI, 44 bytes)"
            ))),
        }
    }

    /// The SPKI PEM, as Node writes it (64-column base64, trailing newline).
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        pem("PUBLIC KEY", &der)
    }

    /// The 32 key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// An Ed25519 private key that signs baselines.
pub struct SigningKey(Ed25519KeyPair);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey(public {})",
            hex(self.0.public_key().as_ref())
        )
    }
}

impl SigningKey {
    /// From a PKCS#8 `PRIVATE KEY` PEM (or its base64 body), as `CORTEX_BASELINE_PRIVATE_KEY`
    /// holds it (what `openssl genpkey -algorithm ed25519` and Node write).
    pub fn from_pem(text: &str) -> Result<SigningKey, PinningError> {
        let what = "CORTEX_BASELINE_PRIVATE_KEY";
        let der = pem_der(text, "PRIVATE KEY", what)?;
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map(SigningKey)
            .map_err(|_| PinningError::Key(format!("{what}: not an Ed25519 private key (PKCS#8)")))
    }

    /// From a 32-byte seed (new keys: a seed from a secure random source).
    pub fn from_seed(seed: &[u8; 32]) -> Result<SigningKey, PinningError> {
        Ed25519KeyPair::from_seed_unchecked(seed)
            .map(SigningKey)
            .map_err(|_| PinningError::Key("not an Ed25519 seed".into()))
    }

    /// The PKCS#8 PEM of the key made from `seed` (what [`SigningKey::from_pem`] reads).
    pub fn pem_from_seed(seed: &[u8; 32]) -> String {
        let mut der = PKCS8_PREFIX.to_vec();
        der.extend_from_slice(seed);
        pem("PRIVATE KEY", &der)
    }

    /// Its public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        let mut raw = [0u8; 32];
        raw.copy_from_slice(self.0.public_key().as_ref());
        VerifyingKey(raw)
    }
}

/// The baseline keys configured (`CORTEX_BASELINE_PRIVATE_KEY`, `CORTEX_BASELINE_PUBLIC_KEY`).
#[derive(Debug, Default)]
pub struct BaselineKeys {
    signing: Option<SigningKey>,
    verifying: Option<VerifyingKey>,
}

impl BaselineKeys {
    /// Reads the two variables' values (`None` or empty: unset). Both set: they must be one
    /// pair.
    pub fn from_env(
        private_pem: Option<&str>,
        public_pem: Option<&str>,
    ) -> Result<BaselineKeys, PinningError> {
        fn set(v: Option<&str>) -> Option<&str> {
            v.filter(|s| !s.trim().is_empty())
        }
        let signing = set(private_pem).map(SigningKey::from_pem).transpose()?;
        let verifying = set(public_pem).map(VerifyingKey::from_pem).transpose()?;
        if let (Some(s), Some(v)) = (&signing, &verifying) {
            if s.verifying_key() != *v {
                return Err(PinningError::KeyMismatch);
            }
        }
        Ok(BaselineKeys { signing, verifying })
    }

    /// The key that signs baselines this gateway writes, if it holds one.
    pub fn signer(&self) -> Option<&SigningKey> {
        self.signing.as_ref()
    }

    /// The key baselines must be signed with: the configured public key, else the private
    /// key's public half; `None`: unsigned baselines.
    pub fn verifier(&self) -> Option<VerifyingKey> {
        self.verifying
            .or_else(|| self.signing.as_ref().map(SigningKey::verifying_key))
    }

    /// Who can mint approvals under these keys.
    pub fn signing(&self) -> Signing {
        match (&self.signing, &self.verifying) {
            (Some(_), _) => Signing::SelfSigned,
            (None, Some(_)) => Signing::Operator,
            (None, None) => Signing::None,
        }
    }
}

/// The bytes a signature covers: the canonical JSON of the [`SIGNED_BLOCKS`] present.
fn signed_payload(doc: &Map<String, Value>) -> Vec<u8> {
    let subset: Map<String, Value> = SIGNED_BLOCKS
        .iter()
        .filter_map(|k| doc.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    canonical::to_vec(&Value::Object(subset))
}

/// Signs a baseline document in place, writing Cortex's `trust` and `signature` members:
/// `created_at` (RFC 3339) is when, `signing` who ([`Signing::SelfSigned`] for the gateway,
/// [`Signing::Operator`] for offline tooling), `hint` an optional `public_key_hint`.
pub fn sign_document(
    doc: &mut Value,
    key: &SigningKey,
    created_at: &str,
    signing: Signing,
    hint: Option<&str>,
) -> Result<(), PinningError> {
    let obj = doc
        .as_object_mut()
        .ok_or_else(|| PinningError::Format("the document must be a JSON object".into()))?;
    let trust_level = match signing {
        Signing::Operator => "operator",
        Signing::SelfSigned | Signing::None => "self-signed",
    };
    let mut trust = Map::new();
    trust.insert(
        "signed_blocks".into(),
        Value::Array(SIGNED_BLOCKS.iter().map(|b| Value::from(*b)).collect()),
    );
    trust.insert("scope".into(), "partial".into());
    trust.insert("algorithm".into(), "Ed25519".into());
    trust.insert("trust_level".into(), trust_level.into());
    if let Some(hint) = hint {
        trust.insert("public_key_hint".into(), hint.into());
    }
    obj.insert("trust".into(), Value::Object(trust));
    let value = BASE64.encode(key.0.sign(&signed_payload(obj)).as_ref());
    let mut signature = Map::new();
    signature.insert("value".into(), value.into());
    signature.insert("created_at".into(), created_at.into());
    signature.insert("public_key".into(), key.verifying_key().to_pem().into());
    obj.insert("signature".into(), Value::Object(signature));
    Ok(())
}

/// Checks a signed baseline document against `key` (the configured key is the authority; the
/// embedded `public_key` only explains a failure).
pub fn verify_document(doc: &Value, key: &VerifyingKey) -> Result<(), PinningError> {
    let obj = doc
        .as_object()
        .ok_or_else(|| PinningError::Format("the document must be a JSON object".into()))?;
    let signature = obj.get("signature").ok_or(PinningError::Unsigned)?;
    let value = signature
        .get("value")
        .and_then(Value::as_str)
        .ok_or(PinningError::SignatureEncoding)?;
    let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = BASE64
        .decode(compact)
        .ok()
        .filter(|b| b.len() == 64)
        .ok_or(PinningError::SignatureEncoding)?;
    if key.verify(&signed_payload(obj), &bytes) {
        return Ok(());
    }
    let embedded = signature
        .get("public_key")
        .and_then(Value::as_str)
        .and_then(|pem| VerifyingKey::from_pem(pem).ok());
    match embedded {
        Some(other) if other != *key => Err(PinningError::OtherKey),
        _ => Err(PinningError::BadSignature),
    }
}
