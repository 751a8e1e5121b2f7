//! Container logs as `kubectl logs` reads them: CRI log files (`<time> <stream> <P|F>
//! <content>` lines under /var/log/pods) parsed and filtered by upstream's options —
//! follow, tailLines, timestamps, sinceSeconds/sinceTime, limitBytes, previous.

use chrono::{DateTime, FixedOffset, Utc};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Which stream to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamFilter {
    /// Both.
    #[default]
    All,
    /// stdout only.
    Stdout,
    /// stderr only.
    Stderr,
}

/// `PodLogOptions` as the kubelet receives them in the query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogOptions {
    /// `follow`.
    pub follow: bool,
    /// `tailLines`.
    pub tail_lines: Option<u64>,
    /// `timestamps`.
    pub timestamps: bool,
    /// `sinceSeconds` / `sinceTime`, resolved to an instant.
    pub since: Option<DateTime<Utc>>,
    /// `limitBytes`.
    pub limit_bytes: Option<u64>,
    /// `previous`.
    pub previous: bool,
    /// `stream`.
    pub stream: StreamFilter,
}

fn truthy(v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" | "True" | "TRUE" => Ok(true),
        "false" | "0" | "False" | "FALSE" | "" => Ok(false),
        _ => Err(format!("invalid boolean value {v:?}")),
    }
}

impl LogOptions {
    /// Parses the query, naming the parameter in errors.
    pub fn from_query(
        q: &HashMap<String, String>,
        now: DateTime<Utc>,
    ) -> Result<LogOptions, String> {
        let b = |k: &str| {
            q.get(k)
                .map(|v| truthy(v).map_err(|e| format!("{k}: {e}")))
                .transpose()
        };
        let n = |k: &str| {
            q.get(k)
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|_| format!("{k}: invalid integer {v:?}"))
                })
                .transpose()
        };
        let tail = n("tailLines")?;
        if tail.is_some_and(|t| t < 0) {
            return Err("tailLines: must be greater than or equal to 0".into());
        }
        let limit = n("limitBytes")?;
        if limit.is_some_and(|l| l < 1) {
            return Err("limitBytes: must be greater than 0".into());
        }
        let since_seconds = n("sinceSeconds")?;
        if since_seconds.is_some_and(|s| s < 1) {
            return Err("sinceSeconds: must be greater than 0".into());
        }
        let since_time = q
            .get("sinceTime")
            .map(|t| {
                DateTime::parse_from_rfc3339(t)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| format!("sinceTime: invalid RFC3339 time {t:?}"))
            })
            .transpose()?;
        if since_seconds.is_some() && since_time.is_some() {
            return Err("at most one of sinceTime or sinceSeconds may be specified".into());
        }
        let stream = match q.get("stream").map(String::as_str) {
            None | Some("All") | Some("") => StreamFilter::All,
            Some("Stdout") => StreamFilter::Stdout,
            Some("Stderr") => StreamFilter::Stderr,
            Some(s) => return Err(format!("stream: invalid value {s:?}")),
        };
        Ok(LogOptions {
            follow: b("follow")?.unwrap_or(false),
            tail_lines: tail.map(|t| t as u64),
            timestamps: b("timestamps")?.unwrap_or(false),
            // A sinceSeconds reaching back past chrono's range means every line.
            since: since_time.or(since_seconds.and_then(|s| {
                chrono::Duration::try_seconds(s).and_then(|d| now.checked_sub_signed(d))
            })),
            limit_bytes: limit.map(|l| l as u64),
            previous: b("previous")?.unwrap_or(false),
            stream,
        })
    }
}

/// One line of a CRI log file.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// When the runtime read it.
    pub time: DateTime<FixedOffset>,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// `P`: more of this line follows in the next entry.
    pub partial: bool,
    /// The content, without the trailing newline.
    pub content: Vec<u8>,
}

