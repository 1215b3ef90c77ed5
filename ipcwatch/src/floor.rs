//! The cost floor of ipcwatch's hooks: empty programs on the same raw
//! tracepoints (`sys_enter` and `sys_exit`, every syscall of every
//! process) while a command runs. `cargo xtask bench` runs each workload
//! under it, so the table shows what the kernel charges for the hooks
//! alone, before ipcwatch does any work in them.

use std::process::Command;

use aya::{EbpfLoader, programs::RawTracePoint};
use ipcwatch_common::Config;

use crate::error::Error;
use crate::kernel::{attach::program, loader::EBPF_OBJECT, preflight};

/// Runs `argv` with the empty hooks attached; returns its exit status.
pub fn run(argv: &[String]) -> Result<i32, Error> {
    let Some((cmd, args)) = argv.split_first() else {
        return Err(Error::Spawn(
            "empty-hooks needs a command after `--`".into(),
        ));
    };
    preflight::raise_memlock();
    let mut ebpf = EbpfLoader::new()
        .override_global("CONFIG", &Config::zeroed(), true)
        .map_max_entries("EVENTS", 1 << 16)
        .load(EBPF_OBJECT)
        .map_err(|e| Error::Load(format!("loading the eBPF object: {e}")))?;
    let p: &mut RawTracePoint = program(&mut ebpf, "doctor_raw_tracepoint").map_err(Error::Load)?;
    p.load()
        .map_err(|e| Error::Load(format!("loading the empty program: {e}")))?;
    for tp in ["sys_enter", "sys_exit"] {
        p.attach(tp)
            .map_err(|e| Error::Load(format!("attaching to raw tracepoint {tp}: {e}")))?;
    }
    let status = Command::new(cmd)
        .args(args)
        .status()
        .map_err(|e| Error::Spawn(format!("cannot run {cmd}: {e}")))?;
    Ok(status.code().unwrap_or(1))
}
