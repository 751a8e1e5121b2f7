//! Cluster events that move pods out of the unschedulable pool.

/// The kind of object an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// A Node.
    Node,
    /// An assigned Pod (bound to a node).
    AssignedPod,
    /// The unscheduled pod itself.
    UnscheduledPod,
    /// PVs, PVCs, StorageClasses, CSINodes.
    Storage,
    /// A Namespace.
    Namespace,
    /// A PodDisruptionBudget or anything else.
    Other,
}

/// What happened to the object (bit flags as upstream's ActionType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Action(pub u32);

impl Action {
    /// Created.
    pub const ADD: Action = Action(1);
    /// Deleted.
    pub const DELETE: Action = Action(2);
    /// Labels changed.
    pub const UPDATE_LABEL: Action = Action(4);
    /// Allocatable (or requests) changed.
    pub const UPDATE_ALLOCATABLE: Action = Action(8);
    /// Taints (or tolerations) changed.
    pub const UPDATE_TAINT: Action = Action(16);
    /// spec.unschedulable or conditions changed.
    pub const UPDATE_OTHER: Action = Action(32);
    /// Any update.
    pub const UPDATE: Action = Action(4 | 8 | 16 | 32);
    /// Anything.
    pub const ALL: Action = Action(u32::MAX);

    /// Whether the two sets overlap.
    pub fn intersects(self, o: Action) -> bool {
        self.0 & o.0 != 0
    }
}

impl std::ops::BitOr for Action {
    type Output = Action;
    fn bitor(self, o: Action) -> Action {
        Action(self.0 | o.0)
    }
}

/// An event a plugin registers interest in, or one that happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClusterEvent {
    /// The object kind.
    pub resource: Resource,
    /// The actions.
    pub action: Action,
}

impl ClusterEvent {
    /// Shorthand constructor.
    pub const fn new(resource: Resource, action: Action) -> Self {
        ClusterEvent { resource, action }
    }

    /// Whether an event that happened (`self`) matches a registration.
    pub fn matches(&self, registered: &ClusterEvent) -> bool {
        self.resource == registered.resource && self.action.intersects(registered.action)
    }

    /// A label for metrics (`event` label of scheduler_queue_incoming_pods_total).
    pub fn label(&self) -> &'static str {
        match (self.resource, self.action) {
            (Resource::Node, Action::ADD) => "NodeAdd",
            (Resource::Node, _) => "NodeUpdate",
            (Resource::AssignedPod, Action::DELETE) => "AssignedPodDelete",
            (Resource::AssignedPod, Action::ADD) => "AssignedPodAdd",
            (Resource::AssignedPod, _) => "AssignedPodUpdate",
            (Resource::UnscheduledPod, _) => "UnschedulablePodUpdate",
            (Resource::Storage, _) => "StorageChange",
            (Resource::Namespace, _) => "NamespaceChange",
            (Resource::Other, _) => "Other",
        }
    }
}
