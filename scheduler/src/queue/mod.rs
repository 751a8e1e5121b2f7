//! The scheduling queue, as upstream's PriorityQueue: an active queue ordered by the
//! QueueSort plugin, a backoff queue with per-pod exponential backoff, and a pool of
//! unschedulable pods moved back on the cluster events their rejecting plugins registered
//! or after five minutes.

mod backoff;
mod heap;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use backoff::Backoff;
use heap::Heap;

use crate::framework::{ClusterEvent, QueuedPod, Status};
use crate::snapshot::PodInfo;

/// Upstream's podMaxInUnschedulablePodsDuration.
pub const MAX_IN_UNSCHEDULABLE: Duration = Duration::from_secs(5 * 60);

/// Orders the active queue (the QueueSort plugin).
pub type LessFn = Arc<dyn Fn(&QueuedPod, &QueuedPod) -> bool + Send + Sync>;
/// Runs the PreEnqueue plugins of the pod's profile.
pub type PreEnqueueFn = Arc<dyn Fn(&PodInfo) -> Status + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
    InFlight,
}

struct Slot {
    qp: QueuedPod,
    place: Place,
    version: u64,
    since: Instant,
    backoff_until: Instant,
    updated_in_flight: bool,
}

#[derive(Default)]
struct Inner {
    slots: HashMap<String, Slot>,
    /// Uids of pods in the unschedulable pool (incl. gated), so events need not scan all.
    unschedulable: HashSet<String>,
    active: Heap<(QueuedPod, u64)>,
    backoff: BTreeSet<(Instant, u64, String)>,
    seq: u64,
    scheduling_cycle: u64,
    move_request_cycle: u64,
    closed: bool,
}

/// QueueSort order, with insertion order breaking ties (timestamps have ms resolution).
fn order(less: &LessFn, a: &(QueuedPod, u64), b: &(QueuedPod, u64)) -> bool {
    less(&a.0, &b.0) || (!less(&b.0, &a.0) && a.1 < b.1)
}

/// Pending pod counts per sub-queue (scheduler_pending_pods{queue}).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pending {
    /// activeQ.
    pub active: usize,
    /// backoffQ.
    pub backoff: usize,
    /// Unschedulable pool, excluding gated pods.
    pub unschedulable: usize,
    /// Pods held by PreEnqueue plugins.
    pub gated: usize,
}

/// The scheduling queue. Thread-safe; `pop` blocks.
pub struct SchedulingQueue {
    inner: Mutex<Inner>,
    ready: Condvar,
    less: LessFn,
    pre_enqueue: PreEnqueueFn,
    events: HashMap<&'static str, Vec<ClusterEvent>>,
    backoff: Backoff,
    start: Instant,
}

