//! The pieces of RFC 8785 canonical JSON that record trees need, written straight into
//! one `String`: escaped strings, keys ordered by UTF-16 code units, and the string forms
//! of doubles, bytes, ids and integers of `docs/record-format.md`.
//!
//! Record trees hold only strings, booleans, null, small integers, arrays and objects
//! (every number that could lose precision travels as a string), so RFC 8785 reduces to:
//! no whitespace, members sorted by the UTF-16 code units of their names, and strings
//! escaped as ECMAScript's `JSON.stringify` does. orjson escapes strings the same way, so
//! [`write_str`] also serves the compact JSON of the text columns (`otaudit.record`).

use std::cmp::Ordering;
use std::fmt::Write;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Append `s` as a JSON string: `"` and `\` escaped, `\b \f \n \r \t` short, the other
/// controls below U+0020 as `\u00xx` (lowercase), everything else as it is (raw UTF-8).
pub fn write_str(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    // Whether any byte needs escaping, without an early exit (so that it vectorizes):
    // most strings need none and are copied whole.
    let dirty = bytes.iter().fold(false, |acc, &b| {
        acc | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    out.reserve(bytes.len() + 2);
    out.push('"');
    if !dirty {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.push_str(&s[start..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                out.push_str("\\u00");
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Order two member names by their UTF-16 code units (RFC 8785 §3.2.3).
///
/// UTF-8 byte order is code point order, which agrees with UTF-16 order except where a
/// character beyond the BMP (a surrogate pair, D800-DBFF first) meets one in E000-FFFF.
pub fn utf16_cmp(a: &str, b: &str) -> Ordering {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let same = x.iter().zip(y).take_while(|(p, q)| p == q).count();
    if same == x.len() || same == y.len() {
        return x.len().cmp(&y.len());
    }
    if x[same] < 0x80 && y[same] < 0x80 {
        return x[same].cmp(&y[same]);
    }
    // Back to the start of the character that differs (the same in both).
    let mut at = same;
    while !a.is_char_boundary(at) {
        at -= 1;
    }
    let (p, q) = (a[at..].chars().next(), b[at..].chars().next());
    match (p, q) {
        (Some(p), Some(q)) => {
            let unit = |c: char| {
                let c = u32::from(c);
                if c >= 0x10000 {
                    0xd800 + ((c - 0x10000) >> 10)
                } else {
                    c
                }
            };
            unit(p).cmp(&unit(q)).then(p.cmp(&q))
        }
        _ => x.len().cmp(&y.len()),
    }
}

/// Python's `repr(float)` for a finite double: the shortest decimal that round-trips,
/// in exponent form when the decimal exponent is below -4 or at least 16
/// (`1e+16`, `1.5e-05`, `0.0001`, `-0.0`, `123.0`).
pub fn write_repr(out: &mut String, value: f64) {
    // The shortest digits that round-trip, the one nearest the value, a tie to the even
    // digit (ryu, as Python's dtoa): "562949953421312.2", "1e16", "1.5e-5". Rust's own
    // `{:e}` breaks such ties the other way (562949953421312.3 for ...312.25).
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(value);
    let sci = to_scientific(text);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let n = digits.len() as i32;
    let decpt = exp + 1; // the value is 0.DIGITS times 10^decpt
    if negative {
        out.push('-');
    }
    if decpt <= -4 || decpt > 16 {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        let _ = write!(out, "e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    } else if decpt <= 0 {
        out.push_str("0.");
        for _ in 0..-decpt {
            out.push('0');
        }
        out.push_str(&digits);
    } else if decpt < n {
        out.push_str(&digits[..decpt as usize]);
        out.push('.');
        out.push_str(&digits[decpt as usize..]);
    } else {
        out.push_str(&digits);
        for _ in 0..decpt - n {
            out.push('0');
        }
        out.push_str(".0");
    }
}

/// ryu's text (`"1.5e-5"`, `"123.0"`, `"1e16"`, `"-0.0"`) as `mantissa e exponent`, its
/// digits unchanged (`"1.5e-5"`, `"1.23e2"`, `"1e16"`, `"-0e0"`).
fn to_scientific(text: &str) -> String {
    if let Some((m, e)) = text.split_once(['e', 'E']) {
        return format!("{m}e{e}");
    }
    let (negative, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text),
    };
    let (int_part, frac_part) = body.split_once('.').unwrap_or((body, ""));
    let frac_part = frac_part.trim_end_matches('0');
    let all: String = format!("{int_part}{frac_part}");
    let lead = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_start_matches('0');
    let sign = if negative { "-" } else { "" };
    if digits.is_empty() {
        return format!("{sign}0e0");
    }
    let exp = int_part.len() as i32 - 1 - lead as i32;
    let (first, rest) = digits.split_at(1);
    if rest.is_empty() {
        format!("{sign}{first}e{exp}")
    } else {
        format!("{sign}{first}.{rest}e{exp}")
    }
}

/// The string form of a double in a record (`encode_double`): `NaN`, `Infinity`,
/// `-Infinity`, else [`write_repr`].
pub fn write_double(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        write_repr(out, value);
    }
}

/// Append `data` as lowercase hex.
pub fn write_hex(out: &mut String, data: &[u8]) {
    for &b in data {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
}

/// Append `data` as standard base64 with padding (RFC 4648 §4).
pub fn write_base64(out: &mut String, data: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |v: u32| ALPHABET[(v & 63) as usize] as char;
    let mut chunks = data.chunks_exact(3);
    for c in &mut chunks {
        let v = u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]);
        out.extend([sym(v >> 18), sym(v >> 12), sym(v >> 6), sym(v)]);
    }
    match *chunks.remainder() {
        [a] => {
            let v = u32::from(a) << 16;
            out.extend([sym(v >> 18), sym(v >> 12), '=', '=']);
        }
        [a, b] => {
            let v = u32::from(a) << 16 | u32::from(b) << 8;
            out.extend([sym(v >> 18), sym(v >> 12), sym(v >> 6), '=']);
        }
        _ => {}
    }
}

/// Append an integer in decimal.
pub fn write_int<T: itoa::Integer>(out: &mut String, value: T) {
    out.push_str(itoa::Buffer::new().format(value));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        let mut out = String::new();
        write_str(&mut out, s);
        out
    }

    fn repr(v: f64) -> String {
        let mut out = String::new();
        write_double(&mut out, v);
        out
    }

    #[test]
    fn strings_are_escaped_as_json_stringify_does() {
        assert_eq!(esc("plain"), "\"plain\"");
        assert_eq!(esc("\"\\/"), "\"\\\"\\\\/\"");
        assert_eq!(esc("\u{8}\u{c}\n\r\t"), "\"\\b\\f\\n\\r\\t\"");
        assert_eq!(
            esc("\0\u{1}\u{1f}\u{7f}"),
            "\"\\u0000\\u0001\\u001f\u{7f}\""
        );
        assert_eq!(esc("é\u{2028}😀"), "\"é\u{2028}😀\"");
    }

    #[test]
    fn doubles_are_written_as_python_repr() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (123.0, "123.0"),
            (1.5, "1.5"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1234567890123456.7, "1234567890123456.8"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-5, "1.5e-05"),
            (5e-324, "5e-324"),
            (2.2250738585072014e-308, "2.2250738585072014e-308"),
            (f64::MAX, "1.7976931348623157e+308"),
            (562949953421312.2, "562949953421312.2"), // a tie: the even digit, as Python
            (0.1, "0.1"),
            (1e-7, "1e-07"),
            (123456.0, "123456.0"),
            (-0.0001, "-0.0001"),
            (-1e100, "-1e+100"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for &(v, want) in cases {
            assert_eq!(repr(v), want, "{v:e}");
        }
    }

    #[test]
    fn keys_order_by_utf16_code_units() {
        assert_eq!(utf16_cmp("a", "b"), Ordering::Less);
        assert_eq!(utf16_cmp("ab", "a"), Ordering::Greater);
        assert_eq!(utf16_cmp("", ""), Ordering::Equal);
        // U+1F600 is D83D DE00 in UTF-16: before U+FF61, though after it by code point.
        assert_eq!(utf16_cmp("\u{1f600}", "\u{ff61}"), Ordering::Less);
        assert_eq!(utf16_cmp("x\u{e000}", "x\u{10000}"), Ordering::Greater);
        assert_eq!(utf16_cmp("é", "z"), Ordering::Greater);
        assert_eq!(utf16_cmp("\u{1f600}", "\u{1f601}"), Ordering::Less);
    }

    #[test]
    fn bytes_and_ids() {
        let b64 = |d: &[u8]| {
            let mut s = String::new();
            write_base64(&mut s, d);
            s
        };
        assert_eq!(b64(b""), "");
        assert_eq!(b64(b"f"), "Zg==");
        assert_eq!(b64(b"fo"), "Zm8=");
        assert_eq!(b64(b"foo"), "Zm9v");
        assert_eq!(b64(&[0xff, 0xfe, 0xfd, 0xfc]), "//79/A==");
        let mut h = String::new();
        write_hex(&mut h, &[0, 0xab, 0x10]);
        assert_eq!(h, "00ab10");
    }
}
