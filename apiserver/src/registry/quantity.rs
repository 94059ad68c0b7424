//! Kubernetes resource quantities (`500m`, `2`, `128Mi`, `1e3`, `1.5Gi`) as numbers, to compare
//! them (QoS classes compare requests with limits; `1` and `1000m` are the same CPU), and
//! which strings are quantities at all (kube refuses the others when it decodes the object).

/// kube's message for a string that is not a quantity.
pub const MALFORMED: &str = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// The first of `quantities` that is not a quantity, as kube's decode error.
pub fn malformed<'a>(quantities: impl IntoIterator<Item = &'a String>) -> Option<String> {
    quantities.into_iter().find(|q| value(q).is_none()).map(|_| MALFORMED.to_string())
}

/// The value of a quantity, or None when it is not one.
pub fn value(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
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
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_kubernetes_reads_them() {
        let table = [
            ("1", Some(1.0)),
            ("1000m", Some(1.0)),
            ("0.5", Some(0.5)),
            ("128Mi", Some(134_217_728.0)),
            ("1k", Some(1000.0)),
            ("1e3", Some(1000.0)),
            ("2Gi", Some(2_147_483_648.0)),
            ("x", None),
            ("1Q", None),
            ("1n", Some(1e-9)),
            ("", None),
        ];
        for (q, want) in table {
            assert_eq!(value(q), want, "{q}");
        }
    }
}
