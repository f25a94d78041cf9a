//! JSON serialization exactly as Envoy's `JsonStringSerializer` writes it:
//! string sanitizing (control characters, invalid UTF-8), number formatting
//! (`std::to_chars` shortest form), and `google.protobuf.Value`/JSON values.
//!
//! Everything appends to a byte buffer; nothing here allocates besides the
//! buffer's own growth.

use std::io::Write as _;

/// Appends `s` as a quoted JSON string.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    write_escaped(out, s);
    out.push(b'"');
}

/// Appends the JSON escaping of `s` without quotes. Valid UTF-8 is copied as
/// is; each byte of an invalid sequence becomes `\u00XX`, like Envoy's
/// sanitizer.
pub(crate) fn write_escaped(out: &mut Vec<u8>, mut s: &[u8]) {
    loop {
        match std::str::from_utf8(s) {
            Ok(valid) => {
                escape_valid(out, valid.as_bytes());
                return;
            }
            Err(e) => {
                let (valid, rest) = s.split_at(e.valid_up_to());
                escape_valid(out, valid);
                let bad = e.error_len().unwrap_or(rest.len());
                for &b in &rest[..bad] {
                    push_u_escape(out, b);
                }
                s = &rest[bad..];
            }
        }
    }
}

fn escape_valid(out: &mut Vec<u8>, s: &[u8]) {
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => {
                out.extend_from_slice(&s[start..i]);
                push_u_escape(out, b);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
}

fn push_u_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\u00");
    out.push(HEX[usize::from(b >> 4)]);
    out.push(HEX[usize::from(b & 0xf)]);
}

/// Appends a number as Envoy does (`std::to_chars(double)`): the shortest
/// representation that round-trips, in fixed or scientific notation,
/// whichever is shorter (fixed on a tie); `null` for NaN.
pub(crate) fn write_f64(out: &mut Vec<u8>, x: f64) {
    if x.is_nan() {
        out.extend_from_slice(b"null");
        return;
    }
    if x.is_infinite() {
        out.extend_from_slice(if x < 0.0 { b"-inf" } else { b"inf" });
        return;
    }
    if x == 0.0 {
        out.extend_from_slice(if x.is_sign_negative() { b"-0" } else { b"0" });
        return;
    }
    // Shortest round-trip digits and exponent, from Rust's `{:e}`.
    let mut sci = [0u8; 40];
    let sci_len = {
        let mut cursor = std::io::Cursor::new(&mut sci[..]);
        // A 40-byte buffer always holds an f64's `{:e}` form.
        let _ = write!(cursor, "{x:e}");
        usize::try_from(cursor.position()).unwrap_or(0)
    };
    let sci = &sci[..sci_len];
    let (mantissa, exp) = match sci.iter().position(|&c| c == b'e') {
        Some(p) => (&sci[..p], &sci[p + 1..]),
        None => (sci, &b"0"[..]),
    };
    let exp: i32 = std::str::from_utf8(exp)
        .ok()
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    let negative = mantissa.first() == Some(&b'-');
    let mut digit_buf = [0u8; 24];
    let mut n_digits = 0;
    for &c in mantissa.iter().filter(|c| c.is_ascii_digit()) {
        if n_digits < digit_buf.len() {
            digit_buf[n_digits] = c;
            n_digits += 1;
        }
    }
    let digits = &digit_buf[..n_digits];
    let n = n_digits as i32;

    // printf("%e") shape: d[.ddd]e±XX (at least two exponent digits).
    let exp_digits = if exp.abs() >= 100 { 3 } else { 2 };
    let sci_total = i32::from(negative) + 1 + if n > 1 { n } else { 0 } + 2 + exp_digits;
    // printf("%f") shape with exactly the significant digits.
    let fixed_total = i32::from(negative)
        + if exp >= n - 1 {
            exp + 1
        } else if exp >= 0 {
            n + 1
        } else {
            // 0.000ddd
            2 + (-exp - 1) + n
        };

    if fixed_total <= sci_total {
        if negative {
            out.push(b'-');
        }
        if exp >= n - 1 {
            // An integer. Beyond 2^53 the digits after the shortest ones are
            // the double's exact value, as printf prints it.
            let abs = x.abs();
            if (9_007_199_254_740_992.0..1e38).contains(&abs) {
                let _ = write!(out, "{}", abs as u128);
            } else {
                out.extend_from_slice(digits);
                out.extend(std::iter::repeat_n(b'0', (exp - (n - 1)) as usize));
            }
        } else if exp >= 0 {
            let int_len = (exp + 1) as usize;
            out.extend_from_slice(&digits[..int_len]);
            out.push(b'.');
            out.extend_from_slice(&digits[int_len..]);
        } else {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-exp - 1) as usize));
            out.extend_from_slice(digits);
        }
    } else {
        if negative {
            out.push(b'-');
        }
        out.push(digits[0]);
        if n > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let _ = write!(
            out,
            "{:0width$}",
            exp.unsigned_abs(),
            width = exp_digits as usize
        );
    }
}

/// Appends a `u64` in decimal.
pub(crate) fn push_u64(out: &mut Vec<u8>, n: u64) {
    // itoa: two digits per step from a table, instead of a division per digit.
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends an `i64` in decimal.
pub(crate) fn push_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_u64(out, n.unsigned_abs());
}

