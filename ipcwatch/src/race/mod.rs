//! The race detector: unsynchronized concurrent writers to shared regions.
//!
//! Default mode, collision sampling: [`hotwords`] finds the words of each
//! shared region that keep changing (no traps), [`detector`] arms write
//! watchpoints on a few of them for a short window in every thread of
//! every process that maps them, and the kernel holds each trapped write
//! for a moment (`ipcwatch-ebpf/src/watch.rs`). Two writes in flight at
//! once are a race caught in the act; [`insn`] drops the collisions of
//! atomic instructions, [`symbols`] names the code.

pub mod detector;
pub mod hb;
pub mod hotwords;
pub mod insn;
pub mod symbols;
