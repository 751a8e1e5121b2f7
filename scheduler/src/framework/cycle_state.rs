//! CycleState: data plugins share between extension points within one scheduling cycle.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

/// Typed per-cycle storage, keyed by plugin-chosen names. Values are `Arc` so the state can
/// be cloned cheaply for preemption dry-runs.
#[derive(Default, Clone)]
pub struct CycleState {
    data: HashMap<&'static str, Arc<dyn Any + Send + Sync>>,
    /// Plugins whose PreFilter returned Skip: their Filter is not run.
    pub skip_filter: Vec<&'static str>,
    /// Plugins whose PreScore returned Skip: their Score is not run.
    pub skip_score: Vec<&'static str>,
}

impl CycleState {
    /// Stores a value under a key, replacing any previous one.
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        self.data.insert(key, Arc::new(value));
    }

    /// Reads a value written earlier in the cycle.
    pub fn read<T: Any + Send + Sync>(&self, key: &'static str) -> Option<&T> {
        self.data.get(key).and_then(|v| v.downcast_ref::<T>())
    }

    /// Mutable access to a value (copy-on-write if shared with a clone).
    pub fn read_mut<T: Any + Send + Sync + Clone>(&mut self, key: &'static str) -> Option<&mut T> {
        let slot = self.data.get_mut(key)?;
        if !slot.is::<T>() {
            return None;
        }
        if Arc::get_mut(slot).is_none() {
            let copy: T = slot.downcast_ref::<T>()?.clone();
            *slot = Arc::new(copy);
        }
        Arc::get_mut(slot)?.downcast_mut::<T>()
    }
}

impl std::fmt::Debug for CycleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CycleState")
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_and_copy_on_write() {
        let mut s = CycleState::default();
        s.write("a", vec![1, 2]);
        let snapshot = s.clone();
        s.read_mut::<Vec<i32>>("a").unwrap().push(3);
        assert_eq!(s.read::<Vec<i32>>("a").unwrap(), &vec![1, 2, 3]);
        assert_eq!(snapshot.read::<Vec<i32>>("a").unwrap(), &vec![1, 2]);
        assert!(s.read::<String>("a").is_none());
    }
}
