//! Server-sent event framing.

/// The priming event written first on every stream: an event id and empty data, so the
/// client has a `Last-Event-ID` to resume from and the response headers flush at once
/// (2025-11-25 "priming event").
pub fn priming_event(id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + id.len());
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\ndata: \n\n");
    out
}

/// A keepalive comment (ignored by clients, keeps proxies from closing an idle stream).
pub const KEEPALIVE: &[u8] = b": keepalive\n\n";

/// One `message` event carrying a JSON-RPC message. `data` should be one line of JSON (the
/// serializer never emits raw line breaks); any line break (CRLF, LF, or a lone CR, which
/// ends a line for an SSE reader too) is split into several `data:` lines so the framing can
/// never break: the reader sees one event whose data has LF where the breaks were.
pub fn message_event(id: Option<&str>, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 40);
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"event: message\ndata: ");
    let mut bytes = data.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        match b {
            b'\r' | b'\n' => {
                if b == b'\r' && bytes.peek() == Some(&b'\n') {
                    bytes.next();
                }
                out.extend_from_slice(b"\ndata: ");
            }
            _ => out.push(b),
        }
    }
    out.extend_from_slice(b"\n\n");
    out
}

/// A `retry:` field telling the client how long to wait before reconnecting (milliseconds).
pub fn retry_field(ms: u64) -> Vec<u8> {
    format!("retry: {ms}\n\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_events() {
        assert_eq!(priming_event("s-0"), b"id: s-0\ndata: \n\n");
        assert_eq!(
            message_event(Some("7"), b"{\"a\":1}"),
            b"id: 7\nevent: message\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(
            message_event(None, b"a\r\nb"),
            b"event: message\ndata: a\ndata: b\n\n"
        );
        assert_eq!(retry_field(500), b"retry: 500\n\n");
    }

    #[test]
    fn a_lone_cr_in_data_cannot_end_the_event() {
        // Found by the `sse` fuzz target: a lone CR ends a line for an SSE reader, so
        // `a\r\rid: x` was read as an event `a`, then a second event.
        assert_eq!(
            message_event(None, b"a\r\rid: x"),
            b"event: message\ndata: a\ndata: \ndata: id: x\n\n"
        );
    }
}
