//! Parsing resource quantities (`500m`, `128Mi`, `1.5G`, `2e3`) into the integers the
//! kubelet computes cgroup values from.

/// Why a quantity string is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {0:?}")]
pub struct QuantityError(pub String);

/// The value of a quantity multiplied by `scale` (1000 for milli-units, 1 for bytes),
/// rounded up as upstream's `MilliValue()`/`Value()` round.
pub fn scaled(q: &str, scale: f64) -> Result<i64, QuantityError> {
    let s = q.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| QuantityError(q.to_string()))?;
    let multiplier = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0_f64.powi(3),
        "Ti" => 1024.0_f64.powi(4),
        "Pi" => 1024.0_f64.powi(5),
        "Ei" => 1024.0_f64.powi(6),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().map_err(|_| QuantityError(q.to_string()))?;
            10f64.powi(exp)
        }
        _ => return Err(QuantityError(q.to_string())),
    };
    Ok((value * multiplier * scale).ceil() as i64)
}

/// CPU in millicores.
pub fn milli_cpu(q: &str) -> Result<i64, QuantityError> {
    scaled(q, 1000.0)
}

/// Bytes (memory, storage).
pub fn bytes(q: &str) -> Result<i64, QuantityError> {
    scaled(q, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_memory() {
        assert_eq!(milli_cpu("500m").unwrap(), 500);
        assert_eq!(milli_cpu("2").unwrap(), 2000);
        assert_eq!(milli_cpu("0.1").unwrap(), 100);
        assert_eq!(bytes("128Mi").unwrap(), 128 << 20);
        assert_eq!(bytes("1G").unwrap(), 1_000_000_000);
        assert_eq!(bytes("2e3").unwrap(), 2000);
        assert_eq!(bytes("1Ki").unwrap(), 1024);
    }

    #[test]
    fn rejects_garbage() {
        assert!(bytes("12Q").is_err());
        assert!(bytes("abc").is_err());
    }
}
