//! A work queue as client-go's: a key is queued at most once, never processed by two
//! workers at a time, and failed keys come back with per-item exponential backoff. A queue
//! given a name and the manager's metrics ([`WorkQueue::with_metrics`]) reports upstream's
//! `workqueue_*` metrics under that name.

pub mod metrics;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::machinery::context::ControllerMetrics;
use metrics::{InFlight, QueueMetrics};

/// Per-item exponential backoff: `base * 2^failures`, capped (client-go's
/// ItemExponentialFailureRateLimiter: 5ms .. 1000s).
#[derive(Debug)]
pub struct ItemBackoff<K> {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<K, u32>>,
}

impl<K: Eq + Hash + Clone> ItemBackoff<K> {
    /// Backoff from `base` doubling up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        ItemBackoff {
            base,
            max,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Records one more failure of `key` and returns how long to wait before retrying it.
    pub fn next(&self, key: &K) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.clone()).or_insert(0);
        let delay = self.base.saturating_mul(1u32 << (*n).min(30));
        *n += 1;
        delay.min(self.max)
    }

    /// Forgets the failures of `key` (it succeeded).
    pub fn forget(&self, key: &K) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// How often `key` failed since it last succeeded.
    pub fn failures(&self, key: &K) -> u32 {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

#[derive(Debug)]
struct State<K> {
    queue: VecDeque<K>,
    dirty: HashSet<K>,
    processing: HashSet<K>,
    shut_down: bool,
    /// When each waiting key was first added (kept only when metrics are on).
    added_at: HashMap<K, Instant>,
    /// When each key being processed was handed out (kept only when metrics are on).
    processing_since: HashMap<K, Instant>,
    /// Keys [`WorkQueue::add_after`] holds back: when each comes due (and its entry in
    /// `due`).
    waiting: HashMap<K, (Instant, u64)>,
    /// The same keys by due time (the `u64` tells apart keys due at the same instant).
    due: BTreeMap<(Instant, u64), K>,
    /// The last `u64` handed out for `due`.
    seq: u64,
    /// Whether the timer task (one per queue while keys wait) runs.
    timer_running: bool,
}

impl<K> State<K> {
    fn empty() -> Self {
        State {
            queue: VecDeque::new(),
            dirty: HashSet::new(),
            processing: HashSet::new(),
            shut_down: false,
            added_at: HashMap::new(),
            processing_since: HashMap::new(),
            waiting: HashMap::new(),
            due: BTreeMap::new(),
            seq: 0,
            timer_running: false,
        }
    }
}

impl<K: Eq + Hash + Send> InFlight for Mutex<State<K>> {
    fn unfinished_work(&self, now: Instant) -> (f64, f64) {
        let s = self.lock().unwrap_or_else(|e| e.into_inner());
        s.processing_since
            .values()
            .map(|t| now.saturating_duration_since(*t).as_secs_f64())
            .fold((0.0, 0.0), |(total, oldest), age| {
                (total + age, f64::max(oldest, age))
            })
    }
}

/// A deduplicating, rate-limited work queue. Cheap to clone.
#[derive(Debug)]
pub struct WorkQueue<K> {
    state: Arc<Mutex<State<K>>>,
    notify: Arc<Notify>,
    backoff: Arc<ItemBackoff<K>>,
    /// Set once the queue is named ([`WorkQueue::instrument`]); read lock-free on every call.
    metrics: Arc<OnceLock<QueueMetrics>>,
    /// Failures after which `run` drops a key instead of retrying it (`None`: retry forever).
    max_retries: Option<u32>,
    /// Wakes the timer task when a key comes due sooner than it sleeps.
    timer: Arc<Notify>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        WorkQueue {
            state: self.state.clone(),
            notify: self.notify.clone(),
            backoff: self.backoff.clone(),
            metrics: self.metrics.clone(),
            max_retries: self.max_retries,
            timer: self.timer.clone(),
        }
    }
}

impl<K: Eq + Hash + Clone + Send + Sync + 'static> Default for WorkQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Eq + Hash + Clone + Send + Sync + 'static> WorkQueue<K> {
    /// A queue with client-go's default per-item backoff (5ms doubling up to 1000s).
    pub fn new() -> Self {
        Self::with_backoff(Duration::from_millis(5), Duration::from_secs(1000))
    }

