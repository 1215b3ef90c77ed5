//! `ipcwatch doctor`: what this kernel supports, found by really loading
//! and attaching a program of each kind.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;

use aya::{
    Btf, Ebpf, EbpfLoader,
    programs::{
        BtfTracePoint, FEntry, KProbe, PerfEvent, RawTracePoint, TracePoint, UProbe,
        uprobe::UProbeScope,
    },
};
use ipcwatch_common::Config;
use rustix::thread::CapabilitySet;
use serde::Serialize;

use crate::host::release;
use crate::kernel::loader::{Options, hits, load_object, load_syscall_programs, watchpoint};
use crate::kernel::privileges::{KEPT, Kept, LOCK_PROBES, PARANOID, kept_set, paranoid};
use crate::kernel::shm::system_libc;
use crate::kernel::{
    attach::{load_btf_or_raw, load_error, program},
    btf, object, preflight,
};
use crate::text::Clean;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub feature: &'static str,
    pub supported: bool,
    /// The error when it is not supported, or what was tried.
    pub detail: String,
    /// What ipcwatch loses without it.
    pub loses: &'static str,
    /// ipcwatch cannot run without it.
    pub required: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub kernel: String,
    pub checks: Vec<Check>,
    /// The capabilities a recording keeps once it has started, and why
    /// (every other one is dropped, and no_new_privs is set).
    pub kept_capabilities: Vec<Kept>,
}

impl Report {
    /// Everything ipcwatch cannot do without is there.
    pub fn usable(&self) -> bool {
        self.checks.iter().all(|c| c.supported || !c.required)
    }

    pub fn text(&self) -> String {
        let mut s = format!("ipcwatch doctor: Linux {}\n\n", Clean(&self.kernel));
        s.push_str(&format!("{:<20} {:<4} {}\n", "FEATURE", "OK", "DETAIL"));
        for c in &self.checks {
            let ok = if c.supported { "yes" } else { "NO" };
            s.push_str(&format!(
                "{:<20} {:<4} {}\n",
                c.feature,
                ok,
                Clean(&c.detail)
            ));
            if !c.supported {
                s.push_str(&format!("{:<20} {:<4} without it: {}\n", "", "", c.loses));
            }
        }
        s.push_str(
            "\nAfter start-up a recording keeps only these capabilities (and sets no_new_privs):\n",
        );
        for k in &self.kept_capabilities {
            s.push_str(&format!("  {:<23} {}\n", k.name, k.why));
        }
        s.push('\n');
        s.push_str(if self.usable() {
            "ipcwatch can trace on this kernel.\n"
        } else {
            "ipcwatch cannot trace on this kernel: a required feature is missing.\n"
        });
        s
    }
}

// A word for the watchpoint test to watch.
static WATCHED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn result(r: Result<String, String>) -> (bool, String) {
    match r {
        Ok(d) => (true, d),
        Err(e) => (false, e),
    }
}

