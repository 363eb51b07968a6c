//! Tool-definition pinning (rug-pull protection): fingerprints, baselines, reviews, approvals,
//! and signed baseline files.
//!
//! A backend can keep a tool's name and rewrite what the tool says it does. Agents then act on
//! the new description under the approval given to the old one. Pinning records a fingerprint
//! of each approved definition (the *baseline*, per backend) and compares every discovered
//! catalog with it.
//!
//! # Fingerprints
//!
//! [`tool_print`] hashes, with SHA-256 over [canonical JSON](crate::canonical), the object
//! `{name, title, description, scope, inputSchema, outputSchema, annotations, version,
//! deprecated}` of a tool as the gateway serves it (after the contract's `params` shorthand is
//! converted), absent members as `null`. Key order and number spelling do not matter (`1` and
//! `1.0` are one number); anything an agent reads does. Each member also gets a short hash of
//! its own, so a review can say *which* fields changed.
//!
//! # Reviews and modes
//!
//! [`review`] compares the tools a backend lists now with its pins: each tool is
//! [`ToolStatus::Unchanged`], `Changed`, `New` or `Removed`, and gets a [`Verdict`] from the
//! [`Mode`]:
//!
//! | status | `off` | `warn` | `block` |
//! | --- | --- | --- | --- |
//! | unchanged | keep | keep | keep |
//! | changed, new | keep | keep with warning | quarantine |
//! | removed | keep (pin kept) | keep with warning (pin dropped) | keep with warning (pin kept) |
//!
//! A quarantined tool is hidden from lists and refused on calls until approved. In `warn`
//! mode the baseline follows the backend ([`Baseline::apply`]: each change is reported once);
//! in `block` mode only an approval ([`Baseline::approve_tool`],
//! [`Baseline::approve_backend`]) moves it. A backend the baseline has never seen may be pinned
//! as it is on first sight (trust on first use), which is how a fresh gateway starts; a gateway
//! whose approvals come from a signed file should not do that.
//!
//! Only a backend that answered its discovery should be reviewed: a tool missing from a
//! failed discovery has not been removed.
//!
//! # Baseline files
//!
//! [`Baseline::to_json`] writes, and [`load`] reads, this document (version 2):
//!
//! ```json
//! {"version": 2, "savedAt": "2026-12-03T08:00:00.000Z",
//!  "tools": {"crm": {"search_accounts": {"fingerprint": "sha256:<64 hex>",
//!                                        "fields": {"description": "<16 hex>", …},
//!                                        "approvedAt": "2026-12-01T10:00:00.000Z"}}},
//!  "quarantine": {},
//!  "trust": {"signed_blocks": ["version", "savedAt", "tools", "quarantine"], "scope": "partial",
//!            "algorithm": "Ed25519", "trust_level": "self-signed", "public_key_hint": "…"},
//!  "signature": {"value": "<base64>", "created_at": "…",
//!                "public_key": "-----BEGIN PUBLIC KEY-----\n…"}}
//! ```
//!
//! The envelope (`trust`, `signature`, the signed blocks) is Cortex's, byte for byte, so
//! Cortex's offline signer (`scripts/sign-baseline.mjs sign|verify`) signs and checks these
//! files unchanged, and this gateway checks the files that signer or the Cortex gateway wrote.
//! `version` 2 tells a Cortex gateway the file is not its own (it refuses any version but 1).
//!
//! Who can approve follows from the keys configured ([`BaselineKeys::signing`]): with the
//! private key the gateway signs what it writes (`self-signed`); with only the public key it
//! verifies but cannot sign (`operator`), so approvals it makes cannot be written in a form
//! [`load`] accepts at the next start: they hold until a restart unless the operator signs the
//! exported baseline offline, as with Cortex.
//!
//! # What Cortex signs, and what is accepted here
//!
//! Cortex (`src/lib/tool-integrity.ts` and `scripts/sign-baseline.mjs` of the TypeScript
//! gateway) signs with Ed25519 (no prehash) the UTF-8 bytes of its canonical JSON of the object
//! made of the top-level members `version`, `savedAt`, `tools` and `quarantine` of the file (a
//! missing one is left out). Its canonical JSON is `JSON.stringify` with object keys sorted by
//! UTF-16 code units and no whitespace: exactly [`crate::canonical`]. The signature is stored
//! base64 in `signature.value`; `signature.public_key` (SPKI PEM) and `trust` are not signed
//! and only informative. Keys are PEM: PKCS#8 `PRIVATE KEY` for
//! `CORTEX_BASELINE_PRIVATE_KEY`, SPKI `PUBLIC KEY` for `CORTEX_BASELINE_PUBLIC_KEY`, with
//! literal `\n` sequences accepted for newlines as Cortex does.
//!
//! So [`load`] accepts a Cortex baseline (version 1) and verifies its signature over the same
//! bytes; the test vectors in `filters/tests/vectors` were made by running Cortex's own module
//! and signer. A Cortex baseline pins per *exposed* name (`<app>_<tool>`, with `app`) a 16-hex
//! digest: the first 64 bits (16 hex digits) of SHA-256 over `scope=…`, `description=…`,
//! `params=…`, `inputSchema=…`, `version=…` and `deprecated=…` joined by NUL bytes, each `…`
//! the canonical JSON of that member of the tool *as the backend sent it* (`null` when
//! absent). Such pins are kept as [`Pin::Cortex`] and compared through
//! [`cortex_print`] of the raw `list_tools` entry, so the approvals carry over. Once a
//! Cortex-pinned tool is seen unchanged it is re-pinned with the full fingerprint, which from
//! then on also covers `title`, `outputSchema` and `annotations` (which Cortex does not pin).
//! Differences that remain: the authority is always the configured public key (the embedded one
//! is only used to explain a mismatch), a signed file with no key configured is refused rather
//! than run "degraded", and `block` quarantines new tools too (Cortex serves them).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::canonical;
use crate::catalog::ToolDef;