impl SchedulingQueue {
    /// A queue with the given ordering, PreEnqueue check, plugin → events map and backoff.
    pub fn new(
        less: LessFn,
        pre_enqueue: PreEnqueueFn,
        events: HashMap<&'static str, Vec<ClusterEvent>>,
        backoff: Backoff,
    ) -> Self {
        SchedulingQueue {
            inner: Mutex::default(),
            ready: Condvar::new(),
            less,
            pre_enqueue,
            events,
            backoff,
            start: Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn push_active(&self, inner: &mut Inner, uid: &str) {
        inner.seq += 1;
        let seq = inner.seq;
        inner.unschedulable.remove(uid);
        let Some(slot) = inner.slots.get_mut(uid) else {
            return;
        };
        slot.place = Place::Active;
        slot.version = seq;
        let entry = (slot.qp.clone(), seq);
        let less = &self.less;
        inner.active.push(entry, |a, b| order(less, a, b));
        self.ready.notify_one();
    }

    fn push_backoff(&self, inner: &mut Inner, uid: &str) {
        inner.seq += 1;
        let seq = inner.seq;
        inner.unschedulable.remove(uid);
        let Some(slot) = inner.slots.get_mut(uid) else {
            return;
        };
        slot.place = Place::Backoff;
        slot.version = seq;
        inner
            .backoff
            .insert((slot.backoff_until, seq, uid.to_string()));
    }

    /// Moves a pod to active or backoff depending on whether its backoff has expired.
    fn activate_or_backoff(&self, inner: &mut Inner, uid: &str, now: Instant) {
        let expired = inner.slots.get(uid).is_some_and(|s| s.backoff_until <= now);
        if expired {
            self.push_active(inner, uid)
        } else {
            self.push_backoff(inner, uid)
        }
    }

    /// Adds a new unscheduled pod (or updates it if already queued).
    pub fn add(&self, info: Arc<PodInfo>) {
        let mut inner = self.lock();
        if inner.slots.contains_key(&info.uid) {
            drop(inner);
            return self.update(info);
        }
        let uid = info.uid.clone();
        let gated = !(self.pre_enqueue)(&info).is_success();
        let now = Instant::now();
        let ts = self.now_ms();
        let qp = QueuedPod {
            info,
            timestamp_ms: ts,
            initial_attempt: Some(now),
            attempts: 0,
            unschedulable_plugins: HashSet::new(),
            gated,
        };
        inner.slots.insert(
            uid.clone(),
            Slot {
                qp,
                place: Place::Unschedulable,
                version: 0,
                since: now,
                backoff_until: now,
                updated_in_flight: false,
            },
        );
        if gated {
            inner.unschedulable.insert(uid);
        } else {
            self.push_active(&mut inner, &uid);
        }
    }

    /// Applies an update of a queued pod.
    pub fn update(&self, info: Arc<PodInfo>) {
        let mut inner = self.lock();
        let uid = info.uid.clone();
        let Some(slot) = inner.slots.get_mut(&uid) else {
            drop(inner);
            return self.add(info);
        };
        slot.qp.info = info;
        match slot.place {
            Place::InFlight => slot.updated_in_flight = true,
            Place::Active => self.push_active(&mut inner, &uid),
            Place::Backoff => {}
            Place::Unschedulable => {
                if slot.qp.gated {
                    if (self.pre_enqueue)(&slot.qp.info).is_success() {
                        slot.qp.gated = false;
                        self.push_active(&mut inner, &uid);
                    }
                } else {
                    // An updated pod may now be schedulable: give it another try.
                    self.activate_or_backoff(&mut inner, &uid, Instant::now());
                }
            }
        }
    }

    /// Forgets a pod (deleted, or scheduled by someone else).
    pub fn delete(&self, uid: &str) {
        let mut inner = self.lock();
        inner.slots.remove(uid);
        inner.unschedulable.remove(uid);
    }

    /// Waits up to `timeout` for the next pod; returns it with its scheduling cycle number.
    pub fn pop(&self, timeout: Duration) -> Option<(QueuedPod, u64)> {
        let deadline = Instant::now() + timeout;
        let mut inner = self.lock();
        loop {
            if inner.closed {
                return None;
            }
            let less = self.less.clone();
            while let Some((qp, version)) = inner.active.pop(|a, b| order(&less, a, b)) {
                let uid = qp.info.uid.clone();
                let Some(slot) = inner.slots.get_mut(&uid) else {
                    continue;
                };
                if slot.place != Place::Active || slot.version != version {
                    continue;
                }
                slot.place = Place::InFlight;
                slot.updated_in_flight = false;
                slot.qp.attempts += 1;
                let qp = slot.qp.clone();
                inner.scheduling_cycle += 1;
                return Some((qp, inner.scheduling_cycle));
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            inner = self
                .ready
                .wait_timeout(inner, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The pod's attempt is over for good (bound, or not ours to schedule): it leaves the
    /// queue. A pod stays in flight through its binding cycle, so a failed binding is
    /// requeued with its attempts and backoff, and a deletion meanwhile is seen.
    pub fn done(&self, uid: &str) {
        let mut inner = self.lock();
        if inner
            .slots
            .get(uid)
            .is_some_and(|s| s.place == Place::InFlight)
        {
            inner.slots.remove(uid);
        }
    }

    /// Puts back a pod whose attempt in `cycle` failed (scheduling or binding). Errors, and
    /// pods for which a move event arrived during the attempt, go to backoff; others to the
    /// unschedulable pool. A pod deleted meanwhile (no longer in the queue) is never put
    /// back; returns whether the pod is still queued.
    pub fn requeue(
        &self,
        info: Arc<PodInfo>,
        cycle: u64,
        rejected_by: HashSet<&'static str>,
        is_error: bool,
    ) -> bool {
        let mut inner = self.lock();
        let move_cycle = inner.move_request_cycle;
        let now = Instant::now();
        let uid = info.uid.clone();
        let Some(slot) = inner.slots.get_mut(&uid) else {
            return false;
        };
        if slot.place != Place::InFlight {
            return true;
        }
        if !slot.updated_in_flight {
            slot.qp.info = info;
        }
        slot.qp.unschedulable_plugins = rejected_by;
        slot.qp.timestamp_ms = self.start.elapsed().as_millis() as u64;
        slot.backoff_until = now + self.backoff.duration(slot.qp.attempts);
        slot.since = now;
        if is_error || slot.updated_in_flight || move_cycle >= cycle {
            self.push_backoff(&mut inner, &uid);
        } else {
            slot.place = Place::Unschedulable;
            inner.unschedulable.insert(uid);
        }
        true
    }

    /// A cluster event happened: unschedulable pods rejected by a plugin interested in it
    /// move to the active (or backoff) queue.
    pub fn on_event(&self, event: ClusterEvent) -> usize {
        let mut inner = self.lock();
        inner.move_request_cycle = inner.scheduling_cycle;
        let now = Instant::now();
        let movable: Vec<String> = inner
            .unschedulable
            .iter()
            .filter_map(|uid| inner.slots.get(uid).map(|s| (uid, s)))
            .filter(|(_, s)| s.place == Place::Unschedulable && !s.qp.gated)
            .filter(|(_, s)| {
                s.qp.unschedulable_plugins.is_empty()
                    || s.qp.unschedulable_plugins.iter().any(|p| {
                        self.events
                            .get(p)
                            .is_some_and(|evs| evs.iter().any(|r| event.matches(r)))
                    })
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in &movable {
            self.activate_or_backoff(&mut inner, uid, now);
        }
        movable.len()
    }

    /// Moves pods whose backoff expired to the active queue, and pods that stayed in the
    /// unschedulable pool longer than `max_unschedulable` to active/backoff.
    pub fn flush(&self, max_unschedulable: Duration) {
        let mut inner = self.lock();
        let now = Instant::now();
        while let Some(first) = inner.backoff.first().cloned() {
            if first.0 > now {
                break;
            }
            inner.backoff.pop_first();
            let (_, version, uid) = first;
            if inner
                .slots
                .get(&uid)
                .is_some_and(|s| s.place == Place::Backoff && s.version == version)
            {
                self.push_active(&mut inner, &uid);
            }
        }
        let stale: Vec<String> = inner
            .unschedulable
            .iter()
            .filter_map(|uid| inner.slots.get(uid).map(|s| (uid, s)))
            .filter(|(_, s)| {
                s.place == Place::Unschedulable
                    && !s.qp.gated
                    && now.duration_since(s.since) >= max_unschedulable
            })
            .map(|(u, _)| u.clone())
            .collect();
        for uid in &stale {
            self.activate_or_backoff(&mut inner, uid, now);
        }
    }

    /// Counts of pending pods per sub-queue.
    pub fn pending(&self) -> Pending {
        let inner = self.lock();
        let mut p = Pending::default();
        for s in inner.slots.values() {
            match s.place {
                Place::Active => p.active += 1,
                Place::Backoff => p.backoff += 1,
                Place::Unschedulable if s.qp.gated => p.gated += 1,
                Place::Unschedulable => p.unschedulable += 1,
                Place::InFlight => {}
            }
        }
        p
    }

    /// Wakes `pop` callers and makes them return None.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests;
