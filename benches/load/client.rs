//! The load driver's HTTP/1.1 client: one keep-alive `TcpStream` per worker, requests
//! pre-serialized once, responses parsed in place.
//!
//! Why hand-written rather than hyper's or reqwest's client: per request it does one
//! `write_all` of prepared bytes and reads into a reused buffer; it parses only the status
//! line, `Content-Length` / `Transfer-Encoding: chunked` and (when asked) `Mcp-Session-Id`,
//! and allocates nothing in the steady state. There is no connection pool, no header map,
//! no body channel and no timer per request. Its CPU per request is measured in every cell
//! (`driver µs/req`) so the reader can check it stays small next to the gateway's.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed response; the body borrows the connection's buffers until the next request.
pub struct Resp<'a> {
    /// HTTP status.
    pub status: u16,
    /// The body, de-chunked.
    pub body: &'a [u8],
    /// `Mcp-Session-Id`, when present.
    pub session_id: Option<&'a str>,
}

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
    /// De-chunked body of the last chunked response.
    body: Vec<u8>,
    /// How much of `buf` the last response used (dropped before the next request).
    consumed: usize,
}

/// Where the body of a response is.
enum Framing {
    Length(usize),
    Chunked,
    None,
}

/// The parsed head of a response.
struct Head {
    status: u16,
    head_len: usize,
    framing: Framing,
    session: Option<(usize, usize)>,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if hay.len() < needle.len() || from > hay.len() - needle.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Parses the status line and the headers the driver needs.
fn parse_head(buf: &[u8], head_end: usize) -> io::Result<Head> {
    let head = &buf[..head_end];
    let mut lines = head.split(|&b| b == b'\n');
    let status_line = lines.next().ok_or_else(|| invalid("empty response"))?;
    let status = status_line
        .split(|&b| b == b' ')
        .nth(1)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let mut framing = Framing::None;
    let mut session = None;
    let mut offset = status_line.len() + 1;
    for line in lines {
        let start = offset;
        offset += line.len() + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = &line[..colon];
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| invalid("bad content-length"))?;
            if !matches!(framing, Framing::Chunked) {
                framing = Framing::Length(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            && value.to_ascii_lowercase().ends_with(b"chunked")
        {
            framing = Framing::Chunked;
        } else if name.eq_ignore_ascii_case(b"mcp-session-id") {
            let vstart = start
                + colon
                + 1
                + (line[colon + 1..].len() - line[colon + 1..].trim_ascii_start().len());
            session = Some((vstart, vstart + value.len()));
        }
    }
    Ok(Head {
        status,
        head_len: head_end + 4,
        framing,
        session,
    })
}

/// Advances over the complete chunks of `data` from `*pos`, appending their payload to
/// `out`. Returns the end of the body (bytes used) once the last chunk is in, `None` while
/// more input is needed; `*pos` keeps the progress so a large body is scanned only once.
fn dechunk(data: &[u8], pos: &mut usize, out: &mut Vec<u8>) -> io::Result<Option<usize>> {
    loop {
        let Some(eol) = find(data, b"\r\n", *pos) else {
            return Ok(None);
        };
        let size_text = &data[*pos..eol];
        let size_text = size_text
            .split(|&b| b == b';')
            .next()
            .unwrap_or(size_text)
            .trim_ascii();
        let size = std::str::from_utf8(size_text)
            .ok()
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .ok_or_else(|| invalid("bad chunk size"))?;
        let data_start = eol + 2;
        if size == 0 {
            // No trailers are sent by the systems measured: the body ends with one CRLF.
            return Ok(find(data, b"\r\n", data_start).map(|e| e + 2));
        }
        if data.len() < data_start + size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&data[data_start..data_start + size]);
        *pos = data_start + size + 2;
    }
}

impl Conn {
    /// Connects to `addr` with `TCP_NODELAY` (requests are written in one piece).
    pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            body: Vec::new(),
            consumed: 0,
        })
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by the server",
            ));
        }
        Ok(())
    }

    /// Reads until a full response head is buffered.
    async fn read_head(&mut self) -> io::Result<Head> {
        if self.consumed > 0 {
            self.buf.drain(..self.consumed);
            self.consumed = 0;
        }
        let mut searched = 0;
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n", searched) {
                let head = parse_head(&self.buf, end)?;
                if (100..200).contains(&head.status) {
                    // Interim response (e.g. 100 Continue): skip it.
                    self.buf.drain(..head.head_len);
                    searched = 0;
                    continue;
                }
                return Ok(head);
            }
            searched = self.buf.len().saturating_sub(3);
            self.fill().await?;
        }
    }

    /// Sends `request` (complete HTTP/1.1 bytes) and reads the whole response.
    pub async fn request(&mut self, request: &[u8]) -> io::Result<Resp<'_>> {
        self.stream.write_all(request).await?;
        let head = self.read_head().await?;
        let start = head.head_len;
        let mut chunked = false;
        let end = match head.framing {
            Framing::Length(n) => {
                self.buf.reserve((start + n).saturating_sub(self.buf.len()));
                while self.buf.len() < start + n {
                    self.fill().await?;
                }
                start + n
            }
            Framing::Chunked => {
                chunked = true;
                self.body.clear();
                let mut pos = 0;
                loop {
                    if let Some(used) = dechunk(&self.buf[start..], &mut pos, &mut self.body)? {
                        break start + used;
                    }
                    self.fill().await?;
                }
            }
            Framing::None if head.status == 204 || head.status == 304 => start,
            Framing::None => {
                return Err(invalid(format!(
                "status {} without Content-Length or chunked encoding on a keep-alive connection",
                head.status
            )))
            }
        };
        self.consumed = end;
        let session_id = head
            .session
            .and_then(|(a, b)| std::str::from_utf8(&self.buf[a..b]).ok());
        let body: &[u8] = if chunked {
            &self.body
        } else {
            &self.buf[start..end]
        };
        Ok(Resp {
            status: head.status,
            body,
            session_id,
        })
    }

    /// Sends a GET for an event stream and reads until the first complete event (the priming
    /// event). Returns the status; the stream then stays open, unread, until dropped.
    pub async fn open_stream(&mut self, request: &[u8]) -> io::Result<u16> {
        self.stream.write_all(request).await?;
        let head = self.read_head().await?;
        if head.status != 200 {
            return Ok(head.status);
        }
        while find(&self.buf, b"\n\n", head.head_len).is_none() {
            self.fill().await?;
        }
        Ok(head.status)
    }
}

