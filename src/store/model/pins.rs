//! Approved tool definitions (tool-definition pinning), one row per backend.

/// The pins of one backend: its part of a version-2 baseline document (`tools.<backend>`),
/// as JSON text the pinning module reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPins {
    /// The backend id.
    pub backend: String,
    /// JSON object: tool name → pin.
    pub pins: String,
    /// When the approvals last changed (RFC 3339).
    pub saved_at: String,
}
