//! The audit spool: every record is appended to a local file, with one `write()`, before
//! the answer's last bytes leave (see [`super::answer`]); the audit thread then stores it
//! through the in-memory path as before. A process that dies (SIGKILL, OOM kill, panic
//! abort) leaves its spool files behind, and whoever finds them replays them into the store
//! ([`replay_orphans`]): the process itself when it restarts, or any replica sharing the
//! spool directory. Records carry a unique id ([`Rid`]) and the store skips ids it already
//! has, so a replay never duplicates a record, whatever part of it already arrived.
//!
//! - **Ownership.** Each process writes its own files, `audit-<tag>-<n>.spool`, and holds an
//!   exclusive `flock` on each for as long as it lives. The kernel releases the locks when
//!   the process dies, however it dies; a file whose lock can be taken is an orphan.
//! - **Segments.** A file is closed for writing at [`SEGMENT_BYTES`] and a new one opened.
//!   A closed segment is deleted once every record in it is stored (the audit thread counts
//!   them, [`Segment::finished`]); one that still misses records a minute later (records the
//!   in-memory queue dropped) is replayed by its own process, then deleted.
//! - **Bounds.** One entry is at most [`MAX_ENTRY`] bytes; the files of one process hold at
//!   most `audit.spool_max_bytes`. Past that (a store down for long) records are not spooled
//!   (counted: `spool_full`) and depend on the in-memory backlog alone, as without a spool.
//! - **What survives.** A `write()` reaches the kernel's page cache, which outlives the
//!   process: every death of the process but not a crash of the machine. With
//!   `audit.spool_fsync`, each write is also `fdatasync`ed (a disk flush per request).
//!
//! The entry format: `0x1e`, the length of the rest (u32, little endian), the length of the
//! JSON part (u32), the JSON of a [`RawRecord`], then the request body whose params are
//! hashed later (at most [`MAX_DEFERRED_BODY`](crate::record::MAX_DEFERRED_BODY) bytes), if
//! any. A torn last entry (the process died inside the `write()`, so its answer was never
//! sent) and any entry that does not decode are skipped and counted.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::record::{ClosedRecord, ParamsHash, Rid, RpcOutcome, SpoolSegment, Spooled, Target};

/// A segment is closed for writing past this size.
pub const SEGMENT_BYTES: u64 = 4 << 20;
/// Largest entry (the JSON part is bounded by the record's bounded fields, the body by
/// `MAX_DEFERRED_BODY`); anything larger is not spooled, and not read back.
pub const MAX_ENTRY: usize = 64 * 1024;
/// Largest spool file read back (a segment plus the entry that crossed the limit).
const MAX_FILE: u64 = SEGMENT_BYTES + MAX_ENTRY as u64 + 64;
/// Marks the start of an entry.
const MAGIC: u8 = 0x1e;
/// A closed segment still missing records after this long is replayed by its own process.
pub const OWN_REPLAY_AFTER: Duration = Duration::from_secs(60);
/// Least time between two "spool full" or "spool write failed" warnings.
const WARN_EVERY_MS: i64 = 10_000;

