//! Tokens the gateway signs itself, for backends with `identity: mint`.
//!
//! A backend behind the gateway should not receive the caller's token (it was issued for the
//! gateway, and could be replayed against it): instead it gets a short-lived JWT whose `aud`
//! is that backend, `iss` the gateway, `sub` the caller, `scope` the caller's scopes that
//! concern that backend, and `azp`/`act` the OAuth client the caller used. The backend
//! verifies it against `/.well-known/jwks.json`.
//!
//! Keys: a PKCS#8 PEM file from configuration (`auth.mint.key_file`: ES256, EdDSA or RS256,
//! never rotated by the gateway), or keys the gateway generates (ES256 or EdDSA) and persists
//! in `<data_dir>/keys/mint-keys.json` (mode 0600). A generated key is replaced after
//! `rotate_after`; the previous one stays published until every token it signed has expired
//! (`ttl` + one minute of clock skew), then it is dropped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use jsonwebtoken::{DecodingKey, EncodingKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tracing::{info, warn};

use super::cache::{digest, DeadlineCache};
use super::jwt::{self, Alg};
use super::{unix_now, Principal, PrincipalKind};

/// Tokens signed by a retired key may still be in flight this much past their `ttl`.
const RETIRE_GRACE_SECS: u64 = 60;
/// Name of the persisted key file under `<data_dir>/keys/`.
const KEY_FILE: &str = "mint-keys.json";

/// Why minting keys cannot be set up or a token cannot be signed.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// File system.
    #[error("mint keys: {path}: {reason}")]
    Io {
        /// The file or folder.
        path: String,
        /// What happened.
        reason: String,
    },
    /// A key file does not hold a usable key.
    #[error("mint keys: {path}: {reason}")]
    BadKey {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A setting is invalid.
    #[error("auth.mint: {0}")]
    Config(String),
    /// Signing failed (should not happen with a valid key).
    #[error("cannot sign a token for backend {0}")]
    Sign(String),
}

/// One signing key and its public JWK.
struct SigningKey {
    kid: String,
    alg: Alg,
    key: EncodingKey,
    public_jwk: Value,
}

impl SigningKey {
    /// A P-256 (ES256), Ed25519 (EdDSA) or RSA (RS256) PKCS#8 key. `ring` reads it here, once,
    /// to check it and find its public half; tokens are signed through `jsonwebtoken`.
    fn from_pkcs8(pkcs8: &[u8], rng: &SystemRandom) -> Result<SigningKey, String> {
        let (alg, public, key) =
            if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, rng) {
                let public = DecodingKey::from_ec_der(k.public_key().as_ref());
                (Alg::ES256, public, EncodingKey::from_ec_der(pkcs8))
            } else if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8) {
                let public = DecodingKey::from_ed_der(k.public_key().as_ref());
                (Alg::EdDSA, public, EncodingKey::from_ed_der(pkcs8))
            } else if let Ok(k) = RsaKeyPair::from_pkcs8(pkcs8) {
                let parts: ring::rsa::PublicKeyComponents<Vec<u8>> = k.public().into();
                let public = DecodingKey::from_rsa_raw_components(&parts.n, &parts.e);
                (Alg::RS256, public, EncodingKey::from_rsa_der(pkcs8))
            } else {
                return Err("not a PKCS#8 P-256, Ed25519 or RSA (≥ 2048 bits) private key".into());
            };
        let jwk = jwt::public_jwk(alg, &public).map_err(|e| e.to_string())?;
        Ok(SigningKey {
            kid: jwk.common.key_id.clone().unwrap_or_default(),
            alg,
            key,
            public_jwk: serde_json::to_value(&jwk).map_err(|e| e.to_string())?,
        })
    }
}

/// A persisted generated key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    alg: String,
    created: u64,
    #[serde(default)]
    retired: Option<u64>,
    pkcs8: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredKeys {
    keys: Vec<StoredKey>,
}

/// The current key and the retired keys still published.
struct KeyRing {
    current: SigningKey,
    retired: Vec<(Value, u64)>,
    jwks: Bytes,
}

/// Where keys come from.
enum Source {
    File,
    Generated {
        path: PathBuf,
        alg: Alg,
        rotate_after: Duration,
    },
}

