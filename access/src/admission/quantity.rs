//! Kubernetes resource quantities (`resource.Quantity`): parsing `100m`, `1.5Gi`, `2e3`, exact
//! arithmetic, comparison and kube's canonical form, which admission messages print
//! (`maximum cpu usage per Container is 1, but limit is 1500m`).
//!
//! Invariants (kube's): values are exact to 10^-9 (nano) and anything finer is rounded up, away
//! from zero; magnitudes are capped at 2^63-1; `value()`/`milli_value()` round up; the canonical
//! form keeps the parsed suffix family (binary `Ki..Ei`, decimal `n..E`, or `eN`) with the
//! largest exponent that keeps the mantissa an integer, and binary values below 1024 or not
//! whole print as decimal.

use std::cmp::Ordering;
use std::fmt;

const NANO: i128 = 1_000_000_000;
const MAX_UNITS: i128 = i64::MAX as i128;

/// How a quantity prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `Ki`, `Mi`, … (powers of 1024).
    BinarySI,
    /// `m`, `k`, `M`, … (powers of 1000).
    DecimalSI,
    /// `e3`, `e-6`, ….
    DecimalExponent,
}

/// A resource quantity.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Quantity) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Quantity) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Quantity) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

fn div_away_from_zero(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d != 0 { q + n.signum() } else { q }
}

impl Quantity {
    /// Zero, decimal.
    pub const ZERO: Quantity = Quantity { nanos: 0, format: Format::DecimalSI };

    /// `v` whole units, decimal (kube's `NewQuantity(v, DecimalSI)`).
    pub fn from_units(v: i64) -> Quantity {
        Quantity { nanos: v as i128 * NANO, format: Format::DecimalSI }
    }

    /// `v` thousandths, decimal (kube's `NewMilliQuantity(v, DecimalSI)`).
    pub fn from_millis(v: i64) -> Quantity {
        Quantity { nanos: v as i128 * 1_000_000, format: Format::DecimalSI }
    }

    /// Parses a quantity as kube's `ParseQuantity`.
    pub fn parse(s: &str) -> Result<Quantity, String> {
        let err = || format!("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {s:?}");
        let s = s.trim();
        let b = s.as_bytes();
        let mut i = 0;
        let negative = match b.first() {
            Some(b'-') => {
                i = 1;
                true
            }
            Some(b'+') => {
                i = 1;
                false
            }
            _ => false,
        };
        let num_start = i;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
            i += 1;
        }
        let number = &s[num_start..i];
        let suffix = &s[i..];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(err());
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        let digits: String = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 36 {
            return Err(err());
        }
        let mantissa: i128 = if digits.is_empty() { 0 } else { digits.parse().map_err(|_| err())? };
        let frac_len = frac_part.len() as i32;
        let (base2, exp, format) = match suffix {
            "" => (false, 0, Format::DecimalSI),
            "n" => (false, -9, Format::DecimalSI),
            "u" => (false, -6, Format::DecimalSI),
            "m" => (false, -3, Format::DecimalSI),
            "k" => (false, 3, Format::DecimalSI),
            "M" => (false, 6, Format::DecimalSI),
            "G" => (false, 9, Format::DecimalSI),
            "T" => (false, 12, Format::DecimalSI),
            "P" => (false, 15, Format::DecimalSI),
            "E" => (false, 18, Format::DecimalSI),
            "Ki" => (true, 10, Format::BinarySI),
            "Mi" => (true, 20, Format::BinarySI),
            "Gi" => (true, 30, Format::BinarySI),
            "Ti" => (true, 40, Format::BinarySI),
            "Pi" => (true, 50, Format::BinarySI),
            "Ei" => (true, 60, Format::BinarySI),
            other if other.starts_with(['e', 'E']) => {
                let e: i32 = other[1..].parse().map_err(|_| err())?;
                (false, e, Format::DecimalExponent)
            }
            _ => return Err(err()),
        };
        // mantissa * 10^-frac_len * (2^exp or 10^exp), in nanos, rounded up.
        let mut nanos = if base2 {
            let scaled = mantissa.checked_mul(1i128 << exp).ok_or_else(err)?;
            let shift = 9 - frac_len;
            if shift >= 0 {
                scaled.checked_mul(10i128.pow(shift as u32)).ok_or_else(err)?
            } else {
                div_away_from_zero(scaled, 10i128.pow((-shift) as u32))
            }
        } else {
            let shift = 9 + exp - frac_len;
            if shift >= 0 {
                if shift > 38 {
                    if mantissa == 0 { 0 } else { MAX_UNITS * NANO }
                } else {
                    mantissa.checked_mul(10i128.pow(shift as u32)).unwrap_or(MAX_UNITS * NANO)
                }
            } else if -shift > 38 {
                i128::from(mantissa != 0)
            } else {
                div_away_from_zero(mantissa, 10i128.pow((-shift) as u32))
            }
        };
        nanos = nanos.min(MAX_UNITS * NANO);
        let format = if format == Format::BinarySI && nanos > 0 && nanos < NANO { Format::DecimalSI } else { format };
        Ok(Quantity { nanos: if negative { -nanos } else { nanos }, format })
    }

    /// The quantity in whole units, rounded up (kube's `Value()`).
    pub fn value(&self) -> i64 {
        div_away_from_zero(self.nanos, NANO) as i64
    }

    /// The quantity in thousandths, rounded up (kube's `MilliValue()`).
    pub fn milli_value(&self) -> i64 {
        div_away_from_zero(self.nanos, 1_000_000) as i64
    }

    /// Whether it is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// The printing format.
    pub fn format(&self) -> Format {
        self.format
    }
}

