//! The workload controllers' informers come from the process's shared factory.

pub use crate::informers::factory::InformerFactory;
