//! A stand-in OAuth authorization server for the JWT cells: one ES256 key generated with
//! `ring` at start, its JWKS and RFC 8414 metadata served by a tiny hyper server on
//! 127.0.0.1 (its own thread, so the driver's runtime never serves it), and locally signed
//! tokens. The gateway fetches the keys once at start and caches them, so the cells measure
//! token validation (and the validated-token cache), not this server.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http_server::{self, json_response};

/// The `kid` of the only key.
const KID: &str = "load-es256";

/// The running issuer; stopped and joined on drop.
pub struct Issuer {
    /// `http://127.0.0.1:<port>`: the `iss` of its tokens and the configured issuer.
    pub issuer: String,
    /// Where its JWKS is served.
    pub jwks_url: String,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

/// The public JWK of `key` (P-256, uncompressed point split into x and y).
fn jwk(key: &EcdsaKeyPair) -> Value {
    let point = key.public_key().as_ref();
    let (x, y) = if point.len() == 65 {
        (&point[1..33], &point[33..])
    } else {
        (&point[..0], &point[..0])
    };
    json!({
        "kty": "EC", "crv": "P-256", "kid": KID, "use": "sig", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
    })
}

impl Issuer {
    /// Generates the key, binds 127.0.0.1 and starts serving.
    pub fn start() -> Result<Issuer, String> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "ES256 key generation failed".to_string())?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| "ES256 key parsing failed".to_string())?;
        let listener = StdListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("nonblocking: {e}"))?;
        let addr: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
        let issuer = format!("http://{addr}");
        let jwks_url = format!("{issuer}/.well-known/jwks.json");
        let jwks = Bytes::from(json!({"keys": [jwk(&key)]}).to_string());
        let metadata = Bytes::from(json!({"issuer": issuer, "jwks_uri": jwks_url}).to_string());
        let (stop_tx, stop_rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("load-issuer".into())
            .spawn(move || serve(listener, jwks, metadata, stop_rx))
            .map_err(|e| format!("issuer thread: {e}"))?;
        Ok(Issuer {
            issuer,
            jwks_url,
            key,
            rng,
            stop: stop_tx,
            thread: Some(thread),
        })
    }

    /// A compact ES256 JWT for `aud`, valid for one hour, with `kid` matching the JWKS.
    pub fn token(&self, aud: &str, sub: &str, scope: &str) -> Result<String, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": KID});
        let claims = json!({
            "iss": self.issuer, "aud": aud, "sub": sub, "scope": scope,
            "iat": now, "exp": now + 3_600,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| "ES256 signing failed".to_string())?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(sig.as_ref())
        ))
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: StdListener, jwks: Bytes, metadata: Bytes, stop: watch::Receiver<bool>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("issuer: cannot build its runtime: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("issuer: listener: {e}");
                return;
            }
        };
        let handler = move |req| std::future::ready(route(&req, jwks.clone(), metadata.clone()));
        http_server::serve(listener, handler, stop).await;
    });
}

fn route(req: &Request<Incoming>, jwks: Bytes, metadata: Bytes) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/.well-known/jwks.json" => json_response(200, jwks),
        "/.well-known/oauth-authorization-server" => json_response(200, metadata),
        _ => json_response(404, Bytes::from_static(br#"{"error":"not found"}"#)),
    }
}
