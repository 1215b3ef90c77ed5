//! The cost floor of ipcwatch's hooks: empty programs on the same raw
//! tracepoints (`sys_enter` and `sys_exit`, every syscall of every
//! process) while a command runs. `cargo xtask bench` runs each workload
//! under it, so the table shows what the kernel charges for the hooks
//! alone, before ipcwatch does any work in them.
//!
//! The empty program is `doctor_raw_tracepoint` in ipcwatch's own eBPF
//! object, which the ipcwatch library embeds (`kernel::loader::EBPF_OBJECT`).

use std::process::Command;

use anyhow::{Context, Result, bail};
use aya::{EbpfLoader, programs::RawTracePoint};
use ipcwatch::kernel::attach::program;
use ipcwatch::kernel::loader::EBPF_OBJECT;
use ipcwatch::kernel::preflight;
use ipcwatch_common::Config;

/// Runs `argv` with the empty hooks attached; returns its exit status.
pub fn run(argv: &[String]) -> Result<i32> {
    let Some((cmd, args)) = argv.split_first() else {
        bail!("empty-hooks needs a command after `--`");
    };
    preflight::raise_memlock();
    let mut ebpf = EbpfLoader::new()
        .override_global("CONFIG", &Config::zeroed(), true)
        .map_max_entries("EVENTS", 1 << 16)
        .load(EBPF_OBJECT)
        .context("loading the eBPF object")?;
    let p: &mut RawTracePoint =
        program(&mut ebpf, "doctor_raw_tracepoint").map_err(anyhow::Error::msg)?;
    p.load().context("loading the empty program")?;
    for tp in ["sys_enter", "sys_exit"] {
        p.attach(tp)
            .with_context(|| format!("attaching to raw tracepoint {tp}"))?;
    }
    let status = Command::new(cmd)
        .args(args)
        .status()
        .with_context(|| format!("cannot run {cmd}"))?;
    Ok(status.code().unwrap_or(1))
}
