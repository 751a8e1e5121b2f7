//! Helpers for the kubelet's component tests and local clusters (real parts, not mocks).

pub mod containerd;

pub use containerd::TestContainerd;
