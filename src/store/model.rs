//! The data the store keeps besides the audit trail: missing-capability tickets (Cortex's
//! `missing_capabilities`) and the durable webhook outbox. Plain data, no I/O.

use serde::{Deserialize, Serialize};

/// Ticket severity (Cortex's three values; validated, unlike Cortex).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketSeverity {
    /// The agent could not do the task at all.
    Blocking,
    /// There was a workaround.
    Inconvenient,
    /// Would be nice.
    NiceToHave,
}

impl TicketSeverity {
    /// Every value, in Cortex's order.
    pub const ALL: [TicketSeverity; 3] = [
        TicketSeverity::Blocking,
        TicketSeverity::Inconvenient,
        TicketSeverity::NiceToHave,
    ];

    /// The wire and storage form.
    pub const fn as_str(self) -> &'static str {
        match self {
            TicketSeverity::Blocking => "blocking",
            TicketSeverity::Inconvenient => "inconvenient",
            TicketSeverity::NiceToHave => "nice_to_have",
        }
    }

    /// Parses the wire form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Ticket status (Cortex's six values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    /// New.
    Open,
    /// Looked at.
    Triaged,
    /// Will be built.
    Planned,
    /// Built.
    Resolved,
    /// Will not be built.
    WontFix,
    /// Same as another ticket.
    Duplicate,
}

impl TicketStatus {
    /// Every value, in Cortex's order.
    pub const ALL: [TicketStatus; 6] = [
        TicketStatus::Open,
        TicketStatus::Triaged,
        TicketStatus::Planned,
        TicketStatus::Resolved,
        TicketStatus::WontFix,
        TicketStatus::Duplicate,
    ];

    /// The wire and storage form.
    pub const fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Open => "open",
            TicketStatus::Triaged => "triaged",
            TicketStatus::Planned => "planned",
            TicketStatus::Resolved => "resolved",
            TicketStatus::WontFix => "wont_fix",
            TicketStatus::Duplicate => "duplicate",
        }
    }

    /// Parses the wire form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A ticket to create (`report_missing_capability`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewTicket {
    /// Id to give the ticket if it is new (the caller generates it, so it can put it in the
    /// webhook payload before the insert). Ignored when the report is deduplicated.
    pub id: String,
    /// Whose ticket it is: the key of "the caller's own tickets" and of deduplication
    /// (Cortex: the subject, else the email).
    pub owner: String,
    /// Reporter's subject.
    pub agent_sub: String,
    /// Reporter's email.
    pub agent_email: Option<String>,
    /// `whatIWanted`.
    pub what_i_wanted: String,
    /// `userIntent`.
    pub user_intent: String,
    /// `severity`.
    pub severity: TicketSeverity,
    /// `contextTool`.
    pub context_tool: Option<String>,
    /// `contextApp` (kept, unlike Cortex).
    pub context_app: Option<String>,
    /// `suggestedShape`, as the JSON text the agent sent.
    pub suggested_shape: Option<String>,
    /// Deduplication fingerprint (e.g. sha256 of `whatIWanted|contextTool`).
    pub fingerprint: String,
    /// Creation time, Unix milliseconds.
    pub now_ms: i64,
}

/// A triage note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketNote {
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// Who (subject or email of the admin).
    pub by: String,
    /// The note.
    pub text: String,
}

/// A stored ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    /// Id.
    pub id: String,
    /// Owner key (see [`NewTicket::owner`]).
    pub owner: String,
    /// Reporter's subject.
    pub agent_sub: String,
    /// Reporter's email.
    pub agent_email: Option<String>,
    /// `whatIWanted`.
    pub what_i_wanted: String,
    /// `userIntent`.
    pub user_intent: String,
    /// Severity.
    pub severity: TicketSeverity,
    /// Status.
    pub status: TicketStatus,
    /// `contextTool`.
    pub context_tool: Option<String>,
    /// `contextApp`.
    pub context_app: Option<String>,
    /// `suggestedShape` JSON text.
    pub suggested_shape: Option<String>,
    /// Deduplication fingerprint.
    pub fingerprint: String,
    /// How many later reports were folded into this one by deduplication.
    pub repeat_count: i64,
    /// Triage notes, oldest first.
    pub notes: Vec<TicketNote>,
    /// Created, Unix milliseconds.
    pub created_at_ms: i64,
    /// Last changed (or last deduplicated report), Unix milliseconds.
    pub updated_at_ms: i64,
}

/// The result of [`Store::create_ticket`](super::Store::create_ticket).
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedTicket {
    /// The new ticket, or the existing one the report was folded into.
    pub ticket: Ticket,
    /// Whether the report matched an existing ticket of the same owner and fingerprint
    /// created within the deduplication window.
    pub deduplicated: bool,
    /// Whether the delivery passed along was enqueued (only for a new ticket).
    pub delivery_enqueued: bool,
}

/// Filters of [`Store::list_tickets`](super::Store::list_tickets); `None` means any.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TicketFilter {
    /// Only this owner's tickets; `None` lists everyone's (admin).
    pub owner: Option<String>,
    /// Only this status.
    pub status: Option<TicketStatus>,
    /// Only this severity.
    pub severity: Option<TicketSeverity>,
    /// Only this `contextApp`.
    pub context_app: Option<String>,
    /// At most this many (newest first); 0 means the store's cap of 1000.
    pub limit: u32,
}

/// A change to a ticket (`triage_cortex_ticket`); `None` leaves a field alone.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketUpdate {
    /// New status.
    pub status: Option<TicketStatus>,
    /// New severity.
    pub severity: Option<TicketSeverity>,
    /// A note to append.
    pub note: Option<TicketNote>,
    /// Time of the change, Unix milliseconds.
    pub now_ms: i64,
}

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

/// How an attempt ended (see [`Store::finish_delivery`](super::Store::finish_delivery)).
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

/// Where the audit chain ends after an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// Seq of the newest record.
    pub last_seq: i64,
    /// Its hash.
    pub last_hash: String,
}

/// The result of one purge step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeOutcome {
    /// Records deleted.
    pub purged: u64,
    /// The new anchor (seq of the last purged record; 0 if nothing was ever purged).
    pub anchor_seq: i64,
}

/// The cap applied to list limits (and to a limit of 0).
pub const MAX_LIST: u32 = 1000;

/// The effective limit of a list call.
pub fn effective_limit(limit: u32) -> u32 {
    if limit == 0 {
        MAX_LIST
    } else {
        limit.min(MAX_LIST)
    }
}
