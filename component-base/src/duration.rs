//! Go-style durations (`1m30s`, `10s`, `500ms`), as flags and component-config files write
//! them (metav1.Duration).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A duration written the way Go's `time.ParseDuration` reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    /// A duration of whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        GoDuration(Duration::from_secs(secs))
    }
}

impl From<GoDuration> for Duration {
    fn from(d: GoDuration) -> Duration {
        d.0
    }
}

/// Go's largest duration (`math.MaxInt64` nanoseconds), in seconds.
const MAX_SECONDS: f64 = i64::MAX as f64 / 1e9;

/// Why a string is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

impl FromStr for GoDuration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| DurationError {
            input: input.to_string(),
            reason,
        };
        let s = input.trim();
        if s == "0" {
            return Ok(GoDuration(Duration::ZERO));
        }
        if s.starts_with('-') {
            return Err(err("negative durations are not allowed here"));
        }
        let s = s.strip_prefix('+').unwrap_or(s);
        if s.is_empty() {
            return Err(err("empty"));
        }
        let mut total = 0f64;
        let mut rest = s;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| err("missing unit (one of ns, us, ms, s, m, h)"))?;
            if num_len == 0 {
                return Err(err("expected a number"));
            }
            let value: f64 = rest[..num_len].parse().map_err(|_| err("bad number"))?;
            rest = &rest[num_len..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let scale = match &rest[..unit_len] {
                "ns" => 1e-9,
                "us" | "µs" | "μs" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return Err(err("unknown unit (one of ns, us, ms, s, m, h)")),
            };
            total += value * scale;
            rest = &rest[unit_len..];
        }
        // Go's durations stop at ~292 years (int64 nanoseconds); past that, or past what a
        // Duration holds, the value is out of range rather than a panic.
        if total >= MAX_SECONDS {
            return Err(err("out of range (at most 2562047h47m16.854775807s)"));
        }
        Duration::try_from_secs_f64(total)
            .map(GoDuration)
            .map_err(|_| err("out of range"))
    }
}

impl fmt::Display for GoDuration {
    /// Formats as Go's `Duration.String()` does for whole units: `1h2m3s`, `1.5s`, `10ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        if d < Duration::from_secs(1) {
            let nanos = d.as_nanos();
            return if nanos.is_multiple_of(1_000_000) {
                write!(f, "{}ms", nanos / 1_000_000)
            } else if nanos.is_multiple_of(1_000) {
                write!(f, "{}µs", nanos / 1_000)
            } else {
                write!(f, "{nanos}ns")
            };
        }
        let secs = d.as_secs();
        let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if h > 0 || m > 0 {
            write!(f, "{m}m")?;
        }
        let frac = d.subsec_nanos();
        if frac == 0 {
            write!(f, "{s}s")
        } else {
            let frac = format!("{:09}", frac);
            write!(f, "{s}.{}s", frac.trim_end_matches('0'))
        }
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_forms() {
        let p = |s: &str| s.parse::<GoDuration>().unwrap().0;
        assert_eq!(p("15s"), Duration::from_secs(15));
        assert_eq!(p("1m30s"), Duration::from_secs(90));
        assert_eq!(p("1h"), Duration::from_secs(3600));
        assert_eq!(p("500ms"), Duration::from_millis(500));
        assert_eq!(p("1.5s"), Duration::from_millis(1500));
        assert_eq!(p("0"), Duration::ZERO);
    }

    #[test]
    fn rejects_bad_forms_with_a_reason() {
        for bad in ["", "15", "15x", "-1s", "s"] {
            let err = bad.parse::<GoDuration>().unwrap_err();
            assert!(err.to_string().contains("invalid duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn too_long_is_out_of_range_not_a_panic() {
        let err = "99999999999999999999999h"
            .parse::<GoDuration>()
            .unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
        assert!("2562048h".parse::<GoDuration>().is_err());
        assert!("2562047h".parse::<GoDuration>().is_ok());
    }

    #[test]
    fn displays_as_go_does() {
        let d = |s| GoDuration(s).to_string();
        assert_eq!(d(Duration::from_secs(15)), "15s");
        assert_eq!(d(Duration::from_secs(90)), "1m30s");
        assert_eq!(d(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(d(Duration::from_millis(100)), "100ms");
        assert_eq!(d(Duration::from_millis(1500)), "1.5s");
    }
}
