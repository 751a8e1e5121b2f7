//! `spec.schedule` with the semantics of upstream's parser (robfig/cron's ParseStandard):
//! five fields (minute hour day-of-month month day-of-week) of lists, ranges, steps and
//! month/weekday names, the `@yearly` … `@hourly` macros, `@every <duration>`, and an
//! optional `TZ=`/`CRON_TZ=` prefix; evaluated in an IANA time zone (`spec.timeZone`).
//!
//! Day matching follows Vixie cron as upstream does: when day-of-month and day-of-week are
//! both restricted a day matching either runs; when one is `*` the other decides.
//! Daylight-saving transitions: a wall time that does not exist (spring forward) is
//! skipped, a wall time that occurs twice (fall back) runs at both instants.

use std::fmt;

use k8s_openapi::jiff::civil::{Date, DateTime, Time};
use k8s_openapi::jiff::tz::{AmbiguousOffset, TimeZone};
use k8s_openapi::jiff::{SignedDuration, Timestamp, ToSpan};

/// Set in a field parsed from `*` or `?` (without a step above 1).
const STAR: u64 = 1 << 63;
/// The search horizon, as upstream's: no match within five years means never.
const HORIZON_YEARS: i16 = 5;
/// Civil time runs back by at most this much at a transition; the search starts that far
/// before `t` so a repeated hour is not missed.
const MAX_FOLD: SignedDuration = SignedDuration::from_hours(4);

/// A schedule parse error, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

struct Bounds {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Bounds = Bounds {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Bounds = Bounds {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Bounds = Bounds {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    name: "day of week",
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// The five fields as bit sets (bit n = value n), plus [`STAR`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Cron(Fields),
    /// `@every <duration>`: a fixed delay after the previous time (whole seconds).
    Every(SignedDuration),
}

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    kind: Kind,
    tz: TimeZone,
}

fn parse_value(s: &str, b: &Bounds) -> Result<u32, ParseError> {
    if let Some(i) = b.names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(b.min + i as u32);
    }
    s.parse::<u32>()
        .map_err(|_| ParseError(format!("failed to parse int from {s}: invalid {}", b.name)))
}

fn parse_range(expr: &str, b: &Bounds) -> Result<u64, ParseError> {
    let (range, step) = match expr.split_once('/') {
        None => (expr, None),
        Some((r, s)) => {
            if s.contains('/') {
                return Err(ParseError(format!("too many slashes: {expr}")));
            }
            let step = s
                .parse::<u32>()
                .map_err(|_| ParseError(format!("failed to parse int from {s}: invalid step")))?;
            (r, Some(step))
        }
    };
    let (mut start, mut end, mut extra);
    let single = !range.contains('-');
    if range == "*" || range == "?" {
        (start, end, extra) = (b.min, b.max, STAR);
    } else {
        extra = 0;
        let mut parts = range.split('-');
        start = parse_value(parts.next().unwrap_or_default(), b)?;
        end = match parts.next() {
            None => start,
            Some(e) => parse_value(e, b)?,
        };
        if parts.next().is_some() {
            return Err(ParseError(format!("too many hyphens: {expr}")));
        }
    }
    let step = match step {
        None => 1,
        Some(s) => {
            // "N/step" means "N-max/step".
            if single && extra == 0 {
                end = b.max;
            }
            if s > 1 {
                extra = 0;
            }
            s
        }
    };
    if start < b.min {
        return Err(ParseError(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        )));
    }
    if end > b.max {
        return Err(ParseError(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        )));
    }
    if start > end {
        return Err(ParseError(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        )));
    }
    if step == 0 {
        return Err(ParseError(format!(
            "step of range should be a positive number: {expr}"
        )));
    }
    let mut bits = 0u64;
    while start <= end {
        bits |= 1 << start;
        start += step;
    }
    Ok(bits | extra)
}

