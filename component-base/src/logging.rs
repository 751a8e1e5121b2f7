//! Logging as upstream's components log: klog's text format by default
//! (`I1124 14:40:47.123456   4242 target] "message" key="value"`), `--logging-format=json`
//! for structured lines, and `-v N` verbosity.

use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The log line format, as `--logging-format` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// klog's text format.
    #[default]
    Text,
    /// One JSON object a line, as upstream's json logger.
    Json,
}

/// The maximum tracing level that klog verbosity `v` lets through: 0–1 info, 2–4 debug,
/// 5 and more trace.
pub fn level_for_verbosity(v: u8) -> Level {
    match v {
        0 | 1 => Level::INFO,
        2..=4 => Level::DEBUG,
        _ => Level::TRACE,
    }
}

/// Installs the global subscriber. `RUST_LOG`, when set, refines the filter further.
pub fn init(format: LogFormat, verbosity: u8) {
    let level = level_for_verbosity(verbosity);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{level},h2=warn,hyper=warn,hyper_util=warn,tower=warn,rustls=warn,kube_client=warn,kube_runtime=warn"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.event_format(KlogFormat).try_init(),
        LogFormat::Json => builder.event_format(JsonFormat).try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}

fn severity(level: &Level) -> char {
    match *level {
        Level::ERROR => 'E',
        Level::WARN => 'W',
        _ => 'I',
    }
}

/// klog's header and key/value layout.
pub struct KlogFormat;

impl<S, N> FormatEvent<S, N> for KlogFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let now = chrono::Utc::now();
        let mut fields = KeyValues::default();
        event.record(&mut fields);
        write!(
            w,
            "{}{} {:>7} {}:{}] {:?}",
            severity(meta.level()),
            now.format("%m%d %H:%M:%S%.6f"),
            std::process::id(),
            meta.file()
                .and_then(|f| f.rsplit('/').next())
                .unwrap_or(meta.target()),
            meta.line().unwrap_or(0),
            fields.message,
        )?;
        for (k, v) in &fields.pairs {
            write!(w, " {k}={v}")?;
        }
        writeln!(w)
    }
}

/// upstream's JSON logger layout: `{"ts":…,"caller":…,"msg":…,"v":0,…}`.
pub struct JsonFormat;

impl<S, N> FormatEvent<S, N> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = KeyValues::default();
        event.record(&mut fields);
        let mut obj = serde_json::Map::new();
        let ts = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
        obj.insert("ts".into(), ts.into());
        obj.insert(
            "caller".into(),
            format!(
                "{}:{}",
                meta.file()
                    .and_then(|f| f.rsplit('/').next())
                    .unwrap_or(meta.target()),
                meta.line().unwrap_or(0)
            )
            .into(),
        );
        obj.insert("msg".into(), fields.message.into());
        match *meta.level() {
            Level::ERROR => {}
            Level::WARN | Level::INFO => {
                obj.insert("v".into(), 0.into());
            }
            Level::DEBUG => {
                obj.insert("v".into(), 2.into());
            }
            Level::TRACE => {
                obj.insert("v".into(), 5.into());
            }
        }
        for (k, v) in fields.raw {
            obj.insert(if k == "error" { "err".into() } else { k }, v);
        }
        writeln!(w, "{}", serde_json::Value::Object(obj))
    }
}

/// Collects an event's message and fields.
#[derive(Default)]
struct KeyValues {
    message: String,
    pairs: Vec<(String, String)>,
    raw: Vec<(String, serde_json::Value)>,
}

impl tracing::field::Visit for KeyValues {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.pairs.push((field.name().into(), format!("{value:?}")));
            self.raw.push((field.name().into(), value.into()));
        }
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.pairs.push((field.name().into(), value.to_string()));
        self.raw.push((field.name().into(), value.into()));
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.pairs.push((field.name().into(), value.to_string()));
        self.raw.push((field.name().into(), value.into()));
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.pairs.push((field.name().into(), value.to_string()));
        self.raw.push((field.name().into(), value.into()));
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.pairs.push((field.name().into(), format!("{text:?}")));
            self.raw.push((field.name().into(), text.into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_maps_to_levels() {
        assert_eq!(level_for_verbosity(0), Level::INFO);
        assert_eq!(level_for_verbosity(2), Level::DEBUG);
        assert_eq!(level_for_verbosity(6), Level::TRACE);
    }

    #[test]
    fn klog_line_has_header_message_and_fields() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let sub = tracing_subscriber::fmt()
            .event_format(KlogFormat)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(sub, || {
            tracing::warn!(pod = "default/web", attempts = 3, "Failed to bind");
        });
        let line = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(line.starts_with('W'), "{line}");
        assert!(
            line.contains("] \"Failed to bind\" pod=\"default/web\" attempts=3"),
            "{line}"
        );
    }
}
