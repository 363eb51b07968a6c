//! Token validation cost, with the issuer's keys already cached (the steady state):
//!
//! - `verify/<alg>`: a full validation without the validated-token cache — header checks, key
//!   lookup by `kid`, `jsonwebtoken`'s decode with the gateway's `ring` backend, claim checks —
//!   for RS256, ES256 and EdDSA;
//! - `cached/<alg>`: the hot path of a token seen within `token_cache_ttl` (one SHA-256 of the
//!   token and a cache lookup), through the same `Validator::validate` entry point the
//!   gateway calls;
//! - `mint/…`: a token for an `identity: mint` backend, reused from the mint cache, and
//!   freshly signed (a new audience each iteration defeats the cache).
//!
//! Run: `cargo bench --bench jwt`. The RS256 token and its public JWKS are fixed below (signed
//! once with a throwaway key whose private half was discarded; `exp` is in 2100).

use std::sync::Arc;
use std::time::Duration;

use cortex_filters::scope::{GrantedScopes, ScopeRules};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

use cortex_gateway::auth::claims::ClaimRules;
use cortex_gateway::auth::http::AsClient;
use cortex_gateway::auth::issuer::Issuer;
use cortex_gateway::auth::jwk::KeySet;
use cortex_gateway::auth::jwt::Alg;
use cortex_gateway::auth::mint::{MintRequest, MintSettings, Minter};
use cortex_gateway::auth::validator::{Validator, ValidatorSettings, Verdict};
use cortex_gateway::auth::{unix_now, Principal, PrincipalKind};

const ISSUER: &str = "https://as.bench.example";
const AUDIENCE: &str = "https://gw.bench.example/mcp";

const RS256_TOKEN: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImJlbmNoLXJzMjU2In0.eyJpc3MiOiJodHRwczovL2FzLmJlbmNoLmV4YW1wbGUiLCJhdWQiOiJodHRwczovL2d3LmJlbmNoLmV4YW1wbGUvbWNwIiwic3ViIjoiYmVuY2gtdXNlciIsInNjb3BlIjoibWNwOmRlbW86cmVhZCBtY3A6ZGVtbzp3cml0ZSIsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjo0MTAyNDQ0ODAwLCJqdGkiOiJiZW5jaCJ9.jpoXwfFiknL0iFRrBFtEnwQnid1t8PMvPdQntbM0YPBsMLP7dqtNJHo6gB50YJpn7DNZkNjyV_3yreIg6QPaF7gje88AUeiKsnaFTyH_Ims4vZ9oJvhHS4wnoZQMCOt6wvwRc0uDnTyFrlKeg-wKyR4HuI7mX6QojawFrRBSt2ui_LxeGPLRfNHfVSWBra55a6BBxsh0fHfg74cf4lPDnXzl3aoo8yvtarL4QG6jkxRX5t-RDjF52_GM8N1YgTREcbygwkRS3ieZZSVvx_9E7C8cVKMQLiSYbyHL3LYqw-BRH1aRyCCTnp2OUJXlugNKI1_DQwkSJq1wR_n5kAyPkw";
const RS256_JWKS: &str = r#"{"keys": [{"kty": "RSA", "kid": "bench-rs256", "use": "sig", "alg": "RS256", "n": "r1Q46ozOut0rJGv5HS2bfq4CfxoDsB9gWdb7EawnCYqkaZzDMCGRJkOC5gFOc129aSzkqY6-0bhG_B-Ro4XPVc-F-Z_ETTWKrSbQmK9hlK6sZilVCmYTBos6BIL7f8GuTyaLr_Tt9qUfb8qc7EzLXfy8-HYPXwmGwgeursf-zKJ13b0UUfjAyrk42weMSzrDFh7g_-uT3UZhcDuK1xPu4ZemzCEt8ycpLW2gbTeCk_IfbvdX7LrS3aRCvRUD_MFXXAP9oHRKRLf6br8HY_q2F2Yu4ntVLJwHGcvX_75s8e2qE2Xrx89wPDVQXENllnrDFPjNmxFVaN58k-5j3Gf0fw", "e": "AQAB"}]}"#;

fn principal() -> Principal {
    let grants = GrantedScopes::new(["mcp:demo:read"], &ScopeRules::default());
    Principal {
        sub: "bench-user".into(),
        email: None,
        role: None,
        pool: None,
        client_id: Some("bench-client".into()),
        scope_key: Arc::from(grants.cache_key()),
        grants: Arc::new(grants),
        credential: None,
        kind: PrincipalKind::Anonymous,
        expires_at: None,
    }
}

