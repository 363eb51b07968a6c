//! The moment a request is answered, as the audit trail sees it.
//!
//! Every answer of the gateway, whatever route wrote it (a JSON answer of the MCP endpoint,
//! a proxied backend reply, which the gateway also writes itself, an SSE stream, a refusal,
//! an admin answer), is written through Pingora's `Session::write_response_header` /
//! `write_response_body`, and both run the downstream HTTP modules *before* they hand the
//! bytes to the socket. [`AnswerHook`] is such a module: when it sees the end of the
//! response (the header of a body-less answer, or the last body chunk), it spools the
//! request's record ([`super::spool`]) — one `write()` to a local file — and only then does
//! Pingora write the answer's last bytes. So a client never holds a complete answer whose
//! record is not in the spool or further on.
//!
//! The record spooled there is the record as it stands at that moment, with the facts known
//! then (status, bytes, latency to the answer). The `logging` phase still closes the record
//! and hands it to the audit thread as before, under the same record id: the live path
//! stores that one, a replay after a crash stores the spooled one, never both.

use std::any::Any;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use pingora::modules::http::{HttpModule, HttpModuleBuilder, Module};
use pingora::proxy::Session;
use pingora::Result;

use super::AuditSink;
use crate::http::header;
use crate::record::{clean, Facts, RecordHandle, RequestRecord, MAX_IDENT};

/// Registers [`AnswerHook`] on every request.
pub struct AnswerHookBuilder;

impl HttpModuleBuilder for AnswerHookBuilder {
    fn init(&self) -> Module {
        Box::new(AnswerHook::default())
    }
}

/// The per-request hook (idle unless [`arm`]ed).
#[derive(Default)]
pub struct AnswerHook {
    armed: Option<Box<Armed>>,
    status: u16,
    bytes: u64,
}

struct Armed {
    record: RecordHandle,
    sink: AuditSink,
    started: Instant,
    method: Method,
    origin: Option<String>,
    backends_filter: Option<String>,
    tool_mode: Option<String>,
}

/// Arms the hook of `session` for `record` (when the audit trail spools). Called once the
/// request header is in, before any answer is written.
pub fn arm(session: &mut Session, record: &RequestRecord, sink: &AuditSink, started: Instant) {
    if !sink.spools() {
        return;
    }
    let opt = |name: &str| header(session, name).map(|v| clean(v, MAX_IDENT));
    let armed = Box::new(Armed {
        record: record.handle(),
        sink: sink.clone(),
        started,
        method: session.req_header().method.clone(),
        origin: opt("origin"),
        backends_filter: opt("x-cortex-backends"),
        tool_mode: opt("x-cortex-tool-mode"),
    });
    if let Some(hook) = session.downstream_modules_ctx.get_mut::<AnswerHook>() {
        hook.armed = Some(armed);
    }
}

/// Pingora is about to write an error answer with `status` itself (`respond_error`, which
/// bypasses the modules): spool the record first, as for any other answer.
pub fn before_error_answer(session: &mut Session, status: u16) {
    if let Some(hook) = session.downstream_modules_ctx.get_mut::<AnswerHook>() {
        hook.status = status;
        hook.answer_complete();
    }
}

impl AnswerHook {
    /// The answer's last bytes are about to be written: spool the record now.
    fn answer_complete(&mut self) {
        let Some(a) = self.armed.take() else {
            return;
        };
        let a = *a;
        let facts = Facts {
            ts_ms: crate::clock::now_ms(),
            latency: a.started.elapsed(),
            http_method: a.method,
            http_status: self.status,
            response_size: self.bytes,
            origin: a.origin,
            backends_filter: a.backends_filter,
            tool_mode: a.tool_mode,
            error: None,
        };
        let sink = a.sink;
        a.record.spool_now(facts, |closed| {
            // Only a tools/list keeps the list headers (as the logging phase does).
            if closed.method.as_deref() != Some("tools/list") {
                closed.facts.backends_filter = None;
                closed.facts.tool_mode = None;
            }
            sink.spool(closed)
        });
    }
}

#[async_trait]
impl HttpModule for AnswerHook {
    async fn response_header_filter(
        &mut self,
        resp: &mut pingora::http::ResponseHeader,
        end_of_stream: bool,
    ) -> Result<()> {
        self.status = resp.status.as_u16();
        if end_of_stream {
            self.answer_complete();
        }
        Ok(())
    }

    fn response_body_filter(
        &mut self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
    ) -> Result<()> {
        if let Some(b) = body {
            self.bytes += b.len() as u64;
        }
        if end_of_stream {
            self.answer_complete();
        }
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