mod file;
mod signature;

pub use file::{load, LoadedBaseline, CORTEX_FORMAT_VERSION, FORMAT_VERSION, SIGNED_BLOCKS};
pub use signature::{sign_document, verify_document, BaselineKeys, SigningKey, VerifyingKey};

/// Something about pinning that cannot be used as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinningError {
    /// An integrity mode other than off, warn or block.
    #[error("unknown tool integrity mode `{0}`: use off, warn or block")]
    Mode(String),
    /// A baseline file that is not JSON.
    #[error("the tool baseline is not valid JSON: {0}")]
    Json(String),
    /// A baseline document of the wrong shape (the message names the place).
    #[error("the tool baseline is malformed: {0}")]
    Format(String),
    /// A key that cannot be read (the message says which and why).
    #[error("{0}")]
    Key(String),
    /// The private and public keys configured are not one pair.
    #[error("CORTEX_BASELINE_PRIVATE_KEY and CORTEX_BASELINE_PUBLIC_KEY are not the two halves of one key pair")]
    KeyMismatch,
    /// A key is configured but the file carries no signature (a stripped signature).
    #[error("the tool baseline is not signed, but a baseline key is configured: refusing it (sign it, or remove the key to run unsigned)")]
    Unsigned,
    /// The file is signed but no key is configured to check it.
    #[error("the tool baseline is signed, but no CORTEX_BASELINE_PUBLIC_KEY (or private key) is configured to verify it")]
    NoKey,
    /// The signature does not verify with the configured key, which also signed it.
    #[error("the tool baseline's signature does not match its content: it was changed after it was signed")]
    BadSignature,
    /// The signature does not verify, and the file names another signing key.
    #[error("the tool baseline was signed by a key other than the configured public key")]
    OtherKey,
    /// A signature value that is not base64 of 64 bytes.
    #[error("the tool baseline's signature.value is not a base64 Ed25519 signature")]
    SignatureEncoding,
    /// An approval of a tool that is neither pinned nor listed.
    #[error("backend `{backend}` has no tool `{tool}` (neither pinned nor discovered)")]
    UnknownTool {
        /// The backend.
        backend: String,
        /// The tool name asked for.
        tool: String,
    },
}

