//! Baseline files: this gateway's format (version 2), Cortex's (version 1), and [`load`], which
//! applies the signature policy before anything in a file is believed.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::signature::verify_document;
use super::{unhex, Baseline, CortexPrint, Pin, PinnedTool, PinningError, ToolPrint, VerifyingKey};

/// The format version of the files this gateway writes.
pub const FORMAT_VERSION: u64 = 2;
/// The format version of Cortex's baseline files.
pub const CORTEX_FORMAT_VERSION: u64 = 1;
/// The top-level members a signature covers, in both formats.
pub const SIGNED_BLOCKS: [&str; 4] = ["version", "savedAt", "tools", "quarantine"];

fn format_err(msg: impl Into<String>) -> PinningError {
    PinningError::Format(msg.into())
}

fn string_map(v: Option<&Value>, at: &str) -> Result<BTreeMap<String, String>, PinningError> {
    let obj = v
        .and_then(Value::as_object)
        .ok_or_else(|| format_err(format!("{at} must be an object")))?;
    obj.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            _ => Err(format_err(format!("{at}.{k} must be a string"))),
        })
        .collect()
}

fn cortex_digest(v: Option<&Value>, at: &str) -> Result<String, PinningError> {
    match v.and_then(Value::as_str) {
        Some(d) if d.len() == 16 && unhex(d).is_some() => Ok(d.to_ascii_lowercase()),
        _ => Err(format_err(format!("{at} must be 16 hex digits"))),
    }
}

impl Baseline {
    /// The unsigned document (format version 2; see the module documentation).
    pub fn to_json(&self) -> Value {
        let tools: Map<String, Value> = self
            .backends
            .iter()
            .map(|(backend, pins)| {
                let pins: Map<String, Value> = pins
                    .iter()
                    .map(|(name, p)| {
                        let mut e = Map::new();
                        match &p.pin {
                            Pin::Tool(print) => {
                                e.insert(
                                    "fingerprint".into(),
                                    print.fingerprint.to_string().into(),
                                );
                                e.insert("fields".into(), fields_json(&print.fields));
                            }
                            Pin::Cortex(c) => {
                                e.insert("cortexDigest".into(), c.digest.clone().into());
                                e.insert("cortexFields".into(), fields_json(&c.fields));
                            }
                        }
                        e.insert("approvedAt".into(), p.approved_at.clone().into());
                        (name.clone(), Value::Object(e))
                    })
                    .collect();
                (backend.clone(), Value::Object(pins))
            })
            .collect();
        let mut doc = Map::new();
        doc.insert("version".into(), FORMAT_VERSION.into());
        doc.insert("savedAt".into(), self.saved_at.clone().into());
        doc.insert("tools".into(), Value::Object(tools));
        doc.insert("quarantine".into(), Value::Object(Map::new()));
        Value::Object(doc)
    }

    /// Reads a baseline document, this gateway's (version 2) or Cortex's (version 1), without
    /// looking at its signature (that is [`load`]'s job).
    pub fn from_json(doc: &Value) -> Result<Baseline, PinningError> {
        let obj = doc
            .as_object()
            .ok_or_else(|| format_err("the document must be a JSON object"))?;
        let version = obj.get("version").and_then(Value::as_f64);
        let saved_at = match obj.get("savedAt") {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(format_err("savedAt must be a string")),
        };
        let empty = Map::new();
        let tools = match obj.get("tools") {
            None => &empty,
            Some(Value::Object(t)) => t,
            Some(_) => return Err(format_err("tools must be an object")),
        };
        let backends = if version == Some(FORMAT_VERSION as f64) {
            read_v2_tools(tools)?
        } else if version == Some(CORTEX_FORMAT_VERSION as f64) {
            read_cortex_tools(tools)?
        } else {
            let shown = obj.get("version").map_or("none".into(), Value::to_string);
            return Err(format_err(format!(
                "unsupported version {shown}: this gateway reads 2 (its own) and 1 (Cortex's)"
            )));
        };
        Ok(Baseline { saved_at, backends })
    }
}

fn fields_json(fields: &BTreeMap<String, String>) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

type Pins = BTreeMap<String, BTreeMap<String, PinnedTool>>;