    /// A queue with the given per-item backoff bounds.
    pub fn with_backoff(base: Duration, max: Duration) -> Self {
        WorkQueue {
            state: Arc::new(Mutex::new(State::empty())),
            notify: Arc::new(Notify::new()),
            backoff: Arc::new(ItemBackoff::new(base, max)),
            metrics: Arc::default(),
            max_retries: None,
            timer: Arc::new(Notify::new()),
        }
    }

    /// This queue, reporting upstream's work queue metrics as `name` when `metrics` is on.
    pub fn with_metrics(self, metrics: &ControllerMetrics, name: &str) -> Self {
        self.instrument(metrics, name);
        self
    }

    /// Starts reporting this queue (and its clones) as `name` when `metrics` is on; a queue
    /// already named keeps its first name.
    pub fn instrument(&self, metrics: &ControllerMetrics, name: &str) {
        let Some(families) = metrics.workqueue() else {
            return;
        };
        let in_flight: Arc<dyn InFlight> = self.state.clone();
        // Under the state lock, so that no add or get falls between the two steps.
        let s = self.lock();
        if self.metrics.get().is_some() {
            return;
        }
        let m = families.queue(name, Arc::downgrade(&in_flight));
        // Keys waiting already; several queues of one name add up, as upstream's.
        m.depth.inc_by(s.dirty.len() as i64);
        let _ = self.metrics.set(m);
    }

    /// This queue, whose `run` drops a key (forgetting its backoff) once it failed
    /// `max_retries` times in a row, as upstream controllers with a `maxRetries` do.
    pub fn with_max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = Some(max_retries);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `key` unless it is already waiting; a key being processed is queued again
    /// when its worker is done.
    pub fn add(&self, key: K) {
        let mut s = self.lock();
        if s.shut_down || !s.dirty.insert(key.clone()) {
            return;
        }
        if let Some(m) = self.metrics.get() {
            m.adds.inc();
            m.depth.inc();
            s.added_at.entry(key.clone()).or_insert_with(Instant::now);
        }
        if !s.processing.contains(&key) {
            s.queue.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Queues `key` after `delay`. A key waits at most once, as in client-go's delaying
    /// queue: added again while it waits, it comes due at the earlier of the two times. One
    /// timer task per queue (while keys wait) hands them out when due, so a controller
    /// that re-checks a deadline on every sync costs an entry per key, not a task per sync.
    pub fn add_after(&self, key: K, delay: Duration) {
        if let Some(m) = self.metrics.get() {
            m.retries.inc();
        }
        if delay.is_zero() {
            return self.add(key);
        }
        let due = Instant::now() + delay;
        let mut s = self.lock();
        if s.shut_down {
            return;
        }
        if let Some(&(t, seq)) = s.waiting.get(&key) {
            if t <= due {
                return;
            }
            s.due.remove(&(t, seq));
        }
        s.seq += 1;
        let seq = s.seq;
        s.waiting.insert(key.clone(), (due, seq));
        s.due.insert((due, seq), key);
        let start = !s.timer_running;
        s.timer_running = true;
        drop(s);
        if start {
            let weak = Arc::downgrade(&self.state);
            tokio::spawn(self.clone().run_timer(weak));
        } else {
            self.timer.notify_one();
        }
    }

    /// The timer task: adds the waiting keys as they come due; ends once none waits, the
    /// queue is shut down, or every handle of it is gone (asleep, it holds the queue's
    /// state only weakly).
    async fn run_timer(mut self, weak: Weak<Mutex<State<K>>>) {
        loop {
            let (ready, next) = {
                let mut s = self.lock();
                let now = Instant::now();
                let mut ready = Vec::new();
                while let Some((&(t, seq), _)) = s.due.first_key_value() {
                    if t > now || s.shut_down {
                        break;
                    }
                    if let Some(k) = s.due.remove(&(t, seq)) {
                        s.waiting.remove(&k);
                        ready.push(k);
                    }
                }
                let next = s.due.first_key_value().map(|(&(t, _), _)| t);
                if s.shut_down || (next.is_none() && ready.is_empty()) {
                    s.timer_running = false;
                    return;
                }
                (ready, next)
            };
            for k in ready {
                self.add(k);
            }
            // A placeholder state while asleep, so that a dropped queue is freed.
            self.state = Arc::new(Mutex::new(State::empty()));
            if let Some(t) = next {
                tokio::select! {
                    _ = tokio::time::sleep_until(t.into()) => {}
                    _ = self.timer.notified() => {}
                }
            }
            match weak.upgrade() {
                Some(state) => self.state = state,
                None => return,
            }
        }
    }

    /// Queues `key` after its per-item backoff.
    pub fn add_rate_limited(&self, key: K) {
        let delay = self.backoff.next(&key);
        self.add_after(key, delay);
    }

    /// Resets the backoff of `key`.
    pub fn forget(&self, key: &K) {
        self.backoff.forget(key);
    }

    /// The next key to process, or `None` once the queue is shut down.
    pub async fn get(&self) -> Option<K> {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.lock();
                if s.shut_down {
                    return None;
                }
                if let Some(key) = s.queue.pop_front() {
                    s.dirty.remove(&key);
                    s.processing.insert(key.clone());
                    if let Some(m) = self.metrics.get() {
                        let now = Instant::now();
                        m.depth.dec();
                        if let Some(added) = s.added_at.remove(&key) {
                            m.latency
                                .observe(now.saturating_duration_since(added).as_secs_f64());
                        }
                        s.processing_since.insert(key.clone(), now);
                    }
                    if !s.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return Some(key);
                }
            }
            notified.await;
        }
    }

