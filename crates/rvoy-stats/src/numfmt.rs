//! Floating-point formatting that reproduces, byte for byte, the C/C++
//! formatters Envoy's admin output goes through: `fmt::format("{}")`
//! (shortest round-trip, exponent outside `1e-4..1e16`), printf-style `%.Ng`
//! (`{:g}`, `{:.32g}`, `absl::StrCat(double)`), and `std::to_chars` shortest
//! (Envoy's JSON streamer: whichever of fixed/scientific is shorter).

use std::fmt::Write as _;

/// Decomposes a finite, non-zero `x` into shortest round-trip decimal digits
/// and the decimal exponent of the first digit (`x = 0.d1d2.. * 10^(exp+1)`).
fn shortest_digits(x: f64) -> (String, i32) {
    // Rust's `{:e}` prints the shortest round-trip representation.
    let s = format!("{:e}", x.abs());
    split_exp(&s)
}

/// Digits of `x` rounded to `sig` significant digits (exact decimal rounding,
/// ties to even, as glibc's printf).
fn rounded_digits(x: f64, sig: usize) -> (String, i32) {
    if let Some(r) = exact_rounded_digits(x.abs(), sig) {
        return r;
    }
    let s = format!("{:.*e}", sig.saturating_sub(1), x.abs());
    split_exp(&s)
}

/// Fast exact path of [`rounded_digits`] for doubles whose binary exponent
/// keeps the exact value within `u128` arithmetic (all histogram sums and
/// bucket bounds in practice). `None` means "use the slow path".
fn exact_rounded_digits(x: f64, sig: usize) -> Option<(String, i32)> {
    if !x.is_finite() || x <= 0.0 || sig == 0 {
        return None;
    }
    let bits = x.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    let (m, e) = if biased == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), biased - 1075)
    };
    let (int, mut rem, k) = if e >= 0 {
        if e > 70 {
            return None;
        }
        ((m as u128) << e, 0u128, 0u32)
    } else {
        let k = (-e) as u32;
        if k > 120 {
            return None;
        }
        ((m as u128) >> k, (m as u128) & ((1u128 << k) - 1), k)
    };
    let mut digits: Vec<u8> = Vec::with_capacity(sig + 2);
    let mut exp10: i32 = -1;
    if int > 0 {
        let s = int.to_string();
        exp10 = s.len() as i32 - 1;
        digits.extend(s.bytes().map(|b| b - b'0'));
    }
    while digits.len() < sig + 1 && rem != 0 {
        rem *= 10;
        let d = (rem >> k) as u8;
        rem &= (1u128 << k) - 1;
        if digits.is_empty() && d == 0 {
            exp10 -= 1;
            continue;
        }
        digits.push(d);
    }
    if digits.len() > sig {
        let next = digits[sig];
        let sticky = rem != 0 || digits[sig + 1..].iter().any(|&d| d != 0);
        digits.truncate(sig);
        let last_odd = digits.last().is_some_and(|d| d % 2 == 1);
        if next > 5 || (next == 5 && (sticky || last_odd)) {
            let mut i = digits.len();
            loop {
                if i == 0 {
                    digits.insert(0, 1);
                    digits.truncate(sig);
                    exp10 += 1;
                    break;
                }
                i -= 1;
                if digits[i] == 9 {
                    digits[i] = 0;
                } else {
                    digits[i] += 1;
                    break;
                }
            }
        }
    }
    digits.resize(sig, 0);
    Some((digits.iter().map(|d| (b'0' + d) as char).collect(), exp10))
}

fn split_exp(s: &str) -> (String, i32) {
    let (mant, exp) = s.split_once('e').unwrap_or((s, "0"));
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    (digits, exp)
}

fn special(x: f64) -> Option<&'static str> {
    if x.is_nan() {
        Some(if x.is_sign_negative() { "-nan" } else { "nan" })
    } else if x.is_infinite() {
        Some(if x > 0.0 { "inf" } else { "-inf" })
    } else {
        None
    }
}

/// Writes `digits` (no leading zeros, at least one digit) with first-digit
/// exponent `exp` in fixed notation.
fn push_fixed(out: &mut String, digits: &str, exp: i32) {
    let n = digits.len() as i32;
    if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(digits);
    } else if exp + 1 >= n {
        out.push_str(digits);
        for _ in 0..(exp + 1 - n) {
            out.push('0');
        }
    } else {
        let split = (exp + 1) as usize;
        out.push_str(&digits[..split]);
        out.push('.');
        out.push_str(&digits[split..]);
    }
}

/// Writes scientific notation `d.ddde+XX` (at least two exponent digits).
fn push_sci(out: &mut String, digits: &str, exp: i32) {
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(out, "{:02}", exp.unsigned_abs());
}

fn trim_zeros(digits: &str) -> &str {
    let t = digits.trim_end_matches('0');
    if t.is_empty() { "0" } else { t }
}

