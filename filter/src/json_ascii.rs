//! Compact JSON with every non-ASCII character escaped as `\uXXXX`, so session data fits in an
//! HTTP header whatever language its strings are in (docs/architecture.md, "Injected
//! headers"). DEL (0x7f) is escaped too: serde_json escapes the other control characters but
//! not DEL, and a header value may not carry it (RFC 9110 section 5.5); strict upstreams
//! refuse the request.

use serde::Serialize;
use serde_json::ser::{Formatter, Serializer};
use std::io::{self, Write};

/// The default `Formatter` methods write compact JSON; only string fragments differ.
struct AsciiFormatter;

impl Formatter for AsciiFormatter {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // Most fragments need no escape: two word-at-a-time scans instead of a char loop.
        if fragment.is_ascii() && memchr::memchr(0x7f, fragment.as_bytes()).is_none() {
            return writer.write_all(fragment.as_bytes());
        }
        let mut start = 0;
        for (at, ch) in fragment.char_indices() {
            if ch.is_ascii() && ch != '\x7f' {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..at])?;
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            start = at + ch.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// `value` as compact, ASCII-only JSON.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::with_capacity(128);
    let mut serializer = Serializer::with_formatter(&mut out, AsciiFormatter);
    // Serializing a `serde_json::Value` or a string into memory cannot fail.
    if value.serialize(&mut serializer).is_err() {
        return String::from("null");
    }
    // Only ASCII was written.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escapes_everything_outside_ascii() {
        let cases = [
            (json!({"name": "Zoë"}), r#"{"name":"Zo\u00eb"}"#),
            (json!(["日本"]), r#"["\u65e5\u672c"]"#),
            (json!("emoji 😀"), r#""emoji \ud83d\ude00""#),
            (json!({"ctl": "a\nb\u{0}"}), r#"{"ctl":"a\nb\u0000"}"#),
            (json!({"q": "\"\\"}), r#"{"q":"\"\\"}"#),
            (json!({"del": "a\u{7f}b"}), r#"{"del":"a\u007fb"}"#),
            (
                json!([1.5, true, null, [1, {}]]),
                r#"[1.5,true,null,[1,{}]]"#,
            ),
        ];
        for (value, expected) in cases {
            let out = to_string(&value);
            assert_eq!(out, expected);
            assert!(out.is_ascii());
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&out).unwrap(),
                value,
                "round trip"
            );
        }
        // Key order follows serde_json's map (sorted, or insertion order when another crate
        // in the build enables `preserve_order`); the content is what counts.
        let object = json!({"n": 1.5, "b": true, "z": null, "a": [1, {}]});
        let out = to_string(&object);
        assert!(!out.contains(' ') && out.is_ascii());
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&out).unwrap(),
            object
        );
    }
}
