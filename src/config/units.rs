//! Human units in YAML: durations (`500ms`, `60s`, `10m`, `1h`, `2d`, `1h30m`) and sizes
//! (`4MiB`, `64KiB`, `1GB`). Plain integers are seconds and bytes respectively.
//!
//! The parsers are strict on purpose: a typo such as `10 mins` or `1.5s` is an error that
//! names the accepted forms rather than a silently different value.

use std::fmt;
use std::time::Duration;

/// Why a duration or size could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(String);

/// Duration units and their length in milliseconds, longest suffix first so that `ms` is
/// tried before `m` and `s`.
const DURATION_UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

const DURATION_HELP: &str =
    "use a whole number with a unit: ms, s, m, h or d (e.g. 500ms, 60s, 10m, 1h30m), or a plain number of seconds";

/// Parses `500ms`, `60s`, `10m`, `1h`, `2d`, compounds like `1h30m`, or a plain integer
/// (seconds). Spaces between a number and its unit are allowed.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let input = text.trim();
    let bad = |why: &str| UnitError(format!("invalid duration `{input}`: {why}"));
    if input.is_empty() {
        return Err(bad(DURATION_HELP));
    }
    if input.starts_with('-') {
        return Err(bad("a duration cannot be negative"));
    }
    if input.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = input.parse().map_err(|_| bad("the number is too large"))?;
        return Ok(Duration::from_secs(secs));
    }
    let mut rest = input;
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad(DURATION_HELP));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| bad("the number is too large"))?;
        rest = rest[digits..].trim_start();
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        let Some(&(_, factor)) = DURATION_UNITS.iter().find(|(name, _)| *name == unit) else {
            if rest.starts_with('.') {
                return Err(bad(
                    "fractions are not accepted; use a smaller unit (e.g. 1500ms)",
                ));
            }
            return Err(bad(DURATION_HELP));
        };
        let part = value
            .checked_mul(factor)
            .ok_or_else(|| bad("the duration is too large"))?;
        total_ms = total_ms
            .checked_add(part)
            .ok_or_else(|| bad("the duration is too large"))?;
        rest = rest[unit_len..].trim_start();
    }
    Ok(Duration::from_millis(total_ms))
}

/// Size units and their length in bytes. Matched case-insensitively.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
];

const SIZE_HELP: &str =
    "use a whole number with a unit: B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024), e.g. 4MiB, or a plain number of bytes";

/// Parses `4MiB`, `64KiB`, `1GB`, `512B` or a plain integer (bytes).
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let input = text.trim();
    let bad = |why: &str| UnitError(format!("invalid size `{input}`: {why}"));
    if input.starts_with('-') {
        return Err(bad("a size cannot be negative"));
    }
    let digits = input.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad(SIZE_HELP));
    }
    let value: u64 = input[..digits]
        .parse()
        .map_err(|_| bad("the number is too large"))?;
    let unit = input[digits..].trim_start();
    if unit.is_empty() {
        return Ok(value);
    }
    let Some(&(_, factor)) = SIZE_UNITS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(unit))
    else {
        if unit.starts_with('.') {
            return Err(bad(
                "fractions are not accepted; use a smaller unit (e.g. 1536KiB)",
            ));
        }
        return Err(bad(SIZE_HELP));
    };
    value
        .checked_mul(factor)
        .ok_or_else(|| bad("the size is too large"))
}

/// What [`parse_duration`] accepts, as a JSON Schema pattern (ECMA-262): a whole number with
/// a unit, repeated (`1h30m`), or a plain number of seconds. Spaces may separate the parts.
pub const DURATION_PATTERN: &str = r"^\s*([0-9]+\s*(ms|s|m|h|d)\s*)+$|^\s*[0-9]+\s*$";

/// What [`parse_size`] accepts, as a JSON Schema pattern (units case-insensitive).
pub const SIZE_PATTERN: &str = r"^\s*[0-9]+\s*([bB]|[kKmMgG][bB]|[kKmMgG][iI][bB])?\s*$";

/// Formats a duration the way the configuration would spell it (`10s`, `1500ms`, `2h`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    for (name, factor) in DURATION_UNITS.iter().rev() {
        let factor = u128::from(*factor);
        if ms.is_multiple_of(factor) {
            return format!("{}{name}", ms / factor);
        }
    }
    format!("{ms}ms")
}

/// Formats a byte count with the largest binary unit that divides it (`4MiB`, `1500B`).
pub fn format_size(bytes: u64) -> String {
    for (name, factor) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes != 0 && bytes.is_multiple_of(factor) {
            return format!("{}{name}", bytes / factor);
        }
    }
    format!("{bytes}B")
}

