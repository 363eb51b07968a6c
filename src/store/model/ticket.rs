//! Missing-capability tickets (Cortex's `missing_capabilities`): plain data, no I/O.

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

/// The result of [`TicketStore::create_ticket`](crate::store::TicketStore::create_ticket).
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

/// Filters of [`TicketStore::list_tickets`](crate::store::TicketStore::list_tickets); `None` means any.
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

impl TicketUpdate {
    /// The ticket after this change: the fields given, the note appended, and
    /// `updated_at_ms` moved forward (never back).
    pub fn apply_to(&self, t: &mut Ticket) {
        if let Some(s) = self.status {
            t.status = s;
        }
        if let Some(s) = self.severity {
            t.severity = s;
        }
        if let Some(n) = &self.note {
            t.notes.push(n.clone());
        }
        t.updated_at_ms = t.updated_at_ms.max(self.now_ms);
    }
}
