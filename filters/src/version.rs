//! MCP protocol versions served by the gateway, their eras, negotiation, the
//! `MCP-Protocol-Version` header and the method table of each version.
//!
//! Two eras share the one MCP endpoint:
//! - **legacy** (2025-03-26 … 2025-11-25): an `initialize` handshake opens a session; the
//!   session fixes the version and the client capabilities;
//! - **modern** (2026-07-28): no handshake and no session; every request carries its version
//!   and client capabilities in `_meta` (see [`crate::modern`]).

use std::fmt;

/// An MCP protocol version the gateway speaks.
///
/// The order is chronological, so `v >= ProtocolVersion::V2025_06_18` reads as "2025-06-18 or
/// later" (and includes the modern versions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// First Streamable HTTP version; JSON-RPC batches allowed.
    V2025_03_26,
    /// Batches removed, `MCP-Protocol-Version` header, structured output.
    V2025_06_18,
    /// Latest session-based version.
    V2025_11_25,
    /// First modern version: per-request `_meta`, `server/discover`, no sessions.
    V2026_07_28,
}

/// The two ways a request can speak MCP on the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Era {
    /// `initialize` handshake, `Mcp-Session-Id`, server-to-client requests on SSE.
    Legacy,
    /// Per-request `_meta`, mirrored headers, `InputRequiredResult` instead of server requests.
    Modern,
}

/// The session-based versions, newest first: what `initialize` negotiates and what the
/// legacy `MCP-Protocol-Version` check accepts (the order used in its error messages).
pub const SUPPORTED: [ProtocolVersion; 3] = LEGACY;

/// The legacy-era versions, newest first.
pub const LEGACY: [ProtocolVersion; 3] = [
    ProtocolVersion::V2025_11_25,
    ProtocolVersion::V2025_06_18,
    ProtocolVersion::V2025_03_26,
];

/// The modern-era versions, newest first.
pub const MODERN: [ProtocolVersion; 1] = [ProtocolVersion::V2026_07_28];

/// Every version of both eras, newest first: `server/discover`'s `supportedVersions` and the
/// `supported` list of an `UnsupportedProtocolVersionError` on a dual-era endpoint.
pub const ALL: [ProtocolVersion; 4] = [
    ProtocolVersion::V2026_07_28,
    ProtocolVersion::V2025_11_25,
    ProtocolVersion::V2025_06_18,
    ProtocolVersion::V2025_03_26,
];

/// The newest modern version.
pub const LATEST_MODERN: ProtocolVersion = ProtocolVersion::V2026_07_28;

/// The versions of one era, newest first.
pub const fn supported(era: Era) -> &'static [ProtocolVersion] {
    match era {
        Era::Legacy => &LEGACY,
        Era::Modern => &MODERN,
    }
}

/// What a request without an `MCP-Protocol-Version` header is assumed to speak (spec rule).
pub const HEADERLESS_DEFAULT: ProtocolVersion = ProtocolVersion::V2025_03_26;

/// The newest session-based version, offered when an `initialize` asks for one we do not
/// speak (including a modern one: modern versions have no handshake).
pub const LATEST: ProtocolVersion = ProtocolVersion::V2025_11_25;

impl ProtocolVersion {
    /// The wire form, e.g. `"2025-06-18"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProtocolVersion::V2025_03_26 => "2025-03-26",
            ProtocolVersion::V2025_06_18 => "2025-06-18",
            ProtocolVersion::V2025_11_25 => "2025-11-25",
            ProtocolVersion::V2026_07_28 => "2026-07-28",
        }
    }

    /// Parses the wire form of a version of either era; `None` for anything we do not speak.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "2025-03-26" => Some(ProtocolVersion::V2025_03_26),
            "2025-06-18" => Some(ProtocolVersion::V2025_06_18),
            "2025-11-25" => Some(ProtocolVersion::V2025_11_25),
            "2026-07-28" => Some(ProtocolVersion::V2026_07_28),
            _ => None,
        }
    }

    /// The era this version belongs to.
    pub const fn era(self) -> Era {
        match self {
            ProtocolVersion::V2025_03_26
            | ProtocolVersion::V2025_06_18
            | ProtocolVersion::V2025_11_25 => Era::Legacy,
            ProtocolVersion::V2026_07_28 => Era::Modern,
        }
    }

    /// Whether a JSON-RPC batch (array body) is legal in this version.
    pub const fn allows_batches(self) -> bool {
        matches!(self, ProtocolVersion::V2025_03_26)
    }

    /// A compact stable code used inside sealed session ids.
    pub const fn code(self) -> u8 {
        match self {
            ProtocolVersion::V2025_03_26 => 1,
            ProtocolVersion::V2025_06_18 => 2,
            ProtocolVersion::V2025_11_25 => 3,
            ProtocolVersion::V2026_07_28 => 4,
        }
    }

    /// Inverse of [`ProtocolVersion::code`].
    pub const fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(ProtocolVersion::V2025_03_26),
            2 => Some(ProtocolVersion::V2025_06_18),
            3 => Some(ProtocolVersion::V2025_11_25),
            4 => Some(ProtocolVersion::V2026_07_28),
            _ => None,
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The version to answer an `initialize` with: the client's own when it is a session-based
/// version we speak, else the latest session-based one (the client then decides whether it can
/// continue). A modern version is never negotiated: modern requests carry no handshake.
pub fn negotiate(requested: Option<&str>) -> ProtocolVersion {
    requested
        .and_then(ProtocolVersion::parse)
        .filter(|v| v.era() == Era::Legacy)
        .unwrap_or(LATEST)
}

