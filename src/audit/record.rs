//! The audit record as the audit trail uses it: its stdout line. The record itself (and
//! its canonical form, which the hash chain covers) is the store's vocabulary
//! ([`crate::store::AuditRecord`]); it is re-exported here.

use serde::Serialize;

pub use crate::store::{clean, clean_opt, decision, AuditRecord, StoredAudit, MAX_IDENT, MAX_TEXT};

use crate::clock::iso8601_ms;

impl AuditRecord {
    /// The stdout form: `{"_type":"cortex_audit","ts":"<ISO-8601>",…fields}` plus, once
    /// stored, nothing else (stdout lines are written before the store assigns `seq`).
    pub fn stdout_line(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write_stdout_line(&mut out);
        out
    }

    /// Appends the stdout form and its newline to `out` (the audit thread's buffer of one
    /// drain: no allocation per line).
    pub fn write_stdout_line(&self, out: &mut Vec<u8>) {
        #[derive(Serialize)]
        struct Line<'a> {
            #[serde(rename = "_type")]
            kind: &'static str,
            ts: String,
            #[serde(flatten)]
            record: &'a AuditRecord,
        }
        let line = Line {
            kind: "cortex_audit",
            ts: iso8601_ms(self.ts_ms),
            record: self,
        };
        let start = out.len();
        if serde_json::to_writer(&mut *out, &line).is_err() {
            out.truncate(start);
            return;
        }
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_line_is_one_json_object_with_type_and_ts() {
        let mut r = AuditRecord::new(1_700_000_000_123, "POST");
        r.reason = Some("line\nbreak".into());
        let line = r.stdout_line();
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["_type"], "cortex_audit");
        assert_eq!(v["ts"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["ts_ms"], 1_700_000_000_123i64);
        assert_eq!(v["decision"], "allowed");
    }
}