impl std::ops::Add for Quantity {
    type Output = Quantity;
    /// The sum, keeping the left side's format (kube's `Add`).
    fn add(self, other: Quantity) -> Quantity {
        Quantity { nanos: self.nanos.saturating_add(other.nanos), format: self.format }
    }
}

impl std::ops::Sub for Quantity {
    type Output = Quantity;
    /// The difference, keeping the left side's format (kube's `Sub`).
    fn sub(self, other: Quantity) -> Quantity {
        Quantity { nanos: self.nanos.saturating_sub(other.nanos), format: self.format }
    }
}

impl fmt::Display for Quantity {
    /// kube's canonical form (`Quantity.String()`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let mut format = self.format;
        if format == Format::BinarySI && (self.nanos.abs() < 1024 * NANO || self.nanos % NANO != 0) {
            format = Format::DecimalSI;
        }
        if format == Format::BinarySI {
            let mut m = self.nanos / NANO;
            let mut e = 0;
            while e < 60 && m % 1024 == 0 {
                m /= 1024;
                e += 10;
            }
            let suffix = match e {
                10 => "Ki",
                20 => "Mi",
                30 => "Gi",
                40 => "Ti",
                50 => "Pi",
                60 => "Ei",
                _ => "",
            };
            return write!(f, "{m}{suffix}");
        }
        let mut m = self.nanos;
        let mut e: i32 = -9;
        while m % 10 == 0 {
            m /= 10;
            e += 1;
        }
        match e % 3 {
            1 | -2 => {
                m *= 10;
                e -= 1;
            }
            2 | -1 => {
                m *= 100;
                e -= 2;
            }
            _ => {}
        }
        if format == Format::DecimalExponent {
            return if e == 0 { write!(f, "{m}") } else { write!(f, "{m}e{e}") };
        }
        let suffix = match e {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            0 => "",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => return write!(f, "{m}e{e}"),
        };
        write!(f, "{m}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn canonical_forms_match_kube() {
        // From kube's quantity_test.go TestQuantityParse / canonical strings.
        let cases = [
            ("0", "0"),
            ("0n", "0"),
            ("0Ki", "0"),
            ("1", "1"),
            ("1000m", "1"),
            ("1500m", "1500m"),
            ("0.5", "500m"),
            ("1.5", "1500m"),
            ("100m", "100m"),
            ("1k", "1k"),
            ("1000", "1k"),
            ("1200", "1200"),
            ("12000", "12k"),
            ("100", "100"),
            ("1M", "1M"),
            ("1Ki", "1Ki"),
            ("1024", "1024"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("1.5Gi", "1536Mi"),
            ("0.5Ki", "512"),
            ("1023Ki", "1023Ki"),
            ("1e3", "1e3"),
            ("1E3", "1e3"),
            ("1e-3", "1e-3"),
            ("1000e-3", "1"),
            ("1n", "1n"),
            ("0.1n", "1n"),
            ("1u", "1u"),
            ("-1", "-1"),
            ("-500m", "-500m"),
            ("+2", "2"),
            (".5", "500m"),
            ("5.", "5"),
        ];
        for (input, want) in cases {
            assert_eq!(q(input).to_string(), want, "{input}");
        }
    }

    #[test]
    fn values_round_up() {
        assert_eq!(q("1500m").value(), 2);
        assert_eq!(q("1500m").milli_value(), 1500);
        assert_eq!(q("1n").milli_value(), 1);
        assert_eq!(q("1Gi").value(), 1 << 30);
        assert_eq!(q("-1500m").value(), -2);
        assert!(q("1") > q("999m"));
        assert_eq!(q("1"), q("1000m"));
        assert_eq!((q("100Mi") + q("100Mi")).to_string(), "200Mi");
        assert_eq!((q("1") + q("500m")).to_string(), "1500m");
    }

    #[test]
    fn bad_quantities_are_refused() {
        for bad in ["", "abc", "1.2.3", "1Qi", "1ki", "e3", ".", "1e", "--1", "1 Gi"] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(q("100E").value(), i64::MAX, "capped at 2^63-1");
    }
}
