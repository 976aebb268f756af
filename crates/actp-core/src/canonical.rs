//! RFC 8785 JSON Canonicalization Scheme (JCS): the byte-exact JSON text ACTP clients hash into a "result hash".
//! It must never diverge from what a JavaScript JCS implementation produces (key order, number and string form), and it never performs I/O.
//!
//! The rules, matching RFC 8785 and ECMAScript `JSON.stringify`:
//!
//! * no insignificant whitespace;
//! * object members sorted by the UTF-16 code units of their keys (RFC 8785 §3.2.3);
//! * numbers written as ECMAScript `Number.prototype.toString` writes the
//!   nearest IEEE 754 double (`1.0` → `1`, `-0` → `0`, `1e21` → `1e+21`);
//! * strings escaped as `JSON.stringify` escapes them: `"`, `\`, the five
//!   short escapes `\b \t \n \f \r`, other C0 controls as `\u00xx` (lowercase
//!   hex); everything else, including non-ASCII, U+007F and U+2028, literally.
//!
//! One deliberate difference from JavaScript: a number that overflows a double (`1E400`) is refused here,
//! where `JSON.parse` reads `Infinity` and `JSON.stringify` writes `null` (so the TypeScript SDK's
//! `computeResultHash` hashes `null`): a result that cannot be represented is not signed as another.
//!
//! Parsing goes through `serde_json`, so duplicate object keys keep the last
//! value (as `JSON.parse` does), lone surrogate escapes are rejected (RFC 8785
//! requires that), and nesting deeper than `serde_json`'s limit of 128 levels
//! is rejected as invalid input.

use alloy_primitives::{B256, keccak256};
use serde_json::{Map, Number, Value};

/// Errors from canonicalization.
#[derive(Debug, thiserror::Error)]
pub enum CanonicalError {
    /// The input text is not a single well-formed JSON value (or holds a
    /// number outside the f64 range, or a lone surrogate escape). The message
    /// carries the parser's reason and the line/column where it stopped.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
}

/// Canonicalizes a parsed JSON value into its RFC 8785 (JCS) text.
///
/// Integers too large for an f64 to hold exactly are rounded to the nearest
/// f64, as `JSON.parse` would round them, before being written.
#[must_use]
pub fn canonicalize(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// Parses `json` and canonicalizes it into its RFC 8785 (JCS) text.
///
/// # Errors
///
/// [`CanonicalError::InvalidJson`] if `json` is not a single well-formed JSON
/// value.
pub fn canonicalize_str(json: &str) -> Result<String, CanonicalError> {
    let value: Value = serde_json::from_str(json).map_err(|e| {
        CanonicalError::InvalidJson(format!(
            "{e}; the input must be exactly one well-formed JSON value (RFC 8259)"
        ))
    })?;
    Ok(canonicalize(&value))
}

/// The ACTP result hash of a JSON value: keccak256 of its canonical UTF-8
/// bytes.
#[must_use]
pub fn result_hash(value: &Value) -> B256 {
    keccak256(canonicalize(value).as_bytes())
}

/// Parses `json` and returns its ACTP result hash: keccak256 of its canonical
/// UTF-8 bytes.
///
/// # Errors
///
/// [`CanonicalError::InvalidJson`] if `json` is not a single well-formed JSON
/// value.
pub fn result_hash_str(json: &str) -> Result<B256, CanonicalError> {
    Ok(keccak256(canonicalize_str(json)?.as_bytes()))
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map),
    }
}

fn write_object(out: &mut String, map: &Map<String, Value>) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    // JavaScript compares strings by UTF-16 code units. This differs from
    // UTF-8 byte order (and so from `Map`'s own order) when a key holds both
    // a character in U+E000..=U+FFFF and a supplementary-plane character.
    entries.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
    out.push('{');
    for (i, (key, item)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        write_value(out, item);
    }
    out.push('}');
}

fn write_number(out: &mut String, n: &Number) {
    // `Number` holds a u64, an i64 or a finite f64; `as f64` rounds to
    // nearest, ties to even, exactly as JSON.parse rounds a long integer.
    let f = if let Some(u) = n.as_u64() {
        u as f64
    } else if let Some(i) = n.as_i64() {
        i as f64
    } else {
        n.as_f64().unwrap_or(0.0)
    };
    // `serde_json::Number` cannot hold NaN or an infinity, so `f` is finite
    // and the output is ECMAScript Number::toString (which writes -0 as "0").
    let mut buf = ryu_js::Buffer::new();
    out.push_str(buf.format(f));
}

fn write_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        // Every byte that needs escaping is ASCII, so `i` is always a char
        // boundary here and the slices below are valid UTF-8.
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            b'\t' => "\\t",
            b'\n' => "\\n",
            0x0c => "\\f",
            b'\r' => "\\r",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}