/// An error with its causes ("opening X: No such file or directory").
fn err(e: impl std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// Collects the checks as they are made.
#[derive(Default)]
struct Checks(Vec<Check>);

impl Checks {
    fn add(
        &mut self,
        feature: &'static str,
        r: Result<String, String>,
        loses: &'static str,
        required: bool,
    ) {
        let (supported, detail) = result(r);
        self.0.push(Check {
            feature,
            supported,
            detail,
            loses,
            required,
        });
    }

    fn report(self) -> Report {
        let kept = kept_set(false);
        Report {
            kernel: release(),
            checks: self.0,
            kept_capabilities: KEPT
                .iter()
                .filter(|k| kept.contains(k.set))
                .copied()
                .chain(kept.contains(CapabilitySet::SYS_ADMIN).then_some(if paranoid() {
                    PARANOID
                } else {
                    Kept {
                        name: "CAP_SYS_ADMIN",
                        set: CapabilitySet::SYS_ADMIN,
                        why: "opens /proc/PID/map_files/* (this kernel has no CAP_CHECKPOINT_RESTORE)",
                    }
                }))
                .chain((!kept.contains(CapabilitySet::SYS_ADMIN)).then_some(LOCK_PROBES))
                .collect(),
        }
    }
}

/// Every feature, tested by really using it on this kernel.
pub fn run() -> Report {
    let mut checks = Checks::default();
    preconditions(&mut checks);
    preflight::raise_memlock();
    let choice = object::chosen();
    checks.add(
        "atomics",
        match &choice.fetch_add {
            Ok(()) => Ok(choice.describe()),
            Err(_) => Err(choice.describe()),
        },
        "nothing: the compat object, which needs no atomic fetch-and-add, is loaded instead",
        false,
    );
    let loaded = EbpfLoader::new()
        .override_global("CONFIG", &Config::zeroed(), true)
        .map_max_entries("EVENTS", 1 << 16)
        .load(choice.object());
    let ring = "everything: events reach userspace through it";
    let mut ebpf = match loaded {
        Ok(e) => {
            checks.add(
                "ring buffer",
                Ok("BPF_MAP_TYPE_RINGBUF map created".into()),
                ring,
                true,
            );
            e
        }
        Err(e) => {
            let msg = format!("loading the eBPF object failed: {e}");
            checks.add("ring buffer", Err(msg), ring, true);
            return checks.report();
        }
    };
    tracepoints(&mut checks, &mut ebpf);
    let btf = Btf::from_sys_fs().map_err(err);
    checks.add(
        "tp_btf",
        (|| {
            let btf = btf.as_ref().map_err(Clone::clone)?;
            let p: &mut BtfTracePoint = program(&mut ebpf, "doctor_tp_btf")?;
            p.load("sched_process_fork", btf)
                .map_err(|e| load_error("doctor_tp_btf", &e))?;
            p.attach().map_err(err)?;
            Ok("attached to sched_process_fork".into())
        })(),
        "speed only: the syscall probes fall back to raw tracepoints (a helper call per kernel read)",
        false,
    );
    syscall_programs(&mut checks);
    uprobe_and_watchpoint(&mut checks, &mut ebpf);
    unused_by_ipcwatch(&mut checks, &mut ebpf, &btf);
    landlock(&mut checks);
    checks.report()
}

/// The programs `record` cannot do without, loaded as it loads them (the
/// object configured from this kernel's BTF, tp_btf or the raw
/// tracepoint): the verifier of one kernel accepts what another's
/// refuses, and the small programs of the other checks say nothing
/// about it.
fn syscall_programs(checks: &mut Checks) {
    let opts = Options {
        listed_only: true,
        ring_bytes: 1 << 16,
        ..Options::default()
    };
    let mut families = Vec::new();
    checks.add(
        "syscall programs",
        (|| {
            let mut ebpf = load_object(&opts).map_err(err)?;
            let mut skipped = Vec::new();
            let loaded = load_syscall_programs(&mut ebpf, &mut skipped)
                .map_err(|e| skipped.iter().fold(e, |e, s| format!("{e}; {s}")))?;
            // sys_enter (close, the start of large pipe writes) is not
            // required: record goes on without it, with a warning.
            let enter = load_btf_or_raw(&mut ebpf, "ipcwatch_sys_enter", "sys_enter", &mut skipped);
            if let Err(e) = &enter {
                families.push(format!("sys_enter: {e}"));
            }
            families.extend(
                skipped
                    .iter()
                    .filter(|s| !s.probe.starts_with("tp_btf:"))
                    .map(ToString::to_string),
            );
            let mut detail = loaded
                .iter()
                .map(ToString::to_string)
                .chain(enter.iter().map(ToString::to_string))
                .collect::<Vec<_>>()
                .join(", ");
            for s in skipped.iter().filter(|s| s.probe.starts_with("tp_btf:")) {
                detail.push_str(&format!("; {s}"));
            }
            Ok(detail)
        })(),
        "everything: no syscall is traced",
        true,
    );
    // The live TUI's variant: reads and writes summed in the kernel
    // (`IO_TOTALS`), a branch the programs above do not hold.
    let totals = Options {
        aggregate: true,
        ..opts
    };
    checks.add(
        "io totals",
        (|| {
            let mut ebpf = load_object(&totals).map_err(err)?;
            let mut skipped = Vec::new();
            load_syscall_programs(&mut ebpf, &mut skipped)?;
            match skipped.iter().find(|s| !s.probe.starts_with("tp_btf:")) {
                Some(s) => Err(s.to_string()),
                None => Ok("the syscall programs load with the live TUI's in-kernel totals".into()),
            }
        })(),
        "speed only: the live TUI gets one event per read and write, as with --per-event",
        false,
    );
    if !families.is_empty() {
        checks.add(
            "syscall families",
            Err(families.join("; ")),
            "the events of the families named (record warns and goes on without them)",
            false,
        );
    }
}

/// The symbolizer worker's confinement, tried in a child process (it
/// binds the process that asks for it for good).
fn landlock(checks: &mut Checks) {
    use crate::kernel::privileges::{Confinement, confine_to_reading};
    // SAFETY: the child only makes system calls and exits.
    let pid = unsafe { libc::fork() };
    let r = if pid < 0 {
        Err(format!("fork: {}", std::io::Error::last_os_error()))
    } else if pid == 0 {
        let code = match rustix::thread::set_no_new_privs(true).map(|()| confine_to_reading()) {
            Ok(Ok(Confinement::Full)) => 0,
            Ok(Ok(Confinement::Partial)) => 1,
            Ok(Ok(Confinement::None)) => 2,
            _ => 3,
        };
        // SAFETY: leave the forked child at once.
        unsafe { libc::_exit(code) };
    } else {
        let mut status = 0;
        // SAFETY: our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        match libc::WEXITSTATUS(status) {
            0 => Ok("the symbolizer worker may only read files (every right Landlock ABI 6 knows)".into()),
            1 => Ok("the symbolizer worker may only read files, as far as this kernel's Landlock goes (no truncation before 6.2, no network before 6.7, no scopes before 6.12)".into()),
            2 => Err("Landlock is not available (Linux 5.13+, enabled in the LSM list)".into()),
            _ => Err("Landlock refused the worker's ruleset".into()),
        }
    };
    checks.add(
        "landlock",
        r,
        "the symbolizer worker's file-system confinement: it keeps no capability, no_new_privs and RLIMIT_FSIZE 0, but as uid 0 a compromised parser could truncate or remove root's files",
        false,
    );
}

