use super::*;
use crate::catalog::Deprecation;
use crate::contract::parse_list_tools;
use serde_json::json;

const T0: &str = "2026-12-01T10:00:00.000Z";
const T1: &str = "2026-12-02T10:00:00.000Z";
const T2: &str = "2026-12-03T10:00:00.000Z";

const CORTEX_TOOLS: &str = include_str!("../../tests/vectors/cortex-tools.json");
const CORTEX_OPERATOR: &str = include_str!("../../tests/vectors/cortex-baseline-operator.json");
const CORTEX_SELF_SIGNED: &str =
    include_str!("../../tests/vectors/cortex-baseline-self-signed.json");
const V2_BY_CORTEX_SIGNER: &str =
    include_str!("../../tests/vectors/v2-signed-by-cortex-signer.json");
const TEST_KEY: &str = include_str!("../../tests/vectors/test-key.pem");
const TEST_PUB: &str = include_str!("../../tests/vectors/test-key.pub.pem");

fn def(name: &str, description: &str) -> ToolDef {
    ToolDef {
        name: name.into(),
        title: None,
        description: description.into(),
        scope: Some("mcp:crm:read".into()),
        input_schema: json!({"type": "object", "properties": {"q": {"type": "string"}}}),
        output_schema: None,
        annotations: None,
        version: "1.0.0".into(),
        deprecated: None,
    }
}

fn seen(defs: &[ToolDef]) -> Vec<ObservedTool> {
    defs.iter().map(|d| ObservedTool::new(d, None)).collect()
}

fn statuses(r: &BackendReview) -> Vec<(&str, ToolStatus, Verdict)> {
    r.tools
        .iter()
        .map(|t| (t.tool.as_str(), t.status, t.verdict))
        .collect()
}

fn approved(defs: &[ToolDef]) -> Baseline {
    let mut b = Baseline::default();
    b.approve_backend("crm", &seen(defs), T0);
    b
}

// ---- modes and fingerprints ------------------------------------------------------------------

#[test]
fn modes_parse_and_typos_are_refused() {
    assert_eq!("off".parse::<Mode>(), Ok(Mode::Off));
    assert_eq!(" WARN ".parse::<Mode>(), Ok(Mode::Warn));
    assert_eq!("Block".parse::<Mode>(), Ok(Mode::Block));
    assert_eq!(Mode::default(), Mode::Warn);
    let err = "blcok".parse::<Mode>().unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown tool integrity mode `blcok`: use off, warn or block"
    );
}

#[test]
fn fingerprints_ignore_key_order_and_number_spelling() {
    let mut a = def("search", "Search.");
    a.input_schema = serde_json::from_str(
        r#"{"type":"object","properties":{"n":{"type":"integer","maximum":100,"minimum":1}}}"#,
    )
    .unwrap();
    let mut b = a.clone();
    b.input_schema = serde_json::from_str(
        r#"{"properties":{"n":{"minimum":1.0,"maximum":1e2,"type":"integer"}},"type":"object"}"#,
    )
    .unwrap();
    assert_eq!(tool_print(&a), tool_print(&b));
    let fp = tool_print(&a).fingerprint;
    assert_eq!(fp.to_string().len(), "sha256:".len() + 64);
    assert_eq!(fp.to_string().parse::<Fingerprint>(), Ok(fp));
    assert!("sha256:xyz".parse::<Fingerprint>().is_err());
    assert!(format!("sha256:{}", "+a".repeat(32))
        .parse::<Fingerprint>()
        .is_err());
    assert!(fp.to_string()[7..].parse::<Fingerprint>().is_err());
}

