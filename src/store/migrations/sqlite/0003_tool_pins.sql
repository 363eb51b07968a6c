-- Approved tool definitions (tool-definition pinning), one row per backend.
CREATE TABLE cortex_tool_pins (
    backend  TEXT PRIMARY KEY,
    pins     TEXT NOT NULL,
    saved_at TEXT NOT NULL
);
