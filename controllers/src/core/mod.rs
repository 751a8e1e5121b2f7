//! Controllers of core (`v1`) objects and of API machinery: service accounts and their
//! tokens, namespaces, the garbage collector, nodes (lifecycle, IPAM, taint eviction, TTL),
//! resource quota, pod GC and bootstrap tokens.

pub mod bootstrap;
pub mod gc;
pub mod namespace;
pub mod node;
pub mod node_ipam;
pub mod podgc;
pub mod resourcequota;
pub mod serviceaccount;
pub mod serviceaccount_token;
pub mod taint_eviction;
pub mod ttl;