// ---- modes -----------------------------------------------------------------------------------

/// How changes to pinned tools are handled (`CORTEX_TOOL_INTEGRITY_MODE`, default `warn` as in
/// Cortex).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// No pinning: everything is served.
    Off,
    /// Changes are served and reported (log, audit, metric, `list_changed`).
    #[default]
    Warn,
    /// Changed and new tools are quarantined until approved.
    Block,
}

impl FromStr for Mode {
    type Err = PinningError;

    /// `off`, `warn` or `block`, in any case. (Cortex reads anything but `block` as `warn`;
    /// here an unknown value is an error, so a typo cannot weaken the mode.)
    fn from_str(s: &str) -> Result<Mode, PinningError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(Mode::Off),
            "warn" => Ok(Mode::Warn),
            "block" => Ok(Mode::Block),
            _ => Err(PinningError::Mode(s.to_owned())),
        }
    }
}

// ---- fingerprints ----------------------------------------------------------------------------

/// The members of a tool definition that its fingerprint covers, in report order.
pub const FINGERPRINTED_FIELDS: [&str; 9] = [
    "name",
    "title",
    "description",
    "scope",
    "inputSchema",
    "outputSchema",
    "annotations",
    "version",
    "deprecated",
];

/// The members of a raw contract tool that a Cortex digest covers, in Cortex's order.
pub const CORTEX_FIELDS: [&str; 6] = [
    "scope",
    "description",
    "params",
    "inputSchema",
    "version",
    "deprecated",
];

/// SHA-256 of a tool definition's canonical JSON; written `sha256:<64 lowercase hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex(&self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Fingerprint {
    type Err = PinningError;

    fn from_str(s: &str) -> Result<Fingerprint, PinningError> {
        let bad = || PinningError::Format(format!("`{s}` is not `sha256:` and 64 hex digits"));
        let digits = s.strip_prefix("sha256:").ok_or_else(bad)?;
        let bytes = unhex(digits).ok_or_else(bad)?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(Fingerprint)
            .map_err(|_| bad())
    }
}

/// A tool definition's fingerprint and per-field hashes (16 hex digits each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolPrint {
    /// Hash of the whole definition: equal prints mean an unchanged definition.
    pub fingerprint: Fingerprint,
    /// Per member of [`FINGERPRINTED_FIELDS`]: the first 64 bits of SHA-256 of its canonical
    /// JSON, to name what changed (the decision uses `fingerprint` alone).
    pub fields: BTreeMap<String, String>,
}

/// The fingerprint of `def` as served (see the module documentation for what it covers).
pub fn tool_print(def: &ToolDef) -> ToolPrint {
    let opt_str = |s: &Option<String>| s.clone().map_or(Value::Null, Value::String);
    let deprecated = def.deprecated.as_ref().map_or(Value::Null, |d| {
        let mut m = Map::new();
        for (key, v) in [
            ("removedAt", &d.removed_at),
            ("replacedBy", &d.replaced_by),
            ("reason", &d.reason),
        ] {
            if let Some(v) = v {
                m.insert(key.into(), Value::String(v.clone()));
            }
        }
        Value::Object(m)
    });
    let members: [(&str, Value); 9] = [
        ("name", Value::String(def.name.clone())),
        ("title", opt_str(&def.title)),
        ("description", Value::String(def.description.clone())),
        ("scope", opt_str(&def.scope)),
        ("inputSchema", def.input_schema.clone()),
        (
            "outputSchema",
            def.output_schema.clone().unwrap_or(Value::Null),
        ),
        (
            "annotations",
            def.annotations.clone().unwrap_or(Value::Null),
        ),
        ("version", Value::String(def.version.clone())),
        ("deprecated", deprecated),
    ];
    let fields = members
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_owned(),
                hex(&Sha256::digest(canonical::to_vec(v))[..8]),
            )
        })
        .collect();
    let object: Map<String, Value> = members
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    ToolPrint {
        fingerprint: Fingerprint(Sha256::digest(canonical::to_vec(&Value::Object(object))).into()),
        fields,
    }
}