/// What a unit visitor accepts: a string with a unit or a non-negative integer.
struct UnitVisitor<T> {
    expecting: &'static str,
    from_str: fn(&str) -> Result<T, UnitError>,
    from_int: fn(u64) -> T,
}

impl<'de, T> serde::de::Visitor<'de> for UnitVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        (self.from_str)(v).map_err(E::custom)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
        Ok((self.from_int)(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<T, E> {
        u64::try_from(v)
            .map(self.from_int)
            .map_err(|_| E::custom(format!("`{v}` is negative; {}", self.expecting)))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<T, E> {
        Err(E::custom(format!(
            "`{v}` is not a whole number; {}",
            self.expecting
        )))
    }
}

/// `#[serde(with = "crate::config::units::duration")]`.
pub mod duration {
    use serde::{Deserializer, Serializer};
    use std::time::Duration;

    /// Serializes as the configuration spells it (`60s`, `1500ms`): defaults in the JSON
    /// Schema and values in `check-config --diff` read like the YAML.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    /// The JSON Schema of a duration: text with units, a plain number of seconds, or a
    /// `${VAR}` reference.
    pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [
                {"type": "string", "pattern": super::DURATION_PATTERN},
                {"type": "integer", "minimum": 0},
                {"$ref": crate::config::json_schema::REFERENCE_REF}
            ]
        })
    }

    /// Deserializes `"60s"`-style strings or plain integers (seconds).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(super::UnitVisitor {
            expecting: "a duration such as 500ms, 60s, 10m, 1h or a number of seconds",
            from_str: super::parse_duration,
            from_int: Duration::from_secs,
        })
    }
}

/// `#[serde(with = "crate::config::units::size")]`.
pub mod size {
    use serde::{Deserializer, Serializer};

    /// Serializes as the configuration spells it (`4MiB`, `1500B`).
    pub fn serialize<S: Serializer>(bytes: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_size(*bytes))
    }

    /// The JSON Schema of a size: text with a unit, a plain number of bytes, or a `${VAR}`
    /// reference.
    pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [
                {"type": "string", "pattern": super::SIZE_PATTERN},
                {"type": "integer", "minimum": 0},
                {"$ref": crate::config::json_schema::REFERENCE_REF}
            ]
        })
    }

    /// Deserializes `"4MiB"`-style strings or plain integers (bytes).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(super::UnitVisitor {
            expecting: "a size such as 64KiB, 4MiB, 1GB or a number of bytes",
            from_str: super::parse_size,
            from_int: |bytes| bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration(" 10 s "), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(
            parse_duration("1m 500ms"),
            Ok(Duration::from_millis(60_500))
        );
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_explain_the_format() {
        let err = parse_duration("10 mins").unwrap_err().to_string();
        assert!(err.contains("invalid duration `10 mins`"), "{err}");
        assert!(err.contains("ms, s, m, h or d"), "{err}");
        let err = parse_duration("1.5s").unwrap_err().to_string();
        assert!(err.contains("fractions"), "{err}");
        assert!(parse_duration("-5s")
            .unwrap_err()
            .to_string()
            .contains("negative"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10").is_ok());
        assert!(parse_duration("99999999999999999999s")
            .unwrap_err()
            .to_string()
            .contains("too large"));
        assert!(parse_duration("9999999999999999d")
            .unwrap_err()
            .to_string()
            .contains("too large"));
    }

    #[test]
    fn sizes_in_every_unit() {
        assert_eq!(parse_size("4MiB"), Ok(4 * 1024 * 1024));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        assert_eq!(parse_size("10 kb"), Ok(10_000));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("1024"), Ok(1024));
    }

    #[test]
    fn bad_sizes_explain_the_format() {
        let err = parse_size("4 megs").unwrap_err().to_string();
        assert!(err.contains("invalid size `4 megs`"), "{err}");
        assert!(err.contains("KiB"), "{err}");
        assert!(parse_size("1.5MiB")
            .unwrap_err()
            .to_string()
            .contains("fractions"));
        assert!(parse_size("-1")
            .unwrap_err()
            .to_string()
            .contains("negative"));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999GiB")
            .unwrap_err()
            .to_string()
            .contains("too large"));
    }

    #[test]
    fn formatting_round_trips() {
        for text in ["500ms", "10s", "10m", "2h", "3d", "1500ms"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_size(4 << 20), "4MiB");
        assert_eq!(format_size(1500), "1500B");
        assert_eq!(parse_size(&format_size(64 << 10)).unwrap(), 64 << 10);
    }
}