/// What a backend's minted token says (besides the caller).
#[derive(Debug, Clone, Copy)]
pub struct MintRequest<'a> {
    /// `aud`.
    pub audience: &'a str,
    /// The caller's scopes that concern this backend.
    pub scopes: &'a [String],
    /// The backend id (cache key, errors).
    pub backend_id: &'a str,
}

/// Signs tokens for `identity: mint` backends and publishes the keys.
pub struct Minter {
    issuer: String,
    ttl: Duration,
    source: Source,
    ring: RwLock<Arc<KeyRing>>,
    rng: SystemRandom,
    cache: DeadlineCache<String>,
}

/// Settings of a [`Minter`].
pub struct MintSettings<'a> {
    /// `iss`.
    pub issuer: String,
    /// Lifetime.
    pub ttl: Duration,
    /// `ES256` or `EdDSA` for generated keys.
    pub algorithm: &'a str,
    /// A configured key file.
    pub key_file: Option<&'a str>,
    /// The data directory for generated keys.
    pub data_dir: PathBuf,
    /// Rotation period of generated keys.
    pub rotate_after: Duration,
}

impl Minter {
    /// Loads (or generates and persists) the keys.
    pub fn new(s: MintSettings<'_>) -> Result<Minter, MintError> {
        if s.ttl.is_zero() {
            return Err(MintError::Config("ttl must be more than 0s".into()));
        }
        let rng = SystemRandom::new();
        let (source, ring) = match s.key_file {
            Some(file) => {
                let key = load_pem(Path::new(file), &rng)?;
                let ring = KeyRing::new(key, Vec::new());
                (Source::File, ring)
            }
            None => {
                let alg = match s.algorithm {
                    "ES256" => Alg::ES256,
                    "EdDSA" => Alg::EdDSA,
                    other => {
                        return Err(MintError::Config(format!(
                            "algorithm {other:?} cannot be generated; use ES256 or EdDSA (or give an RSA key_file for RS256)"
                        )))
                    }
                };
                if s.rotate_after.is_zero() {
                    return Err(MintError::Config(
                        "rotate_after must be more than 0s".into(),
                    ));
                }
                let path = s.data_dir.join("keys").join(KEY_FILE);
                let source = Source::Generated {
                    path,
                    alg,
                    rotate_after: s.rotate_after,
                };
                let ring = load_or_rotate(&source, s.ttl, &rng)?;
                (source, ring)
            }
        };
        Ok(Minter {
            issuer: s.issuer,
            ttl: s.ttl,
            source,
            ring: RwLock::new(Arc::new(ring)),
            rng,
            cache: DeadlineCache::new(10_000),
        })
    }