/// A tool's Cortex pin: the canonical JSON of each member of [`CORTEX_FIELDS`] and the digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CortexPrint {
    /// 16 lowercase hex digits.
    pub digest: String,
    /// Field name → canonical JSON text of that member (`null` when absent).
    pub fields: BTreeMap<String, String>,
}

/// What the Cortex gateway records for a `list_tools` entry as its backend sent it.
pub fn cortex_print(raw_tool: &Map<String, Value>) -> CortexPrint {
    let fields: Vec<(&str, String)> = CORTEX_FIELDS
        .iter()
        .map(|f| {
            let text = raw_tool
                .get(*f)
                .map_or_else(|| "null".to_owned(), canonical::to_string);
            (*f, text)
        })
        .collect();
    let line = fields
        .iter()
        .map(|(f, t)| format!("{f}={t}"))
        .collect::<Vec<_>>()
        .join("\0");
    CortexPrint {
        digest: hex(&Sha256::digest(line.as_bytes())[..8]),
        fields: fields.into_iter().map(|(f, t)| (f.to_owned(), t)).collect(),
    }
}

/// [`cortex_print`] of every entry of a `list_tools` reply `{tools:[…]}`, by the backend's own
/// tool name (the first entry of a repeated name, as discovery keeps it).
pub fn cortex_prints(list_tools_reply: &Value) -> BTreeMap<String, CortexPrint> {
    let mut out = BTreeMap::new();
    let items = list_tools_reply
        .get("tools")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for item in items {
        if let (Some(obj), Some(name)) =
            (item.as_object(), item.get("name").and_then(Value::as_str))
        {
            out.entry(name.to_owned())
                .or_insert_with(|| cortex_print(obj));
        }
    }
    out
}

/// One tool as a backend lists it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedTool {
    /// The backend's own name.
    pub name: String,
    /// Its fingerprint.
    pub print: ToolPrint,
    /// Its Cortex pin, when the raw contract entry is known (needed only to compare with pins
    /// imported from a Cortex baseline).
    pub cortex: Option<CortexPrint>,
}

impl ObservedTool {
    /// The observation of `def`, with its Cortex print if known (see [`cortex_prints`]).
    pub fn new(def: &ToolDef, cortex: Option<CortexPrint>) -> ObservedTool {
        ObservedTool {
            name: def.name.clone(),
            print: tool_print(def),
            cortex,
        }
    }
}

// ---- the baseline ----------------------------------------------------------------------------

/// What an approved definition is pinned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// This gateway's fingerprint.
    Tool(ToolPrint),
    /// A digest imported from a Cortex baseline (replaced by a [`Pin::Tool`] once the tool is
    /// seen unchanged).
    Cortex(CortexPrint),
}

impl Pin {
    /// `sha256:<hex>` or `cortex:<16 hex>`.
    pub fn label(&self) -> String {
        match self {
            Pin::Tool(p) => p.fingerprint.to_string(),
            Pin::Cortex(c) => format!("cortex:{}", c.digest),
        }
    }
}

/// An approved tool definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedTool {
    /// What it is pinned to.
    pub pin: Pin,
    /// When it was approved (RFC 3339, as given by the caller).
    pub approved_at: String,
}