/// Parses one CRI log line (without its newline).
pub fn parse_line(line: &[u8]) -> Result<LogEntry, String> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = parts.next().ok_or("empty log line")?;
    let time = std::str::from_utf8(time)
        .ok()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .ok_or_else(|| {
            format!(
                "invalid timestamp in log line {:?}",
                String::from_utf8_lossy(line)
            )
        })?;
    let stream = parts.next().ok_or("log line without stream")?;
    let stream = match stream {
        b"stdout" | b"stderr" => String::from_utf8_lossy(stream).into_owned(),
        _ => {
            return Err(format!(
                "unexpected stream type {:?}",
                String::from_utf8_lossy(stream)
            ))
        }
    };
    let tag = parts.next().ok_or("log line without tag")?;
    let partial = tag.split(|b| *b == b':').any(|t| t == b"P");
    let content = parts.next().unwrap_or_default().to_vec();
    Ok(LogEntry {
        time,
        stream,
        partial,
        content,
    })
}

/// Shapes entries into what the client receives, enforcing limitBytes.
#[derive(Debug)]
pub struct Formatter {
    opts: LogOptions,
    remaining: Option<u64>,
}

impl Formatter {
    /// A formatter for `opts`.
    pub fn new(opts: LogOptions) -> Self {
        let remaining = opts.limit_bytes;
        Formatter { opts, remaining }
    }

    /// Whether limitBytes has been reached.
    pub fn done(&self) -> bool {
        self.remaining == Some(0)
    }

    /// The bytes to send for `e` (empty when filtered out).
    pub fn format(&mut self, e: &LogEntry) -> Vec<u8> {
        let wanted = match self.opts.stream {
            StreamFilter::All => true,
            StreamFilter::Stdout => e.stream == "stdout",
            StreamFilter::Stderr => e.stream == "stderr",
        };
        if !wanted || self.opts.since.is_some_and(|s| e.time < s) || self.done() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(e.content.len() + 40);
        if self.opts.timestamps {
            out.extend_from_slice(
                e.time
                    .with_timezone(&Utc)
                    .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                    .as_bytes(),
            );
            out.push(b' ');
        }
        out.extend_from_slice(&e.content);
        if !e.partial {
            out.push(b'\n');
        }
        if let Some(r) = self.remaining.as_mut() {
            out.truncate(*r as usize);
            *r -= out.len() as u64;
        }
        out
    }
}

/// The byte offset where the last `n` lines of `file` start (upstream counts raw lines).
pub fn tail_offset(file: &Path, n: u64) -> std::io::Result<u64> {
    let mut f = std::fs::File::open(file)?;
    let len = f.metadata()?.len();
    if n == 0 {
        return Ok(len);
    }
    const BLOCK: u64 = 4096;
    let mut pos = len;
    let mut seen = 0u64;
    let mut buf = vec![0u8; BLOCK as usize];
    // A final newline ends the last line rather than starting an empty one.
    let mut skip_last_newline = true;
    while pos > 0 {
        let size = BLOCK.min(pos);
        pos -= size;
        f.seek(SeekFrom::Start(pos))?;
        f.read_exact(&mut buf[..size as usize])?;
        for i in (0..size as usize).rev() {
            if buf[i] != b'\n' {
                skip_last_newline = false;
                continue;
            }
            if skip_last_newline {
                skip_last_newline = false;
                continue;
            }
            seen += 1;
            if seen == n {
                return Ok(pos + i as u64 + 1);
            }
        }
    }
    Ok(0)
}

