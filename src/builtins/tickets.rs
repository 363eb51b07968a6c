//! Missing-capability tickets: `report_missing_capability`, `list_cortex_tickets` and
//! `triage_cortex_ticket`, with Cortex's input and output shapes (reference §5) and what
//! Cortex lacks: `severity` is validated, `contextApp` is kept, blocking tickets reach the
//! webhook through a durable, signed outbox ([`super::webhook`]), and administrators can
//! triage.
//!
//! Routing: a report whose `contextApp` is a ticket backend (`tickets.backends`,
//! `CORTEX_TICKET_BACKENDS`) is forwarded to that backend's `report_missing_capability`
//! (without `contextApp`, as Cortex does) with the caller's identity; every other report is
//! stored by the gateway ([`crate::store::TicketStore::create_ticket`]), deduplicated per caller on
//! a fingerprint of `whatIWanted|contextTool|contextApp` within `tickets.dedup_window`.
//! A new local blocking ticket and its webhook delivery are written in one transaction.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::clock::{iso8601_ms as iso_ms, now_ms};
use crate::store::{
    random_id, NewDelivery, NewTicket, Store, StoreError, Ticket, TicketFilter, TicketNote,
    TicketSeverity, TicketStatus, TicketUpdate,
};

use crate::upstream::calls::{self, Caller};
use crate::upstream::{BackendKind, Operation};

use super::{opt_limit, opt_str, BuiltinCx, BuiltinError, BuiltinResult, GATEWAY_APP};

/// Accepted severities (Cortex's three).
pub const SEVERITIES: [&str; 3] = ["blocking", "inconvenient", "nice_to_have"];
/// Ticket statuses (Cortex's six).
pub const STATUSES: [&str; 6] = [
    "open",
    "triaged",
    "planned",
    "resolved",
    "wont_fix",
    "duplicate",
];
/// Default `limit` of `list_cortex_tickets` (Cortex: 20).
pub const DEFAULT_LIST_LIMIT: usize = 20;
/// Largest `limit` (Cortex: 100).
pub const MAX_LIST_LIMIT: usize = 100;
/// The webhook event of a new blocking ticket.
pub const BLOCKING_EVENT: &str = "cortex.ticket.blocking";
/// `source` of tickets kept by the gateway.
pub const SOURCE_LOCAL: &str = "cortex-local";
/// `source` of tickets kept by a ticket backend.
pub const SOURCE_BACKEND: &str = "backend-owned";

/// Longest free-text field, in characters.
const MAX_TEXT: usize = 4_000;
/// Longest `suggestedShape`, as JSON text.
const MAX_SHAPE: usize = 16_000;
/// Longest `contextTool` / `contextApp`.
const MAX_NAME: usize = 200;

