//! `report_missing_capability`, `list_cortex_tickets`, `triage_cortex_ticket` through the
//! real binary: validation, per-caller deduplication, contextApp, admin visibility, triage,
//! ticket backends (forwarding and merged lists), and the Cortex env variables.

use crate::builtins_support;
use crate::common;
use crate::store_support;

use std::time::Duration;

use builtins_support::{call_is_error, call_ok, signature_valid, WebhookReceiver};
use common::{unused_port, BackendSpec, Gateway, McpClient, TestBackend, TestConfig};
use serde_json::{json, Value};
use store_support::{Kind, TestDb};

const DEV: &str = "dev-bypass-token-for-tests";

/// Auth: the principal `test-user` (scopes `mcp:crm:read`) and, with `X-Dev-Mode`, the
/// administrator `dev:local` (`cortex:admin`).
fn config() -> TestConfig {
    TestConfig::new().auth(&[
        "mode: none",
        "principal:",
        "  sub: test-user",
        "  email: user@example.com",
        "  scopes: [\"mcp:crm:read\"]",
        "  token: user-token",
        "dev_bypass:",
        &format!("  token: {DEV}"),
        "  scopes: [\"cortex:admin\"]",
    ])
}

fn admin(gw: &Gateway) -> McpClient {
    gw.client().with_header("x-dev-mode", DEV)
}

fn report(what: &str, severity: &str, app: Option<&str>) -> Value {
    let mut r = json!({
        "whatIWanted": what,
        "userIntent": "close the month",
        "severity": severity,
        "contextTool": "crm_list_contacts",
        "suggestedShape": {"name": "export_invoices", "params": {"month": "string"}},
    });
    if let Some(app) = app {
        r["contextApp"] = json!(app);
    }
    r
}

