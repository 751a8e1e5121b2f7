//! Upstream's EndpointSlice "efficiency" cache, shared by the endpointslice and
//! endpointslice-mirroring controllers: per object (Service or Endpoints), per address type
//! and port set, how many endpoints are desired and how many slices hold them; summed into
//! the `*_endpoints_desired`, `*_num_endpoint_slices` and `*_desired_endpoint_slices` gauges.

use std::collections::HashMap;

/// `(namespace, name)` of the Service or Endpoints.
pub type ObjectKey = (String, String);

/// One address type and port set of one object after a sync (upstream's `EfficiencyInfo`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupSize {
    /// Desired endpoints.
    pub endpoints: usize,
    /// Slices after the sync.
    pub slices: usize,
}

/// The group sizes of every synced object.
#[derive(Debug, Default)]
pub struct Efficiency {
    max_per_slice: usize,
    by_object: HashMap<ObjectKey, Vec<GroupSize>>,
}

impl Efficiency {
    /// An empty cache for slices of at most `max_per_slice` endpoints.
    pub fn new(max_per_slice: usize) -> Self {
        Efficiency {
            max_per_slice: max_per_slice.max(1),
            by_object: HashMap::new(),
        }
    }

    /// Records the groups of `key` after a sync.
    pub fn update(&mut self, key: ObjectKey, sizes: Vec<GroupSize>) {
        self.by_object.insert(key, sizes);
    }

    /// Forgets `key` (gone or no longer synced); whether it was known.
    pub fn delete(&mut self, key: &ObjectKey) -> bool {
        self.by_object.remove(key).is_some()
    }

    /// `(endpoints desired, slices, slices desired)` over every object; a group without
    /// endpoints (a placeholder slice) desires no slice.
    pub fn sums(&self) -> (usize, usize, usize) {
        let groups = self.by_object.values().flatten();
        groups.fold((0, 0, 0), |(e, s, d), g| {
            (
                e + g.endpoints,
                s + g.slices,
                d + g.endpoints.div_ceil(self.max_per_slice),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_endpoints_and_actual_and_desired_slices() {
        let mut eff = Efficiency::new(2);
        let a = ("ns".to_string(), "a".to_string());
        let b = ("ns".to_string(), "b".to_string());
        // a: 3 endpoints in one slice (2 desired); b: a placeholder and one of 1.
        eff.update(
            a.clone(),
            vec![GroupSize {
                endpoints: 3,
                slices: 1,
            }],
        );
        let placeholder = GroupSize {
            endpoints: 0,
            slices: 1,
        };
        eff.update(
            b.clone(),
            vec![
                placeholder,
                GroupSize {
                    endpoints: 1,
                    slices: 1,
                },
            ],
        );
        assert_eq!(eff.sums(), (4, 3, 3));
        assert!(eff.delete(&a));
        assert!(!eff.delete(&a));
        assert_eq!(eff.sums(), (1, 2, 1));
    }
}
