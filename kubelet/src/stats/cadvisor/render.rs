//! Renders a [`Scrape`] as Prometheus text the way upstream's `/metrics/cadvisor` writes
//! it: cAdvisor's families registered raw (help texts without a stability prefix), sorted
//! by name, samples sorted by labels, usage samples stamped with their reading's time and
//! spec samples without a timestamp.

use super::read::UNLIMITED;
use super::{CgroupInfo, Machine, Scrape};
use crate::stats::exposition::Families as Exposition;
use crate::stats::resource_metrics::labels;
use chrono::{DateTime, Utc};

/// The families of one scrape.
#[derive(Default)]
struct Families(Exposition);

impl Families {
    fn gauge(
        &mut self,
        name: &'static str,
        help: &'static str,
        l: String,
        v: f64,
        ts: Option<i64>,
    ) {
        self.0.put(name, "", help, "gauge", l, v, ts);
    }

    fn counter(
        &mut self,
        name: &'static str,
        help: &'static str,
        l: String,
        v: f64,
        ts: Option<i64>,
    ) {
        self.0.put(name, "", help, "counter", l, v, ts);
    }

    fn text(&self) -> String {
        self.0.text()
    }
}

/// A memory spec value: 0 when unlimited, as cAdvisor's `specMemoryValue`.
fn spec_memory(v: u64) -> f64 {
    if v > UNLIMITED {
        0.0
    } else {
        v as f64
    }
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn millis(t: DateTime<Utc>) -> Option<i64> {
    Some(t.timestamp_millis())
}

/// The cgroup's base labels plus `extra` pairs.
fn cgroup_labels(c: &CgroupInfo, extra: &[(&str, &str)]) -> String {
    let l = &c.labels;
    let mut pairs = vec![
        ("container", l.container.as_str()),
        ("id", l.id.as_str()),
        ("image", l.image.as_str()),
        ("name", l.name.as_str()),
        ("namespace", l.namespace.as_str()),
        ("pod", l.pod.as_str()),
    ];
    pairs.extend_from_slice(extra);
    labels(&pairs)
}

fn put_cgroup(f: &mut Families, c: &CgroupInfo, now: DateTime<Utc>) {
    let base = cgroup_labels(c, &[]);
    let created = c.created.map(|t| t.timestamp() as f64).unwrap_or(0.0);
    f.gauge(
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds.",
        base.clone(),
        created,
        None,
    );
    if let Some(cpu) = &c.spec.cpu {
        f.gauge(
            "container_spec_cpu_period",
            "CPU period of the container.",
            base.clone(),
            cpu.period as f64,
            None,
        );
        if let Some(q) = cpu.quota.filter(|q| *q != 0) {
            f.gauge(
                "container_spec_cpu_quota",
                "CPU quota of the container.",
                base.clone(),
                q as f64,
                None,
            );
        }
        f.gauge(
            "container_spec_cpu_shares",
            "CPU share of the container.",
            base.clone(),
            cpu.shares as f64,
            None,
        );
    }
    if let Some(m) = &c.spec.memory {
        f.gauge(
            "container_spec_memory_limit_bytes",
            "Memory limit for the container.",
            base.clone(),
            spec_memory(m.limit),
            None,
        );
        f.gauge(
            "container_spec_memory_swap_limit_bytes",
            "Memory swap limit for the container.",
            base.clone(),
            spec_memory(m.swap_limit),
            None,
        );
        f.gauge(
            "container_spec_memory_reservation_limit_bytes",
            "Memory reservation limit for the container.",
            base.clone(),
            spec_memory(m.reservation),
            None,
        );
    }
    let Some(usage) = &c.usage else { return };
    f.gauge(
        "container_last_seen",
        "Last time a container was seen by the exporter",
        base.clone(),
        now.timestamp() as f64,
        millis(now),
    );
    let ts = millis(usage.time);
    if let Some(cpu) = &usage.cpu {
        f.counter(
            "container_cpu_user_seconds_total",
            "Cumulative user cpu time consumed in seconds.",
            base.clone(),
            seconds(cpu.user_ns),
            ts,
        );
        f.counter(
            "container_cpu_system_seconds_total",
            "Cumulative system cpu time consumed in seconds.",
            base.clone(),
            seconds(cpu.system_ns),
            ts,
        );
        if cpu.total_ns > 0 {
            f.counter(
                "container_cpu_usage_seconds_total",
                "Cumulative cpu time consumed in seconds.",
                cgroup_labels(c, &[("cpu", "total")]),
                seconds(cpu.total_ns),
                ts,
            );
        }
        if c.spec.cpu.and_then(|s| s.quota).is_some_and(|q| q != 0) {
            f.counter(
                "container_cpu_cfs_periods_total",
                "Number of elapsed enforcement period intervals.",
                base.clone(),
                cpu.periods as f64,
                ts,
            );
            f.counter(
                "container_cpu_cfs_throttled_periods_total",
                "Number of throttled period intervals.",
                base.clone(),
                cpu.throttled_periods as f64,
                ts,
            );
            f.counter(
                "container_cpu_cfs_throttled_seconds_total",
                "Total time duration the container has been throttled.",
                base.clone(),
                seconds(cpu.throttled_ns),
                ts,
            );
        }
    }
    if let Some(m) = &usage.memory {
        let gauges: [(&'static str, &'static str, u64); 10] = [
            ("container_memory_cache", "Number of bytes of page cache memory.", m.cache),
            ("container_memory_rss", "Size of RSS in bytes.", m.rss),
            (
                "container_memory_kernel_usage",
                "Size of kernel memory allocated in bytes.",
                m.kernel,
            ),
            ("container_memory_mapped_file", "Size of memory mapped files in bytes.", m.mapped_file),
            ("container_memory_swap", "Container swap usage in bytes.", m.swap),
            ("container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", m.usage),
            ("container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes", m.max_usage),
            ("container_memory_working_set_bytes", "Current working set in bytes.", m.working_set),
            ("container_memory_total_active_file_bytes", "Current total active file in bytes.", m.active_file),
            ("container_memory_total_inactive_file_bytes", "Current total inactive file in bytes.", m.inactive_file),
        ];
        for (name, help, v) in gauges {
            f.gauge(name, help, base.clone(), v as f64, ts);
        }
        f.counter(
            "container_memory_failcnt",
            "Number of memory usage hits limits",
            base.clone(),
            m.failcnt as f64,
            ts,
        );
        for (kind, scope, v) in [
            ("pgfault", "container", m.pgfault),
            ("pgmajfault", "container", m.pgmajfault),
            ("pgfault", "hierarchy", m.hierarchical_pgfault),
            ("pgmajfault", "hierarchy", m.hierarchical_pgmajfault),
        ] {
            f.counter(
                "container_memory_failures_total",
                "Cumulative count of memory allocation failures.",
                cgroup_labels(c, &[("failure_type", kind), ("scope", scope)]),
                v as f64,
                ts,
            );
        }
    }
    if let Some(p) = &usage.processes {
        f.gauge(
            "container_processes",
            "Number of processes running inside the container.",
            base.clone(),
            p.processes as f64,
            ts,
        );
        f.gauge(
            "container_threads",
            "Number of threads running inside the container",
            base.clone(),
            p.threads as f64,
            ts,
        );
        f.gauge(
            "container_threads_max",
            "Maximum number of threads allowed inside the container, infinity if value is zero",
            base.clone(),
            p.threads_max as f64,
            ts,
        );
    }
    if let Some(n) = usage.oom_kills {
        f.counter(
            "container_oom_events_total",
            "Count of out of memory events observed for the container",
            base.clone(),
            n as f64,
            ts,
        );
    }
    for fs in &c.filesystems {
        let l = cgroup_labels(c, &[("device", fs.device.as_str())]);
        let gauges: [(&'static str, &'static str, u64); 4] = [
            (
                "container_fs_inodes_free",
                "Number of available Inodes",
                fs.inodes_free,
            ),
            ("container_fs_inodes_total", "Number of Inodes", fs.inodes),
            (
                "container_fs_limit_bytes",
                "Number of bytes that can be consumed by the container on this filesystem.",
                fs.limit,
            ),
            (
                "container_fs_usage_bytes",
                "Number of bytes that are consumed by the container on this filesystem.",
                fs.usage,
            ),
        ];
        for (name, help, v) in gauges {
            f.gauge(name, help, l.clone(), v as f64, ts);
        }
    }
    for i in &c.network {
        let l = cgroup_labels(c, &[("interface", i.name.as_str())]);
        let counters: [(&'static str, &'static str, Option<u64>); 4] = [
            (
                "container_network_receive_bytes_total",
                "Cumulative count of bytes received",
                i.rx_bytes,
            ),
            (
                "container_network_receive_errors_total",
                "Cumulative count of errors encountered while receiving",
                i.rx_errors,
            ),
            (
                "container_network_transmit_bytes_total",
                "Cumulative count of bytes transmitted",
                i.tx_bytes,
            ),
            (
                "container_network_transmit_errors_total",
                "Cumulative count of errors encountered while transmitting",
                i.tx_errors,
            ),
        ];
        for (name, help, v) in counters {
            f.counter(name, help, l.clone(), v.unwrap_or(0) as f64, ts);
        }
    }
}

fn put_machine(f: &mut Families, m: &Machine) {
    let l = labels(&[
        ("boot_id", m.boot_id.as_str()),
        ("machine_id", m.machine_id.as_str()),
        ("system_uuid", m.system_uuid.as_str()),
    ]);
    let ts = millis(m.time);
    f.gauge(
        "machine_cpu_cores",
        "Number of logical CPU cores.",
        l.clone(),
        m.cores as f64,
        ts,
    );
    f.gauge(
        "machine_memory_bytes",
        "Amount of memory installed on the machine.",
        l.clone(),
        m.memory_bytes as f64,
        ts,
    );
    f.gauge(
        "machine_swap_bytes",
        "Amount of swap memory available on the machine.",
        l,
        m.swap_bytes as f64,
        ts,
    );
}

/// The text of `/metrics/cadvisor` for one scrape.
pub fn render(scrape: &Scrape) -> String {
    let mut f = Families::default();
    if let Some(m) = &scrape.machine {
        put_machine(&mut f, m);
    }
    f.gauge(
        "machine_scrape_error",
        "1 if there was an error while getting machine metrics, 0 otherwise.",
        String::new(),
        if scrape.machine.is_some() { 0.0 } else { 1.0 },
        None,
    );
    for c in scrape.cgroups.iter().flatten() {
        put_cgroup(&mut f, c, scrape.time);
    }
    f.gauge(
        "container_scrape_error",
        "1 if there was an error while getting container metrics, 0 otherwise",
        String::new(),
        if scrape.cgroups.is_some() { 0.0 } else { 1.0 },
        None,
    );
    f.text()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::cadvisor::*;
    use crate::stats::types::InterfaceStats;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    const C: &str = "container=\"busy\",id=\"/kubepods/burstable/podu/c1\",image=\"docker.io/library/busybox:1.35\",name=\"c1\",namespace=\"default\",pod=\"web\"";
    const SANDBOX: &str = "container=\"\",id=\"/kubepods/burstable/podu/s1\",image=\"\",name=\"s1\",namespace=\"default\",pod=\"web\"";

    fn scrape() -> Scrape {
        let usage = CgroupUsage {
            time: at(1_700_000_000_123),
            cpu: Some(CpuUsage {
                total_ns: 2_500_000_000,
                user_ns: 2_000_000_000,
                system_ns: 500_000_000,
                periods: 40,
                throttled_periods: 12,
                throttled_ns: 1_500_000_000,
            }),
            memory: Some(MemoryUsage {
                usage: 20_000_000,
                max_usage: 21_000_000,
                working_set: 18_000_000,
                rss: 16_000_000,
                cache: 4096,
                failcnt: 3,
                kernel: 512,
                pgfault: 5,
                hierarchical_pgfault: 6,
                ..Default::default()
            }),
            processes: Some(ProcessUsage {
                processes: 2,
                threads: 3,
                threads_max: 0,
            }),
            oom_kills: Some(1),
        };
        let container = CgroupInfo {
            labels: CgroupLabels {
                id: "/kubepods/burstable/podu/c1".into(),
                name: "c1".into(),
                image: "docker.io/library/busybox:1.35".into(),
                pod: "web".into(),
                namespace: "default".into(),
                container: "busy".into(),
            },
            created: Some(at(1_600_000_000_900)),
            spec: CgroupSpec {
                cpu: Some(CpuSpec {
                    shares: 102,
                    period: 100000,
                    quota: Some(10000),
                }),
                memory: Some(MemorySpec {
                    limit: 96 << 20,
                    swap_limit: 9223372036854771712,
                    reservation: 9223372036854771712,
                }),
            },
            usage: Some(usage),
            network: vec![],
            filesystems: vec![FsUsage {
                device: "/dev/vda1".into(),
                limit: 1 << 30,
                usage: 1 << 20,
                inodes: 1000,
                inodes_free: 900,
            }],
        };
        let sandbox = CgroupInfo {
            labels: CgroupLabels {
                id: "/kubepods/burstable/podu/s1".into(),
                name: "s1".into(),
                pod: "web".into(),
                namespace: "default".into(),
                ..Default::default()
            },
            spec: CgroupSpec {
                cpu: Some(CpuSpec {
                    shares: 2,
                    period: 100000,
                    quota: None,
                }),
                memory: None,
            },
            usage: Some(CgroupUsage {
                cpu: Some(CpuUsage::default()),
                ..usage
            }),
            network: vec![InterfaceStats {
                name: "eth0".into(),
                rx_bytes: Some(1234),
                rx_errors: Some(0),
                tx_bytes: Some(5678),
                tx_errors: Some(1),
            }],
            ..Default::default()
        };
        Scrape {
            time: at(1_700_000_001_000),
            machine: Some(Machine {
                time: at(1_700_000_000_000),
                cores: 2,
                memory_bytes: 24 << 30,
                swap_bytes: 0,
                machine_id: "m".into(),
                system_uuid: "u".into(),
                boot_id: "b".into(),
            }),
            cgroups: Some(vec![sandbox, container]),
        }
    }

    #[test]
    fn container_samples_have_cadvisor_names_labels_and_values() {
        let text = render(&scrape());
        for want in [
            format!("container_cpu_usage_seconds_total{{{}}} 2.5 1700000000123\n", C.replacen(",", ",cpu=\"total\",", 1)),
            format!("container_cpu_user_seconds_total{{{C}}} 2 1700000000123\n"),
            format!("container_cpu_system_seconds_total{{{C}}} 0.5 1700000000123\n"),
            format!("container_cpu_cfs_periods_total{{{C}}} 40 1700000000123\n"),
            format!("container_cpu_cfs_throttled_periods_total{{{C}}} 12 1700000000123\n"),
            format!("container_cpu_cfs_throttled_seconds_total{{{C}}} 1.5 1700000000123\n"),
            format!("container_memory_usage_bytes{{{C}}} 2e+07 1700000000123\n"),
            format!("container_memory_working_set_bytes{{{C}}} 1.8e+07 1700000000123\n"),
            format!("container_memory_rss{{{C}}} 1.6e+07 1700000000123\n"),
            format!("container_memory_cache{{{C}}} 4096 1700000000123\n"),
            format!("container_memory_kernel_usage{{{C}}} 512 1700000000123\n"),
            format!("container_memory_max_usage_bytes{{{C}}} 2.1e+07 1700000000123\n"),
            format!("container_memory_failcnt{{{C}}} 3 1700000000123\n"),
            format!("container_memory_swap{{{C}}} 0 1700000000123\n"),
            format!("container_memory_mapped_file{{{C}}} 0 1700000000123\n"),
            format!("container_spec_cpu_quota{{{C}}} 10000\n"),
            format!("container_spec_cpu_period{{{C}}} 100000\n"),
            format!("container_spec_cpu_shares{{{C}}} 102\n"),
            format!("container_spec_memory_limit_bytes{{{C}}} 1.00663296e+08\n"),
            format!("container_spec_memory_swap_limit_bytes{{{C}}} 0\n"),
            format!("container_start_time_seconds{{{C}}} 1.6e+09\n"),
            format!("container_last_seen{{{C}}} 1.700000001e+09 1700000001000\n"),
            format!("container_memory_failures_total{{{},scope=\"hierarchy\"}} 6 1700000000123\n", C.replacen(",", ",failure_type=\"pgfault\",", 1)),
            "container_network_receive_bytes_total{container=\"\",id=\"/kubepods/burstable/podu/s1\",image=\"\",interface=\"eth0\",name=\"s1\",namespace=\"default\",pod=\"web\"} 1234 1700000000123\n".to_string(),
            "container_network_transmit_errors_total{container=\"\",id=\"/kubepods/burstable/podu/s1\",image=\"\",interface=\"eth0\",name=\"s1\",namespace=\"default\",pod=\"web\"} 1 1700000000123\n".to_string(),
            format!("container_fs_usage_bytes{{{}}} 1.048576e+06 1700000000123\n", C.replacen(",", ",device=\"/dev/vda1\",", 1)),
            format!("container_fs_limit_bytes{{{}}} 1.073741824e+09 1700000000123\n", C.replacen(",", ",device=\"/dev/vda1\",", 1)),
            format!("container_fs_inodes_free{{{}}} 900 1700000000123\n", C.replacen(",", ",device=\"/dev/vda1\",", 1)),
            format!("container_processes{{{C}}} 2 1700000000123\n"),
            format!("container_threads{{{C}}} 3 1700000000123\n"),
            format!("container_threads_max{{{C}}} 0 1700000000123\n"),
            format!("container_oom_events_total{{{C}}} 1 1700000000123\n"),
            "machine_cpu_cores{boot_id=\"b\",machine_id=\"m\",system_uuid=\"u\"} 2 1700000000000\n".to_string(),
            "machine_memory_bytes{boot_id=\"b\",machine_id=\"m\",system_uuid=\"u\"} 2.5769803776e+10 1700000000000\n".to_string(),
            "# HELP container_scrape_error 1 if there was an error while getting container metrics, 0 otherwise\n# TYPE container_scrape_error gauge\ncontainer_scrape_error 0\n".to_string(),
            "\nmachine_scrape_error 0\n".to_string(),
        ] {
            assert!(text.contains(&want), "missing {want:?} in\n{text}");
        }
        // The sandbox has no quota: no CFS counters, no quota sample; zero CPU time has no
        // usage sample (as cAdvisor skips a zero total); no memory spec, no memory limit.
        for absent in [
            format!("container_spec_cpu_quota{{{SANDBOX}}}"),
            format!("container_cpu_cfs_periods_total{{{SANDBOX}}}"),
            format!("container_spec_memory_limit_bytes{{{SANDBOX}}}"),
            format!(
                "container_cpu_usage_seconds_total{{{}}}",
                SANDBOX.replacen(",", ",cpu=\"total\",", 1)
            ),
        ] {
            assert!(!text.contains(&absent), "unexpected {absent:?} in\n{text}");
        }
        assert!(text.contains(&format!("container_spec_cpu_shares{{{SANDBOX}}} 2\n")));
    }

    #[test]
    fn help_and_type_lines_as_client_golang_writes_them() {
        let text = render(&scrape());
        for want in [
            "# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.\n# TYPE container_cpu_usage_seconds_total counter\n",
            "# HELP container_cpu_cfs_throttled_periods_total Number of throttled period intervals.\n# TYPE container_cpu_cfs_throttled_periods_total counter\n",
            "# HELP container_network_receive_bytes_total Cumulative count of bytes received\n# TYPE container_network_receive_bytes_total counter\n",
            "# TYPE container_memory_failcnt counter\n",
            "# TYPE container_memory_failures_total counter\n",
            "# HELP container_memory_working_set_bytes Current working set in bytes.\n# TYPE container_memory_working_set_bytes gauge\n",
            "# HELP machine_cpu_cores Number of logical CPU cores.\n# TYPE machine_cpu_cores gauge\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        // Every family once, in name order; every counter's name ends in _total except
        // cAdvisor's failcnt.
        let types: Vec<(&str, &str)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.split_once(' '))
            .collect();
        let mut names: Vec<&str> = types.iter().map(|t| t.0).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
        names.dedup();
        assert_eq!(names.len(), types.len());
        for (name, kind) in types {
            if kind == "counter" && name != "container_memory_failcnt" {
                assert!(name.ends_with("_total"), "{name}");
            }
        }
        // No stability prefixes: cAdvisor's collectors are registered raw.
        assert!(!text.contains("[ALPHA]") && !text.contains("[STABLE]"));
    }

    #[test]
    fn failed_reads_report_scrape_errors() {
        let text = render(&Scrape {
            time: at(0),
            machine: None,
            cgroups: None,
        });
        assert!(text.contains("\ncontainer_scrape_error 1\n"), "{text}");
        assert!(text.contains("\nmachine_scrape_error 1\n"), "{text}");
        assert_eq!(text.lines().count(), 6, "{text}");
    }

    #[test]
    fn unlimited_memory_specs_are_zero() {
        assert_eq!(spec_memory(9223372036854771712), 0.0);
        assert_eq!(spec_memory(1 << 20), (1 << 20) as f64);
    }
}