/// A `u64` as a JSON number (Envoy converts to double first).
pub(crate) fn write_u64_number(out: &mut Vec<u8>, n: u64) {
    if n < (1u64 << 53) {
        push_u64(out, n);
    } else {
        write_f64(out, n as f64);
    }
}

/// Appends a `google.protobuf.Value` as compact JSON (sorted keys).
pub(crate) fn write_proto_value(out: &mut Vec<u8>, v: &prost_types::Value) {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => out.extend_from_slice(b"null"),
        Some(Kind::NumberValue(n)) => write_f64(out, *n),
        Some(Kind::StringValue(s)) => write_str(out, s.as_bytes()),
        Some(Kind::BoolValue(b)) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Some(Kind::StructValue(s)) => write_proto_struct(out, s),
        Some(Kind::ListValue(l)) => {
            out.push(b'[');
            for (i, v) in l.values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_proto_value(out, v);
            }
            out.push(b']');
        }
    }
}

/// Appends a `google.protobuf.Struct` as a compact JSON object.
pub(crate) fn write_proto_struct(out: &mut Vec<u8>, s: &prost_types::Struct) {
    // `Struct.fields` is a BTreeMap: already sorted by key.
    out.push(b'{');
    for (i, (k, v)) in s.fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k.as_bytes());
        out.push(b':');
        write_proto_value(out, v);
    }
    out.push(b'}');
}

/// Appends a JSON value compactly, with object keys sorted.
pub(crate) fn write_json_value(out: &mut Vec<u8>, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => write_u64_number(out, u),
            (None, Some(i), _) if i.unsigned_abs() < (1u64 << 53) => {
                let _ = write!(out, "{i}");
            }
            (_, _, Some(f)) => write_f64(out, f),
            _ => out.extend_from_slice(b"null"),
        },
        Value::String(s) => write_str(out, s.as_bytes()),
        Value::Array(a) => {
            out.push(b'[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_value(out, v);
            }
            out.push(b']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k.as_bytes());
                out.push(b':');
                if let Some(v) = m.get(k) {
                    write_json_value(out, v);
                }
            }
            out.push(b'}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(x: f64) -> String {
        let mut v = Vec::new();
        write_f64(&mut v, x);
        String::from_utf8(v).unwrap_or_default()
    }

    fn esc(s: &[u8]) -> String {
        let mut v = Vec::new();
        write_str(&mut v, s);
        String::from_utf8(v).unwrap_or_default()
    }

    #[test]
    fn numbers_match_envoy_to_chars() {
        // Observed from Envoy 1.40 json_format literals.
        let cases: &[(f64, &str)] = &[
            (0.1, "0.1"),
            (std::f64::consts::PI, "3.141592653589793"),
            (1e15, "1e+15"),
            (1e16, "1e+16"),
            (123456789012.0, "123456789012"),
            (1e-7, "1e-07"),
            (0.0001, "1e-04"),
            (-0.0, "-0"),
            (100.0, "100"),
            (1e21, "1e+21"),
            (12345678.9, "12345678.9"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (2.5e-5, "2.5e-05"),
            (123456.0, "123456"),
            (1.5, "1.5"),
            (-0.25, "-0.25"),
            (1e20, "1e+20"),
            (42.0, "42"),
            (12345678901234567890.0, "12345678901234567168"),
            (0.0, "0"),
            (3.5, "3.5"),
        ];
        for (x, want) in cases {
            assert_eq!(num(*x), *want, "{x}");
        }
        assert_eq!(num(f64::NAN), "null");
    }

    #[test]
    fn strings_escape_like_envoy() {
        // Observed: control characters, DEL kept, invalid UTF-8 per byte.
        let input = b"a\x01b\x1fc\td\ne\rf\x08g\x0ch/i\x7fj\xc3\xa9k\xe2\x80\xa8l\"m\\n";
        assert_eq!(
            esc(input),
            "\"a\\u0001b\\u001fc\\td\\ne\\rf\\bg\\fh/i\u{7f}j\u{e9}k\u{2028}l\\\"m\\\\n\""
        );
        assert_eq!(esc(b"bad\xff\xfeutf"), "\"bad\\u00ff\\u00feutf\"");
        assert_eq!(esc(b"\xe2\x80A"), "\"\\u00e2\\u0080A\"");
    }

    #[test]
    fn proto_values_serialize_compactly_with_sorted_keys() {
        use prost_types::value::Kind;
        let mut s = prost_types::Struct::default();
        s.fields.insert(
            "b".into(),
            prost_types::Value {
                kind: Some(Kind::BoolValue(false)),
            },
        );
        s.fields.insert(
            "a".into(),
            prost_types::Value {
                kind: Some(Kind::NumberValue(12.0)),
            },
        );
        s.fields.insert(
            "l".into(),
            prost_types::Value {
                kind: Some(Kind::ListValue(prost_types::ListValue {
                    values: vec![
                        prost_types::Value {
                            kind: Some(Kind::StringValue("x".into())),
                        },
                        prost_types::Value {
                            kind: Some(Kind::NullValue(0)),
                        },
                    ],
                })),
            },
        );
        let mut out = Vec::new();
        write_proto_struct(&mut out, &s);
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            r#"{"a":12,"b":false,"l":["x",null]}"#
        );
    }
}