fn read_v2_tools(tools: &Map<String, Value>) -> Result<Pins, PinningError> {
    let mut out = BTreeMap::new();
    for (backend, pins) in tools {
        let pins = pins
            .as_object()
            .ok_or_else(|| format_err(format!("tools.{backend} must be an object")))?;
        let mut read = BTreeMap::new();
        for (name, entry) in pins {
            let at = format!("tools.{backend}.{name}");
            let e = entry
                .as_object()
                .ok_or_else(|| format_err(format!("{at} must be an object")))?;
            let approved_at = e
                .get("approvedAt")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let pin = if let Some(fp) = e.get("fingerprint") {
                let fingerprint = fp
                    .as_str()
                    .ok_or_else(|| format_err(format!("{at}.fingerprint must be a string")))?
                    .parse()
                    .map_err(|_| {
                        format_err(format!(
                            "{at}.fingerprint must be `sha256:` and 64 hex digits"
                        ))
                    })?;
                Pin::Tool(ToolPrint {
                    fingerprint,
                    fields: string_map(e.get("fields"), &format!("{at}.fields"))?,
                })
            } else if e.contains_key("cortexDigest") {
                Pin::Cortex(CortexPrint {
                    digest: cortex_digest(e.get("cortexDigest"), &format!("{at}.cortexDigest"))?,
                    fields: string_map(e.get("cortexFields"), &format!("{at}.cortexFields"))?,
                })
            } else {
                return Err(format_err(format!(
                    "{at} needs a fingerprint (or a cortexDigest)"
                )));
            };
            read.insert(name.clone(), PinnedTool { pin, approved_at });
        }
        out.insert(backend.clone(), read);
    }
    Ok(out)
}

/// Cortex keys its pins by exposed name `<app>_<tool>` and names the backend in `app`.
fn read_cortex_tools(tools: &Map<String, Value>) -> Result<Pins, PinningError> {
    let mut out: Pins = BTreeMap::new();
    for (exposed, entry) in tools {
        let at = format!("tools.{exposed}");
        let e = entry
            .as_object()
            .ok_or_else(|| format_err(format!("{at} must be an object")))?;
        let app = e
            .get("app")
            .and_then(Value::as_str)
            .ok_or_else(|| format_err(format!("{at}.app must be a string")))?;
        let name = exposed
            .strip_prefix(app)
            .and_then(|rest| rest.strip_prefix('_'))
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format_err(format!("{at}: the name does not start with `{app}_`")))?;
        let pin = Pin::Cortex(CortexPrint {
            digest: cortex_digest(e.get("digest"), &format!("{at}.digest"))?,
            fields: string_map(e.get("fields"), &format!("{at}.fields"))?,
        });
        let approved_at = e
            .get("firstSeenAt")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        out.entry(app.to_owned())
            .or_default()
            .insert(name.to_owned(), PinnedTool { pin, approved_at });
    }
    Ok(out)
}

/// A baseline read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedBaseline {
    /// The approvals.
    pub baseline: Baseline,
    /// It came from a Cortex baseline (format version 1).
    pub from_cortex: bool,
    /// When it was signed (`signature.created_at`), if signed.
    pub signed_at: Option<String>,
}

/// Reads a baseline file's text, enforcing the signature policy: with a key (see
/// [`BaselineKeys::verifier`](super::BaselineKeys::verifier)) the file must be signed by it;
/// without one it must be unsigned. Any failure is an error to refuse to start with.
pub fn load(text: &str, key: Option<&VerifyingKey>) -> Result<LoadedBaseline, PinningError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| PinningError::Json(e.to_string()))?;
    let signature = doc.get("signature");
    match (signature, key) {
        (Some(_), Some(key)) => verify_document(&doc, key)?,
        (Some(_), None) => return Err(PinningError::NoKey),
        (None, Some(_)) => return Err(PinningError::Unsigned),
        (None, None) => {}
    }
    let baseline = Baseline::from_json(&doc)?;
    Ok(LoadedBaseline {
        from_cortex: doc.get("version").and_then(Value::as_f64)
            == Some(CORTEX_FORMAT_VERSION as f64),
        signed_at: signature
            .and_then(|s| s.get("created_at"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        baseline,
    })
}