/// A header value naming a version we do not speak.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported MCP-Protocol-Version {got:?}; supported: {}",
    supported_list()
)]
pub struct UnsupportedVersion {
    /// The value the client sent, lossily decoded.
    pub got: String,
}

/// The supported versions as a comma-separated list, newest first.
pub fn supported_list() -> String {
    SUPPORTED
        .iter()
        .map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads the `MCP-Protocol-Version` header of a legacy-era (session) request: absent →
/// 2025-03-26 (spec), unknown or modern → error. Modern requests are validated by
/// [`crate::modern::envelope`] instead.
pub fn from_header(value: Option<&[u8]>) -> Result<ProtocolVersion, UnsupportedVersion> {
    match value {
        None => Ok(HEADERLESS_DEFAULT),
        Some(raw) => std::str::from_utf8(raw)
            .ok()
            .and_then(ProtocolVersion::parse)
            .filter(|v| v.era() == Era::Legacy)
            .ok_or_else(|| UnsupportedVersion {
                got: String::from_utf8_lossy(raw).into_owned(),
            }),
    }
}

/// Where a method stands under one protocol version, as the gateway serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodStatus {
    /// The gateway serves this method (request or client notification) under the version.
    Served,
    /// Defined by an earlier version and removed by `since`; a modern request for it is
    /// answered like an unknown method (HTTP 404, -32601), with a message naming the removal.
    Retired {
        /// The first version without the method.
        since: ProtocolVersion,
    },
    /// Not a method the gateway serves under this version: unknown to the protocol, belonging
    /// to the other era, or not implemented by the gateway.
    Unknown,
}

/// Requests the gateway serves under every legacy version.
const LEGACY_REQUESTS: [&str; 11] = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "completion/complete",
    "logging/setLevel",
];

/// Client notifications the gateway accepts under every legacy version.
const LEGACY_NOTIFICATIONS: [&str; 4] = [
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/roots/list_changed",
    "notifications/progress",
];

/// Requests the gateway serves under 2026-07-28.
const MODERN_REQUESTS: [&str; 10] = [
    "server/discover",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "completion/complete",
    "subscriptions/listen",
];

/// Client notifications of 2026-07-28 (cancellation only; on HTTP closing the stream also
/// cancels).
const MODERN_NOTIFICATIONS: [&str; 1] = ["notifications/cancelled"];

/// Methods and client notifications that 2026-07-28 removed (the handshake, `ping`, the
/// session-wide log level, the subscribe RPCs and the roots change notification).
const RETIRED_IN_2026_07_28: [&str; 7] = [
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
    "notifications/initialized",
    "notifications/roots/list_changed",
];

/// How the gateway treats `method` under `version`: served, retired by the version's era, or
/// unknown. The one table both eras dispatch from.
pub fn method_status(version: ProtocolVersion, method: &str) -> MethodStatus {
    let (requests, notifications): (&[&str], &[&str]) = match version.era() {
        Era::Legacy => (&LEGACY_REQUESTS, &LEGACY_NOTIFICATIONS),
        Era::Modern => (&MODERN_REQUESTS, &MODERN_NOTIFICATIONS),
    };
    if requests.contains(&method) || notifications.contains(&method) {
        return MethodStatus::Served;
    }
    if version >= ProtocolVersion::V2026_07_28 && RETIRED_IN_2026_07_28.contains(&method) {
        return MethodStatus::Retired {
            since: ProtocolVersion::V2026_07_28,
        };
    }
    MethodStatus::Unknown
}

