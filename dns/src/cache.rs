//! The cache of forwarded answers, as CoreDNS's `cache 30` in kubeadm's Corefile: positive
//! and negative answers kept for their TTL (negative: the SOA minimum) capped at the
//! maximum TTL, served with TTLs counted down. Cluster answers are not cached: they are
//! computed from memory already.

use crate::metrics::CacheKind;
use crate::names;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// TTL of negative answers without an SOA.
const DENIAL_DEFAULT_TTL: u32 = 5;

/// What a cached answer is found by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    name: String,
    qtype: RecordType,
    dnssec_ok: bool,
}

impl CacheKey {
    /// The key of a question.
    pub fn new(qname: &hickory_proto::rr::Name, qtype: RecordType, dnssec_ok: bool) -> Self {
        CacheKey {
            name: names::key_of(qname),
            qtype,
            dnssec_ok,
        }
    }

    /// The key of a question whose name's index key is `name`.
    pub fn from_key(name: String, qtype: RecordType, dnssec_ok: bool) -> Self {
        CacheKey {
            name,
            qtype,
            dnssec_ok,
        }
    }
}

#[derive(Debug)]
struct Entry {
    response: Message,
    stored: Instant,
    ttl: u32,
    kind: CacheKind,
}

/// The entries and how many there are of each kind.
#[derive(Debug, Default)]
struct Entries {
    map: HashMap<CacheKey, Entry>,
    success: usize,
}

impl Entries {
    fn remove(&mut self, key: &CacheKey) {
        if let Some(e) = self.map.remove(key) {
            if e.kind == CacheKind::Success {
                self.success -= 1;
            }
        }
    }

    fn insert(&mut self, key: CacheKey, entry: Entry) {
        self.remove(&key);
        if entry.kind == CacheKind::Success {
            self.success += 1;
        }
        self.map.insert(key, entry);
    }
}

/// A bounded TTL cache of upstream responses.
#[derive(Debug)]
pub struct Cache {
    entries: Mutex<Entries>,
    capacity: usize,
    max_ttl: u32,
}

/// How long `response` may be cached and as what; `None` when it must not be.
pub fn cacheable(response: &Message, max_ttl: u32) -> Option<(u32, CacheKind)> {
    let min_of = |records: &[Record]| records.iter().map(|r| r.ttl).min();
    let (ttl, kind) = match response.response_code {
        ResponseCode::NoError if !response.answers.is_empty() => {
            (min_of(&response.answers)?, CacheKind::Success)
        }
        ResponseCode::NoError | ResponseCode::NXDomain => {
            let soa_ttl = response.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            });
            (soa_ttl.unwrap_or(DENIAL_DEFAULT_TTL), CacheKind::Denial)
        }
        _ => return None,
    };
    let ttl = ttl.min(max_ttl);
    (ttl > 0 && !response.truncation).then_some((ttl, kind))
}

impl Cache {
    /// A cache of at most `capacity` answers kept at most `max_ttl` seconds.
    pub fn new(capacity: usize, max_ttl: u32) -> Self {
        Cache {
            entries: Mutex::new(Entries::default()),
            capacity,
            max_ttl,
        }
    }

    /// Whether caching is on (capacity and TTL above zero).
    pub fn enabled(&self) -> bool {
        self.capacity > 0 && self.max_ttl > 0
    }

    /// The cached response for `key` at `now`, its TTLs reduced by its age.
    pub fn get(&self, key: &CacheKey, now: Instant) -> Option<(Message, CacheKind)> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.map.get(key)?;
        let age = now.saturating_duration_since(entry.stored);
        if age >= Duration::from_secs(u64::from(entry.ttl)) {
            entries.remove(key);
            return None;
        }
        let age = age.as_secs() as u32;
        let mut response = entry.response.clone();
        for r in response
            .answers
            .iter_mut()
            .chain(response.authorities.iter_mut())
            .chain(response.additionals.iter_mut())
        {
            r.ttl = r.ttl.min(entry.ttl).saturating_sub(age);
        }
        Some((response, entry.kind))
    }

    /// Stores `response` under `key` when it is cacheable; returns its kind if stored.
    pub fn insert(&self, key: CacheKey, response: &Message, now: Instant) -> Option<CacheKind> {
        if !self.enabled() {
            return None;
        }
        let (ttl, kind) = cacheable(response, self.max_ttl)?;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.map.len() >= self.capacity && !entries.map.contains_key(&key) {
            // Evict an arbitrary entry (HashMap order is randomised), as CoreDNS evicts
            // randomly within a full shard.
            if let Some(victim) = entries.map.keys().next().cloned() {
                entries.remove(&victim);
            }
        }
        let mut stored = response.clone();
        stored.edns = None;
        entries.insert(
            key,
            Entry {
                response: stored,
                stored: now,
                ttl,
                kind,
            },
        );
        Some(kind)
    }

    /// Entries per kind, (success, denial); expired ones count until looked up.
    pub fn sizes(&self) -> (usize, usize) {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        (entries.success, entries.map.len() - entries.success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::address_record;
    use hickory_proto::rr::rdata::SOA;
    use hickory_proto::rr::Name;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn positive(ttl: u32) -> Message {
        let mut m = Message::response(1, hickory_proto::op::OpCode::Query);
        m.add_answer(address_record(
            name("example.com."),
            ttl,
            "192.0.2.1".parse().unwrap(),
        ));
        m
    }

    fn negative(soa_ttl: u32, minimum: u32) -> Message {
        let mut m = Message::response(1, hickory_proto::op::OpCode::Query);
        m.metadata.response_code = ResponseCode::NXDomain;
        m.add_authority(Record::from_rdata(
            name("com."),
            soa_ttl,
            RData::SOA(SOA::new(
                name("a.com."),
                name("b.com."),
                1,
                1,
                1,
                1,
                minimum,
            )),
        ));
        m
    }

    #[test]
    fn ttls_are_capped_and_counted_down_then_expire() {
        let cache = Cache::new(10, 30);
        let key = CacheKey::new(&name("Example.COM."), RecordType::A, false);
        let t0 = Instant::now();
        assert_eq!(
            cache.insert(key.clone(), &positive(300), t0),
            Some(CacheKind::Success)
        );
        let (hit, kind) = cache.get(&key, t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(kind, CacheKind::Success);
        assert_eq!(hit.answers[0].ttl, 20);
        assert!(cache.get(&key, t0 + Duration::from_secs(31)).is_none());
        // Lookups are case-insensitive.
        cache.insert(key, &positive(300), t0);
        let lower = CacheKey::new(&name("example.com."), RecordType::A, false);
        assert!(cache.get(&lower, t0).is_some());
    }

    #[test]
    fn denials_use_the_soa_minimum_and_failures_are_not_cached() {
        assert_eq!(
            cacheable(&negative(3600, 10), 30),
            Some((10, CacheKind::Denial))
        );
        assert_eq!(
            cacheable(&negative(3600, 900), 30),
            Some((30, CacheKind::Denial))
        );
        let mut fail = positive(30);
        fail.metadata.response_code = ResponseCode::ServFail;
        assert_eq!(cacheable(&fail, 30), None);
        assert_eq!(cacheable(&positive(0), 30), None);
    }

    #[test]
    fn capacity_is_bounded() {
        let cache = Cache::new(2, 30);
        let t0 = Instant::now();
        for n in ["a.", "b.", "c."] {
            cache.insert(
                CacheKey::new(&name(n), RecordType::A, false),
                &positive(30),
                t0,
            );
        }
        assert_eq!(cache.sizes(), (2, 0));
        assert!(!Cache::new(0, 30).enabled());
    }
}