/// What must hold before anything is loaded.
fn preconditions(checks: &mut Checks) {
    checks.add(
        "privileges",
        match preflight::check_privileges() {
            Ok(()) => Ok("CAP_BPF and CAP_PERFMON (or root)".into()),
            Err(e) => Err(e.to_string()),
        },
        "everything: no probe can be loaded",
        true,
    );
    checks.add(
        "tracefs",
        preflight::ensure_tracefs()
            .map(|n| n.unwrap_or_else(|| format!("mounted at {}", preflight::TRACEFS)))
            .map_err(err),
        "every tracepoint: they are found through tracefs",
        true,
    );
    checks.add(
        "BTF",
        btf::offsets_from(Path::new(btf::VMLINUX_BTF))
            .map(|_| format!("{} (struct offsets resolved)", btf::VMLINUX_BTF))
            .map_err(err),
        "everything: descriptors are classified with offsets read from BTF",
        true,
    );
}

fn tracepoints(checks: &mut Checks, ebpf: &mut Ebpf) {
    checks.add(
        "tracepoint",
        (|| {
            let p: &mut TracePoint = program(ebpf, "doctor_tracepoint")?;
            p.load().map_err(|e| load_error("doctor_tracepoint", &e))?;
            p.attach("syscalls", "sys_enter_getppid").map_err(err)?;
            Ok("attached to syscalls:sys_enter_getppid".into())
        })(),
        "everything: all syscall tracing uses tracepoints",
        true,
    );
    checks.add(
        "raw tracepoint",
        (|| {
            let p: &mut RawTracePoint = program(ebpf, "doctor_raw_tracepoint")?;
            p.load()
                .map_err(|e| load_error("doctor_raw_tracepoint", &e))?;
            p.attach("sys_enter").map_err(err)?;
            Ok("attached to sys_enter".into())
        })(),
        "fork events: `-- CMD` cannot follow the command's children, new processes' descriptors are not inherited in the model",
        false,
    );
}