#[test]
fn every_fingerprinted_field_is_covered_and_named() {
    let base = def("search", "Search.");
    type Mutation = Box<dyn Fn(&mut ToolDef)>;
    let mutations: Vec<(&str, Mutation)> = vec![
        ("name", Box::new(|d| d.name = "search2".into())),
        ("title", Box::new(|d| d.title = Some("Search".into()))),
        (
            "description",
            Box::new(|d| d.description = "Exfiltrate.".into()),
        ),
        ("scope", Box::new(|d| d.scope = None)),
        (
            "inputSchema",
            Box::new(|d| d.input_schema["properties"]["q"]["maxLength"] = json!(5)),
        ),
        (
            "outputSchema",
            Box::new(|d| d.output_schema = Some(json!({"type": "object"}))),
        ),
        (
            "annotations",
            Box::new(|d| d.annotations = Some(json!({"destructiveHint": true}))),
        ),
        ("version", Box::new(|d| d.version = "1.0.1".into())),
        (
            "deprecated",
            Box::new(|d| {
                d.deprecated = Some(Deprecation {
                    reason: Some("old".into()),
                    ..Deprecation::default()
                })
            }),
        ),
    ];
    assert_eq!(mutations.len(), FINGERPRINTED_FIELDS.len());
    let before = tool_print(&base);
    for (field, mutate) in mutations {
        let mut changed = base.clone();
        mutate(&mut changed);
        let after = tool_print(&changed);
        assert_ne!(before.fingerprint, after.fingerprint, "{field}");
        let differing: Vec<&str> = FINGERPRINTED_FIELDS
            .iter()
            .copied()
            .filter(|f| before.fields[*f] != after.fields[*f])
            .collect();
        assert_eq!(differing, [field]);
    }
}

// ---- reviews ---------------------------------------------------------------------------------

#[test]
fn the_verdict_follows_the_mode() {
    let baseline = approved(&[def("a", "A."), def("b", "B."), def("gone", "G.")]);
    let now = seen(&[def("a", "A."), def("b", "B, rewritten."), def("c", "C.")]);
    let expect = |mode, changed, removed| {
        let r = review(&baseline, "crm", &now, mode, true);
        assert!(!r.first_sight);
        assert_eq!(
            statuses(&r),
            [
                ("a", ToolStatus::Unchanged, Verdict::Keep),
                ("b", ToolStatus::Changed, changed),
                ("c", ToolStatus::New, changed),
                ("gone", ToolStatus::Removed, removed),
            ]
        );
        r
    };
    expect(Mode::Off, Verdict::Keep, Verdict::Keep);
    expect(
        Mode::Warn,
        Verdict::KeepWithWarning,
        Verdict::KeepWithWarning,
    );
    let r = expect(Mode::Block, Verdict::Quarantine, Verdict::KeepWithWarning);
    assert_eq!(r.quarantined().collect::<Vec<_>>(), ["b", "c"]);
    assert!(r.has_changes());
    assert_eq!(r.tools[1].changed_fields, ["description"]);
    assert_eq!(r.tools[1].approved_at.as_deref(), Some(T0));
    assert!(r.tools[2].pinned.is_none() && r.tools[3].observed.is_none());
}

#[test]
fn first_sight_pins_a_backend_as_it_is() {
    let mut baseline = Baseline::default();
    let now = seen(&[def("a", "A."), def("b", "B.")]);
    let r = review(&baseline, "crm", &now, Mode::Block, true);
    assert!(r.first_sight);
    assert!(r
        .tools
        .iter()
        .all(|t| t.status == ToolStatus::New && t.verdict == Verdict::Keep));
    assert!(baseline.apply(&r, &now, T0));
    assert_eq!(baseline.pinned_count(), 2);
    assert_eq!(baseline.saved_at, T0);
    let again = review(&baseline, "crm", &now, Mode::Block, true);
    assert!(!again.first_sight && !again.has_changes());

    // Without trust on first use, an unknown backend's tools are simply new.
    let r = review(&Baseline::default(), "crm", &now, Mode::Block, false);
    assert!(!r.first_sight);
    assert_eq!(r.quarantined().count(), 2);
    let mut untouched = Baseline::default();
    assert!(!untouched.apply(&r, &now, T0));
    assert_eq!(untouched, Baseline::default());
}

#[test]
fn a_backend_approved_with_no_tools_is_not_first_sight() {
    let mut baseline = Baseline::default();
    baseline.approve_backend("crm", &[], T0);
    let r = review(
        &baseline,
        "crm",
        &seen(&[def("a", "A.")]),
        Mode::Block,
        true,
    );
    assert!(!r.first_sight);
    assert_eq!(statuses(&r), [("a", ToolStatus::New, Verdict::Quarantine)]);
}

#[test]
fn warn_mode_reports_each_change_once() {
    let mut baseline = approved(&[def("a", "A."), def("gone", "G.")]);
    let now = seen(&[def("a", "A, rewritten."), def("new", "N.")]);
    let r = review(&baseline, "crm", &now, Mode::Warn, true);
    assert_eq!(
        r.tools
            .iter()
            .filter(|t| t.status != ToolStatus::Unchanged)
            .count(),
        3
    );
    assert!(baseline.apply(&r, &now, T1));
    assert_eq!(baseline.saved_at, T1);
    let r = review(&baseline, "crm", &now, Mode::Warn, true);
    assert!(!r.has_changes());
    assert!(!baseline.apply(&r, &now, T2));
    assert_eq!(baseline.saved_at, T1);
}

