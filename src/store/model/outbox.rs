//! The durable webhook outbox: deliveries that must survive outages and restarts. Plain
//! data, no I/O.

use serde::{Deserialize, Serialize};

/// A webhook delivery to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    /// Delivery id: unique, sent to the receiver (e.g. as a header) so it can drop repeats.
    pub id: String,
    /// What it is, e.g. `cortex.ticket.blocking`.
    pub kind: String,
    /// Where it goes (the webhook URL at enqueue time).
    pub target: String,
    /// The exact body to send (signed by the sender at send time, or here).
    pub payload: String,
    /// Enqueue time and first due time, Unix milliseconds.
    pub now_ms: i64,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting to be (re)tried.
    Pending,
    /// Accepted by the receiver.
    Delivered,
    /// Given up.
    Dead,
}

impl DeliveryState {
    /// Storage form.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }

    /// Parses the storage form.
    pub fn parse(s: &str) -> Option<Self> {
        [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Dead,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// A stored delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Delivery id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Target URL.
    pub target: String,
    /// Body.
    pub payload: String,
    /// State.
    pub state: DeliveryState,
    /// Attempts started so far (a claim counts as an attempt).
    pub attempts: i64,
    /// When it is next due, Unix milliseconds.
    pub next_attempt_at_ms: i64,
    /// The token of the current claim; needed to finish it.
    pub lease_token: Option<String>,
    /// Until when the current claim holds, Unix milliseconds.
    pub lease_until_ms: Option<i64>,
    /// The last failure.
    pub last_error: Option<String>,
    /// Enqueued, Unix milliseconds.
    pub created_at_ms: i64,
    /// Delivered, Unix milliseconds.
    pub delivered_at_ms: Option<i64>,
}

/// How an attempt ended (see [`OutboxStore::finish_delivery`](crate::store::OutboxStore::finish_delivery)).
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    /// The receiver accepted it.
    Delivered {
        /// When, Unix milliseconds.
        at_ms: i64,
    },
    /// Try again later (the sender computes the backoff).
    Retry {
        /// Next due time, Unix milliseconds.
        at_ms: i64,
        /// What went wrong.
        error: String,
    },
    /// Give up for good.
    Dead {
        /// What went wrong.
        error: String,
    },
}