fn uprobe_and_watchpoint(checks: &mut Checks, ebpf: &mut Ebpf) {
    checks.add(
        "uprobe",
        (|| {
            let p: &mut UProbe = program(ebpf, "doctor_uprobe")?;
            p.load()
                .map_err(|e| load_error("doctor_uprobe", &e))?;
            let libc = system_libc().ok_or_else(|| "no C library found".to_string())?;
            p.attach("getpid", libc.as_str(), UProbeScope::CallingProcess)
                .map_err(err)?;
            Ok(format!("attached to getpid in {libc}"))
        })(),
        "the lock inventory (pthread_*_init, sem_init, sem_open) and the lock probes (--lock-probes)",
        false,
    );
    checks.add(
        "hw watchpoint",
        (|| {
            let p: &mut PerfEvent = program(ebpf, "doctor_perf_event")?;
            p.load().map_err(|e| load_error("doctor_perf_event", &e))?;
            let prog = p.fd().map_err(err)?.as_fd().as_raw_fd();
            watchpoint_traps(prog)
        })(),
        "race collision sampling (the race detector)",
        false,
    );
}

/// How long the doctor's watched thread writes once the watchpoint is on.
const WATCHED_FOR: std::time::Duration = std::time::Duration::from_millis(50);

/// Attach a write watchpoint as the race detector does: to another thread,
/// one that is running and writing the watched word, so that the kernel
/// arms it on that thread's CPU while it runs. Then count the traps.
/// Attaching is not enough: a perf event may attach and never fire (in
/// the QEMU TCG guests of `cargo xtask kernels`, a watchpoint armed on a
/// blocked thread traps and one armed on a running thread does not), and
/// the detector would then sample in vain.
fn watchpoint_traps(prog: RawFd) -> Result<String, String> {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    };
    let (tid_tx, tid_rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let _ = tid_tx.send(rustix::thread::gettid().as_raw_nonzero().get() as u32);
            let mut writes = 0u64;
            while !stop.load(Ordering::Relaxed) {
                writes += 1;
                WATCHED.store(writes, Ordering::Relaxed);
            }
            writes
        })
    };
    let attached = tid_rx.recv().map_err(err).and_then(|tid| {
        // The writer is running by now; arm the watchpoint under it.
        std::thread::sleep(std::time::Duration::from_millis(5));
        watchpoint(tid, WATCHED.as_ptr() as u64, prog).map_err(err)
    });
    if attached.is_ok() {
        std::thread::sleep(WATCHED_FOR);
    }
    // Read before the writer stops: its last writes may still trap.
    let hits = attached.as_ref().map(hits).unwrap_or(0);
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().unwrap_or(0);
    attached?;
    let ms = WATCHED_FOR.as_millis();
    if hits > 0 {
        Ok(format!(
            "a PERF_TYPE_BREAKPOINT write watchpoint armed on a running thread trapped {hits} writes in {ms} ms"
        ))
    } else {
        Err(format!(
            "a PERF_TYPE_BREAKPOINT write watchpoint armed on a running thread attached but trapped none of \
             its {writes} writes in {ms} ms"
        ))
    }
}

/// Why an available kprobe or fentry hook is not used.
const NOT_USED: &str = "available, not used: the two syscall tracepoints see every followed \
syscall, where kprobes or fentry need a hook per kernel function, and cost no less per call \
(docs/kernels.md, `cargo xtask kernels --hook-cost`)";

/// kprobes and fentry: ipcwatch does not use them (docs/kernels.md says
/// why, with their cost against the tracepoints measured in Debian's
/// kernels), but they say what kind of kernel this is.
fn unused_by_ipcwatch(checks: &mut Checks, ebpf: &mut Ebpf, btf: &Result<Btf, String>) {
    checks.add(
        "kprobe",
        (|| {
            let p: &mut KProbe = program(ebpf, "doctor_kprobe")?;
            p.load().map_err(|e| load_error("doctor_kprobe", &e))?;
            p.attach("do_sys_openat2", 0).map_err(err)?;
            Ok(format!("attached to do_sys_openat2; {NOT_USED}"))
        })(),
        "nothing: ipcwatch uses tracepoints instead",
        false,
    );
    checks.add(
        "fentry",
        (|| {
            let btf = btf.as_ref().map_err(Clone::clone)?;
            let p: &mut FEntry = program(ebpf, "doctor_fentry")?;
            p.load("do_sys_openat2", btf)
                .map_err(|e| load_error("doctor_fentry", &e))?;
            p.attach().map_err(err)?;
            Ok(format!("attached to do_sys_openat2; {NOT_USED}"))
        })(),
        "nothing: ipcwatch uses tracepoints instead",
        false,
    );
}