#[test]
fn block_mode_holds_a_change_until_it_is_approved() {
    let mut baseline = approved(&[def("a", "A."), def("b", "B.")]);
    let now = seen(&[def("a", "A, rewritten."), def("b", "B.")]);
    let r = review(&baseline, "crm", &now, Mode::Block, true);
    assert!(
        !baseline.apply(&r, &now, T1),
        "block mode changes nothing by itself"
    );
    assert_eq!(review(&baseline, "crm", &now, Mode::Block, true), r);

    // A backend that reverts clears the quarantine without an approval.
    let reverted = seen(&[def("a", "A."), def("b", "B.")]);
    assert!(!review(&baseline, "crm", &reverted, Mode::Block, true).has_changes());

    assert_eq!(
        baseline.approve_tool("crm", "a", &now, T1),
        Ok(Approved::Pinned)
    );
    let r = review(&baseline, "crm", &now, Mode::Block, true);
    assert!(!r.has_changes());
    assert_eq!(r.tools[0].approved_at.as_deref(), Some(T1));
    assert_eq!(r.tools[1].approved_at.as_deref(), Some(T0));
}

#[test]
fn approvals_pin_unpin_or_say_what_is_unknown() {
    let mut baseline = approved(&[def("a", "A."), def("gone", "G.")]);
    let now = seen(&[def("a", "A.")]);
    // A removed tool keeps its pin until someone approves the removal.
    let r = review(&baseline, "crm", &now, Mode::Block, true);
    assert_eq!(r.tools[1].status, ToolStatus::Removed);
    assert!(!baseline.apply(&r, &now, T1));
    assert_eq!(
        baseline.approve_tool("crm", "gone", &now, T1),
        Ok(Approved::Unpinned)
    );
    assert!(!review(&baseline, "crm", &now, Mode::Block, true).has_changes());

    let err = baseline.approve_tool("crm", "nope", &now, T1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "backend `crm` has no tool `nope` (neither pinned nor discovered)"
    );
    assert!(baseline.approve_tool("other", "nope", &now, T1).is_err());
    assert!(!baseline.backends.contains_key("other"));
}

