//! `/metrics/resource`: the node's, pods' and containers' CPU and memory as Prometheus
//! text, with upstream's metric names, help texts, labels and sample timestamps (what
//! metrics-server scrapes). Families are sorted by name and samples by labels, as the
//! Go client writes them; `scrape_error` is hidden as in 1.35 (deprecated in 1.29).

use super::exposition::Families;
use super::types::{Summary, Time};

/// Stability prefix of a metric's help text.
#[derive(Clone, Copy)]
enum Stability {
    Stable,
    Alpha,
}

impl Stability {
    /// The help text's prefix.
    fn prefix(self) -> &'static str {
        match self {
            Stability::Stable => "[STABLE] ",
            Stability::Alpha => "[ALPHA] ",
        }
    }
}

/// Formats a float as Go's `strconv.FormatFloat(v, 'g', -1, 64)` (Prometheus' text).
pub fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return "0".into();
    }
    // Shortest digits and exponent; Go uses %e when the exponent is < -4 or >= 6.
    let sci = format!("{v:e}");
    let (mantissa, e) = sci.split_once('e').expect("{:e} has an exponent");
    let e: i32 = e.parse().expect("exponent is a number");
    if !(-4..6).contains(&e) {
        let sign = if e < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", e.abs())
    } else {
        format!("{v}")
    }
}

/// A label set as the text format writes it: sorted by name, values escaped, in braces
/// (nothing when empty).
pub fn labels(pairs: &[(&str, &str)]) -> String {
    let mut sorted = pairs.to_vec();
    sorted.sort_by_key(|(k, _)| *k);
    let body: Vec<String> = sorted
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('\n', "\\n")
                .replace('"', "\\\"");
            format!("{k}=\"{v}\"")
        })
        .collect();
    if body.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", body.join(","))
    }
}

fn millis(t: Time) -> Option<i64> {
    t.0.map(|t| t.timestamp_millis())
}

