//! What the fuzz targets share: the text form of a request in the corpus, and the checks
//! every answer the gateway writes must pass.
//!
//! A corpus file for the request-shaped targets reads like an HTTP/1 request without the
//! request target: the HTTP method on the first line, then `Name: value` header lines, an
//! empty line, and the body. Anything else still parses (a file without an empty line is
//! all head), so every byte string the fuzzer makes is some request.

/// One request as the request-shaped targets see it.
#[derive(Debug)]
pub struct Request<'a> {
    /// The HTTP method (the first line, lossily decoded).
    pub method: String,
    /// The headers, in order: names lossily decoded, values as raw bytes.
    pub headers: Vec<(String, &'a [u8])>,
    /// Everything after the first empty line.
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// Reads the corpus form (see the module documentation).
    pub fn parse(data: &'a [u8]) -> Self {
        let (head, body) = match find(data, b"\n\n") {
            Some(i) => (&data[..i], &data[i + 2..]),
            None => (data, &data[data.len()..]),
        };
        let mut lines = head.split(|&b| b == b'\n');
        let method = String::from_utf8_lossy(lines.next().unwrap_or_default())
            .trim()
            .to_string();
        let headers = lines
            .filter_map(|line| {
                let colon = line.iter().position(|&b| b == b':')?;
                let name = String::from_utf8_lossy(&line[..colon]).into_owned();
                Some((name, &line[colon + 1..]))
            })
            .collect();
        Request {
            method,
            headers,
            body,
        }
    }

    /// The headers as `(name, value)` pairs, as the gateway reads them.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &'a [u8])> {
        self.headers.iter().map(|(n, v)| (n.as_str(), *v))
    }
}

/// The first position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Every JSON-RPC answer the gateway writes must be one valid JSON-RPC 2.0 message.
pub fn assert_jsonrpc(bytes: &[u8]) {
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("an answer is not JSON ({e}): {bytes:?}"));
    assert_eq!(
        v.get("jsonrpc").and_then(|j| j.as_str()),
        Some("2.0"),
        "an answer without jsonrpc 2.0: {v}"
    );
    assert!(
        v.get("result").is_some() != v.get("error").is_some(),
        "an answer needs exactly one of result and error: {v}"
    );
}
