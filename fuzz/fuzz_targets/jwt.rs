//! Bearer tokens and the documents behind them: the JOSE header checks, signature
//! verification against the issuer's keys, the claim checks, and the JWKS parser.
//!
//! Input: the first byte picks a mode. 0: the rest is a bearer token: inspected against
//! every algorithm, verified against a fixed key set (no forged token may verify), and its
//! payload segment (decoded) checked as claims. 1: the rest is a claims payload. 2: the rest
//! is a JWKS document. Checked: no panic; refusals never quote the token; accepted claims
//! satisfy the rules.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cortex_gateway::auth::claims::{self, ClaimRules};
use cortex_gateway::auth::jwk::KeySet;
use cortex_gateway::auth::jwt::{self, Alg};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

const NOW: u64 = 1_800_000_000;

/// The issuer's keys: an Ed25519 and a P-256 key (their public halves only).
static KEYS: LazyLock<KeySet> = LazyLock::new(|| {
    let doc = serde_json::json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "use": "sig",
         "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        {"kty": "EC", "crv": "P-256", "kid": "ec", "use": "sig",
         "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
         "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
    ]});
    KeySet::parse(doc.to_string().as_bytes()).expect("the fixed key set parses")
});

fn rules() -> ClaimRules {
    ClaimRules {
        issuer: "https://as.example".into(),
        audiences: vec!["https://gw.example/mcp".into()],
        leeway: 30,
    }
}

fn check_claims(payload: &[u8]) {
    let rules = rules();
    if let Ok(c) = claims::check(payload, &rules, NOW) {
        assert!(!c.sub.trim().is_empty());
        assert!(c.exp.saturating_add(rules.leeway) >= NOW);
        assert!(c.scopes.iter().all(|s| !s.is_empty()));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let token = String::from_utf8_lossy(rest);
            match jwt::inspect(&token, &Alg::ALL) {
                Ok(inspected) => {
                    let kid = inspected.header.kid.as_deref();
                    assert!(
                        KEYS.verify(&token, kid, inspected.alg).is_err(),
                        "a forged token verified"
                    );
                }
                Err(e) => {
                    let text = e.to_string();
                    if token.len() >= 40 && text.contains(&*token) {
                        // The token is inside the refusal: quoted, or a token that spells
                        // part of the refusal's own fixed words (the seeds refusal-words and
                        // refusal-prefix). Tell them apart by changing the token's last
                        // character: a quoting refusal quotes the changed token too, fixed
                        // words do not contain it.
                        let mut changed: String = token.to_string();
                        let last = changed.pop().unwrap_or('#');
                        changed.push(if last == '#' { '%' } else { '#' });
                        let again = jwt::inspect(&changed, &Alg::ALL)
                            .err()
                            .map(|e| e.to_string())
                            .unwrap_or_default();
                        assert!(!again.contains(&*changed), "the refusal quotes the token");
                    }
                }
            }
            if let Some(payload) = token.split('.').nth(1) {
                if let Ok(bytes) = URL_SAFE_NO_PAD.decode(payload) {
                    check_claims(&bytes);
                }
            }
        }
        1 => check_claims(rest),
        _ => {
            if let Ok(keys) = KeySet::parse(rest) {
                assert!(!keys.is_empty());
                let _ = keys.kids();
            }
        }
    }
});