    /// Marks `key` processed; it is queued again if it was added meanwhile.
    pub fn done(&self, key: &K) {
        let mut s = self.lock();
        s.processing.remove(key);
        if let Some(m) = self.metrics.get() {
            if let Some(started) = s.processing_since.remove(key) {
                m.work_duration.observe(started.elapsed().as_secs_f64());
            }
        }
        if s.dirty.contains(key) {
            s.queue.push_back(key.clone());
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Number of keys waiting.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether no key is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops handing out keys; `get` returns `None`.
    pub fn shut_down(&self) {
        let mut s = self.lock();
        if let Some(m) = self.metrics.get().filter(|_| !s.shut_down) {
            // The waiting keys are never handed out: a queue of the same name started
            // later (leadership regained) must not inherit them in its depth.
            m.depth.dec_by(s.dirty.len() as i64);
        }
        s.shut_down = true;
        drop(s);
        self.notify.notify_waiters();
        self.timer.notify_one();
    }

    /// Runs `workers` tasks that process keys with `sync` until `shutdown` is cancelled:
    /// a failed key is retried with backoff, a successful one has its backoff reset.
    pub async fn run<F, Fut>(
        &self,
        name: &'static str,
        workers: usize,
        shutdown: CancellationToken,
        sync: F,
    ) where
        F: Fn(K) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
        K: std::fmt::Debug,
    {
        let mut tasks = Vec::new();
        for _ in 0..workers.max(1) {
            let q = self.clone();
            let sync = sync.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(key) = q.get().await {
                    match sync(key.clone()).await {
                        Ok(()) => q.forget(&key),
                        Err(e)
                            if q
                                .max_retries
                                .is_some_and(|max| q.backoff.failures(&key) >= max) =>
                        {
                            tracing::warn!(controller = name, ?key, error = %format!("{e:#}"), "retry budget exceeded, dropping the key out of the queue");
                            q.forget(&key);
                        }
                        Err(e) => {
                            tracing::warn!(controller = name, ?key, error = %format!("{e:#}"), "sync failed, will retry");
                            q.add_rate_limited(key.clone());
                        }
                    }
                    q.done(&key);
                }
            }));
        }
        shutdown.cancelled().await;
        self.shut_down();
        for t in tasks {
            let _ = t.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = ItemBackoff::new(Duration::from_millis(5), Duration::from_millis(30));
        let k = "a".to_string();
        assert_eq!(b.next(&k), Duration::from_millis(5));
        assert_eq!(b.next(&k), Duration::from_millis(10));
        assert_eq!(b.next(&k), Duration::from_millis(20));
        assert_eq!(b.next(&k), Duration::from_millis(30));
        assert_eq!(b.failures(&k), 4);
        b.forget(&k);
        assert_eq!(b.next(&k), Duration::from_millis(5));
    }

    #[tokio::test]
    async fn deduplicates_and_requeues_keys_added_while_processing() {
        let q: WorkQueue<&str> = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let a = q.get().await.unwrap();
        assert_eq!(a, "a");
        q.add("a"); // while processing: not handed to a second worker
        assert_eq!(q.get().await.unwrap(), "b");
        assert!(q.is_empty());
        q.done(&"a");
        assert_eq!(q.get().await.unwrap(), "a");
    }

    /// The value of the sample `line_prefix` (`name{labels}`) in `text`.
    fn sample(text: &str, line_prefix: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(line_prefix)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }

