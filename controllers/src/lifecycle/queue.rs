//! A work queue as client-go's: a key is queued at most once, never processed by two
//! workers at a time, and failed keys come back with per-item exponential backoff.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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
}

/// A deduplicating, rate-limited work queue. Cheap to clone.
#[derive(Debug)]
pub struct WorkQueue<K> {
    state: Arc<Mutex<State<K>>>,
    notify: Arc<Notify>,
    backoff: Arc<ItemBackoff<K>>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        WorkQueue {
            state: self.state.clone(),
            notify: self.notify.clone(),
            backoff: self.backoff.clone(),
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
            state: Arc::new(Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                shut_down: false,
            })),
            notify: Arc::new(Notify::new()),
            backoff: Arc::new(ItemBackoff::new(base, max)),
        }
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
        if !s.processing.contains(&key) {
            s.queue.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Queues `key` after `delay`.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(key);
        });
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
        self.lock().shut_down = true;
        self.notify.notify_waiters();
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