/// A record as the spool keeps it: what the request path knew, raw (pseudonyms, the params
/// hash and the hash chain are computed from it on the audit thread, or at replay).
#[derive(Debug, Serialize, Deserialize)]
pub struct RawRecord<'a> {
    /// The record's unique id.
    pub rid: Rid,
    /// When the request ended (at the answer), Unix milliseconds.
    pub ts_ms: i64,
    /// Request to answer, microseconds.
    pub latency_us: u64,
    /// HTTP method.
    pub http_method: Cow<'a, str>,
    /// HTTP status answered.
    pub http_status: u16,
    /// Response body bytes.
    pub response_size: u64,
    /// Browser `Origin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Cow<'a, str>>,
    /// `X-Cortex-Backends` of a `tools/list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends_filter: Option<Cow<'a, str>>,
    /// `X-Cortex-Tool-Mode` of a `tools/list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_mode: Option<Cow<'a, str>>,
    /// Why the HTTP exchange failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Cow<'a, str>>,
    /// Stage of a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Cow<'a, str>>,
    /// Reason of a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Cow<'a, str>>,
    /// JSON-RPC method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Cow<'a, str>>,
    /// Tool of a tools/call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<Cow<'a, str>>,
    /// Backend id or `gateway`, for a tools/call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_app: Option<Cow<'a, str>>,
    /// Scope the tool requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_used: Option<Cow<'a, str>>,
    /// The params MAC, hex, when computed on the request path (large bodies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params_mac: Option<Cow<'a, str>>,
    /// Protocol version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Cow<'a, str>>,
    /// `Mcp-Session-Id` (pseudonymised when built).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Cow<'a, str>>,
    /// Caller subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<Cow<'a, str>>,
    /// Caller email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Cow<'a, str>>,
    /// Caller role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Cow<'a, str>>,
    /// Caller pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<Cow<'a, str>>,
    /// OAuth client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Cow<'a, str>>,
    /// Came in through the dev bypass.
    #[serde(default)]
    pub dev_bypass: bool,
    /// JSON-RPC error code of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_error: Option<i64>,
    /// `tools/list`: (tools, answer bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed: Option<(u32, u64)>,
    /// The body whose params are still to hash (the entry's tail, not JSON).
    #[serde(skip)]
    pub params_body: Option<Bytes>,
}

impl<'a> RawRecord<'a> {
    /// The raw form of `c`, borrowing from it, under id `rid`.
    pub fn of(c: &'a ClosedRecord, rid: Rid) -> RawRecord<'a> {
        let f = &c.facts;
        let (stage, reason) = match c.refusal() {
            Some((stage, reason)) => (Some(Cow::Borrowed(stage.as_str())), Some(reason)),
            None => (None, None),
        };
        let (target_app, scope_used) = match (&c.tool, &c.target) {
            (Some(_), Some(Target::Gateway)) => (Some(Cow::Borrowed("gateway")), None),
            (Some(_), Some(Target::Backend { id, scope })) => (
                Some(Cow::Borrowed(id.as_str())),
                scope.as_deref().map(Cow::Borrowed),
            ),
            _ => (None, None),
        };
        let (params_mac, params_body) = match &c.params {
            Some(ParamsHash::Done(mac)) => (Some(Cow::Owned(super::keys::hex_id(mac))), None),
            Some(ParamsHash::Deferred(body)) => (None, Some(body.clone())),
            None => (None, None),
        };
        let p = c.principal.as_ref();
        let b = |s: &'a Option<String>| s.as_deref().map(Cow::Borrowed);
        RawRecord {
            rid,
            ts_ms: f.ts_ms,
            latency_us: u64::try_from(f.latency.as_micros()).unwrap_or(u64::MAX),
            http_method: Cow::Borrowed(f.http_method.as_str()),
            http_status: f.http_status,
            response_size: f.response_size,
            origin: b(&f.origin),
            backends_filter: b(&f.backends_filter),
            tool_mode: b(&f.tool_mode),
            error: b(&f.error),
            stage,
            reason,
            method: c.method.as_deref().map(Cow::Borrowed),
            tool: b(&c.tool),
            target_app,
            scope_used,
            params_mac,
            version: c.version.map(|v| Cow::Borrowed(v.as_str())),
            session_id: b(&c.session_id),
            sub: p.map(|p| Cow::Borrowed(p.sub.as_str())),
            email: p.and_then(|p| b(&p.email)),
            role: p.and_then(|p| b(&p.role)),
            pool: p.and_then(|p| b(&p.pool)),
            client_id: p.and_then(|p| b(&p.client_id)),
            dev_bypass: p.is_some_and(|p| p.kind == crate::auth::PrincipalKind::DevBypass),
            rpc_error: match c.rpc {
                Some(RpcOutcome::Error(code)) => Some(code),
                _ => None,
            },
            listed: c.listed.map(|(n, bytes)| (n, bytes as u64)),
            params_body,
        }
    }
}

/// Appends the entry of `raw` to `out`; `false` (and `out` unchanged) when it would exceed
/// [`MAX_ENTRY`].
pub fn encode(raw: &RawRecord<'_>, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    out.extend_from_slice(&[MAGIC, 0, 0, 0, 0, 0, 0, 0, 0]);
    if serde_json::to_writer(&mut *out, raw).is_err() {
        out.truncate(start);
        return false;
    }
    let json_len = out.len() - start - 9;
    if let Some(body) = &raw.params_body {
        out.extend_from_slice(body);
    }
    let rest = out.len() - start - 5;
    if out.len() - start > MAX_ENTRY {
        out.truncate(start);
        return false;
    }
    out[start + 1..start + 5].copy_from_slice(&(rest as u32).to_le_bytes());
    out[start + 5..start + 9].copy_from_slice(&(json_len as u32).to_le_bytes());
    true
}

/// What reading a spool file found.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The entries that decode, in file order.
    pub records: Vec<RawRecord<'static>>,
    /// Entries that do not decode (skipped).
    pub bad: u64,
    /// Whether the file ends inside an entry (the writer died inside its `write()`).
    pub torn: bool,
}

