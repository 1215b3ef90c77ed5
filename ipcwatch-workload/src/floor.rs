//! The cost floor of ipcwatch's hooks: empty programs on the same raw
//! tracepoints (`sys_enter` and `sys_exit`, every syscall of every
//! process) while a command runs. `cargo xtask bench` runs each workload
//! under it, so the table shows what the kernel charges for the hooks
//! alone, before ipcwatch does any work in them.
//!
//! `--hook` weighs the other kinds of hook a kernel may offer (tp_btf on
//! the same tracepoints; fentry, fexit, kprobe or kretprobe on chosen
//! kernel functions such as `pipe_read`): `cargo xtask kernels
//! --hook-cost` runs the ping-pongs under each in Debian's kernels, where
//! kprobes and fentry exist (this project's host has neither).
//!
//! The empty programs are the `doctor_*` ones in ipcwatch's own eBPF
//! object, which the ipcwatch library embeds (`kernel::loader::EBPF_OBJECT`).

use std::process::Command;

use anyhow::{Context, Result, bail};
use aya::{
    Btf, Ebpf, EbpfLoader,
    programs::{BtfTracePoint, FEntry, FExit, KProbe, RawTracePoint},
};
use clap::ValueEnum;
use ipcwatch::kernel::attach::program;
use ipcwatch::kernel::loader::EBPF_OBJECT;
use ipcwatch::kernel::preflight;
use ipcwatch_common::Config;

/// A kind of hook for the empty programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Hook {
    RawTp,
    TpBtf,
    Fentry,
    Fexit,
    Kprobe,
    Kretprobe,
}

fn object() -> Result<Ebpf> {
    EbpfLoader::new()
        .override_global("CONFIG", &Config::zeroed(), true)
        .map_max_entries("EVENTS", 1 << 16)
        .load(EBPF_OBJECT)
        .context("loading the eBPF object")
}

/// Attach the empty programs; the returned objects keep them attached.
fn attach(hook: Hook, functions: &[String]) -> Result<Vec<Ebpf>> {
    let btf = || Btf::from_sys_fs().context("reading the kernel's BTF");
    let mut held = Vec::new();
    match hook {
        Hook::RawTp => {
            let mut ebpf = object()?;
            let p: &mut RawTracePoint =
                program(&mut ebpf, "doctor_raw_tracepoint").map_err(anyhow::Error::msg)?;
            p.load().context("loading the empty program")?;
            for tp in ["sys_enter", "sys_exit"] {
                p.attach(tp)
                    .with_context(|| format!("attaching to raw tracepoint {tp}"))?;
            }
            held.push(ebpf);
        }
        Hook::Kprobe | Hook::Kretprobe => {
            let mut ebpf = object()?;
            let name = if hook == Hook::Kprobe {
                "doctor_kprobe"
            } else {
                "doctor_kretprobe"
            };
            let p: &mut KProbe = program(&mut ebpf, name).map_err(anyhow::Error::msg)?;
            p.load().context("loading the empty program")?;
            for f in functions {
                p.attach(f.as_str(), 0)
                    .with_context(|| format!("attaching {name} to {f}"))?;
            }
            held.push(ebpf);
        }
        // A BTF-typed program is bound to its target when it loads: one
        // object per target.
        Hook::TpBtf => {
            let btf = btf()?;
            for tp in ["sys_enter", "sys_exit"] {
                let mut ebpf = object()?;
                let p: &mut BtfTracePoint =
                    program(&mut ebpf, "doctor_tp_btf").map_err(anyhow::Error::msg)?;
                p.load(tp, &btf)
                    .with_context(|| format!("loading the empty tp_btf program for {tp}"))?;
                p.attach()
                    .with_context(|| format!("attaching to tp_btf {tp}"))?;
                held.push(ebpf);
            }
        }
        Hook::Fentry | Hook::Fexit => {
            let btf = btf()?;
            for f in functions {
                let mut ebpf = object()?;
                if hook == Hook::Fentry {
                    let p: &mut FEntry =
                        program(&mut ebpf, "doctor_fentry").map_err(anyhow::Error::msg)?;
                    p.load(f, &btf)
                        .with_context(|| format!("loading the empty fentry program for {f}"))?;
                    p.attach()
                        .with_context(|| format!("attaching fentry to {f}"))?;
                } else {
                    let p: &mut FExit =
                        program(&mut ebpf, "doctor_fexit").map_err(anyhow::Error::msg)?;
                    p.load(f, &btf)
                        .with_context(|| format!("loading the empty fexit program for {f}"))?;
                    p.attach()
                        .with_context(|| format!("attaching fexit to {f}"))?;
                }
                held.push(ebpf);
            }
        }
    }
    Ok(held)
}

/// Runs `argv` with the empty hooks attached; returns its exit status.
pub fn run(hook: Hook, functions: &[String], argv: &[String]) -> Result<i32> {
    let Some((cmd, args)) = argv.split_first() else {
        bail!("empty-hooks needs a command after `--`");
    };
    preflight::raise_memlock();
    let _held = attach(hook, functions)?;
    let status = Command::new(cmd)
        .args(args)
        .status()
        .with_context(|| format!("cannot run {cmd}"))?;
    Ok(status.code().unwrap_or(1))
}
