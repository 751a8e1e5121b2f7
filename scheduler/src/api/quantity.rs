//! Parsing of `resource.Quantity` strings into integers, as the scheduler needs them:
//! milli-units for CPU, whole units (rounded up) for everything else.

/// Parses a Kubernetes quantity and returns its value multiplied by 1000, rounded up.
/// Returns `None` for malformed input.
pub fn parse_milli(q: &str) -> Option<i64> {
    let (num, scale) = split(q.trim())?;
    let value: f64 = num.parse().ok()?;
    Some((value * scale * 1000.0).ceil() as i64)
}

/// Parses a Kubernetes quantity and returns its integer value, rounded up (as `Quantity.Value()`).
pub fn parse_value(q: &str) -> Option<i64> {
    let (num, scale) = split(q.trim())?;
    // Integers with binary/decimal suffixes are exact in i128; fall back to f64 for fractions.
    if let Ok(int) = num.parse::<i128>() {
        if scale >= 1.0 {
            let v = int.checked_mul(scale as i128)?;
            return i64::try_from(v).ok();
        }
    }
    let value: f64 = num.parse().ok()?;
    Some((value * scale).ceil() as i64)
}

/// Splits a quantity into its numeric part and the multiplier of its suffix.
fn split(q: &str) -> Option<(&str, f64)> {
    if q.is_empty() {
        return None;
    }
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (suffix, mult) in SUFFIXES {
        if let Some(num) = q.strip_suffix(suffix) {
            return Some((num, *mult));
        }
    }
    // Decimal exponent form, e.g. 1e3 / 1E3.
    if let Some(pos) = q.find(['e', 'E']) {
        let exp: i32 = q[pos + 1..].parse().ok()?;
        return Some((&q[..pos], 10f64.powi(exp)));
    }
    Some((q, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_in_milli() {
        assert_eq!(parse_milli("100m"), Some(100));
        assert_eq!(parse_milli("1"), Some(1000));
        assert_eq!(parse_milli("0.5"), Some(500));
        assert_eq!(parse_milli("2.25"), Some(2250));
        assert_eq!(parse_milli("1u"), Some(1));
    }

    #[test]
    fn memory_values() {
        assert_eq!(parse_value("128Mi"), Some(134_217_728));
        assert_eq!(parse_value("1G"), Some(1_000_000_000));
        assert_eq!(parse_value("1.5Gi"), Some(1_610_612_736));
        assert_eq!(parse_value("110"), Some(110));
        assert_eq!(parse_value("1e3"), Some(1000));
        assert_eq!(parse_value("500m"), Some(1));
        assert_eq!(parse_value("abc"), None);
    }
}
