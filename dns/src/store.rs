//! The store of Services and EndpointSlices the watches fill, and the answer index built
//! from them: every change recomputes the records of the one Service it touches.

use crate::index::Index;
use crate::model::{ServiceInfo, ServiceKey, SliceInfo};
use crate::records;
use hickory_proto::rr::Name;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// What the store holds; readers answer from it under a read lock.
#[derive(Debug, Default)]
pub struct State {
    services: HashMap<ServiceKey, ServiceInfo>,
    slices: HashMap<ServiceKey, Vec<SliceInfo>>,
    slice_owner: HashMap<(String, String), ServiceKey>,
    /// Records by name.
    pub index: Index,
    /// The SOA serial: Unix time of the last change, as CoreDNS serves it.
    pub serial: u32,
}

impl State {
    /// The ClusterIPs of Service `key` (the DNS Service's own, for `ns.dns.<zone>`).
    pub fn cluster_ips(&self, key: &ServiceKey) -> Vec<IpAddr> {
        match self.services.get(key).map(|s| &s.kind) {
            Some(crate::model::ServiceKind::ClusterIp(ips)) => ips.clone(),
            _ => Vec::new(),
        }
    }

    /// How many Services are known.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }
}

/// The watched objects and the index, with the zones and TTL records are made for.
#[derive(Debug)]
pub struct Store {
    zones: Vec<Name>,
    zone_keys: Vec<String>,
    soa_names: Vec<(Name, Name)>,
    ttl: u32,
    state: RwLock<State>,
    services_synced: AtomicBool,
    slices_synced: AtomicBool,
    /// Set once the index of the first full lists is built.
    ready: AtomicBool,
}

impl Store {
    /// An empty store serving `zones` with record TTL `ttl`.
    pub fn new(zones: Vec<Name>, ttl: u32) -> Self {
        Store {
            zone_keys: zones.iter().map(crate::names::key_of).collect(),
            soa_names: zones.iter().map(crate::answer::soa_names).collect(),
            zones,
            ttl,
            state: RwLock::new(State::default()),
            services_synced: AtomicBool::new(false),
            slices_synced: AtomicBool::new(false),
            ready: AtomicBool::new(false),
        }
    }

    /// The cluster zones.
    pub fn zones(&self) -> &[Name] {
        &self.zones
    }

    /// The cluster zones' index keys.
    pub fn zone_keys(&self) -> &[String] {
        &self.zone_keys
    }

    /// The cluster zones' SOA MNAME and RNAME.
    pub fn soa_names(&self) -> &[(Name, Name)] {
        &self.soa_names
    }

    /// The record TTL.
    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// The state, for answering.
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds or updates a Service.
    pub fn apply_service(&self, svc: ServiceInfo) {
        let mut state = self.write();
        let key = svc.key.clone();
        state.services.insert(key.clone(), svc);
        self.refresh(&mut state, &key);
    }

    /// Removes a Service.
    pub fn delete_service(&self, key: &ServiceKey) {
        let mut state = self.write();
        state.services.remove(key);
        self.refresh(&mut state, key);
    }

    /// Adds or updates an EndpointSlice (also when it moved to another Service).
    pub fn apply_slice(&self, slice: SliceInfo) {
        let mut state = self.write();
        let id = (slice.service.namespace.clone(), slice.name.clone());
        let service = slice.service.clone();
        if let Some(previous) = state.slice_owner.insert(id.clone(), service.clone()) {
            if previous != service {
                Self::drop_slice(&mut state, &previous, &id.1);
                self.refresh(&mut state, &previous);
            }
        }
        let slices = state.slices.entry(service.clone()).or_default();
        match slices.iter_mut().find(|s| s.name == slice.name) {
            Some(existing) => *existing = slice,
            None => slices.push(slice),
        }
        self.refresh(&mut state, &service);
    }

    /// Removes the EndpointSlice `namespace/name`.
    pub fn delete_slice(&self, namespace: &str, name: &str) {
        let mut state = self.write();
        if let Some(service) = state
            .slice_owner
            .remove(&(namespace.to_string(), name.to_string()))
        {
            Self::drop_slice(&mut state, &service, name);
            self.refresh(&mut state, &service);
        }
    }

    fn drop_slice(state: &mut State, service: &ServiceKey, name: &str) {
        if let Some(slices) = state.slices.get_mut(service) {
            slices.retain(|s| s.name != name);
            if slices.is_empty() {
                state.slices.remove(service);
            }
        }
    }

    /// Replaces every Service (a watch's initial or re-list).
    pub fn replace_services(&self, services: Vec<ServiceInfo>) {
        let mut state = self.write();
        let mut touched: Vec<ServiceKey> = state.services.keys().cloned().collect();
        state.services = services.into_iter().map(|s| (s.key.clone(), s)).collect();
        touched.extend(state.services.keys().cloned());
        self.refresh_all(&mut state, touched);
    }

    /// Replaces every EndpointSlice (a watch's initial or re-list).
    pub fn replace_slices(&self, slices: Vec<SliceInfo>) {
        let mut state = self.write();
        let mut touched: Vec<ServiceKey> = state.slices.keys().cloned().collect();
        state.slices.clear();
        state.slice_owner.clear();
        for slice in slices {
            let id = (slice.service.namespace.clone(), slice.name.clone());
            state.slice_owner.insert(id.clone(), slice.service.clone());
            touched.push(slice.service.clone());
            state
                .slices
                .entry(slice.service.clone())
                .or_default()
                .push(slice);
        }
        self.refresh_all(&mut state, touched);
    }