    #[tokio::test]
    async fn counts_adds_depth_durations_and_retries_under_its_name() {
        let registry = component_base::metrics::Metrics::new();
        let metrics = ControllerMetrics::new(&registry);
        let q: WorkQueue<&str> = WorkQueue::new().with_metrics(&metrics, "endpoint");
        q.add("a");
        q.add("a"); // deduplicated: not an add, as upstream
        q.add("b");
        let text = registry.render();
        assert_eq!(
            sample(&text, r#"workqueue_adds_total{name="endpoint"}"#),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, r#"workqueue_depth{name="endpoint"}"#),
            Some(2.0)
        );

        let a = q.get().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let text = registry.render();
        assert_eq!(
            sample(&text, r#"workqueue_depth{name="endpoint"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"workqueue_queue_duration_seconds_count{name="endpoint"}"#
            ),
            Some(1.0)
        );
        let unfinished = sample(
            &text,
            r#"workqueue_unfinished_work_seconds{name="endpoint"}"#,
        )
        .unwrap();
        let longest = sample(
            &text,
            r#"workqueue_longest_running_processor_seconds{name="endpoint"}"#,
        )
        .unwrap();
        assert!(
            unfinished >= 0.02 && longest >= 0.02,
            "{unfinished} {longest}"
        );

        q.add(a); // while processing: counted and waits for done
        q.add_rate_limited("c");
        q.done(&a);
        let text = registry.render();
        assert_eq!(
            sample(&text, r#"workqueue_adds_total{name="endpoint"}"#),
            Some(3.0)
        );
        assert_eq!(
            sample(&text, r#"workqueue_retries_total{name="endpoint"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"workqueue_depth{name="endpoint"}"#),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"workqueue_work_duration_seconds_count{name="endpoint"}"#
            ),
            Some(1.0)
        );
        let work = sample(
            &text,
            r#"workqueue_work_duration_seconds_sum{name="endpoint"}"#,
        );
        assert!(work.unwrap() >= 0.02);
        assert_eq!(
            sample(
                &text,
                r#"workqueue_unfinished_work_seconds{name="endpoint"}"#
            ),
            Some(0.0)
        );
        // Upstream's buckets: 1e-8 .. 10 seconds, ten of them.
        let buckets: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("workqueue_queue_duration_seconds_bucket{"))
            .collect();
        assert_eq!(buckets.len(), 11, "{text}"); // and +Inf
        assert!(buckets[0].contains(r#"le="1e-8""#), "{text}");
        assert!(buckets[9].contains(r#"le="10.0""#), "{text}");
        // Upstream's buckets: 1e-08 .. 10 seconds.
        assert!(
            text.contains(r#"workqueue_queue_duration_seconds_bucket{le="1e-8",name="endpoint"}"#)
                || text.contains(
                    r#"workqueue_queue_duration_seconds_bucket{le="0.00000001",name="endpoint"}"#
                )
                || text.contains(
                    r#"workqueue_queue_duration_seconds_bucket{name="endpoint",le="1e-8"}"#
                ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_queue_without_metrics_and_a_dropped_queue_report_nothing() {
        let q: WorkQueue<u32> = WorkQueue::new().with_metrics(&ControllerMetrics::disabled(), "x");
        q.add(1);
        assert_eq!(q.get().await, Some(1));
        q.done(&1);

        let registry = component_base::metrics::Metrics::new();
        let metrics = ControllerMetrics::new(&registry);
        let gone: WorkQueue<u32> = WorkQueue::new().with_metrics(&metrics, "gone");
        gone.add(1);
        let _ = gone.get().await;
        drop(gone);
        let text = registry.render();
        assert!(!text.contains(r#"workqueue_unfinished_work_seconds{name="gone"}"#));
        assert_eq!(
            sample(&text, r#"workqueue_adds_total{name="gone"}"#),
            Some(1.0)
        );
    }

    #[tokio::test]
    async fn queues_sharing_a_name_add_up_and_late_naming_counts_waiting_keys() {
        let registry = component_base::metrics::Metrics::new();
        let metrics = ControllerMetrics::new(&registry);
        let approving: WorkQueue<&str> = WorkQueue::new().with_metrics(&metrics, "certificate");
        let signing: WorkQueue<&str> = WorkQueue::new();
        signing.add("csr-1");
        signing.add("csr-2");
        signing.instrument(&metrics, "certificate"); // as workload queues, named at start
        signing.instrument(&metrics, "other"); // keeps its first name
        approving.add("csr-1");
        let depth = r#"workqueue_depth{name="certificate"}"#;
        assert_eq!(sample(&registry.render(), depth), Some(3.0));
        let k = signing.get().await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let a = approving.get().await.unwrap();
        let text = registry.render();
        assert_eq!(sample(&text, depth), Some(1.0));
        assert!(!text.contains(r#"name="other""#), "{text}");
        let total = sample(
            &text,
            r#"workqueue_unfinished_work_seconds{name="certificate"}"#,
        );
        let longest = sample(
            &text,
            r#"workqueue_longest_running_processor_seconds{name="certificate"}"#,
        );
        assert!(total.unwrap() > longest.unwrap(), "{text}");
        assert!(longest.unwrap() >= 0.01, "{text}");
        signing.done(&k);
        approving.done(&a);
        signing.add("csr-1"); // with csr-2 still waiting
        assert_eq!(sample(&registry.render(), depth), Some(2.0));
        signing.shut_down();
        signing.shut_down();
        assert_eq!(sample(&registry.render(), depth), Some(0.0));
    }

    #[tokio::test]
    async fn run_drops_a_key_after_max_retries_failures() {
        let q: WorkQueue<&str> =
            WorkQueue::with_backoff(Duration::from_millis(1), Duration::from_millis(1))
                .with_max_retries(3);
        let attempts = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let sd = CancellationToken::new();
        let (a, s) = (attempts.clone(), sd.clone());
        q.add("k");
        let runner = tokio::spawn({
            let q = q.clone();
            async move {
                q.run("test", 1, s, move |_| {
                    a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async { anyhow::bail!("always fails") }
                })
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        sd.cancel();
        runner.await.unwrap();
        // The first attempt and three retries, as upstream's NumRequeues < maxRetries.
        assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 4);
        assert_eq!(
            q.backoff.failures(&"k"),
            0,
            "the dropped key's backoff is forgotten"
        );
    }

    #[tokio::test]
    async fn a_key_waits_once_however_often_it_is_added_after() {
        let q: WorkQueue<String> = WorkQueue::new();
        let alive = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        let before = alive();
        for _ in 0..100 {
            q.add_after("a".into(), Duration::from_secs(600));
        }
        assert_eq!(alive(), before + 1, "one timer task, not one per add");
        // A sooner time wins; a later one while it waits changes nothing.
        q.add_after("a".into(), Duration::from_millis(50));
        q.add_after("a".into(), Duration::from_secs(300));
        q.add_after("b".into(), Duration::from_secs(600));
        assert_eq!(alive(), before + 1, "one timer task for every key");
        let got = tokio::time::timeout(Duration::from_secs(5), q.get()).await;
        assert_eq!(got.unwrap().as_deref(), Some("a"));
        q.done(&"a".to_string());
        assert!(q.is_empty(), "due once");
        // Due and gone: the next add_after waits again.
        q.add_after("a".into(), Duration::from_millis(10));
        let got = tokio::time::timeout(Duration::from_secs(5), q.get()).await;
        assert_eq!(got.unwrap().as_deref(), Some("a"));
        // The timer ends with its queue (shut down, "b" still waiting).
        q.shut_down();
        wait_for_tasks(before).await;
    }

    #[tokio::test]
    async fn a_dropped_queue_frees_its_state_and_its_timer_ends() {
        let before = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        let q: WorkQueue<String> = WorkQueue::new();
        q.add_after("a".into(), Duration::from_millis(20));
        q.add_after("b".into(), Duration::from_millis(300));
        let got = tokio::time::timeout(Duration::from_secs(5), q.get()).await;
        assert_eq!(got.unwrap().as_deref(), Some("a"));
        let state = Arc::downgrade(&q.state);
        drop(q);
        assert!(
            state.upgrade().is_none(),
            "the sleeping timer holds no queue"
        );
        wait_for_tasks(before).await;
    }

    /// Waits (up to 5 s) until the runtime has `n` alive tasks.
    async fn wait_for_tasks(n: usize) {
        let alive = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        for _ in 0..500 {
            if alive() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(alive(), n, "tasks still alive");
    }

    #[tokio::test]
    async fn shut_down_wakes_waiters() {
        let q: WorkQueue<u32> = WorkQueue::new();
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.get().await });
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(waiter.await.unwrap(), None);
    }
}
