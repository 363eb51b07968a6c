//! How many requests are in flight, and whether the process is draining.
//!
//! Graceful shutdown ends as soon as the work it waits for is done: every request holds an
//! [`InFlight`] guard for as long as it runs (an SSE stream too, until it closes), and the
//! shutdown watcher (the `shutdown` module) exits once the count is zero instead of sleeping the
//! whole grace period. Open notification streams listen to [`Drain::stopping`] so they close
//! at once, not at their next keep-alive tick.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

/// In-flight requests and the draining flag of one process.
#[derive(Debug)]
pub struct Drain {
    in_flight: AtomicUsize,
    stopping: watch::Sender<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            in_flight: AtomicUsize::new(0),
            stopping: watch::Sender::new(false),
        }
    }
}

impl Drain {
    /// A fresh tracker: nothing in flight, not draining.
    pub fn new() -> Arc<Drain> {
        Arc::new(Drain::default())
    }

    /// Counts one request until the guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Requests running now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Starts draining: open streams are told to close. Idempotent.
    pub fn begin(&self) {
        self.stopping.send_replace(true);
    }

    /// Whether the process is draining.
    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Resolves once draining has begun (at once if it already has).
    pub async fn stopped(&self) {
        let mut rx = self.stopping.subscribe();
        // `wait_for` only fails when the sender is gone, and `self` holds it.
        let _ = rx.wait_for(|stopping| *stopping).await;
    }
}

/// One request in flight; dropping it ends the count.
#[derive(Debug)]
pub struct InFlight(Arc<Drain>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_requests_until_dropped() {
        let drain = Drain::new();
        let a = drain.enter();
        let b = drain.enter();
        assert_eq!(drain.in_flight(), 2);
        drop(a);
        assert_eq!(drain.in_flight(), 1);
        drop(b);
        assert_eq!(drain.in_flight(), 0);
    }

    #[tokio::test]
    async fn stopped_resolves_after_begin_and_at_once_afterwards() {
        let drain = Drain::new();
        assert!(!drain.is_stopping());
        let waiter = {
            let drain = drain.clone();
            tokio::spawn(async move { drain.stopped().await })
        };
        drain.begin();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("stopped() resolves after begin()")
            .expect("task");
        assert!(drain.is_stopping());
        tokio::time::timeout(std::time::Duration::from_secs(5), drain.stopped())
            .await
            .expect("stopped() resolves at once once draining");
    }
}