#[test]
fn approving_a_backend_pins_exactly_what_it_lists() {
    let mut baseline = approved(&[def("a", "A."), def("b", "B."), def("gone", "G.")]);
    let now = seen(&[def("a", "A."), def("b", "B, rewritten."), def("c", "C.")]);
    baseline.approve_backend("crm", &now, T1);
    let pins = &baseline.backends["crm"];
    assert_eq!(pins.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(
        pins["a"].approved_at, T0,
        "an unchanged tool keeps its approval time"
    );
    assert_eq!(pins["b"].approved_at, T1);
    assert!(!review(&baseline, "crm", &now, Mode::Block, true).has_changes());
}

// ---- documents -------------------------------------------------------------------------------

#[test]
fn baselines_round_trip_through_json() {
    let mut baseline = approved(&[def("a", "A."), def("b", "B.")]);
    baseline.approve_backend("docs", &[], T1);
    let raw = json!({"description": "C.", "scope": "s"});
    baseline.backends.get_mut("docs").unwrap().insert(
        "c".into(),
        PinnedTool {
            pin: Pin::Cortex(cortex_print(raw.as_object().unwrap())),
            approved_at: T0.into(),
        },
    );
    let doc = baseline.to_json();
    assert_eq!(doc["version"], json!(2));
    assert_eq!(doc["quarantine"], json!({}));
    assert!(doc["tools"]["crm"]["a"]["fingerprint"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(
        doc["tools"]["docs"]["c"]["cortexDigest"]
            .as_str()
            .unwrap()
            .len(),
        16
    );
    let text = serde_json::to_string_pretty(&doc).unwrap();
    let back = load(&text, None).unwrap();
    assert_eq!(back.baseline, baseline);
    assert!(!back.from_cortex && back.signed_at.is_none());
}

#[test]
fn malformed_documents_are_refused_with_the_place() {
    let err = |text: &str| load(text, None).unwrap_err().to_string();
    assert!(err("{").starts_with("the tool baseline is not valid JSON"));
    assert!(err("[]").contains("must be a JSON object"));
    assert!(err(r#"{"version":3}"#).contains("unsupported version 3"));
    assert!(err(r#"{"tools":{}}"#).contains("unsupported version none"));
    assert!(err(r#"{"version":2,"tools":[]}"#).contains("tools must be an object"));
    assert!(
        err(r#"{"version":2,"tools":{"crm":{"a":{"fingerprint":"md5:1"}}}}"#)
            .contains("tools.crm.a.fingerprint must be `sha256:` and 64 hex digits")
    );
    assert!(err(r#"{"version":2,"tools":{"crm":{"a":{}}}}"#)
        .contains("tools.crm.a needs a fingerprint"));
    assert!(err(
        r#"{"version":1,"tools":{"crm_a":{"app":"docs","digest":"0123456789abcdef","fields":{}}}}"#
    )
    .contains("tools.crm_a: the name does not start with `docs_`"));
    assert!(
        err(r#"{"version":1,"tools":{"crm_a":{"app":"crm","digest":"0123","fields":{}}}}"#)
            .contains("tools.crm_a.digest must be 16 hex digits")
    );
    assert!(err(r#"{"version":1,"tools":{"crm_a":{"app":"crm","digest":"0123456789abcdef","fields":{"scope":1}}}}"#)
        .contains("tools.crm_a.fields.scope must be a string"));
    // A version written 1.0 is still version 1, as JavaScript reads it.
    assert!(
        load(r#"{"version":1.0,"tools":{}}"#, None)
            .unwrap()
            .from_cortex
    );
}

// ---- keys and signatures ---------------------------------------------------------------------

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32]).unwrap()
}

fn signed(baseline: &Baseline, k: &SigningKey) -> Value {
    let mut doc = baseline.to_json();
    sign_document(&mut doc, k, T1, Signing::SelfSigned, Some("k1")).unwrap();
    doc
}

#[test]
fn a_signed_baseline_verifies_and_any_change_to_it_does_not() {
    let baseline = approved(&[def("a", "A.")]);
    let k = key(1);
    let doc = signed(&baseline, &k);
    assert_eq!(doc["trust"]["trust_level"], "self-signed");
    assert_eq!(doc["trust"]["public_key_hint"], "k1");
    assert_eq!(doc["signature"]["created_at"], T1);
    let text = doc.to_string();
    let loaded = load(&text, Some(&k.verifying_key())).unwrap();
    assert_eq!(loaded.baseline, baseline);
    assert_eq!(loaded.signed_at.as_deref(), Some(T1));

    let tamper = |path: &[&str], v: Value| {
        let mut d = doc.clone();
        let mut at = &mut d;
        for p in path {
            at = &mut at[*p];
        }
        *at = v;
        load(&d.to_string(), Some(&k.verifying_key()))
    };
    let fp = tool_print(&def("a", "Evil.")).fingerprint.to_string();
    for (path, v) in [
        (&["tools", "crm", "a", "fingerprint"][..], json!(fp)),
        (&["tools", "crm", "a", "approvedAt"][..], json!(T2)),
        (&["savedAt"][..], json!(T2)),
        (&["quarantine", "crm_a"][..], json!({})),
    ] {
        assert_eq!(tamper(path, v), Err(PinningError::BadSignature), "{path:?}");
    }
    // Unsigned members are informative only.
    assert!(tamper(&["trust", "trust_level"], json!("operator")).is_ok());
    assert!(tamper(&["signature", "created_at"], json!(T2)).is_ok());
    assert!(tamper(&["note"], json!("added later")).is_ok());
    assert_eq!(
        tamper(&["signature", "value"], json!("bm90IGEgc2lnbmF0dXJl")),
        Err(PinningError::SignatureEncoding)
    );
}

#[test]
fn the_signature_policy_refuses_stripped_unverifiable_and_foreign_files() {
    let baseline = approved(&[def("a", "A.")]);
    let (k1, k2) = (key(1), key(2));
    let signed_text = signed(&baseline, &k1).to_string();
    let unsigned_text = baseline.to_json().to_string();

    assert_eq!(
        load(&unsigned_text, Some(&k1.verifying_key())),
        Err(PinningError::Unsigned)
    );
    assert_eq!(load(&signed_text, None), Err(PinningError::NoKey));
    assert_eq!(
        load(&signed_text, Some(&k2.verifying_key())),
        Err(PinningError::OtherKey)
    );
    // Re-signed by an attacker who also swapped the embedded key: still the wrong key.
    assert_eq!(
        load(
            &signed(&baseline, &k2).to_string(),
            Some(&k1.verifying_key())
        ),
        Err(PinningError::OtherKey)
    );
    assert!(load(&unsigned_text, None).is_ok());
    assert!(PinningError::Unsigned.to_string().contains("refusing it"));
}

#[test]
fn keys_read_the_forms_cortex_uses() {
    let private = SigningKey::from_pem(TEST_KEY).unwrap();
    let public = VerifyingKey::from_pem(TEST_PUB).unwrap();
    assert_eq!(private.verifying_key(), public);
    assert_eq!(public.to_pem(), TEST_PUB, "Node's SPKI PEM, byte for byte");
    // One-line env values with literal \n, and bare base64 bodies.
    let one_line = TEST_PUB.trim_end().replace('\n', "\\n");
    assert_eq!(VerifyingKey::from_pem(&one_line), Ok(public));
    let body: String = TEST_PUB
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert_eq!(VerifyingKey::from_pem(&body), Ok(public));
    assert!(SigningKey::from_pem(&TEST_KEY.replace('\n', "\\n")).is_ok());
    // The seed-based PEM writer produces what the vector key is.
    let seed: [u8; 32] = Sha256::digest(b"cortex-gateway pinning test vector").into();
    assert_eq!(SigningKey::pem_from_seed(&seed), TEST_KEY);

    let err = |r: Result<VerifyingKey, PinningError>| r.unwrap_err().to_string();
    assert!(err(VerifyingKey::from_pem(TEST_KEY))
        .contains("a private key must not be given where the public key goes"));
    let private_body: String = TEST_KEY
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(err(VerifyingKey::from_pem(&private_body)).contains("this is a private key"));
    assert!(err(VerifyingKey::from_pem(
        "-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----"
    ))
    .contains("not valid base64"));
    assert!(
        err(VerifyingKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n")).contains("PEM without")
    );
    assert!(err(VerifyingKey::from_pem("AAAA")).contains("not an Ed25519 public key"));
    assert!(SigningKey::from_pem(TEST_PUB)
        .unwrap_err()
        .to_string()
        .starts_with("CORTEX_BASELINE_PRIVATE_KEY: expected a PEM `PRIVATE KEY`"));
    assert!(SigningKey::from_pem("AAAA")
        .unwrap_err()
        .to_string()
        .contains("not an Ed25519 private key"));
    assert!(!format!("{private:?}").contains(&private_body));
}

#[test]
fn configured_keys_decide_who_can_approve() {
    let none = BaselineKeys::from_env(None, Some("  ")).unwrap();
    assert_eq!((none.signing(), none.verifier()), (Signing::None, None));
    let own = BaselineKeys::from_env(Some(TEST_KEY), None).unwrap();
    assert_eq!(own.signing(), Signing::SelfSigned);
    assert_eq!(own.verifier(), VerifyingKey::from_pem(TEST_PUB).ok());
    assert!(own.signer().is_some());
    let both = BaselineKeys::from_env(Some(TEST_KEY), Some(TEST_PUB)).unwrap();
    assert_eq!(both.signing(), Signing::SelfSigned);
    let offline = BaselineKeys::from_env(None, Some(TEST_PUB)).unwrap();
    assert_eq!(offline.signing(), Signing::Operator);
    assert!(offline.signer().is_none());
    let other = key(9).verifying_key().to_pem();
    assert_eq!(
        BaselineKeys::from_env(Some(TEST_KEY), Some(&other)).unwrap_err(),
        PinningError::KeyMismatch
    );
}

// ---- Cortex compatibility (vectors made by Cortex's own code; see tests/vectors/README.md) ---

fn cortex_observed() -> BTreeMap<String, Vec<ObservedTool>> {
    let raw: Value = serde_json::from_str(CORTEX_TOOLS).unwrap();
    raw.as_object()
        .unwrap()
        .iter()
        .map(|(app, tools)| {
            let reply = json!({ "tools": tools });
            let mut prints = cortex_prints(&reply);
            let defs = parse_list_tools(&reply).unwrap().items;
            let observed = defs
                .iter()
                .map(|d| ObservedTool::new(d, prints.remove(&d.name)))
                .collect();
            (app.clone(), observed)
        })
        .collect()
}

#[test]
fn cortex_signed_baselines_verify_and_load() {
    let public = VerifyingKey::from_pem(TEST_PUB).unwrap();
    for text in [CORTEX_OPERATOR, CORTEX_SELF_SIGNED] {
        let loaded = load(text, Some(&public)).unwrap();
        assert!(loaded.from_cortex);
        let b = &loaded.baseline;
        assert_eq!(b.pinned_count(), 4);
        assert_eq!(
            b.backends["crm"].keys().collect::<Vec<_>>(),
            ["search_accounts", "update_account"]
        );
        assert!(
            matches!(&b.backends["docs"]["get_page"].pin, Pin::Cortex(c) if c.digest == "0711a32234e5ddcb")
        );
        assert!(!b.saved_at.is_empty());
        // Any change to a signed block breaks Cortex's signature here too.
        let forged = text.replace("e386d69f976650a1", "e386d69f976650a2");
        assert_eq!(
            load(&forged, Some(&public)),
            Err(PinningError::BadSignature)
        );
        assert_eq!(
            load(text, Some(&key(3).verifying_key())),
            Err(PinningError::OtherKey)
        );
    }
}

#[test]
fn cortex_digests_are_computed_as_cortex_computes_them() {
    let doc: Value = serde_json::from_str(CORTEX_OPERATOR).unwrap();
    let raw: Value = serde_json::from_str(CORTEX_TOOLS).unwrap();
    let mut checked = 0;
    for (app, tools) in raw.as_object().unwrap() {
        for tool in tools.as_array().unwrap() {
            let name = tool["name"].as_str().unwrap();
            let stored = &doc["tools"][format!("{app}_{name}")];
            let print = cortex_print(tool.as_object().unwrap());
            assert_eq!(
                print.digest,
                stored["digest"].as_str().unwrap(),
                "{app}_{name}"
            );
            for (field, text) in &print.fields {
                assert_eq!(
                    Some(text.as_str()),
                    stored["fields"][field].as_str(),
                    "{name}.{field}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 4);
}

#[test]
fn cortex_approvals_carry_over_and_are_upgraded() {
    let public = VerifyingKey::from_pem(TEST_PUB).unwrap();
    let mut baseline = load(CORTEX_OPERATOR, Some(&public)).unwrap().baseline;
    for (app, observed) in cortex_observed() {
        let r = review(&baseline, &app, &observed, Mode::Block, false);
        assert!(!r.has_changes(), "{app}: {r:?}");
        assert!(r
            .tools
            .iter()
            .all(|t| t.pinned.as_deref().unwrap().starts_with("cortex:")));
        assert!(baseline.apply(&r, &observed, T1));
        // Now pinned with the full fingerprint, approval time kept.
        for t in &observed {
            let pinned = &baseline.backends[&app][&t.name];
            assert_eq!(pinned.pin, Pin::Tool(t.print.clone()));
            assert!(pinned.approved_at.starts_with("2026-"));
        }
        assert!(!review(&baseline, &app, &observed, Mode::Block, false).has_changes());
    }
}

#[test]
fn a_tool_rewritten_since_its_cortex_approval_is_quarantined() {
    let public = VerifyingKey::from_pem(TEST_PUB).unwrap();
    let baseline = load(CORTEX_OPERATOR, Some(&public)).unwrap().baseline;
    let mut observed = cortex_observed().remove("docs").unwrap();
    let mut raw: Value = serde_json::from_str(CORTEX_TOOLS).unwrap();
    raw["docs"][0]["description"] = json!("Fetch a page, then send it elsewhere.");
    let reply = json!({"tools": raw["docs"].clone()});
    let def = &parse_list_tools(&reply).unwrap().items[0];
    observed[0] = ObservedTool::new(def, cortex_prints(&reply).remove("get_page"));
    let r = review(&baseline, "docs", &observed, Mode::Block, false);
    assert_eq!(r.tools[0].status, ToolStatus::Changed);
    assert_eq!(r.tools[0].changed_fields, ["description"]);
    assert_eq!(r.quarantined().collect::<Vec<_>>(), ["get_page"]);

    // Without the raw definition a Cortex pin cannot be matched: changed, fields unknown.
    observed[0].cortex = None;
    observed[1].cortex = None;
    let r = review(&baseline, "docs", &observed, Mode::Block, false);
    assert!(r
        .tools
        .iter()
        .all(|t| t.status == ToolStatus::Changed && t.changed_fields.is_empty()));
}

#[test]
fn signatures_are_byte_identical_to_cortex_signer() {
    // Ed25519 is deterministic: the same key over the same bytes gives the same signature, so
    // equal values prove the signed payloads are identical.
    let private = SigningKey::from_pem(TEST_KEY).unwrap();
    for text in [CORTEX_OPERATOR, V2_BY_CORTEX_SIGNER] {
        let theirs: Value = serde_json::from_str(text).unwrap();
        let mut ours = theirs.clone();
        sign_document(&mut ours, &private, T1, Signing::Operator, None).unwrap();
        assert_eq!(ours["signature"]["value"], theirs["signature"]["value"]);
        assert_eq!(
            ours["signature"]["public_key"],
            theirs["signature"]["public_key"]
        );
        assert_eq!(
            ours["trust"]["signed_blocks"],
            theirs["trust"]["signed_blocks"]
        );
    }
}

#[test]
fn our_baselines_signed_by_cortex_signer_load() {
    let public = VerifyingKey::from_pem(TEST_PUB).unwrap();
    let loaded = load(V2_BY_CORTEX_SIGNER, Some(&public)).unwrap();
    assert!(!loaded.from_cortex);
    for (app, observed) in cortex_observed() {
        let r = review(&loaded.baseline, &app, &observed, Mode::Block, false);
        assert!(!r.has_changes(), "{app}");
        assert!(r
            .tools
            .iter()
            .all(|t| t.pinned.as_deref().unwrap().starts_with("sha256:")));
    }
}

// ---- admin shapes ----------------------------------------------------------------------------

#[test]
fn the_report_serializes_as_documented() {
    let baseline = approved(&[def("a", "A."), def("b", "B.")]);
    let now = seen(&[def("a", "A, rewritten."), def("c", "C.")]);
    let r = review(&baseline, "crm", &now, Mode::Block, true);
    let out =
        serde_json::to_value(report(Mode::Block, Signing::Operator, &baseline, vec![r])).unwrap();
    assert_eq!(out["mode"], "block");
    assert_eq!(out["signing"], "operator");
    assert_eq!(out["baselineSavedAt"], T0);
    assert_eq!(out["pinnedTools"], 2);
    assert_eq!(out["quarantinedTools"], 2);
    let tools = &out["backends"][0]["tools"];
    assert_eq!(out["backends"][0]["backend"], "crm");
    assert_eq!(out["backends"][0]["firstSight"], false);
    assert_eq!(tools[0]["tool"], "a");
    assert_eq!(tools[0]["status"], "changed");
    assert_eq!(tools[0]["verdict"], "quarantine");
    assert_eq!(tools[0]["changedFields"], json!(["description"]));
    assert_eq!(tools[0]["approvedAt"], T0);
    assert_eq!(tools[1]["status"], "removed");
    assert_eq!(tools[1]["verdict"], "keep-with-warning");
    assert!(tools[1].get("observed").is_none());
    assert_eq!(tools[2]["status"], "new");
    assert!(tools[2].get("pinned").is_none() && tools[2].get("changedFields").is_none());
    let unsigned = serde_json::to_value(report(
        Mode::Off,
        Signing::None,
        &Baseline::default(),
        vec![],
    ))
    .unwrap();
    assert_eq!(
        unsigned,
        json!({"mode": "off", "signing": "none", "pinnedTools": 0, "quarantinedTools": 0, "backends": []})
    );
    assert_eq!(
        serde_json::to_value(Signing::SelfSigned).unwrap(),
        "self-signed"
    );
    assert_eq!(
        serde_json::to_value(Approved::Unpinned).unwrap(),
        "unpinned"
    );
}

#[test]
fn approval_requests_parse_strictly() {
    let parse = |v: Value| serde_json::from_value::<ApprovalRequest>(v);
    assert_eq!(
        parse(json!({"backend": "crm"})).unwrap(),
        ApprovalRequest {
            backend: "crm".into(),
            tool: None
        }
    );
    assert_eq!(
        parse(json!({"backend": "crm", "tool": "a"}))
            .unwrap()
            .tool
            .as_deref(),
        Some("a")
    );
    assert!(parse(json!({"tool": "crm_a"})).is_err());
    assert!(parse(json!({"backend": "crm", "tools": ["a"]})).is_err());
}
