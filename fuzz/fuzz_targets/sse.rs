//! Server-sent event framing, both ways: the decoder reading a native backend's event
//! stream (fed in arbitrary pieces), and the encoder writing events to clients.
//!
//! Input: the first byte picks the piece size and the event size limit, the rest is the
//! stream. Checked: no panic; the events do not depend on how the stream was cut; no event
//! exceeds the limit; an event the gateway writes reads back as exactly its data, and as one
//! event, for a reader that also ends lines at a lone CR (as the SSE specification says).
#![no_main]

use cortex_filters::native::SseDecoder;
use cortex_filters::sse;
use libfuzzer_sys::fuzz_target;

/// A reader following the SSE specification (HTML, "Interpreting an event stream"): lines
/// end at CRLF, LF or a lone CR; a line without a colon is a field with an empty value; one
/// space after the colon is dropped; `data` values are joined with LF; an empty line
/// dispatches an event when data was seen; an unfinished event at the end is dropped.
fn spec_events(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut events = Vec::new();
    let mut data: Option<Vec<u8>> = None;
    let mut line = Vec::new();
    let mut i = 0;
    while i < stream.len() {
        let b = stream[i];
        i += 1;
        if b != b'\r' && b != b'\n' {
            line.push(b);
            continue;
        }
        if b == b'\r' && stream.get(i) == Some(&b'\n') {
            i += 1;
        }
        if line.is_empty() {
            if let Some(d) = data.take() {
                events.push(d);
            }
        } else if line[0] != b':' {
            let (field, value) = match line.iter().position(|&c| c == b':') {
                Some(c) => {
                    let v = &line[c + 1..];
                    (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (&line[..], &b""[..]),
            };
            if field == b"data" {
                match data.as_mut() {
                    Some(d) => {
                        d.push(b'\n');
                        d.extend_from_slice(value);
                    }
                    None => data = Some(value.to_vec()),
                }
            }
        }
        line.clear();
    }
    events
}

fuzz_target!(|data: &[u8]| {
    let Some((&knob, stream)) = data.split_first() else {
        return;
    };
    let piece = usize::from(knob & 0x0f) + 1;
    let max = 16usize << (knob >> 4);

    // Decoding does not depend on the cut, and agrees with the specification.
    let mut whole = SseDecoder::new(max);
    let all = whole.feed(stream);
    let mut cut = SseDecoder::new(max);
    let mut pieces = Ok(Vec::new());
    for chunk in stream.chunks(piece) {
        match cut.feed(chunk) {
            Ok(events) => {
                if let Ok(p) = pieces.as_mut() {
                    p.extend(events);
                }
            }
            Err(e) => {
                pieces = Err(e);
                break;
            }
        }
    }
    match (&all, &pieces) {
        (Ok(a), Ok(p)) => {
            assert_eq!(a, p, "events depend on the cut");
            assert!(a.iter().all(|e| e.len() <= max));
            assert_eq!(a, &spec_events(stream), "differs from the specification");
        }
        (Err(_), Err(_)) => {}
        _ => panic!("an error depends on the cut: {all:?} vs {pieces:?}"),
    }

    // What the gateway writes reads back as one event with the same data (line breaks read
    // as LF), whatever the data holds.
    let event = sse::message_event(Some("7"), stream);
    let events = spec_events(&event);
    assert_eq!(
        events,
        vec![line_breaks_as_lf(stream)],
        "written as {event:?}"
    );
});

/// `data` with every line break (CRLF, LF, lone CR) read as LF.
fn line_breaks_as_lf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\r' => {
                out.push(b'\n');
                if data.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}