fn parse_field(field: &str, b: &Bounds) -> Result<u64, ParseError> {
    field
        .split(',')
        .try_fold(0u64, |acc, r| Ok(acc | parse_range(r, b)?))
}

/// Go's time.ParseDuration for the units a schedule would use (h, m, s, ms, us, ns),
/// including fractions and sequences such as `1h30m`.
fn parse_go_duration(s: &str) -> Result<SignedDuration, ParseError> {
    let err = || ParseError(format!("failed to parse duration {s}"));
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(err());
    }
    if rest == "0" {
        return Ok(SignedDuration::ZERO);
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let value: f64 = rest[..n].parse().map_err(|_| err())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..u] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(err()),
        };
        total += value * secs;
        rest = &rest[u..];
    }
    // Past Go's largest duration (int64 nanoseconds, ~292 years) ParseDuration fails; so
    // does this, instead of overflowing.
    if total >= i64::MAX as f64 / 1e9 {
        return Err(err());
    }
    SignedDuration::try_from_secs_f64(total).map_err(|_| err())
}

impl Schedule {
    /// Parses `spec` for evaluation in `tz` (a `TZ=`/`CRON_TZ=` prefix overrides it).
    pub fn parse(spec: &str, tz: TimeZone) -> Result<Schedule, ParseError> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(ParseError("empty spec string".into()));
        }
        let (spec, tz) = match spec.strip_prefix("TZ=").or(spec.strip_prefix("CRON_TZ=")) {
            Some(rest) => {
                let (name, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                let tz = TimeZone::get(name)
                    .map_err(|e| ParseError(format!("provided bad location {name}: {e}")))?;
                (rest.trim(), tz)
            }
            None => (spec, tz),
        };
        if let Some(d) = spec.strip_prefix("@every ") {
            let d = parse_go_duration(d.trim())?;
            if d < SignedDuration::from_secs(1) {
                return Err(ParseError(format!(
                    "@every duration must be at least 1 second: {spec}"
                )));
            }
            return Ok(Schedule {
                kind: Kind::Every(d),
                tz,
            });
        }
        let expanded = match spec {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => {
                return Err(ParseError(format!("unrecognized descriptor: {s}")))
            }
            s => s,
        };
        let f: Vec<&str> = expanded.split_whitespace().collect();
        if f.len() != 5 {
            return Err(ParseError(format!(
                "expected exactly 5 fields, found {}: {spec}",
                f.len()
            )));
        }
        Ok(Schedule {
            kind: Kind::Cron(Fields {
                minute: parse_field(f[0], &MINUTE)?,
                hour: parse_field(f[1], &HOUR)?,
                dom: parse_field(f[2], &DOM)?,
                month: parse_field(f[3], &MONTH)?,
                dow: parse_field(f[4], &DOW)?,
            }),
            tz,
        })
    }

    /// The first scheduled instant strictly after `t` (whole seconds), or `None` when
    /// there is none within five years (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let f = match &self.kind {
            Kind::Every(d) => {
                let secs = Timestamp::from_second(t.as_second()).ok()?;
                let d = SignedDuration::from_secs(d.as_secs());
                return secs.checked_add(d).ok();
            }
            Kind::Cron(f) => *f,
        };
        let wall = self.tz.to_datetime(t);
        let start = wall
            .checked_sub(MAX_FOLD)
            .ok()?
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?;
        let limit = start.checked_add(HORIZON_YEARS.years()).ok()?;
        let mut best: Option<(Timestamp, DateTime)> = None;
        let mut c = start;
        while c < limit {
            if let Some((_, at)) = best {
                if c > at.checked_add(MAX_FOLD).ok()? {
                    break;
                }
            }
            if f.month & (1 << c.month()) == 0 {
                let next = c.date().first_of_month().checked_add(1.month()).ok()?;
                c = next.to_datetime(Time::midnight());
                continue;
            }
            if !day_matches(&f, c.date()) {
                c = c.date().tomorrow().ok()?.to_datetime(Time::midnight());
                continue;
            }
            if f.hour & (1 << c.hour()) == 0 {
                c = c
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if f.minute & (1 << c.minute()) != 0 {
                for at in instants(&self.tz, c) {
                    if at > t && best.is_none_or(|(b, _)| at < b) {
                        best = Some((at, c));
                    }
                }
            }
            c = c.checked_add(1.minute()).ok()?;
        }
        best.map(|(at, _)| at)
    }
}

