//! Event handlers over the shared informers in the simpler shape most controllers use
//! (object + applied/deleted). Only the garbage collector keeps its own (metadata-only)
//! watches.

use kube::Resource;

use crate::machinery::informers::{self, Informer};

/// What changed, as the handler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Added or modified (also every object of a (re)list).
    Applied,
    /// Deleted.
    Deleted,
}

/// Registers `handler` on the shared `informer`: adds and updates are
/// [`Change::Applied`] (with the new object), deletes [`Change::Deleted`] (with the final
/// state). A late registrant is first told every cached object as applied.
pub fn on<K>(informer: &Informer<K>, handler: impl Fn(&K, Change) + Send + Sync + 'static)
where
    K: Resource + Clone + Send + Sync + 'static,
{
    informer.add_handler(move |c| match c {
        informers::Change::Added(o) | informers::Change::Updated { new: o, .. } => {
            handler(o, Change::Applied)
        }
        informers::Change::Deleted(o) => handler(o, Change::Deleted),
    });
}

pub use super::wait_synced;
