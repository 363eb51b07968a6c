//! `subscriptions/listen`: the modern replacement for the GET stream and
//! `resources/subscribe`.
//!
//! A client opens a long-lived request naming the notifications it wants (the filter). The
//! server's first message on the stream is `notifications/subscriptions/acknowledged` with
//! the subset it honours; every message on the stream carries
//! `_meta["io.modelcontextprotocol/subscriptionId"]`, whose value is the JSON-RPC id of the
//! listen request. The server sends only what was asked for; the gateway additionally sends
//! only what the caller may see (a list change that leaves the caller's visible catalog
//! unchanged is not news to them: the caller checks that with
//! [`crate::catalog::CatalogDiff`] before asking [`Filter::wants`]). A graceful end is the
//! listen request's own result ([`closed`]).

use serde_json::{json, Map, Value};

use super::{Refusal, META_SUBSCRIPTION_ID};
use crate::jsonrpc::{self, Id};

/// The most resource URIs one listen request may subscribe to.
pub const MAX_RESOURCE_SUBSCRIPTIONS: usize = 256;
/// The longest subscribed URI.
pub const MAX_URI_LEN: usize = 4096;

/// What a subscriber asked for (or what the server acknowledged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `toolsListChanged`.
    pub tools_list_changed: bool,
    /// `promptsListChanged`.
    pub prompts_list_changed: bool,
    /// `resourcesListChanged`.
    pub resources_list_changed: bool,
    /// `resourceSubscriptions`: URIs to receive `notifications/resources/updated` for.
    pub resource_subscriptions: Vec<String>,
}

/// What the server can deliver on a listen stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Support {
    /// Tool list changes.
    pub tools_list_changed: bool,
    /// Prompt list changes.
    pub prompts_list_changed: bool,
    /// Resource list changes.
    pub resources_list_changed: bool,
    /// Per-resource updates (only resources of backends that report them).
    pub resource_updates: bool,
}

/// One thing that happened, to be offered to every open listen stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// The tool list changed.
    ToolsListChanged,
    /// The prompt list changed.
    PromptsListChanged,
    /// The resource list changed.
    ResourcesListChanged,
    /// A resource changed.
    ResourceUpdated {
        /// The URI that changed.
        uri: &'a str,
    },
}

impl Event<'_> {
    /// The notification method.
    pub const fn method(&self) -> &'static str {
        match self {
            Event::ToolsListChanged => "notifications/tools/list_changed",
            Event::PromptsListChanged => "notifications/prompts/list_changed",
            Event::ResourcesListChanged => "notifications/resources/list_changed",
            Event::ResourceUpdated { .. } => "notifications/resources/updated",
        }
    }
}

/// Reads the `notifications` filter of a listen request's params. The filter is required;
/// each field is optional (absent = not subscribed). Malformed → HTTP 400, -32602.
pub fn parse_filter(params: Option<&Value>) -> Result<Filter, Refusal> {
    let invalid =
        |m: &str| Refusal::invalid_params(format!("Invalid params: subscriptions/listen {m}"));
    let n = params
        .and_then(|p| p.get("notifications"))
        .ok_or_else(|| invalid("needs a \"notifications\" filter object"))?
        .as_object()
        .ok_or_else(|| invalid("\"notifications\" must be an object"))?;
    let flag = |name: &str| -> Result<bool, Refusal> {
        match n.get(name) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(invalid(&format!("\"{name}\" must be a boolean"))),
        }
    };
    let mut filter = Filter {
        tools_list_changed: flag("toolsListChanged")?,
        prompts_list_changed: flag("promptsListChanged")?,
        resources_list_changed: flag("resourcesListChanged")?,
        resource_subscriptions: Vec::new(),
    };
    match n.get("resourceSubscriptions") {
        None | Some(Value::Null) => {}
        Some(Value::Array(uris)) => {
            if uris.len() > MAX_RESOURCE_SUBSCRIPTIONS {
                return Err(invalid(&format!(
                    "subscribes to more than {MAX_RESOURCE_SUBSCRIPTIONS} resources"
                )));
            }
            for u in uris {
                let uri = u
                    .as_str()
                    .filter(|s| !s.is_empty() && s.len() <= MAX_URI_LEN)
                    .ok_or_else(|| {
                        invalid("\"resourceSubscriptions\" must be non-empty URI strings")
                    })?;
                if !filter.resource_subscriptions.iter().any(|s| s == uri) {
                    filter.resource_subscriptions.push(uri.to_owned());
                }
            }
        }
        Some(_) => {
            return Err(invalid(
                "\"resourceSubscriptions\" must be an array of URIs",
            ))
        }
    }
    Ok(filter)
}