    fn ring(&self) -> Arc<KeyRing> {
        self.ring.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `iss` of minted tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The JWKS document (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> Bytes {
        self.ring().jwks.clone()
    }

    /// The `kid` of the current key.
    pub fn current_kid(&self) -> String {
        self.ring().current.kid.clone()
    }

    /// How often [`Minter::maybe_rotate`] should run.
    pub fn rotation_check_interval(&self) -> Option<Duration> {
        match &self.source {
            Source::File => None,
            Source::Generated { rotate_after, .. } => {
                Some((*rotate_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600)))
            }
        }
    }

    /// Rotates a generated key that is due, and drops retired keys whose tokens have expired.
    pub fn maybe_rotate(&self) -> Result<(), MintError> {
        if matches!(self.source, Source::File) {
            return Ok(());
        }
        let old = self.ring();
        let fresh = load_or_rotate(&self.source, self.ttl, &self.rng)?;
        if fresh.current.kid != old.current.kid || fresh.retired.len() != old.retired.len() {
            if fresh.current.kid != old.current.kid {
                self.cache.clear();
            }
            *self.ring.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        }
        Ok(())
    }

    /// A token for `p` at the backend described by `req`, reused while it has more than half
    /// of its lifetime left.
    pub fn mint(&self, p: &Principal, req: MintRequest<'_>) -> Result<String, MintError> {
        let scope = req.scopes.join(" ");
        let exp_cap = p.expires_at.unwrap_or(u64::MAX).to_string();
        let key = digest(&[
            b"mint",
            req.backend_id.as_bytes(),
            req.audience.as_bytes(),
            p.sub.as_bytes(),
            scope.as_bytes(),
            p.client_id.as_deref().unwrap_or("").as_bytes(),
            p.email.as_deref().unwrap_or("").as_bytes(),
            p.pool.as_deref().unwrap_or("").as_bytes(),
            p.role.as_deref().unwrap_or("").as_bytes(),
            exp_cap.as_bytes(),
        ]);
        if let Some(token) = self.cache.get(&key) {
            return Ok(token);
        }
        let ring = self.ring();
        let now = unix_now();
        let mut exp = now + self.ttl.as_secs().max(1);
        if let (PrincipalKind::Token, Some(caller_exp)) = (p.kind, p.expires_at) {
            // Never outlive the caller's own token.
            exp = exp.min(caller_exp);
        }
        let claims = self.claims(p, &req, &scope, now, exp);
        let current = &ring.current;
        let token = jwt::sign(current.alg, &current.kid, "at+jwt", &claims, &current.key)
            .map_err(|_| MintError::Sign(req.backend_id.to_string()))?;
        let half = Duration::from_secs(exp.saturating_sub(now) / 2);
        if !half.is_zero() {
            self.cache.insert(key, token.clone(), Instant::now() + half);
        }
        Ok(token)
    }

    fn claims(
        &self,
        p: &Principal,
        req: &MintRequest<'_>,
        scope: &str,
        now: u64,
        exp: u64,
    ) -> Value {
        let mut c = Map::new();
        c.insert("iss".into(), json!(self.issuer));
        c.insert("sub".into(), json!(p.sub));
        c.insert("aud".into(), json!(req.audience));
        c.insert("iat".into(), json!(now));
        c.insert("nbf".into(), json!(now));
        c.insert("exp".into(), json!(exp));
        c.insert("jti".into(), json!(self.jti()));
        c.insert("scope".into(), json!(scope));
        if let Some(client) = &p.client_id {
            c.insert("client_id".into(), json!(client));
            c.insert("azp".into(), json!(client));
            c.insert("act".into(), json!({"sub": client}));
        }
        if let Some(email) = &p.email {
            c.insert("email".into(), json!(email));
        }
        if let Some(pool) = &p.pool {
            c.insert("pool".into(), json!(pool));
        }
        if let Some(role) = &p.role {
            c.insert("metadata".into(), json!({"role": role}));
        }
        Value::Object(c)
    }

    fn jti(&self) -> String {
        let mut bytes = [0u8; 16];
        if self.rng.fill(&mut bytes).is_err() {
            // Not a secret, only unique: fall back to the clock.
            bytes[..8].copy_from_slice(&unix_now().to_le_bytes());
        }
        b64(&bytes)
    }
}

impl KeyRing {
    fn new(current: SigningKey, retired: Vec<(Value, u64)>) -> KeyRing {
        let mut keys = vec![current.public_jwk.clone()];
        keys.extend(retired.iter().map(|(jwk, _)| jwk.clone()));
        let jwks = Bytes::from(json!({ "keys": keys }).to_string());
        KeyRing {
            current,
            retired,
            jwks,
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Reads a PKCS#8 PEM private key.
fn load_pem(path: &Path, rng: &SystemRandom) -> Result<SigningKey, MintError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| MintError::Io {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let bad = |reason: &str| MintError::BadKey {
        path: shown.clone(),
        reason: reason.to_string(),
    };
    if text.contains("-----BEGIN EC PRIVATE KEY-----")
        || text.contains("-----BEGIN RSA PRIVATE KEY-----")
    {
        return Err(bad(
            "this is a SEC1/PKCS#1 key; convert it to PKCS#8: openssl pkcs8 -topk8 -nocrypt -in key.pem -out key.p8.pem",
        ));
    }
    let body = text
        .split("-----BEGIN PRIVATE KEY-----")
        .nth(1)
        .and_then(|rest| rest.split("-----END PRIVATE KEY-----").next())
        .ok_or_else(|| bad("no -----BEGIN PRIVATE KEY----- block (PKCS#8 PEM expected)"))?;
    let der: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = STANDARD
        .decode(der)
        .map_err(|_| bad("the PEM body is not base64"))?;
    SigningKey::from_pkcs8(&der, rng).map_err(|e| bad(&e))
}

/// The algorithm of the PKCS#8 PEM key in `path`, read as [`Minter::new`] reads a
/// configured key file. Nothing is written (`check-config` runs it).
pub fn key_file_algorithm(path: &Path) -> Result<Alg, MintError> {
    load_pem(path, &SystemRandom::new()).map(|key| key.alg)
}

/// Reads the generated keys persisted under `data_dir`, if any, as [`Minter::new`] would:
/// an unreadable or corrupt file is an error (it is never overwritten). Nothing is generated,
/// rotated or written (`check-config` runs it).
pub fn check_generated_keys(data_dir: &Path) -> Result<(), MintError> {
    let path = data_dir.join("keys").join(KEY_FILE);
    let stored = read_store(&path)?;
    let rng = SystemRandom::new();
    for k in &stored.keys {
        let bad = |reason: String| MintError::BadKey {
            path: path.display().to_string(),
            reason,
        };
        let der = URL_SAFE_NO_PAD
            .decode(&k.pkcs8)
            .map_err(|_| bad(format!("key {} is not base64url", k.kid)))?;
        SigningKey::from_pkcs8(&der, &rng).map_err(|e| bad(format!("key {}: {e}", k.kid)))?;
    }
    Ok(())
}

/// Loads the persisted keys, generating or rotating as due, and writes them back if changed.
fn load_or_rotate(
    source: &Source,
    ttl: Duration,
    rng: &SystemRandom,
) -> Result<KeyRing, MintError> {
    let Source::Generated {
        path,
        alg,
        rotate_after,
    } = source
    else {
        return Err(MintError::Config(
            "internal: not a generated key source".into(),
        ));
    };
    let now = unix_now();
    let mut stored = read_store(path)?;
    let mut changed = false;
    let keep_until = |retired: u64| retired + ttl.as_secs() + RETIRE_GRACE_SECS;
    let before = stored.keys.len();
    stored
        .keys
        .retain(|k| k.retired.is_none_or(|r| keep_until(r) > now));
    changed |= stored.keys.len() != before;
    let current_ok = stored
        .keys
        .iter()
        .rev()
        .find(|k| k.retired.is_none())
        .is_some_and(|k| k.alg == alg.as_str() && k.created + rotate_after.as_secs() > now);
    if !current_ok {
        for k in stored.keys.iter_mut().filter(|k| k.retired.is_none()) {
            k.retired = Some(now);
        }
        let (kid, pkcs8) = generate(*alg, rng)?;
        info!(kid = %kid, alg = %alg, file = %path.display(), "generated a new signing key for minted backend tokens");
        stored.keys.push(StoredKey {
            kid,
            alg: alg.as_str().into(),
            created: now,
            retired: None,
            pkcs8: b64(&pkcs8),
        });
        changed = true;
    }
    if changed {
        write_store(path, &stored)?;
    }
    build_ring(path, &stored, rng)
}

fn build_ring(path: &Path, stored: &StoredKeys, rng: &SystemRandom) -> Result<KeyRing, MintError> {
    let bad = |reason: String| MintError::BadKey {
        path: path.display().to_string(),
        reason,
    };
    let mut current = None;
    let mut retired = Vec::new();
    for k in &stored.keys {
        let der = URL_SAFE_NO_PAD
            .decode(&k.pkcs8)
            .map_err(|_| bad(format!("key {} is not base64url", k.kid)))?;
        let key =
            SigningKey::from_pkcs8(&der, rng).map_err(|e| bad(format!("key {}: {e}", k.kid)))?;
        match k.retired {
            None => current = Some(key),
            Some(r) => retired.push((key.public_jwk, r)),
        }
    }
    let current = current.ok_or_else(|| bad("no current key".into()))?;
    Ok(KeyRing::new(current, retired))
}

fn generate(alg: Alg, rng: &SystemRandom) -> Result<(String, Vec<u8>), MintError> {
    let pkcs8 = match alg {
        Alg::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng)
            .map(|d| d.as_ref().to_vec()),
        Alg::EdDSA => Ed25519KeyPair::generate_pkcs8(rng).map(|d| d.as_ref().to_vec()),
        _ => return Err(MintError::Config(format!("cannot generate {alg} keys"))),
    }
    .map_err(|_| MintError::Config("the system random generator failed".into()))?;
    let key = SigningKey::from_pkcs8(&pkcs8, rng).map_err(MintError::Config)?;
    Ok((key.kid, pkcs8))
}

fn read_store(path: &Path) -> Result<StoredKeys, MintError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| MintError::BadKey {
            path: path.display().to_string(),
            reason: format!(
                "{e}; it is never overwritten: fix it or move it away to have new keys generated"
            ),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StoredKeys::default()),
        Err(e) => Err(MintError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        }),
    }
}