/// A validator trusting `jwks` (installed directly: no network), with or without the
/// validated-token cache.
fn validator(jwks: &[u8], cache: bool) -> Option<Validator> {
    let client = AsClient::new(Duration::from_secs(1)).ok()?;
    let issuer = Arc::new(Issuer::new(
        ISSUER.into(),
        None,
        client,
        Duration::from_secs(10),
    ));
    issuer.set_keys(KeySet::parse(jwks).ok()?);
    let settings = ValidatorSettings {
        rules: ClaimRules {
            issuer: ISSUER.into(),
            audiences: vec![AUDIENCE.into()],
            leeway: 60,
        },
        algorithms: Alg::ALL.to_vec(),
        required_scopes: Vec::new(),
        required_pool: None,
        scope_rules: ScopeRules::default(),
        cache_ttl: if cache {
            Duration::from_secs(30)
        } else {
            Duration::ZERO
        },
        cache_size: 10_000,
    };
    Some(Validator::new(issuer, settings, None))
}

/// A gateway-minted token (ES256 or EdDSA) with the bench issuer and audience, and its JWKS.
fn minted(alg: &str, dir: &std::path::Path) -> Option<(Minter, String)> {
    let minter = Minter::new(MintSettings {
        issuer: ISSUER.into(),
        ttl: Duration::from_secs(3600),
        algorithm: alg,
        key_file: None,
        data_dir: dir.join(alg),
        rotate_after: Duration::from_secs(86_400),
    })
    .ok()?;
    let scopes = vec!["mcp:demo:read".to_string()];
    let token = minter
        .mint(
            &principal(),
            MintRequest {
                audience: AUDIENCE,
                scopes: &scopes,
                backend_id: "bench",
            },
        )
        .ok()?;
    Some((minter, token))
}

fn bench(c: &mut Criterion) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("jwt bench: no tokio runtime");
        return;
    };
    let Ok(dir) = tempfile::tempdir() else {
        eprintln!("jwt bench: no temp dir");
        return;
    };
    let mut cases: Vec<(&str, Vec<u8>, String)> = vec![(
        "RS256",
        RS256_JWKS.as_bytes().to_vec(),
        RS256_TOKEN.to_string(),
    )];
    for alg in ["ES256", "EdDSA"] {
        match minted(alg, dir.path()) {
            Some((m, token)) => cases.push((alg, m.jwks().to_vec(), token)),
            None => eprintln!("jwt bench: cannot mint an {alg} token"),
        }
    }
    assert!(
        unix_now() < 4_102_444_800,
        "the fixed RS256 token expires in 2100"
    );

    let mut group = c.benchmark_group("verify");
    for (alg, jwks, token) in &cases {
        let Some(v) = validator(jwks, false) else {
            continue;
        };
        assert!(
            matches!(rt.block_on(v.validate(token)), Verdict::Ok(_)),
            "{alg} token validates"
        );
        group.bench_function(*alg, |b| {
            b.iter(|| rt.block_on(v.validate(black_box(token))))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("cached");
    for (alg, jwks, token) in &cases {
        let Some(v) = validator(jwks, true) else {
            continue;
        };
        assert!(
            matches!(rt.block_on(v.validate(token)), Verdict::Ok(_)),
            "{alg} token validates"
        );
        group.bench_function(*alg, |b| {
            b.iter(|| rt.block_on(v.validate(black_box(token))))
        });
    }
    group.finish();

    if let Some((minter, _)) = minted("ES256", &dir.path().join("mint")) {
        let scopes = vec!["mcp:demo:read".to_string()];
        let p = principal();
        let mut group = c.benchmark_group("mint");
        group.bench_function("ES256 (cache hit)", |b| {
            b.iter(|| {
                minter.mint(
                    black_box(&p),
                    MintRequest {
                        audience: AUDIENCE,
                        scopes: &scopes,
                        backend_id: "bench",
                    },
                )
            })
        });
        let mut n = 0u64;
        group.bench_function("ES256 (fresh signature)", |b| {
            b.iter(|| {
                n += 1;
                let audience = format!("{AUDIENCE}/{n}");
                minter.mint(
                    black_box(&p),
                    MintRequest {
                        audience: &audience,
                        scopes: &scopes,
                        backend_id: "bench",
                    },
                )
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