/// The subset of `requested` the server honours: what it supports, and for resource
/// subscriptions only the URIs `may_read` admits (a URI the caller may not read, or that no
/// backend serves, is omitted, as the spec does for unsupported types).
pub fn acknowledge(
    requested: &Filter,
    support: &Support,
    may_read: impl Fn(&str) -> bool,
) -> Filter {
    Filter {
        tools_list_changed: requested.tools_list_changed && support.tools_list_changed,
        prompts_list_changed: requested.prompts_list_changed && support.prompts_list_changed,
        resources_list_changed: requested.resources_list_changed && support.resources_list_changed,
        resource_subscriptions: if support.resource_updates {
            requested
                .resource_subscriptions
                .iter()
                .filter(|u| may_read(u))
                .cloned()
                .collect()
        } else {
            Vec::new()
        },
    }
}

impl Filter {
    /// The filter as its wire object (only the subscribed members).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if self.tools_list_changed {
            m.insert("toolsListChanged".into(), json!(true));
        }
        if self.prompts_list_changed {
            m.insert("promptsListChanged".into(), json!(true));
        }
        if self.resources_list_changed {
            m.insert("resourcesListChanged".into(), json!(true));
        }
        if !self.resource_subscriptions.is_empty() {
            m.insert(
                "resourceSubscriptions".into(),
                json!(self.resource_subscriptions),
            );
        }
        Value::Object(m)
    }

    /// Whether a subscriber with this (acknowledged) filter receives `event`. A resource
    /// update matches a subscribed URI exactly, or a URI below a subscribed one (the spec
    /// allows an update to name a sub-resource): the subscribed URI followed by `/`, or
    /// ending in `/`.
    pub fn wants(&self, event: &Event<'_>) -> bool {
        match event {
            Event::ToolsListChanged => self.tools_list_changed,
            Event::PromptsListChanged => self.prompts_list_changed,
            Event::ResourcesListChanged => self.resources_list_changed,
            Event::ResourceUpdated { uri } => {
                self.resource_subscriptions.iter().any(|s| covers(s, uri))
            }
        }
    }

    /// Whether the stream would carry nothing at all.
    pub fn is_empty(&self) -> bool {
        !self.tools_list_changed
            && !self.prompts_list_changed
            && !self.resources_list_changed
            && self.resource_subscriptions.is_empty()
    }
}