/// The deduplication fingerprint: SHA-256 (hex) of the normalised `whatIWanted` (lowercase,
/// whitespace collapsed), `contextTool` and `contextApp`, separated by `|`.
pub fn fingerprint(what: &str, context_tool: Option<&str>, context_app: Option<&str>) -> String {
    let normalised = what
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    let mut h = Sha256::new();
    h.update(normalised.as_bytes());
    h.update(b"|");
    h.update(context_tool.unwrap_or("").trim().as_bytes());
    h.update(b"|");
    h.update(context_app.unwrap_or("").trim().to_lowercase().as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A validated report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// `whatIWanted`.
    pub what: String,
    /// `userIntent`.
    pub intent: String,
    /// `severity`.
    pub severity: TicketSeverity,
    /// `contextTool`.
    pub context_tool: Option<String>,
    /// `contextApp`, lowercased.
    pub context_app: Option<String>,
    /// `suggestedShape` as sent (any JSON).
    pub suggested_shape: Option<Value>,
}

fn required_text(args: &Map<String, Value>, key: &str) -> Result<String, BuiltinError> {
    let v = opt_str(args, key)?.map(str::trim).unwrap_or("");
    if v.is_empty() {
        return Err(BuiltinError::invalid(format!(
            "`{key}` is required (a non-empty string)"
        )));
    }
    if v.chars().count() > MAX_TEXT {
        return Err(BuiltinError::invalid(format!(
            "`{key}` is longer than {MAX_TEXT} characters"
        )));
    }
    Ok(v.to_string())
}

fn optional_name(args: &Map<String, Value>, key: &str) -> Result<Option<String>, BuiltinError> {
    let v = opt_str(args, key)?.map(str::trim).filter(|s| !s.is_empty());
    if v.is_some_and(|s| s.chars().count() > MAX_NAME) {
        return Err(BuiltinError::invalid(format!(
            "`{key}` is longer than {MAX_NAME} characters"
        )));
    }
    Ok(v.map(str::to_string))
}

/// Parses a severity, with a message listing the valid ones.
fn severity_arg(
    args: &Map<String, Value>,
    required: bool,
) -> Result<Option<TicketSeverity>, BuiltinError> {
    match opt_str(args, "severity")? {
        None if required => Err(BuiltinError::invalid(format!(
            "`severity` is required: one of {}",
            SEVERITIES.join(", ")
        ))),
        None => Ok(None),
        Some(s) => TicketSeverity::parse(s.trim()).map(Some).ok_or_else(|| {
            BuiltinError::invalid(format!(
                "`severity` must be one of {}, not `{s}`",
                SEVERITIES.join(", ")
            ))
        }),
    }
}

fn status_arg(args: &Map<String, Value>) -> Result<Option<TicketStatus>, BuiltinError> {
    match opt_str(args, "status")? {
        None => Ok(None),
        Some(s) => TicketStatus::parse(s.trim()).map(Some).ok_or_else(|| {
            BuiltinError::invalid(format!(
                "`status` must be one of {}, not `{s}`",
                STATUSES.join(", ")
            ))
        }),
    }
}

/// Validates the arguments of `report_missing_capability`.
pub fn parse_report(args: &Map<String, Value>) -> Result<Report, BuiltinError> {
    let what = required_text(args, "whatIWanted")?;
    let intent = required_text(args, "userIntent")?;
    let severity = severity_arg(args, true)?.unwrap_or(TicketSeverity::Inconvenient);
    let context_tool = optional_name(args, "contextTool")?;
    let context_app = optional_name(args, "contextApp")?.map(|a| a.to_lowercase());
    let suggested_shape = match args.get("suggestedShape") {
        None | Some(Value::Null) => None,
        Some(v) => {
            if serde_json::to_string(v).map_or(0, |s| s.len()) > MAX_SHAPE {
                return Err(BuiltinError::invalid(format!(
                    "`suggestedShape` is larger than {MAX_SHAPE} bytes"
                )));
            }
            Some(v.clone())
        }
    };
    Ok(Report {
        what,
        intent,
        severity,
        context_tool,
        context_app,
        suggested_shape,
    })
}

fn store(cx: &BuiltinCx<'_>) -> Result<Arc<dyn Store>, BuiltinError> {
    cx.store.cloned().ok_or_else(|| BuiltinError::Failed {
        code: "tickets_unavailable",
        message: "Tickets are not available: this gateway has no store.".into(),
    })
}

fn store_failed(e: StoreError) -> BuiltinError {
    warn!(error = %e, "ticket store call failed");
    BuiltinError::Failed {
        code: "tickets_unavailable",
        message: "The ticket store is unavailable right now; try again in a minute.".into(),
    }
}

/// `report_missing_capability`.
pub async fn report(cx: &BuiltinCx<'_>, args: &Map<String, Value>) -> BuiltinResult {
    let r = parse_report(args)?;
    let owner_app = r
        .context_app
        .as_deref()
        .filter(|app| cx.config.tickets.backends.iter().any(|b| b == app))
        .filter(|app| is_ticket_backend(cx, app))
        .map(str::to_string);
    match owner_app {
        Some(app) => report_to_backend(cx, &app, &r).await,
        None => report_locally(cx, &r).await,
    }
}

/// The webhook body of a blocking ticket (Cortex's payload, plus `deliveryId`, `severity`
/// and `createdAt`).
fn webhook_payload(
    cx: &BuiltinCx<'_>,
    ticket_id: &str,
    delivery_id: &str,
    backend: &str,
    source: &str,
    r: &Report,
    now: i64,
) -> String {
    let p = cx.principal;
    let agent = p.email.clone().unwrap_or_else(|| p.sub.clone());
    let text = format!(
        "Blocking capability gap ({ticket_id}, {backend}): {agent} could not \"{}\" (user intent: \"{}\"){}",
        r.what,
        r.intent,
        r.context_tool
            .as_deref()
            .map(|t| format!("; closest tool: {t}"))
            .unwrap_or_default()
    );
    json!({
        "type": BLOCKING_EVENT,
        "deliveryId": delivery_id,
        "ticketId": ticket_id,
        "backend": backend,
        "source": source,
        "severity": r.severity.as_str(),
        "whatIWanted": r.what,
        "userIntent": r.intent,
        "contextTool": r.context_tool,
        "contextApp": r.context_app,
        "suggestedShape": r.suggested_shape,
        "agent": agent,
        "createdAt": iso_ms(now),
        "text": text,
    })
    .to_string()
}

/// The outbox entry for a new blocking ticket, when a webhook is configured.
fn blocking_delivery(
    cx: &BuiltinCx<'_>,
    ticket_id: &str,
    backend: &str,
    source: &str,
    r: &Report,
    now: i64,
) -> Option<NewDelivery> {
    let url = cx.config.tickets.webhook_url.as_deref()?;
    if r.severity != TicketSeverity::Blocking {
        return None;
    }
    let id = random_id("dlv_");
    Some(NewDelivery {
        payload: webhook_payload(cx, ticket_id, &id, backend, source, r, now),
        id,
        kind: BLOCKING_EVENT.into(),
        target: url.to_string(),
        now_ms: now,
    })
}

async fn report_locally(cx: &BuiltinCx<'_>, r: &Report) -> BuiltinResult {
    let store = store(cx)?;
    let now = now_ms();
    let ticket_id = random_id("tkt_");
    let delivery = blocking_delivery(cx, &ticket_id, GATEWAY_APP, SOURCE_LOCAL, r, now);
    let p = cx.principal;
    let new = NewTicket {
        id: ticket_id,
        owner: owner_key(cx),
        agent_sub: p.sub.clone(),
        agent_email: p.email.clone(),
        what_i_wanted: r.what.clone(),
        user_intent: r.intent.clone(),
        severity: r.severity,
        context_tool: r.context_tool.clone(),
        context_app: r.context_app.clone(),
        suggested_shape: r.suggested_shape.as_ref().map(Value::to_string),
        fingerprint: fingerprint(&r.what, r.context_tool.as_deref(), r.context_app.as_deref()),
        now_ms: now,
    };
    let window = cx.config.tickets.dedup_window.as_millis() as i64;
    let created = store
        .create_ticket(new, window, delivery)
        .await
        .map_err(store_failed)?;
    if created.delivery_enqueued {
        cx.runtime.wake_webhook();
    }
    let t = &created.ticket;
    info!(ticket = %t.id, severity = t.severity.as_str(), deduplicated = created.deduplicated, "missing capability reported");
    let ack = if created.deduplicated {
        format!(
            "This was already reported as {} ({} repeat(s) so far); the ticket was bumped. No need to report it again.",
            t.id, t.repeat_count
        )
    } else if created.delivery_enqueued {
        format!(
            "Recorded as {}; an administrator is being alerted because it is blocking.",
            t.id
        )
    } else {
        format!(
            "Recorded as {}. Thank you: the people running these apps review these tickets.",
            t.id
        )
    };
    let mut out = json!({
        "ticketId": t.id,
        "deduplicated": created.deduplicated,
        "backend": GATEWAY_APP,
        "source": SOURCE_LOCAL,
        "status": t.status.as_str(),
        "repeatCount": t.repeat_count,
        "ackMessage": ack,
    });
    if !created.deduplicated && r.severity == TicketSeverity::Blocking {
        out["adminNotified"] = json!(created.delivery_enqueued);
    }
    Ok(out)
}

/// Whose ticket it is (Cortex: the subject, else the email).
fn owner_key(cx: &BuiltinCx<'_>) -> String {
    let p = cx.principal;
    if p.sub.is_empty() {
        p.email.clone().unwrap_or_default()
    } else {
        p.sub.clone()
    }
}

/// Whether `app` is a configured contract backend (tickets are contract methods).
fn is_ticket_backend(cx: &BuiltinCx<'_>, app: &str) -> bool {
    cx.upstreams
        .get(app)
        .is_some_and(|b| b.kind() == BackendKind::Contract)
}

/// Calls a ticket backend's contract method with the caller's identity; the JSON reply of a
/// 2xx, or a message.
async fn call_ticket_backend(
    cx: &BuiltinCx<'_>,
    app: &str,
    method: &str,
    params: &Value,
) -> Result<Value, String> {
    let current = cx.catalog.current();
    let caller = Caller {
        principal: cx.principal,
        catalog: &current.merged,
        client_caps: 0,
        input_responses: None,
    };
    let op = Operation::ContractMethod {
        method,
        params: Some(params),
    };
    calls::call(cx.upstreams, caller, app, op)
        .await
        .outcome()
        .await
        .into_result()
        .map_err(|e| e.message)
}

async fn report_to_backend(cx: &BuiltinCx<'_>, app: &str, r: &Report) -> BuiltinResult {
    let mut params = json!({
        "whatIWanted": r.what,
        "userIntent": r.intent,
        "severity": r.severity.as_str(),
    });
    if let Some(t) = &r.context_tool {
        params["contextTool"] = json!(t);
    }
    if let Some(s) = &r.suggested_shape {
        params["suggestedShape"] = s.clone();
    }
    let reply = call_ticket_backend(cx, app, "report_missing_capability", &params)
        .await
        .map_err(|message| BuiltinError::Failed {
            code: "ticket_backend_failed",
            message: format!("The ticket could not be filed with {app}: {message}"),
        })?;
    let ticket_id = match reply.get("ticketId") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let deduplicated = reply
        .get("deduplicated")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut out = json!({
        "ticketId": ticket_id,
        "deduplicated": deduplicated,
        "backend": app,
        "source": SOURCE_BACKEND,
        "ackMessage": reply.get("ackMessage").cloned().unwrap_or_else(|| json!(format!("Filed with {app}."))),
    });
    if !deduplicated && r.severity == TicketSeverity::Blocking {
        let now = now_ms();
        let notified = match blocking_delivery(cx, &ticket_id, app, SOURCE_BACKEND, r, now) {
            None => false,
            Some(d) => match cx.store.cloned() {
                None => false,
                Some(store) => match store.enqueue_delivery(d).await {
                    Ok(()) => {
                        cx.runtime.wake_webhook();
                        true
                    }
                    Err(e) => {
                        warn!(error = %e, ticket = %ticket_id, backend = app, "could not enqueue the blocking-ticket webhook");
                        false
                    }
                },
            },
        };
        out["adminNotified"] = json!(notified);
    }
    Ok(out)
}

/// A stored ticket in the Cortex list shape (plus `contextApp`, `repeatCount`, `notes`;
/// `agent` for administrators).
pub fn ticket_json(t: &Ticket, admin: bool) -> Value {
    let shape = t
        .suggested_shape
        .as_deref()
        .map(|s| serde_json::from_str::<Value>(s).unwrap_or_else(|_| Value::String(s.to_string())));
    let notes: Vec<Value> = t
        .notes
        .iter()
        .map(|n| json!({"at": iso_ms(n.at_ms), "by": n.by, "text": n.text}))
        .collect();
    let mut v = json!({
        "id": t.id,
        "whatIWanted": t.what_i_wanted,
        "userIntent": t.user_intent,
        "status": t.status.as_str(),
        "severity": t.severity.as_str(),
        "contextTool": t.context_tool,
        "contextApp": t.context_app,
        "suggestedShape": shape,
        "repeatCount": t.repeat_count,
        "notes": notes,
        "createdAt": iso_ms(t.created_at_ms),
        "updatedAt": iso_ms(t.updated_at_ms),
        "backend": GATEWAY_APP,
        "source": SOURCE_LOCAL,
    });
    if admin {
        v["agent"] = json!({"sub": t.agent_sub, "email": t.agent_email});
    }
    v
}

/// `list_cortex_tickets`.
pub async fn list(cx: &BuiltinCx<'_>, args: &Map<String, Value>) -> BuiltinResult {
    let status = status_arg(args)?;
    let severity = severity_arg(args, false)?;
    let context_app = optional_name(args, "contextApp")?.map(|a| a.to_lowercase());
    let limit = opt_limit(args, "limit", DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)?;
    let admin = cx.builtins.is_admin(cx.principal);
    let ticket_backends: Vec<&str> = cx
        .config
        .tickets
        .backends
        .iter()
        .map(String::as_str)
        .filter(|id| is_ticket_backend(cx, id))
        .collect();
    let (backends, local_app): (Vec<&str>, Option<String>) = match context_app.as_deref() {
        None => (ticket_backends, None),
        Some(GATEWAY_APP) => (Vec::new(), None),
        Some(app) if ticket_backends.contains(&app) => (vec![app], Some(app.to_string())),
        Some(app) => (Vec::new(), Some(app.to_string())),
    };

    let mut tickets: Vec<Value> = Vec::new();
    let mut sources: Vec<Value> = Vec::new();
    match cx.store.cloned() {
        None => sources.push(json!({"name": GATEWAY_APP, "ok": false, "error": "no store"})),
        Some(store) => {
            let filter = TicketFilter {
                owner: (!admin).then(|| owner_key(cx)),
                status,
                severity,
                context_app: local_app,
                limit: limit as u32,
            };
            match store.list_tickets(filter).await {
                Ok(rows) => {
                    sources.push(json!({"name": GATEWAY_APP, "ok": true, "count": rows.len()}));
                    tickets.extend(rows.iter().map(|t| ticket_json(t, admin)));
                }
                Err(e) => {
                    warn!(error = %e, "listing local tickets failed");
                    sources.push(
                        json!({"name": GATEWAY_APP, "ok": false, "error": "store unavailable"}),
                    );
                }
            }
        }
    }
    let mut params = json!({"limit": limit});
    if let Some(s) = status {
        params["status"] = json!(s.as_str());
    }
    if let Some(s) = severity {
        params["severity"] = json!(s.as_str());
    }
    let calls = backends.iter().map(|app| async {
        (
            *app,
            call_ticket_backend(cx, app, "list_tickets", &params).await,
        )
    });
    for (app, result) in futures::future::join_all(calls).await {
        match result {
            Ok(v) => {
                let rows = v
                    .get("tickets")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                sources.push(json!({"name": app, "ok": true, "count": rows.len()}));
                tickets.extend(rows.into_iter().filter(Value::is_object).map(|mut t| {
                    t["backend"] = json!(app);
                    t["source"] = json!(SOURCE_BACKEND);
                    if t.get("contextApp").is_none_or(Value::is_null) {
                        t["contextApp"] = json!(app);
                    }
                    t
                }));
            }
            Err(e) => sources.push(json!({"name": app, "ok": false, "error": e})),
        }
    }
    let total = tickets.len();
    tickets.sort_by(|a, b| created(b).cmp(created(a)));
    let mut seen = HashSet::new();
    tickets.retain(|t| seen.insert((t["backend"].to_string(), t["id"].to_string())));
    tickets.truncate(limit);
    Ok(json!({
        "count": tickets.len(),
        "totalFetched": total,
        "limit": limit,
        "filteredBy": {
            "status": status.map(TicketStatus::as_str),
            "severity": severity.map(TicketSeverity::as_str),
            "contextApp": context_app,
            "owner": if admin { "everyone" } else { "you" },
        },
        "sources": sources,
        "tickets": tickets,
    }))
}

fn created(t: &Value) -> &str {
    t.get("createdAt").and_then(Value::as_str).unwrap_or("")
}

/// `triage_cortex_ticket`: status, severity and/or a note on a ticket kept by the gateway.
/// Administrators may triage any ticket; when the builtin is opened to others
/// (`builtins.scopes.triage_cortex_ticket`), they may triage only their own.
pub async fn triage(cx: &BuiltinCx<'_>, args: &Map<String, Value>) -> BuiltinResult {
    let id = opt_str(args, "ticketId")?
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let Some(id) = id else {
        return Err(BuiltinError::invalid("`ticketId` is required"));
    };
    let status = status_arg(args)?;
    let severity = severity_arg(args, false)?;
    let note = opt_str(args, "note")?
        .map(str::trim)
        .filter(|s| !s.is_empty());
    if note.is_some_and(|n| n.chars().count() > MAX_TEXT) {
        return Err(BuiltinError::invalid(format!(
            "`note` is longer than {MAX_TEXT} characters"
        )));
    }
    if status.is_none() && severity.is_none() && note.is_none() {
        return Err(BuiltinError::invalid(
            "give at least one of `status`, `severity`, `note`",
        ));
    }
    let store = store(cx)?;
    let admin = cx.builtins.is_admin(cx.principal);
    let not_found = || {
        BuiltinError::Failed {
        code: "ticket_not_found",
        message: format!(
            "No ticket {id} is kept by the gateway (tickets owned by an app are triaged in that app)."
        ),
    }
    };
    let existing = store
        .get_ticket(id)
        .await
        .map_err(store_failed)?
        .ok_or_else(not_found)?;
    if !admin && existing.owner != owner_key(cx) {
        return Err(not_found());
    }
    let p = cx.principal;
    let now = now_ms();
    let update = TicketUpdate {
        status,
        severity,
        note: note.map(|text| TicketNote {
            at_ms: now,
            by: p.email.clone().unwrap_or_else(|| p.sub.clone()),
            text: text.to_string(),
        }),
        now_ms: now,
    };
    let updated = store
        .update_ticket(id, update)
        .await
        .map_err(store_failed)?
        .ok_or_else(not_found)?;
    info!(ticket = %id, status = updated.status.as_str(), severity = updated.severity.as_str(), "ticket triaged");
    Ok(json!({"ticket": ticket_json(&updated, admin)}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn reports_are_validated() {
        let ok = parse_report(&args(json!({
            "whatIWanted": " export invoices ", "userIntent": "close the month",
            "severity": "blocking", "contextApp": "ERP", "suggestedShape": {"name": "x"}
        })))
        .unwrap();
        assert_eq!(ok.what, "export invoices");
        assert_eq!(ok.severity, TicketSeverity::Blocking);
        assert_eq!(ok.context_app.as_deref(), Some("erp"));
        assert_eq!(ok.suggested_shape, Some(json!({"name": "x"})));
        for bad in [
            json!({"userIntent": "u", "severity": "blocking"}),
            json!({"whatIWanted": " ", "userIntent": "u", "severity": "blocking"}),
            json!({"whatIWanted": "w", "userIntent": "u"}),
            json!({"whatIWanted": "w", "userIntent": "u", "severity": "urgent"}),
            json!({"whatIWanted": "w", "userIntent": "u", "severity": 3}),
            json!({"whatIWanted": "w", "userIntent": "u", "severity": "blocking", "contextTool": 5}),
            json!({"whatIWanted": "x".repeat(MAX_TEXT + 1), "userIntent": "u", "severity": "blocking"}),
        ] {
            assert!(
                matches!(
                    parse_report(&args(bad.clone())),
                    Err(BuiltinError::Invalid(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn fingerprints_normalise_text_only() {
        let a = fingerprint("Export  Invoices", Some("erp_list"), Some("ERP"));
        assert_eq!(
            a,
            fingerprint(" export invoices ", Some("erp_list"), Some("erp"))
        );
        assert_ne!(a, fingerprint("export invoices", None, Some("erp")));
        assert_ne!(a, fingerprint("export invoices", Some("erp_list"), None));
        assert_ne!(
            a,
            fingerprint("export bills", Some("erp_list"), Some("erp"))
        );
        assert_eq!(a.len(), 64);
    }
}