/// The entries of a spool file's bytes. Never panics: a bad entry is skipped, a bad
/// framing ends the read (the rest is counted as one bad entry).
pub fn decode(bytes: &[u8]) -> Decoded {
    let mut d = Decoded::default();
    let mut at = 0;
    while at < bytes.len() {
        let Some(head) = bytes.get(at..at + 9) else {
            d.torn = true;
            break;
        };
        if head[0] != MAGIC {
            d.bad += 1;
            break;
        }
        let rest = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let json_len = u32::from_le_bytes([head[5], head[6], head[7], head[8]]) as usize;
        if rest > MAX_ENTRY || json_len + 4 > rest {
            d.bad += 1;
            break;
        }
        let Some(entry) = bytes.get(at + 9..at + 5 + rest) else {
            d.torn = true;
            break;
        };
        let (json, body) = entry.split_at(json_len);
        match serde_json::from_slice::<RawRecord<'static>>(json) {
            Ok(mut r) => {
                if !body.is_empty() {
                    r.params_body = Some(Bytes::copy_from_slice(body));
                }
                d.records.push(r);
            }
            Err(_) => d.bad += 1,
        }
        at += 5 + rest;
    }
    d
}

/// One spool file of this process.
pub struct Segment {
    path: PathBuf,
    /// Holds the `flock` for as long as the segment exists.
    file: File,
    /// Bytes written.
    bytes: AtomicU64,
    /// Entries written.
    written: AtomicU64,
    /// Entries no longer needed from here.
    finished: AtomicU64,
    /// When it was closed for writing (milliseconds), 0 while open.
    sealed_at_ms: AtomicI64,
    /// Deleted already.
    gone: AtomicBool,
}

impl SpoolSegment for Segment {
    fn finished(&self) {
        self.finished.fetch_add(1, Ordering::Relaxed);
    }
}

impl Segment {
    fn is_done(&self) -> bool {
        self.finished.load(Ordering::Relaxed) >= self.written.load(Ordering::Relaxed)
    }
}

/// Counters of the spool.
#[derive(Debug, Default)]
pub struct SpoolStats {
    /// Entries written.
    pub spooled: AtomicU64,
    /// Records not spooled because the spool was full.
    pub full: AtomicU64,
    /// Records not spooled because the write failed (disk full, I/O error).
    pub failed: AtomicU64,
    /// Records replayed into the store from spool files (own or orphans).
    pub replayed: AtomicU64,
    /// Spool entries that could not be read back.
    pub unreadable: AtomicU64,
    /// Spool files replayed and deleted.
    pub files_replayed: AtomicU64,
}