/// Writes atomically (temp file + rename), readable by the owner only.
fn write_store(path: &Path, stored: &StoredKeys) -> Result<(), MintError> {
    let io = |p: &Path, e: std::io::Error| MintError::Io {
        path: p.display().to_string(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let text = serde_json::to_vec_pretty(stored).map_err(|e| MintError::Config(e.to_string()))?;
    write_private(&tmp, &text).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(path, e)
    })
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Logs a rotation failure (the background service keeps the current key).
pub fn report_rotation_error(e: &MintError) {
    warn!(error = %e, "cannot rotate the minting key; the current key stays in use");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwk::KeySet;
    use cortex_filters::scope::{GrantedScopes, ScopeRules};

    fn principal() -> Principal {
        let grants = GrantedScopes::new(["a"], &ScopeRules::default());
        Principal {
            sub: "alice".into(),
            email: Some("alice@example.com".into()),
            role: Some("admin".into()),
            pool: Some("p".into()),
            client_id: Some("claude".into()),
            scope_key: Arc::from(grants.cache_key()),
            grants: Arc::new(grants),
            credential: Some("caller-token".into()),
            kind: PrincipalKind::Token,
            expires_at: Some(unix_now() + 3600),
        }
    }

    fn settings(dir: &Path, alg: &str) -> MintSettings<'static> {
        MintSettings {
            issuer: "https://gw.example".into(),
            ttl: Duration::from_secs(300),
            algorithm: Box::leak(alg.to_string().into_boxed_str()),
            key_file: None,
            data_dir: dir.to_path_buf(),
            rotate_after: Duration::from_secs(3600),
        }
    }

    fn verify(jwks: &[u8], token: &str) -> Value {
        let set = KeySet::parse(jwks).unwrap();
        let d = jwt::inspect(token, &Alg::ALL).unwrap();
        let claims = set
            .verify(token, d.header.kid.as_deref(), d.alg)
            .expect("signature verifies against the published JWKS");
        Value::Object(claims)
    }

    /// The `kid` is the RFC 7638 thumbprint, computed as the gateway always did, so keys
    /// persisted by an earlier version keep theirs.
    #[test]
    fn kids_are_rfc7638_thumbprints() {
        use sha2::{Digest, Sha256};
        for alg in ["ES256", "EdDSA"] {
            let dir = tempfile::tempdir().unwrap();
            let m = Minter::new(settings(dir.path(), alg)).unwrap();
            let jwks: Value = serde_json::from_slice(&m.jwks()).unwrap();
            let jwk = &jwks["keys"][0];
            let members: &[&str] = if alg == "ES256" {
                &["crv", "kty", "x", "y"]
            } else {
                &["crv", "kty", "x"]
            };
            let required: Map<String, Value> = members
                .iter()
                .map(|k| (k.to_string(), jwk[*k].clone()))
                .collect();
            let thumb = b64(&Sha256::digest(Value::Object(required).to_string()));
            assert_eq!(jwk["kid"], thumb.as_str(), "{alg}");
            assert_eq!(m.current_kid(), thumb);
            assert_eq!(
                (jwk["alg"].as_str(), jwk["use"].as_str()),
                (Some(alg), Some("sig"))
            );
        }
    }

    #[test]
    fn mints_verifiable_tokens_and_persists_the_key() {
        for alg in ["ES256", "EdDSA"] {
            let dir = tempfile::tempdir().unwrap();
            let m = Minter::new(settings(dir.path(), alg)).unwrap();
            let scopes = vec!["crm:read".to_string()];
            let req = MintRequest {
                audience: "https://crm.example",
                scopes: &scopes,
                backend_id: "crm",
            };
            let token = m.mint(&principal(), req).unwrap();
            let claims = verify(&m.jwks(), &token);
            assert_eq!(claims["aud"], "https://crm.example");
            assert_eq!(claims["iss"], "https://gw.example");
            assert_eq!(claims["sub"], "alice");
            assert_eq!(claims["scope"], "crm:read");
            assert_eq!(claims["azp"], "claude");
            assert_eq!(claims["act"]["sub"], "claude");
            assert_eq!(claims["metadata"]["role"], "admin");
            assert_eq!(
                m.mint(&principal(), req).unwrap(),
                token,
                "reused while fresh"
            );

            let kid = m.current_kid();
            let again = Minter::new(settings(dir.path(), alg)).unwrap();
            assert_eq!(again.current_kid(), kid, "the key survives a restart");
            let file = dir.path().join("keys").join(KEY_FILE);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600);
            }
        }
    }

    #[test]
    fn rotation_keeps_the_previous_key_published() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path(), "ES256");
        s.rotate_after = Duration::from_secs(1);
        let m = Minter::new(s).unwrap();
        let scopes = vec![];
        let req = MintRequest {
            audience: "aud",
            scopes: &scopes,
            backend_id: "b",
        };
        let old_token = m.mint(&principal(), req).unwrap();
        let old_kid = m.current_kid();
        std::thread::sleep(Duration::from_millis(2100));
        m.maybe_rotate().unwrap();
        assert_ne!(m.current_kid(), old_kid);
        let jwks = m.jwks();
        verify(&jwks, &old_token);
        let new_token = m.mint(&principal(), req).unwrap();
        assert_ne!(new_token, old_token);
        verify(&jwks, &new_token);
        assert_eq!(KeySet::parse(&jwks).unwrap().len(), 2);
    }

    #[test]
    fn caps_expiry_at_the_callers_token() {
        let dir = tempfile::tempdir().unwrap();
        let m = Minter::new(settings(dir.path(), "ES256")).unwrap();
        let mut p = principal();
        p.expires_at = Some(unix_now() + 10);
        let scopes = vec![];
        let token = m
            .mint(
                &p,
                MintRequest {
                    audience: "a",
                    scopes: &scopes,
                    backend_id: "b",
                },
            )
            .unwrap();
        let claims = verify(&m.jwks(), &token);
        assert!(claims["exp"].as_u64().unwrap() <= unix_now() + 10);
    }

    #[test]
    fn key_file_errors_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k.pem");
        std::fs::write(
            &f,
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
        )
        .unwrap();
        let mut s = settings(dir.path(), "ES256");
        let path = f.display().to_string();
        s.key_file = Some(Box::leak(path.into_boxed_str()));
        let e = Minter::new(s).err().unwrap().to_string();
        assert!(e.contains("openssl pkcs8"), "{e}");
        let bad = dir.path().join("keys");
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::write(bad.join(KEY_FILE), "{nope").unwrap();
        let e = Minter::new(settings(dir.path(), "ES256"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("never overwritten"), "{e}");
    }

    #[test]
    fn loads_a_pkcs8_pem_key_file() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k.pem");
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(pkcs8.as_ref())
        );
        std::fs::write(&f, pem).unwrap();
        let mut s = settings(dir.path(), "ES256");
        s.key_file = Some(Box::leak(f.display().to_string().into_boxed_str()));
        let m = Minter::new(s).unwrap();
        assert!(m.rotation_check_interval().is_none());
        let scopes = vec![];
        let token = m
            .mint(
                &principal(),
                MintRequest {
                    audience: "a",
                    scopes: &scopes,
                    backend_id: "b",
                },
            )
            .unwrap();
        verify(&m.jwks(), &token);
        assert!(!dir.path().join("keys").exists(), "nothing generated");
    }
}
