//! Kubernetes resource quantities (`100m`, `1.5`, `512Mi`, `1e3`, `2k`) as integers: CPU in
//! millicores, everything else in units, both rounded *up* as apimachinery's `MilliValue()` and
//! `Value()` do.
//!
//! Invariants: parsing is exact (integer arithmetic on the written digits, no floats); a value
//! that does not fit in an `i64` saturates; negative quantities and anything not in the
//! grammar `<sign><digits>[.<digits>][<suffix>]` are errors, never panics.

use std::fmt;

/// Why a quantity string is not a quantity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadQuantity {
    /// The text as written.
    pub text: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl fmt::Display for BadQuantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "quantity {:?}: {}", self.text, self.why)
    }
}

/// apimachinery's `ErrFormatWrong`, the message the apiserver gives for a malformed quantity.
pub const FORMAT: &str = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

enum Scale {
    /// × 10^n.
    Ten(i32),
    /// × 2^n.
    Two(u32),
}

fn suffix(s: &str) -> Option<Scale> {
    Some(match s {
        "" => Scale::Ten(0),
        "n" => Scale::Ten(-9),
        "u" => Scale::Ten(-6),
        "m" => Scale::Ten(-3),
        "k" => Scale::Ten(3),
        "M" => Scale::Ten(6),
        "G" => Scale::Ten(9),
        "T" => Scale::Ten(12),
        "P" => Scale::Ten(15),
        "E" => Scale::Ten(18),
        "Ki" => Scale::Two(10),
        "Mi" => Scale::Two(20),
        "Gi" => Scale::Two(30),
        "Ti" => Scale::Two(40),
        "Pi" => Scale::Two(50),
        "Ei" => Scale::Two(60),
        _ => {
            let exp = s.strip_prefix(['e', 'E'])?;
            Scale::Ten(exp.parse::<i32>().ok().filter(|e| e.abs() <= 60)?)
        }
    })
}

/// Parses `text` and returns its value × `multiplier` (1 for `Value()`, 1000 for
/// `MilliValue()`), rounded up.
fn scaled(text: &str, multiplier: i128) -> Result<i64, BadQuantity> {
    let bad = |why| BadQuantity { text: text.to_string(), why };
    let wrong = || BadQuantity { text: text.to_string(), why: FORMAT };
    let t = text.trim();
    let (negative, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let end = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(end);
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err(wrong());
    }
    if frac.contains('.') {
        return Err(wrong());
    }
    let scale = suffix(unit).ok_or_else(wrong)?;
    // Keep at most 30 significant digits: i128 holds 38, the multipliers need the rest.
    let digits: String = whole.chars().chain(frac.chars()).collect();
    let digits = digits.trim_start_matches('0');
    let frac_len = frac.len() as i32;
    if digits.len() > 30 {
        return Err(wrong());
    }
    let mantissa: i128 = if digits.is_empty() { 0 } else { digits.parse().map_err(|_| wrong())? };
    if negative && mantissa != 0 {
        return Err(bad("must be greater than or equal to 0"));
    }
    // value = mantissa × 10^-frac_len × scale × multiplier, as num / den.
    let (mut num, mut den) = (mantissa.saturating_mul(multiplier), 1i128);
    let mut ten = -frac_len;
    match scale {
        Scale::Ten(e) => ten += e,
        Scale::Two(e) => num = num.saturating_mul(1i128 << e),
    }
    if ten >= 0 {
        for _ in 0..ten {
            num = num.saturating_mul(10);
        }
    } else {
        for _ in 0..(-ten) {
            den = den.saturating_mul(10);
        }
    }
    let value = if num % den == 0 { num / den } else { num / den + 1 };
    Ok(i64::try_from(value).unwrap_or(i64::MAX))
}

/// `Value()`: the quantity in whole units, rounded up (`1.5` → 2, `100m` → 1, `1Ki` → 1024).
pub fn value(text: &str) -> Result<i64, BadQuantity> {
    scaled(text, 1)
}

/// `MilliValue()`: the quantity in thousandths, rounded up (`0.1` → 100, `1` → 1000,
/// `1n` → 1).
pub fn milli_value(text: &str) -> Result<i64, BadQuantity> {
    scaled(text, 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_as_apimachinery_rounds_them() {
        let table: &[(&str, i64, i64)] = &[
            // text, Value(), MilliValue()
            ("0", 0, 0),
            ("1", 1, 1000),
            ("100m", 1, 100),
            ("0.1", 1, 100),
            (".5", 1, 500),
            ("1.5", 2, 1500),
            ("250m", 1, 250),
            ("1n", 1, 1),
            ("1u", 1, 1),
            ("2k", 2000, 2_000_000),
            ("1Ki", 1024, 1_024_000),
            ("200Mi", 200 * 1024 * 1024, 200 * 1024 * 1024 * 1000),
            ("1Gi", 1 << 30, (1i64 << 30) * 1000),
            ("1.5Gi", 3 << 29, (3i64 << 29) * 1000),
            ("1e3", 1000, 1_000_000),
            ("1E-3", 1, 1),
            ("128974848", 128_974_848, 128_974_848_000),
            ("129e6", 129_000_000, 129_000_000_000),
            ("123Mi", 128_974_848, 128_974_848_000),
            ("+4", 4, 4000),
            ("-0", 0, 0),
            ("8Ei", i64::MAX, i64::MAX),
        ];
        for (text, v, m) in table {
            assert_eq!(value(text), Ok(*v), "Value({text})");
            assert_eq!(milli_value(text), Ok(*m), "MilliValue({text})");
        }
    }

    #[test]
    fn malformed_quantities_are_errors() {
        for text in ["", "abc", "1.2.3", "1Qi", "--1", "-1", "-100m", "1e", "m", "1 Gi", "1e999"] {
            assert!(value(text).is_err(), "{text:?} should not parse");
        }
        assert_eq!(value("-1").map_err(|e| e.why), Err("must be greater than or equal to 0"));
    }
}
