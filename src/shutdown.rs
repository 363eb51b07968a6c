//! Signals that stop the process, and a graceful shutdown that ends when the work is done.
//!
//! Pingora, on SIGTERM, stops accepting and then sleeps the whole grace period before it
//! stops its runtimes, even when nothing is running. [`Signals`] is the gateway's
//! `ShutdownSignalWatch`: on SIGTERM (or SIGQUIT) it starts draining ([`Drain::begin`]: open
//! notification streams close), hands Pingora a graceful terminate (the listeners stop
//! accepting, idle keep-alive connections close), and watches the in-flight count from a
//! thread of its own. As soon as no request is running it flushes what must be flushed
//! (the audit queue) and exits 0; if requests still run when the grace period is over,
//! Pingora's own shutdown takes over (the runtimes are stopped, the audit trail is flushed
//! when its service is dropped). A second SIGTERM, SIGQUIT or SIGINT during the drain exits
//! at once with status 1. SIGINT first is Pingora's fast shutdown.
//!
//! SIGQUIT would be Pingora's graceful binary upgrade (the listening sockets handed to a new
//! process started with `--upgrade`). The gateway does not offer it (docs/operations.md says
//! why: one audit-chain writer, per-process sessions and caches), so SIGQUIT drains like
//! SIGTERM instead of handing the sockets to nobody.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{error, info, warn};

use crate::drain::Drain;

/// How often the drain thread looks at the in-flight count.
const POLL: Duration = Duration::from_millis(20);
/// How long the count must stay at zero before the process exits: a request accepted in the
/// instant the listeners closed gets the time to be counted.
const SETTLE: Duration = Duration::from_millis(100);
/// Exit status of a drained shutdown and of a second signal.
const EXIT_DRAINED: i32 = 0;
const EXIT_FORCED: i32 = 1;

/// What runs once the in-flight work is done, before the process exits (flushes).
pub type Finish = Box<dyn Fn() + Send + Sync>;

/// The gateway's shutdown signals (see the module documentation).
pub struct Signals {
    drain: Arc<Drain>,
    grace: Duration,
    finish: Arc<Finish>,
}

impl Signals {
    /// Watches the signals for a process whose requests are counted by `drain`; waits at
    /// most `grace` for them; runs `finish` before a drained exit.
    pub fn new(drain: Arc<Drain>, grace: Duration, finish: Finish) -> Signals {
        Signals {
            drain,
            grace,
            finish: Arc::new(finish),
        }
    }
}

fn listen(kind: SignalKind, name: &str) -> Option<Signal> {
    match signal(kind) {
        Ok(s) => Some(s),
        Err(e) => {
            error!("cannot listen for {name}: {e}");
            None
        }
    }
}

async fn next(s: &mut Option<Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let mut term = listen(SignalKind::terminate(), "SIGTERM");
        let mut quit = listen(SignalKind::quit(), "SIGQUIT");
        let mut int = listen(SignalKind::interrupt(), "SIGINT");
        let name = tokio::select! {
            _ = next(&mut term) => "SIGTERM",
            _ = next(&mut quit) => "SIGQUIT",
            _ = next(&mut int) => {
                info!("SIGINT: exiting now");
                return ShutdownSignal::FastShutdown;
            }
        };
        info!(
            in_flight = self.drain.in_flight(),
            grace = ?self.grace,
            "{name}: graceful shutdown: no new connections; exiting as soon as the requests in flight are done"
        );
        self.drain.begin();
        // A second signal ends the drain at once. The streams move into the task so that the
        // handlers stay installed (the default action would kill the process without a word).
        tokio::spawn(async move {
            let which = tokio::select! {
                _ = next(&mut term) => "SIGTERM",
                _ = next(&mut quit) => "SIGQUIT",
                _ = next(&mut int) => "SIGINT",
            };
            warn!("second signal ({which}) during the graceful shutdown: exiting now, requests in flight are cut off");
            std::process::exit(EXIT_FORCED);
        });
        let drain = self.drain.clone();
        let grace = self.grace;
        let finish = self.finish.clone();
        let spawned = std::thread::Builder::new()
            .name("cortex-drain".into())
            .spawn(move || watch_drain(&drain, grace, &finish));
        if let Err(e) = spawned {
            error!(
                "cannot start the drain watcher ({e}): the shutdown waits the whole grace period"
            );
        }
        ShutdownSignal::GracefulTerminate
    }
}

/// Exits the process once nothing has been in flight for [`SETTLE`], within `grace`;
/// returns (and leaves the rest to Pingora) when the grace period ends first.
fn watch_drain(drain: &Drain, grace: Duration, finish: &Finish) {
    let started = Instant::now();
    let mut idle_since: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if drain.in_flight() == 0 {
            let since = *idle_since.get_or_insert(now);
            if now.duration_since(since) >= SETTLE {
                break;
            }
        } else {
            idle_since = None;
        }
        if now.duration_since(started) >= grace {
            warn!(
                in_flight = drain.in_flight(),
                "grace period over with requests still running: they are cut off"
            );
            return;
        }
        std::thread::sleep(POLL);
    }
    finish();
    info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "graceful shutdown: every request finished, exiting"
    );
    std::process::exit(EXIT_DRAINED);
}