/// The approved definitions: backend id → tool name → pin.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Baseline {
    /// The last time an approval changed (RFC 3339, as given by the caller; empty when never).
    pub saved_at: String,
    /// Pins per backend; a backend present with no tools was approved as having none.
    pub backends: BTreeMap<String, BTreeMap<String, PinnedTool>>,
}

/// What an approval of one tool did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Approved {
    /// The listed definition is now the pinned one.
    Pinned,
    /// The tool is no longer listed: its pin is dropped.
    Unpinned,
}

fn pin_of(tool: &ObservedTool, at: &str) -> PinnedTool {
    PinnedTool {
        pin: Pin::Tool(tool.print.clone()),
        approved_at: at.to_owned(),
    }
}

impl Baseline {
    /// The number of pinned tools over all backends.
    pub fn pinned_count(&self) -> usize {
        self.backends.values().map(BTreeMap::len).sum()
    }

    /// Approves one tool of `backend` as `observed` lists it now (`at`: RFC 3339): a listed
    /// tool is pinned to its current definition, a pinned tool no longer listed is unpinned.
    pub fn approve_tool(
        &mut self,
        backend: &str,
        tool: &str,
        observed: &[ObservedTool],
        at: &str,
    ) -> Result<Approved, PinningError> {
        let outcome = if let Some(current) = observed.iter().find(|t| t.name == tool) {
            self.backends
                .entry(backend.to_owned())
                .or_default()
                .insert(tool.to_owned(), pin_of(current, at));
            Approved::Pinned
        } else if self
            .backends
            .get_mut(backend)
            .and_then(|pins| pins.remove(tool))
            .is_some()
        {
            Approved::Unpinned
        } else {
            return Err(PinningError::UnknownTool {
                backend: backend.to_owned(),
                tool: tool.to_owned(),
            });
        };
        self.saved_at = at.to_owned();
        Ok(outcome)
    }

    /// Approves `backend` as `observed` lists it now: exactly those tools, pinned to their
    /// current definitions (a tool approved before and unchanged keeps its approval time).
    pub fn approve_backend(&mut self, backend: &str, observed: &[ObservedTool], at: &str) {
        let previous = self.backends.remove(backend).unwrap_or_default();
        let pins = observed
            .iter()
            .map(|t| {
                let kept = previous
                    .get(&t.name)
                    .filter(|p| matches!(&p.pin, Pin::Tool(print) if *print == t.print));
                let pin = kept.cloned().unwrap_or_else(|| pin_of(t, at));
                (t.name.clone(), pin)
            })
            .collect();
        self.backends.insert(backend.to_owned(), pins);
        self.saved_at = at.to_owned();
    }

    /// Moves the baseline as the mode wants after `review` of `observed` (`at`: RFC 3339):
    /// first sight pins everything; `warn` follows every change (new and changed tools pinned,
    /// removed ones unpinned); Cortex pins seen unchanged become full fingerprints (in `warn`
    /// and `block`); `off` and everything else in `block` change nothing. Returns whether the
    /// baseline changed (and should be stored).
    pub fn apply(&mut self, review: &BackendReview, observed: &[ObservedTool], at: &str) -> bool {
        if review.mode == Mode::Off {
            return false;
        }
        if review.first_sight {
            self.approve_backend(&review.backend, observed, at);
            return true;
        }
        let mut changed = false;
        for t in &review.tools {
            let current = observed.iter().find(|o| o.name == t.tool);
            match (t.status, current) {
                (ToolStatus::Unchanged, Some(current)) => {
                    let pinned = self
                        .backends
                        .get_mut(&review.backend)
                        .and_then(|pins| pins.get_mut(&t.tool));
                    if let Some(pinned) = pinned {
                        if matches!(pinned.pin, Pin::Cortex(_)) {
                            pinned.pin = Pin::Tool(current.print.clone());
                            changed = true;
                        }
                    }
                }
                (ToolStatus::New | ToolStatus::Changed, Some(current))
                    if review.mode == Mode::Warn =>
                {
                    self.backends
                        .entry(review.backend.clone())
                        .or_default()
                        .insert(t.tool.clone(), pin_of(current, at));
                    changed = true;
                }
                (ToolStatus::Removed, _) if review.mode == Mode::Warn => {
                    changed |= self
                        .backends
                        .get_mut(&review.backend)
                        .and_then(|pins| pins.remove(&t.tool))
                        .is_some();
                }
                _ => {}
            }
        }
        if changed {
            self.saved_at = at.to_owned();
        }
        changed
    }
}

