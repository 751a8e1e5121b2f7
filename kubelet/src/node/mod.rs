//! The node: host facts, the Node object and its status, the Lease heartbeat, and the
//! loops that register and keep them fresh.

pub mod host;
pub mod images;
pub mod lease;
pub mod status;
pub mod sync;
pub mod volumes_in_use;