fn day_matches(f: &Fields, d: Date) -> bool {
    let dom = f.dom & (1 << d.day()) != 0;
    let dow = f.dow & (1 << d.weekday().to_sunday_zero_offset()) != 0;
    if f.dom & STAR != 0 || f.dow & STAR != 0 {
        dom && dow
    } else {
        dom || dow
    }
}

/// The instants at which wall time `dt` occurs in `tz`: none in a gap, two in a fold.
fn instants(tz: &TimeZone, dt: DateTime) -> Vec<Timestamp> {
    let offsets = match tz.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } => vec![offset],
        AmbiguousOffset::Gap { .. } => vec![],
        AmbiguousOffset::Fold { before, after } => vec![before, after],
    };
    offsets
        .into_iter()
        .filter_map(|o| o.to_timestamp(dt).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(spec: &str, tz: &str, after: &str) -> Option<String> {
        let s = Schedule::parse(spec, TimeZone::get(tz).unwrap()).unwrap();
        s.next_after(utc(after)).map(|t| t.to_string())
    }

    #[test]
    fn standard_fields_lists_ranges_steps_and_names() {
        let n = |spec| next(spec, "UTC", "2024-01-01T00:00:00Z");
        assert_eq!(n("* * * * *").as_deref(), Some("2024-01-01T00:01:00Z"));
        assert_eq!(n("*/15 * * * *").as_deref(), Some("2024-01-01T00:15:00Z"));
        assert_eq!(n("5/20 * * * *").as_deref(), Some("2024-01-01T00:05:00Z"));
        assert_eq!(
            n("30 9-17/4 * * *").as_deref(),
            Some("2024-01-01T09:30:00Z")
        );
        assert_eq!(
            n("0 12 * * MON-FRI").as_deref(),
            Some("2024-01-01T12:00:00Z")
        );
        assert_eq!(
            n("0 0 * * sat,sun").as_deref(),
            Some("2024-01-06T00:00:00Z")
        );
        assert_eq!(n("0 0 1 mar *").as_deref(), Some("2024-03-01T00:00:00Z"));
        assert_eq!(n("0 0 29 2 *").as_deref(), Some("2024-02-29T00:00:00Z"));
        assert_eq!(n("0 0 ? * 3").as_deref(), Some("2024-01-03T00:00:00Z"));
        // Never within five years.
        assert_eq!(n("0 0 30 2 *"), None);
    }

    #[test]
    fn strictly_after_and_whole_seconds() {
        assert_eq!(
            next("0 * * * *", "UTC", "2024-01-01T10:00:00Z").as_deref(),
            Some("2024-01-01T11:00:00Z")
        );
        assert_eq!(
            next("0 * * * *", "UTC", "2024-01-01T09:59:59.5Z").as_deref(),
            Some("2024-01-01T10:00:00Z")
        );
    }

    #[test]
    fn macros() {
        let n = |spec| next(spec, "UTC", "2024-05-15T10:20:00Z");
        assert_eq!(n("@yearly").as_deref(), Some("2025-01-01T00:00:00Z"));
        assert_eq!(n("@annually").as_deref(), Some("2025-01-01T00:00:00Z"));
        assert_eq!(n("@monthly").as_deref(), Some("2024-06-01T00:00:00Z"));
        // 2024-05-15 is a Wednesday.
        assert_eq!(n("@weekly").as_deref(), Some("2024-05-19T00:00:00Z"));
        assert_eq!(n("@daily").as_deref(), Some("2024-05-16T00:00:00Z"));
        assert_eq!(n("@midnight").as_deref(), Some("2024-05-16T00:00:00Z"));
        assert_eq!(n("@hourly").as_deref(), Some("2024-05-15T11:00:00Z"));
        assert_eq!(n("@every 90s").as_deref(), Some("2024-05-15T10:21:30Z"));
        assert_eq!(n("@every 1h30m").as_deref(), Some("2024-05-15T11:50:00Z"));
        let too_long = Schedule::parse("@every 99999999999999999999999h", TimeZone::UTC);
        assert!(too_long.unwrap_err().0.contains("failed to parse duration"));
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_restricted() {
        // The 15th or any Friday: Friday 2024-01-05 comes first.
        assert_eq!(
            next("0 0 15 * FRI", "UTC", "2024-01-01T00:00:00Z").as_deref(),
            Some("2024-01-05T00:00:00Z")
        );
        // A star step above 1 is a restriction too.
        assert_eq!(
            next("0 0 */10 * 1", "UTC", "2024-01-02T00:00:00Z").as_deref(),
            Some("2024-01-08T00:00:00Z")
        );
        // With day-of-week `*`, only the 15th.
        assert_eq!(
            next("0 0 15 * *", "UTC", "2024-01-01T00:00:00Z").as_deref(),
            Some("2024-01-15T00:00:00Z")
        );
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        // 09:00 in New York is 14:00Z in winter, 13:00Z in summer.
        assert_eq!(
            next("0 9 * * *", "America/New_York", "2024-01-10T15:00:00Z").as_deref(),
            Some("2024-01-11T14:00:00Z")
        );
        assert_eq!(
            next("0 9 * * *", "America/New_York", "2024-07-10T15:00:00Z").as_deref(),
            Some("2024-07-11T13:00:00Z")
        );
        // 02:30 does not exist on 2024-03-10 in New York: skipped to the next day.
        assert_eq!(
            next("30 2 * * *", "America/New_York", "2024-03-10T05:00:00Z").as_deref(),
            Some("2024-03-11T06:30:00Z")
        );
        // 01:00 happens twice on 2024-11-03 (EDT then EST): both run.
        assert_eq!(
            next("0 1 * * *", "America/New_York", "2024-11-03T04:30:00Z").as_deref(),
            Some("2024-11-03T05:00:00Z")
        );
        assert_eq!(
            next("0 1 * * *", "America/New_York", "2024-11-03T05:00:00Z").as_deref(),
            Some("2024-11-03T06:00:00Z")
        );
        // Every minute inside the repeated hour keeps going minute by minute.
        assert_eq!(
            next("* * * * *", "America/New_York", "2024-11-03T05:50:00Z").as_deref(),
            Some("2024-11-03T05:51:00Z")
        );
        // A TZ= prefix overrides the zone.
        assert_eq!(
            next("TZ=Asia/Tokyo 0 9 * * *", "UTC", "2024-01-01T00:00:00Z").as_deref(),
            Some("2024-01-02T00:00:00Z")
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let e = |spec| {
            Schedule::parse(spec, TimeZone::UTC)
                .unwrap_err()
                .to_string()
        };
        assert!(e("* * * *").contains("expected exactly 5 fields, found 4"));
        assert!(e("60 * * * *").contains("above maximum (59)"));
        assert!(e("* * 0 * *").contains("below minimum (1)"));
        assert!(e("* * * * 7").contains("above maximum (6)"));
        assert!(e("5-1 * * * *").contains("beyond end of range"));
        assert!(e("*/0 * * * *").contains("positive"));
        assert!(e("x * * * *").contains("minute"));
        assert!(e("* * * foo *").contains("month"));
        assert!(e("@fortnightly").contains("unrecognized descriptor"));
        assert!(e("").contains("empty"));
        assert!(e("TZ=Mars/Olympus * * * * *").contains("Mars/Olympus"));
    }
}