/// Whether a subscription to `subscribed` covers an update of `uri`.
fn covers(subscribed: &str, uri: &str) -> bool {
    match uri.strip_prefix(subscribed) {
        Some("") => true,
        Some(rest) => subscribed.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

/// `_meta` with the subscription id.
fn meta(subscription: &Id) -> Value {
    let mut m = Map::new();
    m.insert(META_SUBSCRIPTION_ID.into(), subscription.clone());
    Value::Object(m)
}

/// The first message of the stream: `notifications/subscriptions/acknowledged` with the
/// honoured filter, tagged with the subscription id (the listen request's JSON-RPC id).
pub fn acknowledgement(subscription: &Id, granted: &Filter) -> Vec<u8> {
    let params = json!({"_meta": meta(subscription), "notifications": granted.to_json()});
    jsonrpc::notification("notifications/subscriptions/acknowledged", Some(&params))
}

/// A notification for `event` on the stream of `subscription`.
pub fn notification(subscription: &Id, event: &Event<'_>) -> Vec<u8> {
    let mut params = Map::new();
    params.insert("_meta".into(), meta(subscription));
    if let Event::ResourceUpdated { uri } = event {
        params.insert("uri".into(), json!(uri));
    }
    jsonrpc::notification(event.method(), Some(&Value::Object(params)))
}

/// The graceful end of a subscription (e.g. at shutdown): the listen request's result,
/// tagged with its subscription id, sent before closing the stream.
pub fn closed(subscription: &Id) -> Vec<u8> {
    jsonrpc::success(
        subscription,
        &json!({"resultType": "complete", "_meta": meta(subscription)}),
    )
}

/// `notifications/cancelled` for the listen request: the only purpose for which a server may
/// send it (on transports where closing the response stream is not the signal).
pub fn cancelled(subscription: &Id, reason: Option<&str>) -> Vec<u8> {
    let mut params = Map::new();
    params.insert("requestId".into(), subscription.clone());
    if let Some(r) = reason {
        params.insert("reason".into(), json!(r));
    }
    jsonrpc::notification("notifications/cancelled", Some(&Value::Object(params)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    fn filter(v: Value) -> Result<Filter, Refusal> {
        let params = json!({"notifications": v});
        parse_filter(Some(&params))
    }

    const ALL: Support = Support {
        tools_list_changed: true,
        prompts_list_changed: true,
        resources_list_changed: true,
        resource_updates: true,
    };

    #[test]
    fn parses_the_filter() {
        let f = filter(json!({"toolsListChanged": true, "resourceSubscriptions": ["file:///a", "file:///a", "file:///b"]})).unwrap();
        assert!(f.tools_list_changed && !f.prompts_list_changed && !f.resources_list_changed);
        assert_eq!(f.resource_subscriptions, ["file:///a", "file:///b"]);
        assert!(filter(json!({})).unwrap().is_empty());
        assert!(
            !filter(json!({"promptsListChanged": false, "resourcesListChanged": null}))
                .unwrap()
                .resources_list_changed
        );
        for bad in [
            json!([]),
            json!({"toolsListChanged": "yes"}),
            json!({"resourceSubscriptions": "file:///a"}),
            json!({"resourceSubscriptions": [1]}),
            json!({"resourceSubscriptions": [""]}),
        ] {
            let e = filter(bad.clone()).unwrap_err();
            assert_eq!((e.http_status, e.code), (400, -32602), "{bad}");
        }
        assert_eq!(parse_filter(None).unwrap_err().code, -32602);
        assert_eq!(parse_filter(Some(&json!({}))).unwrap_err().code, -32602);
        let many: Vec<String> = (0..=MAX_RESOURCE_SUBSCRIPTIONS)
            .map(|i| format!("u:{i}"))
            .collect();
        assert!(filter(json!({"resourceSubscriptions": many})).is_err());
        assert!(filter(json!({"resourceSubscriptions": ["x".repeat(MAX_URI_LEN + 1)]})).is_err());
    }

    #[test]
    fn acknowledges_only_what_is_supported_and_readable() {
        let asked = filter(json!({"toolsListChanged": true, "promptsListChanged": true,
            "resourceSubscriptions": ["file:///mine", "file:///theirs"]}))
        .unwrap();
        let support = Support {
            prompts_list_changed: false,
            ..ALL
        };
        let granted = acknowledge(&asked, &support, |u| u == "file:///mine");
        assert_eq!(
            granted.to_json(),
            json!({"toolsListChanged": true, "resourceSubscriptions": ["file:///mine"]})
        );
        let none = acknowledge(&asked, &Support::default(), |_| true);
        assert!(none.is_empty());
        assert_eq!(none.to_json(), json!({}));
        // Nothing is granted that was not asked for.
        let quiet = acknowledge(&Filter::default(), &ALL, |_| true);
        assert!(quiet.is_empty());
    }

    #[test]
    fn delivers_only_what_was_asked() {
        let f = Filter {
            tools_list_changed: true,
            resource_subscriptions: vec!["file:///project".into(), "mem://dir/".into()],
            ..Filter::default()
        };
        assert!(f.wants(&Event::ToolsListChanged));
        assert!(!f.wants(&Event::PromptsListChanged));
        assert!(!f.wants(&Event::ResourcesListChanged));
        for (uri, want) in [
            ("file:///project", true),
            ("file:///project/config.json", true),
            ("file:///project2", false),
            ("file:///projec", false),
            ("mem://dir/x", true),
            ("mem://dir/", true),
            ("mem://dirx", false),
            ("other://x", false),
        ] {
            assert_eq!(f.wants(&Event::ResourceUpdated { uri }), want, "{uri}");
        }
    }

    #[test]
    fn stream_messages_carry_the_subscription_id() {
        let id = json!(1);
        let granted = Filter {
            tools_list_changed: true,
            resource_subscriptions: vec!["file:///a".into()],
            ..Filter::default()
        };
        assert_eq!(
            parse(&acknowledgement(&id, &granted)),
            json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
                   "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": 1},
                              "notifications": {"toolsListChanged": true, "resourceSubscriptions": ["file:///a"]}}})
        );
        assert_eq!(
            parse(&notification(
                &json!("sub-7"),
                &Event::ResourceUpdated { uri: "file:///a" }
            )),
            json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
                   "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": "sub-7"}, "uri": "file:///a"}})
        );
        assert_eq!(
            parse(&notification(&id, &Event::ToolsListChanged)),
            json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed",
                   "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": 1}}})
        );
        assert_eq!(
            Event::PromptsListChanged.method(),
            "notifications/prompts/list_changed"
        );
        assert_eq!(
            Event::ResourcesListChanged.method(),
            "notifications/resources/list_changed"
        );
        assert_eq!(
            parse(&closed(&id)),
            json!({"jsonrpc": "2.0", "id": 1, "result": {"resultType": "complete",
                   "_meta": {"io.modelcontextprotocol/subscriptionId": 1}}})
        );
        assert_eq!(
            parse(&cancelled(&id, Some("shutting down"))),
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                   "params": {"requestId": 1, "reason": "shutting down"}})
        );
        assert_eq!(
            parse(&cancelled(&id, None))["params"],
            json!({"requestId": 1})
        );
    }
}