/// Renders a whole log file (not following), for tests and one-shot reads.
pub fn render(file: &Path, opts: &LogOptions) -> std::io::Result<Vec<u8>> {
    let start = match opts.tail_lines {
        Some(n) => tail_offset(file, n)?,
        None => 0,
    };
    let mut data = Vec::new();
    let mut f = std::fs::File::open(file)?;
    f.seek(SeekFrom::Start(start))?;
    f.read_to_end(&mut data)?;
    let mut fmt = Formatter::new(opts.clone());
    let mut out = Vec::new();
    for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match parse_line(line) {
            Ok(e) => out.extend(fmt.format(&e)),
            Err(e) => tracing::debug!(error = %e, "Skipping a malformed log line"),
        }
        if fmt.done() {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2024-01-01T00:00:01.000000001Z stdout F one\n\
2024-01-01T00:00:02Z stderr F two\n\
2024-01-01T00:00:03Z stdout P thr\n\
2024-01-01T00:00:03.5Z stdout F ee\n\
2024-01-01T00:00:04Z stdout F four\n";

    fn file(content: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, content.as_bytes()).unwrap();
        f
    }

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn now() -> DateTime<Utc> {
        "2024-01-01T00:00:05Z".parse().unwrap()
    }

    #[test]
    fn parses_cri_lines() {
        let e = parse_line(b"2024-01-01T00:00:03Z stdout P thr ee").unwrap();
        assert!(e.partial);
        assert_eq!(e.stream, "stdout");
        assert_eq!(e.content, b"thr ee");
        let e = parse_line(b"2024-01-01T00:00:03Z stderr F").unwrap();
        assert!(e.content.is_empty() && !e.partial);
        assert!(parse_line(b"garbage stdout F x").is_err());
        assert!(parse_line(b"2024-01-01T00:00:03Z stdin F x").is_err());
    }

    #[test]
    fn whole_log_joins_partial_lines() {
        let f = file(LOG);
        let out = render(f.path(), &LogOptions::default()).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "one\ntwo\nthree\nfour\n");
    }

    #[test]
    fn tail_lines_counts_from_the_end() {
        let f = file(LOG);
        let opts = LogOptions::from_query(&q(&[("tailLines", "2")]), now()).unwrap();
        assert_eq!(render(f.path(), &opts).unwrap(), b"ee\nfour\n");
        let opts = LogOptions::from_query(&q(&[("tailLines", "0")]), now()).unwrap();
        assert!(render(f.path(), &opts).unwrap().is_empty());
        let opts = LogOptions::from_query(&q(&[("tailLines", "99")]), now()).unwrap();
        assert_eq!(render(f.path(), &opts).unwrap(), b"one\ntwo\nthree\nfour\n");
        // Over a block boundary.
        let big: String = (0..2000)
            .map(|i| format!("2024-01-01T00:00:01Z stdout F line{i}\n"))
            .collect();
        let f = file(&big);
        let opts = LogOptions::from_query(&q(&[("tailLines", "3")]), now()).unwrap();
        assert_eq!(
            render(f.path(), &opts).unwrap(),
            b"line1997\nline1998\nline1999\n"
        );
    }

    #[test]
    fn since_seconds_past_the_calendar_means_every_line() {
        for huge in ["9223372036854775807", "9223372036854"] {
            let opts = LogOptions::from_query(&q(&[("sinceSeconds", huge)]), now()).unwrap();
            assert_eq!(opts.since, None, "{huge}");
        }
    }

    #[test]
    fn timestamps_since_and_limit() {
        let f = file(LOG);
        let opts =
            LogOptions::from_query(&q(&[("timestamps", "true"), ("sinceSeconds", "2")]), now())
                .unwrap();
        let out = String::from_utf8(render(f.path(), &opts).unwrap()).unwrap();
        assert_eq!(
            out,
            "2024-01-01T00:00:03.000000000Z thr2024-01-01T00:00:03.500000000Z ee\n2024-01-01T00:00:04.000000000Z four\n",
            "entries at or after since, each with its own timestamp (partial ones too)"
        );
        let opts = LogOptions::from_query(&q(&[("limitBytes", "6")]), now()).unwrap();
        assert_eq!(render(f.path(), &opts).unwrap(), b"one\ntw");
        let opts = LogOptions::from_query(&q(&[("stream", "Stderr")]), now()).unwrap();
        assert_eq!(render(f.path(), &opts).unwrap(), b"two\n");
    }

    #[test]
    fn bad_options_name_the_parameter() {
        for (k, v) in [
            ("tailLines", "-1"),
            ("limitBytes", "0"),
            ("follow", "yes"),
            ("sinceTime", "yesterday"),
        ] {
            let e = LogOptions::from_query(&q(&[(k, v)]), now()).unwrap_err();
            assert!(e.contains(k), "{e}");
        }
        let e = LogOptions::from_query(
            &q(&[("sinceSeconds", "1"), ("sinceTime", "2024-01-01T00:00:00Z")]),
            now(),
        )
        .unwrap_err();
        assert!(e.contains("at most one"), "{e}");
    }
}