/// A complete HTTP/1.1 request with a body.
pub fn request(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n").as_bytes());
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if !body.is_empty() || method == "POST" {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Checks of the chunked decoder and head parser, run at the start of every harness run.
pub fn selftest() -> Result<(), String> {
    let mut out = Vec::new();
    let data = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let mut pos = 0;
    if dechunk(data, &mut pos, &mut out).ok().flatten() != Some(data.len()) || out != b"hello world"
    {
        return Err("chunked decoding of a complete body".into());
    }
    out.clear();
    let mut pos = 0;
    let partial = dechunk(b"5\r\nhello\r\n0\r\n", &mut pos, &mut out)
        .ok()
        .flatten();
    let resumed = dechunk(b"5\r\nhello\r\n0\r\n\r\n", &mut pos, &mut out)
        .ok()
        .flatten();
    if partial.is_some() || resumed != Some(15) || out != b"hello" {
        return Err("chunked decoding of a body arriving in pieces".into());
    }
    let raw = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nMcp-Session-Id: abc\r\nContent-Length: 2\r\n\r\n{}";
    let end = find(raw, b"\r\n\r\n", 0).ok_or("no head end")?;
    let head = parse_head(raw, end).map_err(|e| e.to_string())?;
    let session = head.session.map(|(a, b)| &raw[a..b]);
    if head.status != 200
        || !matches!(head.framing, Framing::Length(2))
        || session != Some(&b"abc"[..])
    {
        return Err("response head parsing".into());
    }
    Ok(())
}
