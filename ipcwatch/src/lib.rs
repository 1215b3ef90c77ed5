//! ipcwatch: see how processes talk, and catch them corrupting shared
//! memory.
//!
//! Data flows one way: eBPF probes ([`loader`]) -> ring buffer -> one
//! decoder ([`decode`]) -> the [`collector`], which turns kernel events into
//! [`events::Record`]s and keeps the [`model`] -> sinks ([`ndjson`]). A
//! recorded trace replays through the same records, model and sinks.

pub mod analyze;
pub mod channels;
pub mod collector;
pub mod decode;
pub mod doctor;
pub mod events;
pub mod graph;
pub mod kernel;
pub mod loader;
pub mod locks;
pub mod model;
pub mod ndjson;
pub mod preflight;
pub mod procscan;
pub mod race;
pub mod record;
pub mod regions;
pub mod shmprobes;
pub mod sockdiag;
pub mod spawn;
pub mod tui;

/// Errors at the edges of the library (kernel, privileges, files).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Privileges(String),
    #[error("{0}")]
    Tracefs(String),
    #[error("kernel BTF: {0}")]
    Btf(String),
    #[error("{0}")]
    Load(String),
    #[error("{0}")]
    Spawn(String),
}