fn ids(list: &Value) -> Vec<String> {
    list["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn reports_are_validated_deduplicated_per_caller_and_listed_sqlite() {
    reports(Kind::Sqlite).await;
}

#[tokio::test]
async fn reports_are_validated_deduplicated_per_caller_and_listed_postgres() {
    reports(Kind::Postgres).await;
}

async fn reports(kind: Kind) {
    let db = TestDb::new(kind).await;
    let storage = match kind {
        Kind::Sqlite => format!("storage:\n  data_dir: \"{}\"", db.data_dir().display()),
        Kind::Postgres => format!("storage:\n  database_url: \"{}\"", db.pg_uri()),
    };
    let gw = Gateway::start(&config().top(&storage).build()).await;
    let user = gw.client();
    let admin = admin(&gw);

    let first = call_ok(
        &user,
        "report_missing_capability",
        report("Export invoices as CSV", "inconvenient", Some("ERP")),
    )
    .await;
    let id = first["ticketId"].as_str().unwrap().to_string();
    assert!(id.starts_with("tkt_"), "{first}");
    assert_eq!(first["deduplicated"], false);
    assert_eq!(first["source"], "cortex-local");
    assert_eq!(first["backend"], "cortex");
    assert!(
        first.get("adminNotified").is_none(),
        "not blocking: {first}"
    );

    // Same report (spacing and case differ): folded into the first ticket.
    let again = call_ok(
        &user,
        "report_missing_capability",
        report("  export   INVOICES as csv", "inconvenient", Some("erp")),
    )
    .await;
    assert_eq!(again["ticketId"], id.as_str());
    assert_eq!(again["deduplicated"], true);
    assert_eq!(again["repeatCount"], 1);
    // Another caller with the same report gets its own ticket.
    let other = call_ok(
        &admin,
        "report_missing_capability",
        report("Export invoices as CSV", "inconvenient", Some("erp")),
    )
    .await;
    assert_eq!(other["deduplicated"], false);
    assert_ne!(other["ticketId"], id.as_str());
    // A different contextTool is a different capability.
    let mut varied = report("Export invoices as CSV", "blocking", Some("erp"));
    varied["contextTool"] = json!("erp_list_invoices");
    let third = call_ok(&user, "report_missing_capability", varied).await;
    assert_eq!(third["deduplicated"], false);
    // Blocking without a webhook configured: nobody to notify.
    assert_eq!(third["adminNotified"], false);

    for (bad, why) in [
        (
            json!({"whatIWanted": "x", "userIntent": "y", "severity": "urgent"}),
            "severity",
        ),
        (json!({"whatIWanted": "x", "userIntent": "y"}), "severity"),
        (
            json!({"userIntent": "y", "severity": "blocking"}),
            "whatIWanted",
        ),
        (
            json!({"whatIWanted": "x", "userIntent": "", "severity": "blocking"}),
            "userIntent",
        ),
    ] {
        let err = call_is_error(&user, "report_missing_capability", bad).await;
        assert_eq!(err["error"], "invalid_arguments");
        assert!(err["message"].as_str().unwrap().contains(why), "{err}");
    }

    // The caller sees its own tickets, newest first, with contextApp kept.
    let mine = call_ok(&user, "list_cortex_tickets", json!({})).await;
    assert_eq!(ids(&mine), [third["ticketId"].as_str().unwrap(), &id]);
    assert_eq!(mine["filteredBy"]["owner"], "you");
    let t = &mine["tickets"][1];
    assert_eq!(t["contextApp"], "erp");
    assert_eq!(t["status"], "open");
    assert_eq!(t["severity"], "inconvenient");
    assert_eq!(t["repeatCount"], 1);
    assert_eq!(t["suggestedShape"]["name"], "export_invoices");
    assert!(t.get("agent").is_none(), "reporter identity is for admins");
    assert_eq!(mine["count"], 2);
    assert_eq!(
        mine["sources"][0],
        json!({"name": "cortex", "ok": true, "count": 2})
    );

    // Filters.
    let blocking = call_ok(
        &user,
        "list_cortex_tickets",
        json!({"severity": "blocking"}),
    )
    .await;
    assert_eq!(ids(&blocking), [third["ticketId"].as_str().unwrap()]);
    let limited = call_ok(&user, "list_cortex_tickets", json!({"limit": 1})).await;
    assert_eq!(limited["count"], 1);
    let by_app = call_ok(&user, "list_cortex_tickets", json!({"contextApp": "crm"})).await;
    assert_eq!(by_app["count"], 0);
    let err = call_is_error(&user, "list_cortex_tickets", json!({"status": "done"})).await;
    assert_eq!(err["error"], "invalid_arguments");

    // The administrator sees everyone's, with the reporter.
    let all = call_ok(&admin, "list_cortex_tickets", json!({})).await;
    assert_eq!(all["count"], 3);
    assert_eq!(all["filteredBy"]["owner"], "everyone");
    let users: Vec<&Value> = all["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["agent"]["sub"])
        .collect();
    assert!(users.contains(&&json!("dev:local")) && users.contains(&&json!("test-user")));
}

#[tokio::test]
async fn administrators_triage_tickets() {
    let gw = Gateway::start(&config().build()).await;
    let user = gw.client();
    let admin = admin(&gw);
    let t = call_ok(
        &user,
        "report_missing_capability",
        report("Merge duplicate contacts", "nice_to_have", None),
    )
    .await;
    let id = t["ticketId"].as_str().unwrap();

    // Not listed and not callable for the user.
    assert!(!user
        .tool_names()
        .await
        .contains(&"triage_cortex_ticket".to_string()));
    let err = user.error("tools/call", json!({"name": "triage_cortex_ticket", "arguments": {"ticketId": id, "status": "planned"}})).await;
    assert_eq!(err["message"], "Unknown tool: triage_cortex_ticket");

    let triaged = call_ok(&admin, "triage_cortex_ticket", json!({"ticketId": id, "status": "planned", "severity": "inconvenient", "note": "Scheduled for Q3."})).await;
    assert_eq!(triaged["ticket"]["status"], "planned");
    assert_eq!(triaged["ticket"]["severity"], "inconvenient");
    assert_eq!(triaged["ticket"]["notes"][0]["text"], "Scheduled for Q3.");
    assert_eq!(triaged["ticket"]["notes"][0]["by"], "dev@localhost");

    let mine = call_ok(&user, "list_cortex_tickets", json!({"status": "planned"})).await;
    assert_eq!(ids(&mine), [id]);
    assert_eq!(mine["tickets"][0]["notes"][0]["text"], "Scheduled for Q3.");

    let err = call_is_error(
        &admin,
        "triage_cortex_ticket",
        json!({"ticketId": "tkt_missing", "status": "planned"}),
    )
    .await;
    assert_eq!(err["error"], "ticket_not_found");
    let err = call_is_error(&admin, "triage_cortex_ticket", json!({"ticketId": id})).await;
    assert_eq!(err["error"], "invalid_arguments");
    let err = call_is_error(
        &admin,
        "triage_cortex_ticket",
        json!({"ticketId": id, "status": "closed"}),
    )
    .await;
    assert_eq!(err["error"], "invalid_arguments");
}

/// A ticket backend answering `report_missing_capability` and `list_tickets`.
async fn ticket_backend() -> TestBackend {
    let crm = TestBackend::start(BackendSpec::tools(&["list_contacts"], "mcp:crm:read")).await;
    crm.respond("report_missing_capability", 200, json!({"ticketId": "CRM-7", "deduplicated": false, "ackMessage": "Logged in the CRM backlog."}));
    crm.respond(
        "list_tickets",
        200,
        json!({"tickets": [{"id": "CRM-7", "whatIWanted": "Bulk-edit contacts", "status": "triaged", "severity": "blocking",
                            "createdAt": "2099-01-01T00:00:00.000Z", "updatedAt": "2099-01-01T00:00:00.000Z"}]}),
    );
    crm
}

#[tokio::test]
async fn ticket_backends_own_their_tickets() {
    let crm = ticket_backend().await;
    let yaml = config()
        .top("tickets:\n  backends: [crm]")
        .backend("crm", &crm.url())
        .build();
    let gw = Gateway::start(&yaml).await;
    gw.wait_ready().await;
    let user = gw.client();

    let filed = call_ok(
        &user,
        "report_missing_capability",
        report("Bulk-edit contacts", "inconvenient", Some("CRM")),
    )
    .await;
    assert_eq!(
        filed,
        json!({"ticketId": "CRM-7", "deduplicated": false, "backend": "crm", "source": "backend-owned", "ackMessage": "Logged in the CRM backlog."})
    );
    let sent = crm.calls("report_missing_capability").pop().unwrap();
    assert_eq!(sent.params["whatIWanted"], "Bulk-edit contacts");
    assert_eq!(sent.params["severity"], "inconvenient");
    assert_eq!(sent.params["suggestedShape"]["name"], "export_invoices");
    assert!(
        sent.params.get("contextApp").is_none(),
        "Cortex forwards without contextApp"
    );
    assert_eq!(sent.header("x-cortex-user-id"), Some("test-user"));
    assert_eq!(sent.header("authorization"), Some("Bearer user-token"));

    let local = call_ok(
        &user,
        "report_missing_capability",
        report("Export invoices", "inconvenient", Some("erp")),
    )
    .await;
    let merged = call_ok(&user, "list_cortex_tickets", json!({})).await;
    assert_eq!(ids(&merged), ["CRM-7", local["ticketId"].as_str().unwrap()]);
    assert_eq!(merged["tickets"][0]["source"], "backend-owned");
    assert_eq!(merged["tickets"][0]["backend"], "crm");
    assert_eq!(merged["totalFetched"], 2);
    let sources = merged["sources"].as_array().unwrap();
    assert!(
        sources.contains(&json!({"name": "crm", "ok": true, "count": 1})),
        "{sources:?}"
    );
    let listed = crm.calls("list_tickets").pop().unwrap();
    assert_eq!(listed.params["limit"], 20);
    assert_eq!(listed.header("x-cortex-user-id"), Some("test-user"));

    let only_local = call_ok(
        &user,
        "list_cortex_tickets",
        json!({"contextApp": "cortex"}),
    )
    .await;
    assert_eq!(ids(&only_local), [local["ticketId"].as_str().unwrap()]);
    let only_crm = call_ok(
        &user,
        "list_cortex_tickets",
        json!({"contextApp": "crm", "status": "triaged"}),
    )
    .await;
    assert_eq!(ids(&only_crm), ["CRM-7"]);
    assert_eq!(
        crm.calls("list_tickets").pop().unwrap().params["status"],
        "triaged"
    );

    // A failing ticket backend does not hide the local tickets.
    crm.respond("list_tickets", 500, json!({"error": "db down"}));
    let degraded = call_ok(&user, "list_cortex_tickets", json!({})).await;
    assert_eq!(ids(&degraded), [local["ticketId"].as_str().unwrap()]);
    let crm_source = degraded["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "crm")
        .cloned()
        .unwrap();
    assert_eq!(crm_source["ok"], false);
    assert!(
        crm_source["error"].as_str().unwrap().contains("500"),
        "{crm_source}"
    );
    // And a failing report is an isError result, not a lost ticket pretending success.
    crm.respond(
        "report_missing_capability",
        503,
        json!({"error": "maintenance"}),
    );
    let err = call_is_error(
        &user,
        "report_missing_capability",
        report("Other", "inconvenient", Some("crm")),
    )
    .await;
    assert_eq!(err["error"], "ticket_backend_failed");
}

#[tokio::test]
async fn cortex_env_variables_configure_tickets() {
    let crm = ticket_backend().await;
    let receiver = WebhookReceiver::start_on(unused_port()).await;
    let secret = "env-webhook-secret-0123456789";
    let env = format!(
        "OAUTH_ISSUER=https://auth.example.com\n\
         CORTEX_BACKENDS=crm\n\
         CORTEX_BACKEND_CRM_URL={}\n\
         CORTEX_TECHNICAL_TOKEN=tech-secret\n\
         CORTEX_TICKET_BACKENDS=CRM\n\
         CORTEX_TICKET_WEBHOOK_URL={}\n\
         CORTEX_TICKET_WEBHOOK_SECRET={secret}\n\
         CORTEX_DEV_BYPASS_TOKEN={DEV}\n\
         CORTEX_DEV_BYPASS_SCOPES=mcp:crm:read\n\
         HOSTNAME=127.0.0.1\n\
         PORT={{PORT}}\n",
        crm.url(),
        receiver.url()
    );
    let gw = Gateway::start_env_file(&env).await;
    gw.wait_ready().await;
    let client = admin(&gw);
    let filed = call_ok(
        &client,
        "report_missing_capability",
        report("Bulk-edit contacts", "blocking", Some("crm")),
    )
    .await;
    assert_eq!(filed["source"], "backend-owned");
    assert_eq!(filed["adminNotified"], true);
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert!(signature_valid(secret, &got[0]));
    let body = got[0].json();
    assert_eq!(body["ticketId"], "CRM-7");
    assert_eq!(body["source"], "backend-owned");
    assert_eq!(body["backend"], "crm");
    assert_eq!(body["type"], "cortex.ticket.blocking");
}
