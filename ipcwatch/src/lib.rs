//! ipcwatch: see how processes talk, and catch them corrupting shared
//! memory.
//!
//! Data flows one way, and the modules are its stages (docs/architecture.md
//! draws the tree):
//!
//! - [`kernel`]: the only place aya appears: loading and attaching the
//!   eBPF programs, BTF offsets, syscall tables, `doctor`;
//! - [`decode`]: ring-buffer bytes -> kernel events ([`decode::RawEvent`]);
//! - [`scan`]: the state before the start, from /proc and sock_diag;
//! - [`collect`]: kernel events -> [`record::Record`]s, one tracker per
//!   family (fds and pipes, sockets, queues, regions, sync);
//! - [`model`]: the live model the records build;
//! - [`race`]: the race detector, whose findings are records too;
//! - [`sink`]: where records go (NDJSON);
//! - [`trace`]: reading a trace back, one replay for every consumer;
//! - [`report`]: `analyze` and `graph`, from a replayed model;
//! - [`session`]: a live recording, from start to summary;
//! - [`metrics`]: the recording's counters for Prometheus (`--metrics`);
//! - [`otlp`]: findings and counters sent to an OpenTelemetry endpoint
//!   (`--otlp`);
//! - [`tui`]: the terminal UI, on a session or a replay.
//!
//! [`record`], [`ids`], [`host`], [`error`] and [`text`] (untrusted text
//! made safe to show) are leaves every stage may use.

// A module reaches another through `use`, which the module-cycle check
// (`cargo xtask cycles`) sees; a path written in a function body it does
// not (the crates allowed absolute paths are in ipcwatch/clippy.toml).
#![warn(clippy::absolute_paths)]

pub mod collect;
pub mod decode;
pub mod error;
pub mod host;
pub mod ids;
pub mod kernel;
pub mod metrics;
pub mod model;
pub mod otlp;
pub mod race;
pub mod record;
pub mod report;
pub mod scan;
pub mod session;
pub mod sink;
pub mod text;
pub mod trace;
pub mod tui;

pub use error::Error;