/// `fmt::format("{}", x)` for a double (fmt >= 8): shortest round-trip digits,
/// scientific when the exponent is `< -4` or `>= 16`.
pub fn fmt_shortest(x: f64) -> String {
    if let Some(s) = special(x) {
        return s.to_string();
    }
    let mut out = String::new();
    if x.is_sign_negative() {
        out.push('-');
    }
    if x == 0.0 {
        out.push('0');
        return out;
    }
    let (digits, exp) = shortest_digits(x);
    let digits = trim_zeros(&digits);
    if !(-4..16).contains(&exp) {
        push_sci(&mut out, digits, exp);
    } else {
        push_fixed(&mut out, digits, exp);
    }
    out
}

/// printf `%.{prec}g`: `prec` significant digits, trailing zeros removed,
/// scientific when the exponent is `< -4` or `>= prec`.
pub fn fmt_g(x: f64, prec: usize) -> String {
    if let Some(s) = special(x) {
        return s.to_string();
    }
    let prec = prec.max(1);
    let mut out = String::new();
    if x.is_sign_negative() {
        out.push('-');
    }
    if x == 0.0 {
        out.push('0');
        return out;
    }
    let (digits, exp) = rounded_digits(x, prec);
    let digits = trim_zeros(&digits);
    if exp < -4 || exp >= prec as i32 {
        push_sci(&mut out, digits, exp);
    } else {
        push_fixed(&mut out, digits, exp);
    }
    out
}

/// `std::to_chars(double)` without a format: shortest round-trip digits in
/// whichever of fixed or scientific notation is shorter (fixed on ties).
/// NaN/inf are the caller's business (JSON renders NaN as `null`).
pub fn fmt_to_chars(x: f64) -> String {
    if let Some(s) = special(x) {
        return s.to_string();
    }
    let mut out = String::new();
    if x.is_sign_negative() {
        out.push('-');
    }
    if x == 0.0 {
        out.push('0');
        return out;
    }
    let (digits, exp) = shortest_digits(x);
    let digits = trim_zeros(&digits);
    let mut fixed = String::new();
    push_fixed(&mut fixed, digits, exp);
    let mut sci = String::new();
    push_sci(&mut sci, digits, exp);
    if sci.len() < fixed.len() {
        out.push_str(&sci);
    } else {
        out.push_str(&fixed);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_like_fmt() {
        assert_eq!(fmt_shortest(f64::NAN), "nan");
        assert_eq!(fmt_shortest(0.0), "0");
        assert_eq!(fmt_shortest(1.05), "1.05");
        assert_eq!(fmt_shortest(105.0), "105");
        assert_eq!(fmt_shortest(43.53333333333333), "43.53333333333333");
        assert_eq!(fmt_shortest(1e16), "1e+16");
        assert_eq!(fmt_shortest(1e15), "1000000000000000");
        assert_eq!(fmt_shortest(0.0001), "0.0001");
        assert_eq!(fmt_shortest(0.00001), "1e-05");
    }

    #[test]
    fn printf_g() {
        assert_eq!(fmt_g(0.5, 6), "0.5");
        assert_eq!(fmt_g(1_800_000.0, 6), "1.8e+06");
        assert_eq!(fmt_g(600_000.0, 6), "600000");
        assert_eq!(fmt_g(99.9, 6), "99.9");
        assert_eq!(fmt_g(100.0 * 0.999, 6), "99.9");
        assert_eq!(fmt_g(1_800_000.0, 32), "1800000");
        assert_eq!(
            fmt_g(5099.629474326999, 32),
            "5099.6294743269991158740594983101"
        );
        assert_eq!(fmt_g(0.0, 32), "0");
        assert_eq!(fmt_g(f64::NAN, 32), "nan");
    }

    #[test]
    fn exact_path_matches_slow_path() {
        let mut x = 0.000123456789f64;
        for i in 0..2000 {
            for prec in [6usize, 17, 32] {
                let slow = format!("{:.*e}", prec - 1, x);
                let fast = exact_rounded_digits(x, prec).map(|(d, e)| {
                    let (m, r) = d.split_at(1);
                    if r.is_empty() {
                        format!("{m}e{e}")
                    } else {
                        format!("{m}.{r}e{e}")
                    }
                });
                if let Some(fast) = fast {
                    assert_eq!(fast, slow, "{x} {prec}");
                }
            }
            x = (x * 1.37 + (i as f64) * 0.5) % 1e12;
        }
        assert_eq!(fmt_g(0.125, 2), "0.12");
        assert_eq!(fmt_g(0.375, 2), "0.38");
        assert_eq!(fmt_g(9.99999, 3), "10");
    }

    #[test]
    fn to_chars_shortest() {
        assert_eq!(fmt_to_chars(300_000.0), "3e+05");
        assert_eq!(fmt_to_chars(1_800_000.0), "1800000");
        assert_eq!(fmt_to_chars(60_000.0), "60000");
        assert_eq!(fmt_to_chars(0.5), "0.5");
        assert_eq!(fmt_to_chars(99.5), "99.5");
        assert_eq!(fmt_to_chars(0.0001), "1e-04");
        assert_eq!(fmt_to_chars(43.666666666666664), "43.666666666666664");
    }
}
