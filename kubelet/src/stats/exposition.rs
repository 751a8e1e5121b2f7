//! Metric families collected by hand and written as Prometheus text the way the Go client
//! writes them: families sorted by name, samples by their rendered labels, optional
//! millisecond timestamps. Shared by `/metrics/resource` and `/metrics/cadvisor`, whose
//! samples carry the reading's time (which prometheus-client cannot express).

use std::collections::BTreeMap;
use std::fmt::Write;

use super::resource_metrics::go_float;

/// One family: help (after its stability prefix, e.g. `"[STABLE] "`, or `""`), type, and
/// rendered label set → (value, timestamp in ms).
struct Family {
    prefix: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: BTreeMap<String, (f64, Option<i64>)>,
}

/// The families of one scrape, by name.
#[derive(Default)]
pub struct Families(BTreeMap<&'static str, Family>);

impl Families {
    /// Sets the sample `labels` (rendered, e.g. `{pod="a"}` or empty) of family `name`,
    /// created with `prefix`, `help` and `kind` (`gauge`, `counter`) on first use.
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &mut self,
        name: &'static str,
        prefix: &'static str,
        help: &'static str,
        kind: &'static str,
        labels: String,
        value: f64,
        ts: Option<i64>,
    ) {
        self.0
            .entry(name)
            .or_insert_with(|| Family {
                prefix,
                help,
                kind,
                samples: BTreeMap::new(),
            })
            .samples
            .insert(labels, (value, ts));
    }

    /// The exposition text.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (name, f) in &self.0 {
            let _ = writeln!(out, "# HELP {name} {}{}", f.prefix, f.help);
            let _ = writeln!(out, "# TYPE {name} {}", f.kind);
            for (l, (v, ts)) in &f.samples {
                let _ = match ts {
                    Some(ts) => writeln!(out, "{name}{l} {} {ts}", go_float(*v)),
                    None => writeln!(out, "{name}{l} {}", go_float(*v)),
                };
            }
        }
        out
    }
}
