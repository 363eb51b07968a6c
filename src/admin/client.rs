//! `cortex-gateway admin …`: the admin API from the command line, against a running gateway.
//! It prints the JSON the gateway answers; a refusal or an unreachable gateway is an error
//! naming the status and the gateway's reason.

use std::time::Duration;

use serde_json::Value;

use super::SECRET_HEADER;

/// One admin request.
#[derive(Debug, Clone)]
pub enum Request {
    /// `GET /admin/integrity`.
    Integrity,
    /// `POST /admin/integrity/approve`.
    Approve {
        /// The backend id.
        backend: String,
        /// One tool (its backend name); none: the whole backend.
        tool: Option<String>,
    },
    /// `GET /admin/integrity/baseline`.
    Baseline,
    /// `GET /admin/backends`.
    Backends,
    /// `POST /admin/backends/<id>/refresh`.
    Refresh {
        /// The backend id.
        backend: String,
    },
}

/// How to reach the gateway.
#[derive(Debug, Clone)]
pub struct Target {
    /// Base URL of the gateway (`http://127.0.0.1:3213`).
    pub url: String,
    /// The admin secret (`X-Cortex-Admin-Secret`), if any.
    pub secret: Option<String>,
    /// A bearer token with the admin scope, if any.
    pub token: Option<String>,
}

/// Sends `request` and returns the gateway's JSON answer, pretty-printed.
pub async fn run(target: &Target, request: &Request) -> Result<String, String> {
    let base = target.url.trim_end_matches('/');
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let builder = match request {
        Request::Integrity => client.get(format!("{base}/admin/integrity")),
        Request::Baseline => client.get(format!("{base}/admin/integrity/baseline")),
        Request::Backends => client.get(format!("{base}/admin/backends")),
        Request::Approve { backend, tool } => {
            let mut body = serde_json::json!({ "backend": backend });
            if let Some(t) = tool {
                body["tool"] = Value::String(t.clone());
            }
            client
                .post(format!("{base}/admin/integrity/approve"))
                .json(&body)
        }
        Request::Refresh { backend } => {
            client.post(format!("{base}/admin/backends/{backend}/refresh"))
        }
    };
    let builder = match (&target.secret, &target.token) {
        (Some(s), _) => builder.header(SECRET_HEADER, s),
        (None, Some(t)) => builder.bearer_auth(t),
        (None, None) => {
            return Err(
                "no credentials: set CORTEX_ADMIN_SECRET (or --secret), or --token with the admin scope"
                    .into(),
            )
        }
    };
    let reply = builder
        .send()
        .await
        .map_err(|e| format!("cannot reach {base}: {e}"))?;
    let status = reply.status();
    let text = reply
        .text()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    let pretty = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(text);
    if status.is_success() {
        Ok(pretty)
    } else {
        Err(format!("the gateway answered {status}: {pretty}"))
    }
}
