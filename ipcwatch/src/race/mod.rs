//! The race detector: unsynchronized concurrent writers to shared regions.
//!
//! Default mode, collision sampling: [`hotwords`] finds the words of each
//! shared region that keep changing (no traps), [`detector`] arms write
//! watchpoints on a few of them for a short window in every thread of
//! every process that maps them, and the kernel holds each trapped write
//! for a moment (`ipcwatch-ebpf/src/probes/watch.rs`). Two writes in flight at
//! once are a race caught in the act; [`insn`] drops the collisions of
//! atomic instructions, [`symbols`] names the code.

pub mod detector;
pub mod hb;
pub mod hotwords;
pub mod insn;
pub mod pipes;
pub mod symbols;

use crate::record::{RaceLine, Record};

/// The race analyses that read the record stream. The collector runs them
/// live; `analyze` runs them again over a trace.
#[derive(Debug, Default)]
pub struct Analyses {
    pub pipes: pipes::PipeInterleave,
    /// Deep mode only.
    pub hb: Option<hb::HappensBefore>,
}

impl Analyses {
    /// Everything that can be recomputed from a trace.
    pub fn offline() -> Self {
        Analyses {
            pipes: pipes::PipeInterleave::default(),
            hb: Some(hb::HappensBefore::new()),
        }
    }

    pub fn apply(&mut self, r: &Record) -> Option<RaceLine> {
        if let Some(race) = self.pipes.apply(r) {
            return Some(race);
        }
        self.hb.as_mut().and_then(|hb| hb.apply(r))
    }
}
