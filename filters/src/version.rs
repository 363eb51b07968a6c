//! MCP protocol versions served by the gateway, negotiation and the `MCP-Protocol-Version` header.

use std::fmt;

/// A session-based ("legacy era") MCP protocol version the gateway speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// First Streamable HTTP version; JSON-RPC batches allowed.
    V2025_03_26,
    /// Batches removed, `MCP-Protocol-Version` header, structured output.
    V2025_06_18,
    /// Latest session-based version.
    V2025_11_25,
}

/// Every supported version, newest first (the order used in error messages).
pub const SUPPORTED: [ProtocolVersion; 3] = [
    ProtocolVersion::V2025_11_25,
    ProtocolVersion::V2025_06_18,
    ProtocolVersion::V2025_03_26,
];

/// What a request without an `MCP-Protocol-Version` header is assumed to speak (spec rule).
pub const HEADERLESS_DEFAULT: ProtocolVersion = ProtocolVersion::V2025_03_26;

/// The newest supported version, offered when a client asks for one we do not speak.
pub const LATEST: ProtocolVersion = ProtocolVersion::V2025_11_25;

impl ProtocolVersion {
    /// The wire form, e.g. `"2025-06-18"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProtocolVersion::V2025_03_26 => "2025-03-26",
            ProtocolVersion::V2025_06_18 => "2025-06-18",
            ProtocolVersion::V2025_11_25 => "2025-11-25",
        }
    }

    /// Parses the wire form; `None` for anything we do not speak.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "2025-03-26" => Some(ProtocolVersion::V2025_03_26),
            "2025-06-18" => Some(ProtocolVersion::V2025_06_18),
            "2025-11-25" => Some(ProtocolVersion::V2025_11_25),
            _ => None,
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
        }
    }

    /// Inverse of [`ProtocolVersion::code`].
    pub const fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(ProtocolVersion::V2025_03_26),
            2 => Some(ProtocolVersion::V2025_06_18),
            3 => Some(ProtocolVersion::V2025_11_25),
            _ => None,
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The version to answer an `initialize` with: the client's own when we speak it, else the
/// latest we support (the client then decides whether it can continue).
pub fn negotiate(requested: Option<&str>) -> ProtocolVersion {
    requested.and_then(ProtocolVersion::parse).unwrap_or(LATEST)
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

/// Reads the `MCP-Protocol-Version` header: absent → 2025-03-26 (spec), unknown → error.
pub fn from_header(value: Option<&[u8]>) -> Result<ProtocolVersion, UnsupportedVersion> {
    match value {
        None => Ok(HEADERLESS_DEFAULT),
        Some(raw) => std::str::from_utf8(raw)
            .ok()
            .and_then(ProtocolVersion::parse)
            .ok_or_else(|| UnsupportedVersion {
                got: String::from_utf8_lossy(raw).into_owned(),
            }),
    }
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
    }

    #[test]
    fn codes_round_trip() {
        for v in SUPPORTED {
            assert_eq!(ProtocolVersion::from_code(v.code()), Some(v));
        }
        assert_eq!(ProtocolVersion::from_code(9), None);
    }
}