/// The wire forms of `versions`, in order (for `supportedVersions` and error data).
pub fn wire_list(versions: &[ProtocolVersion]) -> Vec<&'static str> {
    versions.iter().map(|v| v.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_echoes_supported_and_offers_latest_otherwise() {
        assert_eq!(negotiate(Some("2025-06-18")), ProtocolVersion::V2025_06_18);
        assert_eq!(negotiate(Some("2025-03-26")), ProtocolVersion::V2025_03_26);
        assert_eq!(negotiate(Some("2024-11-05")), LATEST);
        assert_eq!(negotiate(Some("2026-07-28")), LATEST);
        assert_eq!(
            negotiate(Some(" 2025-11-25 ")),
            ProtocolVersion::V2025_11_25
        );
        assert_eq!(negotiate(None), LATEST);
    }

    #[test]
    fn header_absent_means_2025_03_26_and_unknown_is_refused() {
        assert_eq!(from_header(None).unwrap(), ProtocolVersion::V2025_03_26);
        assert_eq!(
            from_header(Some(b"2025-11-25")).unwrap(),
            ProtocolVersion::V2025_11_25
        );
        let err = from_header(Some(b"1999-01-01")).unwrap_err();
        assert!(err
            .to_string()
            .contains("2025-11-25, 2025-06-18, 2025-03-26"));
        assert!(from_header(Some(&[0xff, 0xfe])).is_err());
        // The legacy header check does not admit the modern version: a modern request is
        // validated against its `_meta` instead.
        let err = from_header(Some(b"2026-07-28")).unwrap_err();
        assert_eq!(err.got, "2026-07-28");
    }

    #[test]
    fn eras_and_lists() {
        for v in LEGACY {
            assert_eq!(v.era(), Era::Legacy);
        }
        for v in MODERN {
            assert_eq!(v.era(), Era::Modern);
        }
        assert_eq!(supported(Era::Legacy), &LEGACY);
        assert_eq!(supported(Era::Modern), &MODERN);
        assert_eq!(SUPPORTED, LEGACY);
        assert_eq!(
            wire_list(&ALL),
            ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"]
        );
        assert!(ALL.windows(2).all(|w| w[0] > w[1]), "newest first");
        assert_eq!(LATEST_MODERN.era(), Era::Modern);
        for v in ALL {
            assert_eq!(ProtocolVersion::parse(v.as_str()), Some(v));
            assert_eq!(v.to_string(), v.as_str());
        }
        assert!(!ProtocolVersion::V2026_07_28.allows_batches());
        assert_eq!(ProtocolVersion::parse("2026-07-29"), None);
    }

    #[test]
    fn method_table_per_era() {
        let modern = ProtocolVersion::V2026_07_28;
        for m in MODERN_REQUESTS {
            assert_eq!(method_status(modern, m), MethodStatus::Served, "{m}");
        }
        for m in [
            "initialize",
            "ping",
            "logging/setLevel",
            "resources/subscribe",
            "resources/unsubscribe",
            "notifications/initialized",
        ] {
            assert_eq!(
                method_status(modern, m),
                MethodStatus::Retired { since: modern },
                "{m}"
            );
        }
        assert_eq!(
            method_status(modern, "notifications/cancelled"),
            MethodStatus::Served
        );
        for m in [
            "unknown/method",
            "tasks/get",
            "TOOLS/LIST",
            "",
            "sampling/createMessage",
        ] {
            assert_eq!(method_status(modern, m), MethodStatus::Unknown, "{m}");
        }
        for v in LEGACY {
            for m in LEGACY_REQUESTS {
                assert_eq!(method_status(v, m), MethodStatus::Served, "{v} {m}");
            }
            // Modern-only methods are unknown to a session, and nothing is "retired" there.
            assert_eq!(method_status(v, "server/discover"), MethodStatus::Unknown);
            assert_eq!(
                method_status(v, "subscriptions/listen"),
                MethodStatus::Unknown
            );
            assert_eq!(
                method_status(v, "resources/subscribe"),
                MethodStatus::Unknown
            );
            assert_eq!(
                method_status(v, "notifications/initialized"),
                MethodStatus::Served
            );
        }
    }

    #[test]
    fn codes_round_trip() {
        for v in SUPPORTED {
            assert_eq!(ProtocolVersion::from_code(v.code()), Some(v));
        }
        assert_eq!(ProtocolVersion::from_code(9), None);
    }
}
