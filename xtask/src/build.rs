//! Release builds of the binaries the benchmarks run.

use std::path::PathBuf;

use anyhow::Result;

use crate::cmd::{cargo, root, run};
use crate::setup;

pub fn build_release() -> Result<PathBuf> {
    run(cargo().args(["build", "--release", "--package", "ipcwatch"]))?;
    Ok(root().join("target/release/ipcwatch"))
}

/// What a benchmark runs: ipcwatch, the tracer, and ipcwatch-workload,
/// the programs it traces (not shipped with ipcwatch).
pub struct Bins {
    pub ipcwatch: PathBuf,
    pub workload: PathBuf,
}

pub fn build_workload_release() -> Result<PathBuf> {
    run(cargo().args(["build", "--release", "--package", "ipcwatch-workload"]))?;
    Ok(root().join("target/release/ipcwatch-workload"))
}

/// Release builds of both binaries.
pub fn build_release_with_workload() -> Result<Bins> {
    Ok(Bins {
        ipcwatch: build_release()?,
        workload: build_workload_release()?,
    })
}

/// `bin` as the tracer when given, or a release build; the workloads
/// always come from a release build of this tree (after the set-up: the
/// workload crate builds the eBPF object through the ipcwatch library).
pub fn given_or_built(bin: Option<PathBuf>) -> Result<Bins> {
    setup::ensure()?;
    match bin {
        Some(ipcwatch) => Ok(Bins {
            ipcwatch,
            workload: build_workload_release()?,
        }),
        None => build_release_with_workload(),
    }
}
