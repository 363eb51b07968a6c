//! Canonical JSON: one byte sequence per JSON value, whatever order its keys arrived in.
//!
//! Used wherever the gateway hashes or signs JSON: catalog fingerprints (which say whether a
//! definition changed between two refreshes), tool-definition pins, and signed baselines. The
//! form is that of RFC 8785 (JSON Canonicalization Scheme), which is also what
//! `JSON.stringify` produces over sorted keys, so signatures made by JavaScript tooling over
//! the same data verify here:
//!
//! - no whitespace;
//! - object members sorted by key, comparing UTF-16 code units (not UTF-8 bytes: the two
//!   orders differ between characters above U+FFFF and those in U+E000..U+FFFF);
//! - strings escaped minimally: `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other control
//!   characters as `\u00xx` (lowercase hex); everything else, `/` and non-ASCII included, as is;
//! - numbers as IEEE 754 doubles written the ECMAScript way: shortest digits that round-trip,
//!   no trailing `.0`, exponent form below 1e-6 and from 1e21 on (`1e-7`, `1e+21`), `-0` as
//!   `0`. So `1`, `1.0` and `1e0` are one number. Integers beyond ±2^53 are rounded to the
//!   nearest double, as every JSON parser built on doubles does.

use serde_json::{Number, Value};

/// The largest integer that every double-based JSON reader holds exactly (2^53).
const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// The canonical bytes of `value`.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write(&mut out, value);
    out
}

/// The canonical text of `value` (canonical JSON is always valid UTF-8).
pub fn to_string(value: &Value) -> String {
    String::from_utf8_lossy(&to_vec(value)).into_owned()
}

/// Appends the canonical bytes of `value` to `out`.
pub fn write(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|(a, _), (b, _)| utf16_order(a, b));
            out.push(b'{');
            for (i, (key, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, key);
                out.push(b':');
                write(out, item);
            }
            out.push(b'}');
        }
    }
}