// ---- reviews ---------------------------------------------------------------------------------

/// How a listed (or pinned) tool compares with its pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolStatus {
    /// Listed, and equal to its pin.
    Unchanged,
    /// Listed, and different from its pin.
    Changed,
    /// Listed, never pinned.
    New,
    /// Pinned, no longer listed.
    Removed,
}

/// What to do with a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Serve it (a removed tool: keep its pin, nothing to report).
    Keep,
    /// Serve it and report the change (a removed tool: report it, keep its pin).
    KeepWithWarning,
    /// Hide it and refuse calls until it is approved.
    Quarantine,
}

/// The review of one tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolReview {
    /// The backend's own tool name.
    pub tool: String,
    /// How it compares with its pin.
    pub status: ToolStatus,
    /// What to do with it.
    pub verdict: Verdict,
    /// For a changed tool: the members that differ (empty when a Cortex pin meets a tool whose
    /// raw definition is unknown, so only "changed" can be said).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed_fields: Vec<String>,
    /// The pin (`sha256:…` or `cortex:…`), when pinned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
    /// The listed definition's fingerprint, when listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
    /// When the pin was approved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<String>,
}

/// The review of one backend's listed tools against the baseline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendReview {
    /// The backend id.
    pub backend: String,
    /// The mode it was reviewed under.
    pub mode: Mode,
    /// The baseline had never seen this backend and pins it as it is now.
    pub first_sight: bool,
    /// Per tool, sorted by name: listed ones and pinned ones no longer listed.
    pub tools: Vec<ToolReview>,
}

impl BackendReview {
    /// The tools to hide and refuse.
    pub fn quarantined(&self) -> impl Iterator<Item = &str> {
        self.tools
            .iter()
            .filter(|t| t.verdict == Verdict::Quarantine)
            .map(|t| t.tool.as_str())
    }

    /// Whether anything differs from the baseline (to log, audit, count and notify).
    pub fn has_changes(&self) -> bool {
        self.tools.iter().any(|t| t.status != ToolStatus::Unchanged)
    }
}

fn verdict(mode: Mode, status: ToolStatus) -> Verdict {
    match (mode, status) {
        (Mode::Off, _) | (_, ToolStatus::Unchanged) => Verdict::Keep,
        (Mode::Warn, _) | (Mode::Block, ToolStatus::Removed) => Verdict::KeepWithWarning,
        (Mode::Block, ToolStatus::Changed | ToolStatus::New) => Verdict::Quarantine,
    }
}

/// How `current` compares with `pinned`: `None` when equal, else the differing fields.
fn compare(pinned: &Pin, current: &ObservedTool) -> Option<Vec<String>> {
    match pinned {
        Pin::Tool(p) if p.fingerprint == current.print.fingerprint => None,
        Pin::Tool(p) => Some(differing(
            &p.fields,
            &current.print.fields,
            &FINGERPRINTED_FIELDS,
        )),
        Pin::Cortex(c) => match &current.cortex {
            Some(now) if now.digest == c.digest => None,
            Some(now) => Some(differing(&c.fields, &now.fields, &CORTEX_FIELDS)),
            None => Some(Vec::new()),
        },
    }
}

fn differing(
    pinned: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
    order: &[&str],
) -> Vec<String> {
    order
        .iter()
        .filter(|f| pinned.get(**f) != now.get(**f))
        .map(|f| (*f).to_owned())
        .collect()
}

