//! The audit record as the audit trail uses it: its stdout line. The record itself (and
//! its canonical form, which the hash chain covers) is the store's vocabulary
//! ([`crate::store::AuditRecord`]); it is re-exported here.

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
        // `{"_type":"cortex_audit","ts":"…"` then the record's own JSON with its opening
        // brace turned into a comma: the same line a flattened struct would give, without
        // serde's map path for `flatten`.
        let start = out.len();
        out.extend_from_slice(br#"{"_type":"cortex_audit","ts":""#);
        out.extend_from_slice(iso8601_ms(self.ts_ms).as_bytes());
        out.push(b'"');
        let brace = out.len();
        if serde_json::to_writer(&mut *out, self).is_err() || out.get(brace) != Some(&b'{') {
            out.truncate(start);
            return;
        }
        out[brace] = b',';
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

    /// The line is byte for byte what serializing `{_type, ts, ..record}` with serde's
    /// `flatten` gives (the form it had before), for a record with every field set and for
    /// a bare one.
    #[test]
    fn stdout_line_matches_the_flattened_form() {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            #[serde(rename = "_type")]
            kind: &'static str,
            ts: String,
            #[serde(flatten)]
            record: &'a AuditRecord,
        }
        let bare = AuditRecord::new(1_700_000_000_123, "GET");
        let mut full = AuditRecord::new(1_700_000_000_999, "POST");
        full.decision = decision::REJECTED.into();
        full.stage = Some("scope".into());
        full.reason = Some("needs \"crm:write\"\u{1}".into());
        full.http_status = 403;
        full.caller_sub = Some("s".into());
        full.caller_email_hash = Some("e".into());
        full.caller_role = Some("admin".into());
        full.caller_pool = Some("p".into());
        full.client_id = Some("c".into());
        full.dev_bypass = true;
        full.method = Some("tools/call".into());
        full.tool = Some("crm_search".into());
        full.target_app = Some("crm".into());
        full.scope_used = Some("crm:write".into());
        full.params_hash = Some("ab".into());
        full.response_size = 12;
        full.latency_ms = 1.25;
        full.error_code = Some(-32001);
        full.protocol_version = Some("2025-06-18".into());
        full.origin = Some("https://x".into());
        full.session_id = Some("sid".into());
        full.tools_listed = Some(3);
        full.tokens_estimate = Some(40);
        full.backends_filter = Some("crm".into());
        full.tool_mode = Some("all".into());
        full.rid = Some("00ff-1".into());
        for r in [&bare, &full] {
            let mut flattened = serde_json::to_vec(&Line {
                kind: "cortex_audit",
                ts: iso8601_ms(r.ts_ms),
                record: r,
            })
            .unwrap();
            flattened.push(b'\n');
            let mut two = b"earlier line\n".to_vec();
            r.write_stdout_line(&mut two);
            assert_eq!(r.stdout_line(), flattened);
            assert_eq!(&two[13..], flattened.as_slice());
        }
    }
}