/// Key order of RFC 8785 (and of JavaScript's `<` on strings): by UTF-16 code units.
fn utf16_order(a: &str, b: &str) -> std::cmp::Ordering {
    // UTF-8 byte order equals code point order, which equals UTF-16 order unless a surrogate
    // pair meets a code unit at or above U+E000; ASCII keys, the common case, skip the walk.
    if a.is_ascii() && b.is_ascii() {
        a.cmp(b)
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly the RFC 8785 set (`"`, `\`, control characters, with the
    // short forms for \b \f \n \r \t and lowercase `\u00xx` for the rest). Writing a `&str`
    // into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"null");
    }
}

fn write_number(out: &mut Vec<u8>, n: &Number) {
    if let Some(u) = n.as_u64() {
        if u <= MAX_EXACT_INTEGER {
            out.extend_from_slice(u.to_string().as_bytes());
            return;
        }
    } else if let Some(i) = n.as_i64() {
        if i.unsigned_abs() <= MAX_EXACT_INTEGER {
            out.extend_from_slice(i.to_string().as_bytes());
            return;
        }
    }
    match n.as_f64() {
        Some(f) => write_double(out, f),
        None => out.extend_from_slice(b"null"),
    }
}

/// ECMAScript `Number.prototype.toString` for a finite double.
fn write_double(out: &mut Vec<u8>, mut f: f64) {
    if !f.is_finite() {
        // serde_json never holds NaN or infinities; JSON.stringify writes them as null.
        out.extend_from_slice(b"null");
        return;
    }
    if f == 0.0 {
        out.push(b'0');
        return;
    }
    if f < 0.0 {
        out.push(b'-');
        f = -f;
    }
    // Rust's `{:e}` writes the shortest digits that round-trip, as `d.ddddeN` or `deN`. When
    // two strings of that length round-trip equally close to the value (an exact tie, e.g.
    // 2065016748195174.25), ECMAScript takes the even last digit and Rust's shortest mode may
    // not; the exact formatting to the same number of digits rounds ties to even, so it is
    // preferred whenever it still reads back as the same double.
    let shortest = format!("{f:e}");
    let k = shortest
        .split('e')
        .next()
        .map_or(1, |m| m.bytes().filter(u8::is_ascii_digit).count());
    let nearest = format!("{f:.prec$e}", prec = k.saturating_sub(1));
    let sci = if nearest != shortest && nearest.parse::<f64>() == Ok(f) {
        nearest
    } else {
        shortest
    };
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    let exponent: i64 = exponent.parse().unwrap_or(0);
    let k = digits.len() as i64;
    // The value is 0.d1d2…dk × 10^n.
    let n = exponent + 1;
    if k <= n && n <= 21 {
        out.extend_from_slice(&digits);
        out.extend(std::iter::repeat_n(b'0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.extend_from_slice(&digits[..n as usize]);
        out.push(b'.');
        out.extend_from_slice(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-n) as usize));
        out.extend_from_slice(&digits);
    } else {
        out.push(digits[0]);
        if k > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if n - 1 < 0 { b'-' } else { b'+' });
        out.extend_from_slice((n - 1).unsigned_abs().to_string().as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(text: &str) -> String {
        let v: Value = serde_json::from_str(text).unwrap();
        to_string(&v)
    }

    #[test]
    fn sorts_keys_at_every_level() {
        let v = json!({"b": [{"z": 1, "a": null}], "a": "x\"y", "c": {"y": true, "x": 1.5}});
        assert_eq!(
            to_string(&v),
            r#"{"a":"x\"y","b":[{"a":null,"z":1}],"c":{"x":1.5,"y":true}}"#
        );
    }

    #[test]
    fn key_order_is_utf16_not_utf8() {
        // U+1F680 (a surrogate pair in UTF-16, 0xD83D…) sorts before U+FF5E in UTF-16, after
        // it in UTF-8.
        assert_eq!(
            canon(r#"{"～":1,"🚀":2,"a":3,"é":4}"#),
            r#"{"a":3,"é":4,"🚀":2,"～":1}"#
        );
    }

    #[test]
    fn strings_are_escaped_minimally() {
        assert_eq!(
            canon(r#""\u0001\u001f\u007f\"\\\/\b\f\n\r\t é€""#),
            "\"\\u0001\\u001f\u{7f}\\\"\\\\/\\b\\f\\n\\r\\t é€\""
        );
    }

    #[test]
    fn numbers_follow_ecmascript() {
        // Cases from RFC 8785 appendix B and from JavaScript's Number#toString.
        let cases = [
            ("0", "0"),
            ("-0", "0"),
            ("-0.0", "0"),
            ("1.0", "1"),
            ("1e0", "1"),
            ("100.0", "100"),
            ("1e2", "100"),
            ("4.50", "4.5"),
            ("2e-3", "0.002"),
            ("0.000001", "0.000001"),
            ("1e-7", "1e-7"),
            ("1.5e-7", "1.5e-7"),
            ("123456789012345680000", "123456789012345680000"),
            ("1e21", "1e+21"),
            ("1E30", "1e+30"),
            ("1.2345e25", "1.2345e+25"),
            ("0.000000000000000000000000001", "1e-27"),
            ("333333333.33333329", "333333333.3333333"),
            ("-1.5", "-1.5"),
            ("-1e-7", "-1e-7"),
            ("9007199254740992", "9007199254740992"),
            ("9007199254740993", "9007199254740992"),
            ("-9007199254740993", "-9007199254740992"),
            ("18446744073709551615", "18446744073709552000"),
            ("5e-324", "5e-324"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("0.1", "0.1"),
            ("123.456", "123.456"),
        ];
        for (input, want) in cases {
            assert_eq!(canon(input), want, "input {input}");
        }
    }

    #[test]
    fn numbers_match_javascript_on_generated_vectors() {
        // [decimal input, JSON.stringify of the double Node parsed it to]: random doubles,
        // exact ties between two shortest forms, and powers of two (tests/vectors/README.md).
        let cases: Vec<(String, String)> =
            serde_json::from_str(include_str!("../tests/vectors/ecmascript-numbers.json")).unwrap();
        assert!(cases.len() > 500);
        for (input, want) in &cases {
            assert_eq!(&canon(input), want, "input {input}");
        }
    }

    #[test]
    fn equal_values_spelled_differently_are_equal() {
        assert_eq!(
            canon(r#"{"b":1.0,"a":[1e2, 0.5]}"#),
            canon(r#"{"a":[100,5e-1],"b":1}"#)
        );
    }
}