/// Reviews what `backend` lists now (`observed`) against `baseline` under `mode`. With
/// `pin_first_sight`, a backend the baseline has never seen is reviewed as first sight (every
/// tool new, kept, and pinned by [`Baseline::apply`]); without it its tools are simply new.
pub fn review(
    baseline: &Baseline,
    backend: &str,
    observed: &[ObservedTool],
    mode: Mode,
    pin_first_sight: bool,
) -> BackendReview {
    let empty = BTreeMap::new();
    let pins = baseline.backends.get(backend);
    let first_sight = pins.is_none() && pin_first_sight;
    let pins = pins.unwrap_or(&empty);
    let mut tools: BTreeMap<&str, ToolReview> = BTreeMap::new();
    for current in observed {
        let pinned = pins.get(&current.name);
        let (status, changed_fields) = match pinned.map(|p| compare(&p.pin, current)) {
            None => (ToolStatus::New, Vec::new()),
            Some(None) => (ToolStatus::Unchanged, Vec::new()),
            Some(Some(fields)) => (ToolStatus::Changed, fields),
        };
        let verdict = if first_sight {
            Verdict::Keep
        } else {
            verdict(mode, status)
        };
        tools.entry(current.name.as_str()).or_insert(ToolReview {
            tool: current.name.clone(),
            status,
            verdict,
            changed_fields,
            pinned: pinned.map(|p| p.pin.label()),
            observed: Some(current.print.fingerprint.to_string()),
            approved_at: pinned.map(|p| p.approved_at.clone()),
        });
    }
    for (name, pinned) in pins {
        tools.entry(name.as_str()).or_insert_with(|| ToolReview {
            tool: name.clone(),
            status: ToolStatus::Removed,
            verdict: verdict(mode, ToolStatus::Removed),
            changed_fields: Vec::new(),
            pinned: Some(pinned.pin.label()),
            observed: None,
            approved_at: Some(pinned.approved_at.clone()),
        });
    }
    BackendReview {
        backend: backend.to_owned(),
        mode,
        first_sight,
        tools: tools.into_values().collect(),
    }
}

// ---- the admin report ------------------------------------------------------------------------

/// Who can mint an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signing {
    /// Unsigned baseline: whoever can write it.
    None,
    /// The gateway holds the private key (a compromised host can still forge approvals).
    SelfSigned,
    /// The gateway holds only the public key: approvals are signed offline.
    Operator,
}

/// `GET /admin/integrity`: the mode, the signing setup and every backend's review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IntegrityReport {
    /// The global mode.
    pub mode: Mode,
    /// Who can mint approvals.
    pub signing: Signing,
    /// When the approvals last changed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub baseline_saved_at: String,
    /// Pinned tools over all backends.
    pub pinned_tools: usize,
    /// Quarantined tools over all backends.
    pub quarantined_tools: usize,
    /// Per backend, as given.
    pub backends: Vec<BackendReview>,
}

/// Assembles the report from the latest review of each backend.
pub fn report(
    mode: Mode,
    signing: Signing,
    baseline: &Baseline,
    backends: Vec<BackendReview>,
) -> IntegrityReport {
    IntegrityReport {
        mode,
        signing,
        baseline_saved_at: baseline.saved_at.clone(),
        pinned_tools: baseline.pinned_count(),
        quarantined_tools: backends.iter().map(|b| b.quarantined().count()).sum(),
        backends,
    }
}

/// `POST /admin/integrity/approve`: `{"backend": "crm"}` approves the backend as listed now,
/// `{"backend": "crm", "tool": "search_accounts"}` one tool (the backend's own name).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequest {
    /// The backend id.
    pub backend: String,
    /// One tool of it; absent: the whole backend.
    #[serde(default)]
    pub tool: Option<String>,
}

// ---- hex -------------------------------------------------------------------------------------

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests;