    /// Recomputes the Services in `touched` — unless the first full sync is still pending:
    /// then everything is built once when it completes ([`Self::finish_initial_sync`]).
    fn refresh_all(&self, state: &mut State, mut touched: Vec<ServiceKey>) {
        if !self.lists_complete() {
            return;
        }
        touched.sort();
        touched.dedup();
        for key in touched {
            self.refresh(state, &key);
        }
    }

    /// Builds the whole index once both first lists are in, and hands the memory the
    /// lists needed back to the system.
    fn finish_initial_sync(&self) {
        let mut state = self.write();
        state.index = Index::default();
        let mut keys: Vec<ServiceKey> = state.services.keys().cloned().collect();
        keys.extend(state.slices.keys().cloned());
        keys.sort();
        keys.dedup();
        for key in keys {
            self.refresh(&mut state, &key);
        }
        drop(state);
        release_free_memory();
        self.ready.store(true, Ordering::Release);
    }

    /// Recomputes the records of Service `key` in every zone.
    fn refresh(&self, state: &mut State, key: &ServiceKey) {
        let records = match state.services.get(key) {
            None => Vec::new(),
            Some(svc) => {
                let slices: Vec<&SliceInfo> = state
                    .slices
                    .get(key)
                    .map(|s| s.iter().collect())
                    .unwrap_or_default();
                self.zones
                    .iter()
                    .flat_map(|zone| records::service_records(svc, &slices, zone, self.ttl))
                    .collect()
            }
        };
        state.index.replace(key, records);
        state.serial = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0);
    }

    /// Records that the Service watch has listed everything once.
    pub fn mark_services_synced(&self) {
        if !self.services_synced.swap(true, Ordering::AcqRel) && self.lists_complete() {
            self.finish_initial_sync();
        }
    }

    /// Records that the EndpointSlice watch has listed everything once.
    pub fn mark_slices_synced(&self) {
        if !self.slices_synced.swap(true, Ordering::AcqRel) && self.lists_complete() {
            self.finish_initial_sync();
        }
    }

    fn lists_complete(&self) -> bool {
        self.services_synced.load(Ordering::Acquire) && self.slices_synced.load(Ordering::Acquire)
    }

    /// Whether both watches have listed everything once and the index is built (`/ready`).
    pub fn is_synced(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Returns freed heap pages to the system (glibc keeps them otherwise, and the first
/// full list of a big cluster frees a lot).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EndpointInfo, PortInfo, ServiceKind};
    use hickory_proto::rr::RecordType;

    fn store() -> Store {
        Store::new(vec![crate::names::fqdn("cluster.local").unwrap()], 30)
    }

    fn headless(name: &str) -> ServiceInfo {
        ServiceInfo {
            key: ServiceKey::new("default", name),
            kind: ServiceKind::Headless,
            ports: vec![],
        }
    }

    fn slice(name: &str, service: &str, ip: &str) -> SliceInfo {
        SliceInfo {
            name: name.into(),
            service: ServiceKey::new("default", service),
            endpoints: vec![EndpointInfo {
                addresses: vec![ip.parse().unwrap()],
                hostname: None,
                ready: true,
            }],
            ports: vec![PortInfo {
                name: "http".into(),
                protocol: "tcp".into(),
                port: 80,
            }],
        }
    }

    fn a_count(store: &Store, key: &str) -> usize {
        store
            .read()
            .index
            .get(key)
            .map(|n| n.records_of(RecordType::A).count())
            .unwrap_or(0)
    }

    #[test]
    fn slices_and_services_combine_in_either_order_and_deletions_remove_records() {
        let store = store();
        store.apply_slice(slice("db-1", "db", "10.1.0.1"));
        assert_eq!(a_count(&store, "db.default.svc.cluster.local"), 0);
        store.apply_service(headless("db"));
        assert_eq!(a_count(&store, "db.default.svc.cluster.local"), 1);
        store.apply_slice(slice("db-2", "db", "10.1.0.2"));
        assert_eq!(a_count(&store, "db.default.svc.cluster.local"), 2);
        store.delete_slice("default", "db-1");
        assert_eq!(a_count(&store, "db.default.svc.cluster.local"), 1);
        store.delete_service(&ServiceKey::new("default", "db"));
        assert!(store
            .read()
            .index
            .get("db.default.svc.cluster.local")
            .is_none());
    }

    #[test]
    fn relists_replace_everything_and_sync_gates_readiness() {
        let store = store();
        store.apply_service(headless("old"));
        store.apply_slice(slice("old-1", "old", "10.1.0.1"));
        assert!(!store.is_synced());
        store.replace_services(vec![headless("new")]);
        store.replace_slices(vec![slice("new-1", "new", "10.1.0.9")]);
        store.mark_services_synced();
        assert!(!store.is_synced());
        store.mark_slices_synced();
        assert!(store.is_synced());
        assert!(store
            .read()
            .index
            .get("old.default.svc.cluster.local")
            .is_none());
        assert_eq!(a_count(&store, "new.default.svc.cluster.local"), 1);
    }
}
