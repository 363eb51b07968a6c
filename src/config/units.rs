//! Human units in YAML: durations (`60s`, `10m`, `500ms`) and sizes (`4MiB`, `64KiB`).
pub mod duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;
    /// Deserializes `"60s"`-style strings or plain integers (seconds).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}
pub mod size {
    use serde::{Deserialize, Deserializer};
    /// Deserializes `"4MiB"`-style strings or plain integers (bytes).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        u64::deserialize(d)
    }
}
