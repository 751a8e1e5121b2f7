//! `/metrics` in Prometheus text format (prometheus-client), with the process and build
//! metrics every upstream component exposes (`process_resident_memory_bytes`,
//! `process_cpu_seconds_total`, `process_start_time_seconds`, `kubernetes_build_info`, …) and
//! client-go's `rest_client_*` for the process's apiserver clients (see `client`).
//!
//! Note: prometheus-client appends `_total` to counters, so register a counter as
//! `scheduler_schedule_attempts` to expose upstream's `scheduler_schedule_attempts_total`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

/// A component's metrics registry, shared by everything that registers metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    process: ProcessMetrics,
}

#[derive(Clone, Default)]
struct ProcessMetrics {
    resident: Gauge,
    virtual_mem: Gauge,
    cpu_seconds: Gauge<f64, AtomicU64>,
    start_time: Gauge<f64, AtomicU64>,
    open_fds: Gauge,
    max_fds: Gauge,
    alive_tasks: Gauge,
    workers: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with process and build metrics already in it.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let process = ProcessMetrics::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            process.resident.clone(),
        );
        registry.register(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            process.virtual_mem.clone(),
        );
        // A gauge: prometheus-client's counter would not allow setting from /proc.
        registry.register(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            process.cpu_seconds.clone(),
        );
        registry.register(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            process.start_time.clone(),
        );
        registry.register(
            "process_open_fds",
            "Number of open file descriptors.",
            process.open_fds.clone(),
        );
        registry.register(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            process.max_fds.clone(),
        );
        // Go components' go_goroutines counterpart: a task leak (a watcher or worker never
        // ended) shows here long before it shows in memory. Not an upstream name: Go has no
        // tokio; the soak script (hack/soak.sh) samples it.
        registry.register(
            "tokio_alive_tasks",
            "Number of alive tasks in the process's tokio runtime.",
            process.alive_tasks.clone(),
        );
        registry.register(
            "tokio_workers",
            "Number of worker threads of the process's tokio runtime.",
            process.workers.clone(),
        );
        let build_info = Family::<Vec<(String, String)>, Gauge>::default();
        build_info
            .get_or_create(&vec![
                ("git_version".into(), crate::version::version()),
                ("major".into(), "1".into()),
                ("minor".into(), "35".into()),
                (
                    "platform".into(),
                    format!("linux/{}", crate::version::go_arch()),
                ),
            ])
            .set(1);
        registry.register(
            "kubernetes_build_info",
            "A metric with a constant '1' value labeled by major, minor, git version, git commit, git tree state, build date, Go version, and compiler from which Kubernetes was built, and platform on which it is running.",
            build_info,
        );
        crate::client::register_metrics(&mut registry);
        Metrics {
            registry: Arc::new(Mutex::new(registry)),
            process,
        }
    }

    /// Registers a metric under `name` (without `_total` for counters).
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        registry.register(name, help, metric);
    }

    /// Renders every metric in Prometheus text format, refreshing the process metrics.
    pub fn render(&self) -> String {
        self.process.refresh();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        render_registry(&registry)
    }
}

/// A counter sample exposed under its registered name as is, for the few upstream
/// counters without a `_total` suffix (`kubelet_evictions`,
/// `endpoint_slice_controller_changes`, ...): prometheus-client appends `_total` to every
/// counter. Use it as the metric of a [`Family`] for labelled series.
#[derive(Debug, Clone, Default)]
pub struct UnsuffixedCounter(prometheus_client::metrics::counter::Counter);

impl UnsuffixedCounter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.inc();
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

impl prometheus_client::metrics::TypedMetric for UnsuffixedCounter {
    const TYPE: prometheus_client::metrics::MetricType =
        prometheus_client::metrics::MetricType::Counter;
}

impl prometheus_client::encoding::EncodeMetric for UnsuffixedCounter {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        // A gauge's encoding writes the sample without a suffix; TYPE still says counter.
        encoder.encode_gauge(&self.0.get())
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Counter
    }
}

/// `registry` in the Prometheus text format 0.0.4 that upstream's components serve (and
/// that we declare as the content type): prometheus-client writes OpenMetrics, where a
/// counter family `foo` has samples `foo_total` and the text ends in `# EOF`; here the
/// HELP and TYPE lines name the samples' `foo_total`, as client_golang's do, help texts
/// are as registered (without the '.' the encoder appends), and there is no `# EOF`.
pub fn render_registry(registry: &Registry) -> String {
    let mut open_metrics = String::new();
    if encode(&mut open_metrics, registry).is_err() {
        tracing::error!("Cannot encode metrics");
    }
    to_prometheus_text(&open_metrics)
}

