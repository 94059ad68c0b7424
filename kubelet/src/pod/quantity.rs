//! Kubernetes resource quantities (`100m`, `1.5`, `128Mi`, `1G`, `1e3`) as integers: cpu in
//! millicores, memory and storage in bytes. Anything unparseable is `None`, never a panic: a
//! quantity comes from a pod spec.

/// Splits `s` into its number and its suffix.
fn split(s: &str) -> (&str, &str) {
    let s = s.trim();
    let at = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(s.len());
    // `1e3` is a decimal exponent, not a suffix `e3`; `1E` alone is exa.
    (&s[..at], &s[at..])
}

/// The value of `s` times `scale` (so millis come out whole), rounded up as Kubernetes does.
fn scaled(s: &str, scale: f64) -> Option<u64> {
    let (num, suffix) = split(s);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "u" => 1e-6,
        "n" => 1e-9,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().ok()?),
        _ => return None,
    };
    let v = n * mult * scale;
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    Some(v.ceil() as u64)
}

/// A cpu quantity in millicores (`"250m"` → 250, `"2"` → 2000).
pub fn cpu_millis(s: &str) -> Option<u64> {
    scaled(s, 1000.0)
}

/// A memory or storage quantity in bytes (`"128Mi"` → 134217728).
pub fn memory_bytes(s: &str) -> Option<u64> {
    scaled(s, 1.0)
}

/// Bytes as the shortest exact binary quantity (`1073741824` → `"1Gi"`), else plain bytes.
pub fn format_bytes(b: u64) -> String {
    for (suffix, shift) in [("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
        if b != 0 && b.is_multiple_of(1u64 << shift) {
            return format!("{}{suffix}", b >> shift);
        }
    }
    b.to_string()
}

/// Millicores as a quantity (`2000` → `"2"`, `250` → `"250m"`).
pub fn format_millis(m: u64) -> String {
    if m.is_multiple_of(1000) { (m / 1000).to_string() } else { format!("{m}m") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_table() {
        let cpu =
            [("250m", Some(250)), ("2", Some(2000)), ("0.5", Some(500)), ("1e3", Some(1_000_000)), ("x", None), ("-1", None), ("", None)];
        for (s, want) in cpu {
            assert_eq!(cpu_millis(s), want, "{s}");
        }
        let mem = [
            ("128Mi", Some(134_217_728)),
            ("1G", Some(1_000_000_000)),
            ("1Ki", Some(1024)),
            ("100", Some(100)),
            ("1.5Gi", Some(1_610_612_736)),
            ("5Zi", None),
        ];
        for (s, want) in mem {
            assert_eq!(memory_bytes(s), want, "{s}");
        }
        assert_eq!(format_bytes(1 << 30), "1Gi");
        assert_eq!(format_bytes(1000), "1000");
        assert_eq!(format_millis(2000), "2");
        assert_eq!(format_millis(250), "250m");
    }
}