/// Renders the resource metrics of `summary` (CPU and memory only suffice); `scrape_failed`
/// when the summary could not be built.
pub fn render(summary: Option<&Summary>) -> String {
    use Stability::*;
    let mut fam = Families::default();
    let mut put = |name: &'static str,
                   help: &'static str,
                   stability: Stability,
                   kind: &'static str,
                   lbl: String,
                   value: f64,
                   ts: Option<i64>| {
        fam.put(name, stability.prefix(), help, kind, lbl, value, ts);
    };
    let secs = |ns: u64| ns as f64 / 1e9;
    if let Some(s) = summary {
        let n = &s.node;
        if let Some(cpu) = &n.cpu {
            if let Some(v) = cpu.usage_core_nano_seconds {
                put(
                    "node_cpu_usage_seconds_total",
                    "Cumulative cpu time consumed by the node in core-seconds",
                    Stable,
                    "counter",
                    String::new(),
                    secs(v),
                    millis(cpu.time),
                );
            }
        }
        if let Some(m) = &n.memory {
            if let Some(v) = m.working_set_bytes {
                put(
                    "node_memory_working_set_bytes",
                    "Current working set of the node in bytes",
                    Stable,
                    "gauge",
                    String::new(),
                    v as f64,
                    millis(m.time),
                );
            }
        }
        if let (Some(sw), Some(m)) = (&n.swap, &n.memory) {
            if let Some(v) = sw.swap_usage_bytes {
                put(
                    "node_swap_usage_bytes",
                    "Current swap usage of the node in bytes. Reported only on non-windows systems",
                    Alpha,
                    "gauge",
                    String::new(),
                    v as f64,
                    millis(m.time),
                );
            }
        }
        for p in &s.pods {
            let (pod, ns) = (p.pod_ref.name.as_str(), p.pod_ref.namespace.as_str());
            for c in &p.containers {
                let l = labels(&[("container", &c.name), ("pod", pod), ("namespace", ns)]);
                if let Some(start) = c.start_time.0.filter(|t| t.timestamp() > 0) {
                    let v = start.timestamp_nanos_opt().unwrap_or(0) as f64 / 1e9;
                    put(
                        "container_start_time_seconds",
                        "Start time of the container since unix epoch in seconds",
                        Stable,
                        "gauge",
                        l.clone(),
                        v,
                        None,
                    );
                }
                if let Some(cpu) = &c.cpu {
                    if let Some(v) = cpu.usage_core_nano_seconds {
                        put(
                            "container_cpu_usage_seconds_total",
                            "Cumulative cpu time consumed by the container in core-seconds",
                            Stable,
                            "counter",
                            l.clone(),
                            secs(v),
                            millis(cpu.time),
                        );
                    }
                }
                if let Some(m) = &c.memory {
                    if let Some(v) = m.working_set_bytes {
                        put(
                            "container_memory_working_set_bytes",
                            "Current working set of the container in bytes",
                            Stable,
                            "gauge",
                            l.clone(),
                            v as f64,
                            millis(m.time),
                        );
                    }
                }
                if let Some(sw) = &c.swap {
                    let usage = sw.swap_usage_bytes.unwrap_or(0) as f64;
                    if sw.swap_usage_bytes.is_some() {
                        put("container_swap_usage_bytes", "Current amount of the container swap usage in bytes. Reported only on non-windows systems", Alpha, "gauge", l.clone(), usage, millis(sw.time));
                    }
                    if let Some(avail) = sw.swap_available_bytes {
                        put("container_swap_limit_bytes", "Current amount of the container swap limit in bytes. Reported only on non-windows systems", Alpha, "gauge", l.clone(), avail as f64 + usage, millis(sw.time));
                    }
                }
            }
            let l = labels(&[("pod", pod), ("namespace", ns)]);
            if let Some(cpu) = &p.cpu {
                if let Some(v) = cpu.usage_core_nano_seconds {
                    put(
                        "pod_cpu_usage_seconds_total",
                        "Cumulative cpu time consumed by the pod in core-seconds",
                        Stable,
                        "counter",
                        l.clone(),
                        secs(v),
                        millis(cpu.time),
                    );
                }
            }
            if let Some(m) = &p.memory {
                if let Some(v) = m.working_set_bytes {
                    put(
                        "pod_memory_working_set_bytes",
                        "Current working set of the pod in bytes",
                        Stable,
                        "gauge",
                        l.clone(),
                        v as f64,
                        millis(m.time),
                    );
                }
            }
            if let Some(sw) = &p.swap {
                if let Some(v) = sw.swap_usage_bytes {
                    put("pod_swap_usage_bytes", "Current amount of the pod swap usage in bytes. Reported only on non-windows systems", Alpha, "gauge", l, v as f64, millis(sw.time));
                }
            }
        }
    }
    let errors = if summary.is_some() { 0.0 } else { 1.0 };
    put(
        "resource_scrape_error",
        "1 if there was an error while getting container metrics, 0 otherwise",
        Stable,
        "gauge",
        String::new(),
        errors,
        None,
    );
    fam.text()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::types::*;

    #[test]
    fn floats_print_as_go_does() {
        assert_eq!(go_float(0.0), "0");
        assert_eq!(go_float(5.0), "5");
        assert_eq!(go_float(0.123), "0.123");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(1.23456789e9), "1.23456789e+09");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(100000000.0), "1e+08");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(1700000000.5), "1.7000000005e+09");
        assert_eq!(go_float(2123.456789), "2123.456789");
    }

    fn summary() -> Summary {
        let t = Time::from_unix_nanos(1_700_000_000_123_000_000);
        let cpu = |ns| {
            Some(CpuStats {
                time: t,
                usage_core_nano_seconds: Some(ns),
                usage_nano_cores: None,
            })
        };
        let mem = |ws| {
            Some(MemoryStats {
                time: t,
                working_set_bytes: Some(ws),
                ..Default::default()
            })
        };
        Summary {
            node: NodeStats {
                node_name: "n".into(),
                cpu: cpu(2_500_000_000),
                memory: mem(1024),
                ..Default::default()
            },
            pods: vec![PodStats {
                pod_ref: PodReference {
                    name: "web".into(),
                    namespace: "default".into(),
                    uid: "u".into(),
                },
                containers: vec![ContainerStats {
                    name: "app".into(),
                    start_time: Time::from_unix_nanos(1_600_000_000_000_000_000),
                    cpu: cpu(500_000_000),
                    memory: mem(4096),
                    swap: Some(SwapStats {
                        time: t,
                        swap_usage_bytes: Some(0),
                        swap_available_bytes: None,
                    }),
                    ..Default::default()
                }],
                cpu: cpu(600_000_000),
                memory: mem(8192),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn metrics_have_upstream_names_labels_and_timestamps() {
        let text = render(Some(&summary()));
        for want in [
            "# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds\n# TYPE container_cpu_usage_seconds_total counter\n",
            "container_cpu_usage_seconds_total{container=\"app\",namespace=\"default\",pod=\"web\"} 0.5 1700000000123\n",
            "container_memory_working_set_bytes{container=\"app\",namespace=\"default\",pod=\"web\"} 4096 1700000000123\n",
            "container_start_time_seconds{container=\"app\",namespace=\"default\",pod=\"web\"} 1.6e+09\n",
            "container_swap_usage_bytes{container=\"app\",namespace=\"default\",pod=\"web\"} 0 1700000000123\n",
            "node_cpu_usage_seconds_total 2.5 1700000000123\n",
            "node_memory_working_set_bytes 1024 1700000000123\n",
            "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"web\"} 0.6 1700000000123\n",
            "pod_memory_working_set_bytes{namespace=\"default\",pod=\"web\"} 8192 1700000000123\n",
            "# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise\n# TYPE resource_scrape_error gauge\nresource_scrape_error 0\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("scrape_error{") && !text.contains("\nscrape_error "));
        assert!(!text.contains("container_swap_limit_bytes"));
        // Families in name order.
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn a_failed_scrape_reports_only_the_error() {
        let text = render(None);
        assert!(text.ends_with("resource_scrape_error 1\n"), "{text}");
        assert_eq!(text.lines().count(), 3);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            labels(&[("pod", "a\"b"), ("container", "c\\d")]),
            "{container=\"c\\\\d\",pod=\"a\\\"b\"}"
        );
    }
}