/// This process's spool.
pub struct Spool {
    dir: PathBuf,
    tag: u64,
    next: AtomicU64,
    fsync: bool,
    max_bytes: u64,
    /// The segment written now.
    current: Mutex<Arc<Segment>>,
    /// Every segment of this process not yet deleted (the current one included).
    segments: Mutex<Vec<Arc<Segment>>>,
    /// Bytes in them.
    bytes: AtomicU64,
    seg_no: AtomicU32,
    /// Counters.
    pub stats: SpoolStats,
    last_warning_ms: AtomicI64,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("tag", &format_args!("{:016x}", self.tag))
            .finish()
    }
}

thread_local! {
    /// The entry being encoded (reused: no allocation per request).
    static ENTRY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Takes an exclusive `flock` on `file` without waiting.
fn try_lock(file: &File) -> bool {
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

fn file_name(tag: u64, n: u32) -> String {
    format!("audit-{tag:016x}-{n:06}.spool")
}

/// The tag in a spool file's name.
fn tag_of(name: &str) -> Option<u64> {
    let rest = name.strip_prefix("audit-")?.strip_suffix(".spool")?;
    let (tag, _) = rest.split_once('-')?;
    u64::from_str_radix(tag, 16).ok()
}

impl Spool {
    /// Opens a spool in `dir` (created, mode 0700) with a first segment (mode 0600, locked).
    pub fn open(dir: &Path, fsync: bool, max_bytes: u64) -> std::io::Result<Spool> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let tag = loop {
            let t = rand::random::<u64>();
            if t != 0 {
                break t;
            }
        };
        let first = Self::new_segment(dir, tag, 0)?;
        Ok(Spool {
            dir: dir.to_path_buf(),
            tag,
            next: AtomicU64::new(1),
            fsync,
            max_bytes: max_bytes.max(SEGMENT_BYTES),
            current: Mutex::new(first.clone()),
            segments: Mutex::new(vec![first]),
            bytes: AtomicU64::new(0),
            seg_no: AtomicU32::new(0),
            stats: SpoolStats::default(),
            last_warning_ms: AtomicI64::new(0),
        })
    }

    fn new_segment(dir: &Path, tag: u64, n: u32) -> std::io::Result<Arc<Segment>> {
        let path = dir.join(file_name(tag, n));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        if !try_lock(&file) {
            return Err(std::io::Error::other("cannot lock a new spool file"));
        }
        Ok(Arc::new(Segment {
            path,
            file,
            bytes: AtomicU64::new(0),
            written: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            sealed_at_ms: AtomicI64::new(0),
            gone: AtomicBool::new(false),
        }))
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// This process's tag (the first half of its record ids).
    pub fn tag(&self) -> u64 {
        self.tag
    }

    fn warn_rate_limited(&self, what: &str) {
        let now = crate::clock::now_ms();
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        if now - last >= WARN_EVERY_MS
            && self
                .last_warning_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!(dir = %self.dir.display(), full = self.stats.full.load(Ordering::Relaxed), failed = self.stats.failed.load(Ordering::Relaxed), "audit: {what}");
        }
    }

    /// Appends `record` with one `write()` and returns where it went; `None` (counted) when
    /// the spool is full or the write fails: the record then goes on without the spool.
    pub fn write(&self, record: &ClosedRecord) -> Option<Spooled> {
        let rid = Rid {
            tag: self.tag,
            n: self.next.fetch_add(1, Ordering::Relaxed),
        };
        let raw = RawRecord::of(record, rid);
        ENTRY.with(|cell| {
            let Ok(mut buf) = cell.try_borrow_mut() else {
                return None;
            };
            buf.clear();
            if !encode(&raw, &mut buf) {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            let spooled = self.append(&buf, rid);
            if buf.capacity() > MAX_ENTRY {
                *buf = Vec::new();
            }
            spooled
        })
    }

    fn append(&self, entry: &[u8], rid: Rid) -> Option<Spooled> {
        let len = entry.len() as u64;
        if self.bytes.load(Ordering::Relaxed) + len > self.max_bytes {
            self.stats.full.fetch_add(1, Ordering::Relaxed);
            self.warn_rate_limited("the spool is full (audit.spool_max_bytes): records are not spooled until the store takes the backlog");
            return None;
        }
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let seg = current.clone();
        if let Err(e) = (&seg.file).write_all(entry) {
            // A partial entry is skipped at replay; the counters stay right because
            // `written` only counts whole entries.
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            self.warn_rate_limited(&format!(
                "cannot write the spool ({e}): records are not spooled"
            ));
            return None;
        }
        if self.fsync {
            if let Err(e) = seg.file.sync_data() {
                self.warn_rate_limited(&format!("cannot fsync the spool: {e}"));
            }
        }
        seg.written.fetch_add(1, Ordering::Relaxed);
        let size = seg.bytes.fetch_add(len, Ordering::Relaxed) + len;
        self.bytes.fetch_add(len, Ordering::Relaxed);
        self.stats.spooled.fetch_add(1, Ordering::Relaxed);
        if size >= SEGMENT_BYTES {
            let n = self.seg_no.fetch_add(1, Ordering::Relaxed) + 1;
            match Self::new_segment(&self.dir, self.tag, n) {
                Ok(next) => {
                    seg.sealed_at_ms
                        .store(crate::clock::now_ms(), Ordering::Relaxed);
                    self.segments
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(next.clone());
                    *current = next;
                }
                Err(e) => {
                    self.warn_rate_limited(&format!(
                        "cannot open a new spool file ({e}); the current one keeps growing"
                    ));
                }
            }
        }
        Some(Spooled {
            rid,
            segment: seg as Arc<dyn SpoolSegment>,
        })
    }

    /// Deletes the closed segments whose records are all stored (all of them, the open one
    /// included, when `closing`), and returns the closed ones that still miss records after
    /// [`OWN_REPLAY_AFTER`] (to replay).
    pub fn tidy(&self, closing: bool) -> Vec<Arc<Segment>> {
        let now = crate::clock::now_ms();
        let mut stale = Vec::new();
        let mut segments = self.segments.lock().unwrap_or_else(PoisonError::into_inner);
        segments.retain(|seg| {
            let sealed_at = seg.sealed_at_ms.load(Ordering::Relaxed);
            let sealed = sealed_at > 0 || closing;
            if sealed && seg.is_done() {
                self.delete(seg);
                return false;
            }
            if sealed_at > 0 && now - sealed_at >= OWN_REPLAY_AFTER.as_millis() as i64 {
                stale.push(seg.clone());
            }
            true
        });
        stale
    }

    fn delete(&self, seg: &Segment) {
        if !seg.gone.swap(true, Ordering::Relaxed) {
            let _ = std::fs::remove_file(&seg.path);
            self.bytes
                .fetch_sub(seg.bytes.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// Forgets a closed segment of this process after it was replayed.
    pub fn replayed(&self, seg: &Arc<Segment>) {
        self.delete(seg);
        self.segments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|s| !Arc::ptr_eq(s, seg));
    }

    /// The spool files in the directory whose writer is gone (their lock can be taken),
    /// each with its lock held, at most `limit`.
    pub fn orphans(&self, limit: usize) -> Vec<Orphan> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            if out.len() >= limit {
                break;
            }
            let name = entry.file_name();
            let Some(tag) = name.to_str().and_then(tag_of) else {
                continue;
            };
            if tag == self.tag {
                continue;
            }
            let path = entry.path();
            let Ok(file) = OpenOptions::new().read(true).open(&path) else {
                continue;
            };
            if try_lock(&file) {
                out.push(Orphan { path, file });
            }
        }
        out
    }
}

/// A spool file left by a process that is gone, locked by this one while it replays it.
pub struct Orphan {
    /// Its path.
    pub path: PathBuf,
    file: File,
}

impl Orphan {
    /// Its entries (at most [`MAX_FILE`] bytes are read).
    pub fn read(&self) -> std::io::Result<Decoded> {
        read_bounded(&self.file)
    }

    /// Deletes it (after its records are stored).
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Segment {
    /// Its entries, read back.
    pub fn read(&self) -> std::io::Result<Decoded> {
        read_bounded(&File::open(&self.path)?)
    }
}

fn read_bounded(file: &File) -> std::io::Result<Decoded> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let mut f = file;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0))?;
    f.take(MAX_FILE).read_to_end(&mut bytes)?;
    Ok(decode(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(n: u64, body: Option<&'static [u8]>) -> RawRecord<'static> {
        RawRecord {
            rid: Rid { tag: 7, n },
            ts_ms: 1_700_000_000_000,
            latency_us: 1234,
            http_method: Cow::Borrowed("POST"),
            http_status: 200,
            response_size: 42,
            origin: None,
            backends_filter: None,
            tool_mode: None,
            error: None,
            stage: None,
            reason: Some(Cow::Borrowed("line\nbreak \u{1e} and \"quotes\"")),
            method: Some(Cow::Borrowed("tools/call")),
            tool: Some(Cow::Borrowed("crm_echo")),
            target_app: Some(Cow::Borrowed("crm")),
            scope_used: None,
            params_mac: None,
            version: None,
            session_id: Some(Cow::Borrowed("sess")),
            sub: Some(Cow::Borrowed("alice")),
            email: None,
            role: None,
            pool: None,
            client_id: None,
            dev_bypass: false,
            rpc_error: Some(-32602),
            listed: None,
            params_body: body.map(Bytes::from_static),
        }
    }

    #[test]
    fn entries_round_trip_and_a_torn_tail_is_skipped() {
        let mut buf = Vec::new();
        assert!(encode(&raw(1, None), &mut buf));
        assert!(encode(&raw(2, Some(b"{\"a\":\n1}")), &mut buf));
        let whole = buf.len();
        assert!(encode(&raw(3, None), &mut buf));
        let d = decode(&buf);
        assert_eq!(d.records.len(), 3);
        assert_eq!(d.records[1].rid, Rid { tag: 7, n: 2 });
        assert_eq!(
            d.records[1].params_body.as_deref(),
            Some(&b"{\"a\":\n1}"[..])
        );
        assert_eq!(d.records[0].reason, raw(1, None).reason);
        assert_eq!(d.records[0].rpc_error, Some(-32602));
        // Any cut inside the last entry: the first two survive, the tail is torn.
        for cut in whole..buf.len() {
            let d = decode(&buf[..cut]);
            assert_eq!(d.records.len(), 2, "cut at {cut}");
            assert_eq!(d.torn, cut > whole);
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut buf = Vec::new();
        assert!(encode(&raw(1, None), &mut buf));
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0xff;
            let _ = decode(&bad);
        }
        let d = decode(&[MAGIC, 255, 255, 255, 255, 0, 0, 0, 0]);
        assert_eq!((d.records.len(), d.bad), (0, 1));
        let d = decode(b"not a spool");
        assert_eq!(d.bad, 1);
    }

    #[test]
    fn an_oversized_entry_is_refused() {
        static BIG: [u8; MAX_ENTRY] = [b' '; MAX_ENTRY];
        let mut buf = vec![1, 2, 3];
        assert!(!encode(&raw(1, Some(&BIG)), &mut buf));
        assert_eq!(buf, [1, 2, 3]);
    }

    #[test]
    fn files_of_a_dead_writer_are_orphans_and_live_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let a = Spool::open(dir.path(), false, 1 << 30).unwrap();
        let b = Spool::open(dir.path(), false, 1 << 30).unwrap();
        // Both live: neither sees the other's file as an orphan.
        assert!(a.orphans(10).is_empty());
        assert!(b.orphans(10).is_empty());
        drop(b);
        let found = a.orphans(10);
        assert_eq!(found.len(), 1);
        // Locked by `a` while it replays: nobody else takes it.
        let c = Spool::open(dir.path(), false, 1 << 30).unwrap();
        assert_eq!(c.orphans(10).len(), 0);
        for o in found {
            o.remove();
        }
    }
}