/// See [`render_registry`].
fn to_prometheus_text(open_metrics: &str) -> String {
    // Counter families whose samples carry the `_total` suffix.
    let renamed: std::collections::HashSet<&str> = open_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .filter(|family| {
            let total = format!("{family}_total");
            open_metrics.lines().any(|l| {
                l.strip_prefix(total.as_str())
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
        })
        .collect();
    let mut out = String::with_capacity(open_metrics.len() + 16 * renamed.len());
    for line in open_metrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let comment = ["# HELP ", "# TYPE ", "# UNIT "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match comment {
            Some(("# UNIT ", _)) => continue, // not part of the 0.0.4 format
            Some((prefix, rest)) => {
                let (family, mut tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if prefix == "# HELP " {
                    // The encoder appends a '.' to every help text; keep the registered one.
                    tail = tail.strip_suffix('.').unwrap_or(tail);
                }
                let suffix = if renamed.contains(family) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{prefix}{family}{suffix} {tail}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

impl ProcessMetrics {
    fn refresh(&self) {
        // The runtime serving /metrics is the component's.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let m = handle.metrics();
            self.alive_tasks.set(m.num_alive_tasks() as i64);
            self.workers.set(m.num_workers() as i64);
        }
        let Some(f) = stat_fields("self") else {
            return;
        };
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let ticks = clock_ticks() as f64;
        self.cpu_seconds
            .set((num(STAT_UTIME) + num(STAT_STIME)) as f64 / ticks);
        self.virtual_mem.set(num(STAT_VSIZE) as i64);
        self.resident.set((num(STAT_RSS) * page_size()) as i64);
        if let Some(boot) = boot_time() {
            self.start_time
                .set(boot as f64 + num(STAT_STARTTIME) as f64 / ticks);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(fds.count() as i64);
        }
        if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
            if let Some(max) = limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<i64>().ok())
            {
                self.max_fds.set(max);
            }
        }
    }
}

// Indexes into [`stat_fields`], which start at /proc/<pid>/stat's field 3 (state):
// utime=14, stime=15, starttime=22, vsize=23, rss=24.
const STAT_UTIME: usize = 11;
const STAT_STIME: usize = 12;
const STAT_STARTTIME: usize = 19;
const STAT_VSIZE: usize = 20;
const STAT_RSS: usize = 21;

/// The fields of `/proc/<pid>/stat` after the parenthesised command name (which may hold
/// spaces), from the state field on.
fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// User plus system CPU time `pid` has used so far, in seconds, for benchmarks.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let f = stat_fields(&pid.to_string())?;
    let num = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some((num(STAT_UTIME)? + num(STAT_STIME)?) as f64 / clock_ticks() as f64)
}

/// `sysconf(_SC_CLK_TCK)`: the unit of /proc/self/stat's times (100 on common kernels).
fn clock_ticks() -> u64 {
    sysconf_or(nix::unistd::SysconfVar::CLK_TCK, 100)
}

/// `sysconf(_SC_PAGESIZE)`: the unit of /proc/self/stat's rss (64 KiB on some arm64 kernels).
fn page_size() -> u64 {
    sysconf_or(nix::unistd::SysconfVar::PAGE_SIZE, 4096)
}

fn sysconf_or(var: nix::unistd::SysconfVar, fallback: u64) -> u64 {
    match nix::unistd::sysconf(var) {
        Ok(Some(v)) if v > 0 => v as u64,
        _ => fallback,
    }
}

fn boot_time() -> Option<u64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

/// The peak resident set size of this process in bytes (`VmHWM`), for benchmarks.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn counters_are_named_as_client_golang_names_them() {
        let mut r = Registry::default();
        let c: Family<Vec<(String, String)>, Counter> = Family::default();
        c.get_or_create(&vec![("code".into(), "200".into())]).inc();
        r.register("rest_client_requests", "Requests.", c);
        let g: Gauge = Gauge::default();
        g.set(3);
        r.register("workqueue_depth", "Depth.", g);
        let text = render_registry(&r);
        assert!(
            text.contains("# HELP rest_client_requests_total Requests.\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE rest_client_requests_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("rest_client_requests_total{code=\"200\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE workqueue_depth gauge\nworkqueue_depth 3\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn cpu_seconds_grows_with_work_and_is_none_for_missing_pid() {
        let me = std::process::id();
        let before = cpu_seconds(me).expect("own /proc/<pid>/stat");
        // Busy until the clock-tick counter moves (bounded by wall time on a loaded machine).
        let start = std::time::Instant::now();
        let mut x = 0u64;
        let mut after = before;
        while after - before < 0.05 && start.elapsed() < std::time::Duration::from_secs(10) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            after = cpu_seconds(me).expect("own /proc/<pid>/stat");
        }
        assert!(after - before >= 0.05, "{before} -> {after}");
        // Above the kernel's largest pid_max.
        assert_eq!(cpu_seconds(4_194_305), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counts_the_runtimes_alive_tasks() {
        let m = Metrics::new();
        let gauge = |text: &str, name: &str| -> i64 {
            let line = text.lines().find(|l| l.starts_with(&format!("{name} ")));
            line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {text}"))
        };
        let before = gauge(&m.render(), "tokio_alive_tasks");
        let stop = tokio_util::sync::CancellationToken::new();
        let tasks: Vec<_> = (0..5)
            .map(|_| tokio::spawn(stop.clone().cancelled_owned()))
            .collect();
        let text = m.render();
        assert_eq!(gauge(&text, "tokio_alive_tasks"), before + 5, "{text}");
        assert_eq!(gauge(&text, "tokio_workers"), 2, "{text}");
        stop.cancel();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(gauge(&m.render(), "tokio_alive_tasks"), before);
    }

    #[test]
    fn renders_process_build_and_registered_metrics() {
        let m = Metrics::new();
        let c = Counter::<u64>::default();
        m.register("scheduler_schedule_attempts", "Attempts.", c.clone());
        c.inc();
        let text = m.render();
        assert!(
            text.contains("scheduler_schedule_attempts_total 1"),
            "{text}"
        );
        let rss_line = text
            .lines()
            .find(|l| l.starts_with("process_resident_memory_bytes "))
            .expect("rss line");
        let rss: i64 = rss_line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(rss > 1_000_000, "{rss_line}");
        assert!(
            text.contains("kubernetes_build_info{git_version=\"v1.35.0+ferrokube."),
            "{text}"
        );
        assert!(peak_rss_bytes(std::process::id()).unwrap() >= rss as u64 / 2);
    }
}
