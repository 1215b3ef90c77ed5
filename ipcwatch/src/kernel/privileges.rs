//! Least privilege after start-up: once the probes are loaded and attached,
//! tracefs is mounted, the trace file is open and the traced command is
//! forked, ipcwatch keeps only the capabilities its event loop uses
//! ([`KEPT`]) and sets `no_new_privs` (docs/security.md).
//!
//! Capabilities belong to a thread: [`drop_privileges`] changes the
//! calling thread's sets, and the threads it creates afterwards inherit
//! them. `record` and `graph` run the session on their only thread; the
//! TUI's collector thread drops to [`KEPT`] and every other thread of
//! the TUI to nothing ([`drop_all`], [`spawn_unprivileged`]).

use std::io;

use rustix::thread::{
    CapabilitySet, CapabilitySets, capabilities, clear_ambient_capability_set,
    remove_capability_from_bounding_set, set_capabilities, set_no_new_privs,
};
use serde::Serialize;

/// A capability ipcwatch keeps after start-up, and why.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Kept {
    pub name: &'static str,
    #[serde(skip)]
    pub set: CapabilitySet,
    pub why: &'static str,
}

/// What the event loop still does with privilege. Every other capability
/// is dropped from the effective, permitted, inheritable, ambient and
/// bounding sets.
pub const KEPT: [Kept; 6] = [
    Kept {
        name: "CAP_BPF",
        set: CapabilitySet::BPF,
        why: "updates the probes' maps (the traced pids) and links the uprobes that \
              --lock-probes attaches later; kernels before 6.5 check it on every bpf() call",
    },
    Kept {
        name: "CAP_PERFMON",
        set: CapabilitySet::PERFMON,
        why: "opens the race detector's watchpoints and --lock-probes' uprobes \
              (perf_event_open) while recording",
    },
    Kept {
        name: "CAP_SYS_PTRACE",
        set: CapabilitySet::SYS_PTRACE,
        why: "reads other users' and setuid processes' /proc/PID/{maps,mem,fd} \
              and watches their threads",
    },
    Kept {
        name: "CAP_DAC_READ_SEARCH",
        set: CapabilitySet::DAC_READ_SEARCH,
        why: "enters other users' /proc/PID/fd and map_files directories (mode 0500) \
              and reads the binaries stacks are symbolized from",
    },
    Kept {
        name: "CAP_CHECKPOINT_RESTORE",
        set: CapabilitySet::CHECKPOINT_RESTORE,
        why: "opens /proc/PID/map_files/* (the race detector's read-only view of \
              shared regions, names of mapped files); CAP_SYS_ADMIN on kernels before 5.9",
    },
    Kept {
        name: "CAP_KILL",
        set: CapabilitySet::KILL,
        why: "sends SIGTERM to the traced command at the end, even if it changed its user",
    },
];

/// Kept too with `--lock-probes`, whose uprobes are attached while
/// recording: the kernel refuses their `perf_event_open` with CAP_PERFMON
/// alone (found by the lock-probes test, tests/shm.rs).
pub const LOCK_PROBES: Kept = Kept {
    name: "CAP_SYS_ADMIN",
    set: CapabilitySet::SYS_ADMIN,
    why: "only with --lock-probes: perf_event_open of the uprobes it attaches while recording",
};

/// Kept too where `kernel.perf_event_paranoid` is above 2: Debian's and
/// Ubuntu's kernels then refuse `perf_event_open` to a process without
/// CAP_SYS_ADMIN, CAP_PERFMON notwithstanding (their patch; found in
/// Debian 12's 6.1 by `cargo xtask kernels`: every watchpoint of the race
/// detector was refused with EACCES once the others were dropped).
pub const PARANOID: Kept = Kept {
    name: "CAP_SYS_ADMIN",
    set: CapabilitySet::SYS_ADMIN,
    why: "perf_event_paranoid is above 2 here (Debian's and Ubuntu's restriction): the race \
          detector's watchpoints (perf_event_open) need it",
};

/// `kernel.perf_event_paranoid`, when it can be read.
pub fn perf_event_paranoid() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether this kernel restricts perf_event_open to CAP_SYS_ADMIN.
pub fn paranoid() -> bool {
    perf_event_paranoid().is_some_and(|p| p > 2)
}

/// The highest capability this kernel knows (CAP_CHECKPOINT_RESTORE is 40,
/// from Linux 5.9).
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
        .min(63)
}

/// The capabilities ipcwatch keeps on this kernel (before 5.9 map_files
/// needs CAP_SYS_ADMIN, which then stands in for CAP_CHECKPOINT_RESTORE),
/// and CAP_SYS_ADMIN with `--lock-probes` or where perf_event_paranoid
/// is above 2 ([`PARANOID`]).
pub fn kept_set(lock_probes: bool) -> CapabilitySet {
    let mut set = KEPT
        .iter()
        .fold(CapabilitySet::empty(), |acc, k| acc | k.set);
    if last_cap() < CapabilitySet::CHECKPOINT_RESTORE.bits().trailing_zeros() {
        set.remove(CapabilitySet::CHECKPOINT_RESTORE);
        set.insert(CapabilitySet::SYS_ADMIN);
    }
    if lock_probes || paranoid() {
        set.insert(CapabilitySet::SYS_ADMIN);
    }
    set
}

/// What [`drop_privileges`] left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Effective and permitted sets now.
    pub kept: CapabilitySet,
    /// Whether the bounding set was cut down too (it needs CAP_SETPCAP,
    /// which ipcwatch run with file capabilities does not have).
    pub bounding: bool,
}

/// Keep only [`kept_set`] (those of them this thread has; `lock_probes`:
/// `--lock-probes` is on) in this thread's
/// effective and permitted sets, none inheritable or ambient, cut the
/// bounding set to the same, and set `no_new_privs`: nothing ipcwatch
/// runs afterwards can gain a privilege (setuid binaries included).
pub fn drop_privileges(lock_probes: bool) -> io::Result<Dropped> {
    keep_only(kept_set(lock_probes))
}

/// Drop every capability of this thread (the same way): for the TUI's
/// threads that only draw, read keys, wait for signals or replay a file.
pub fn drop_all() -> io::Result<Dropped> {
    keep_only(CapabilitySet::empty())
}

fn keep_only(wanted: CapabilitySet) -> io::Result<Dropped> {
    set_no_new_privs(true)?;
    let now = capabilities(None)?;
    let keep = wanted & now.permitted;
    // The bounding set first, while CAP_SETPCAP is still effective.
    let bounding = now.effective.contains(CapabilitySet::SETPCAP);
    if bounding {
        for bit in 0..=last_cap() {
            let cap = CapabilitySet::from_bits_retain(1 << bit);
            if !keep.contains(cap) {
                remove_capability_from_bounding_set(cap)?;
            }
        }
    }
    clear_ambient_capability_set()?;
    set_capabilities(
        None,
        CapabilitySets {
            effective: keep,
            permitted: keep,
            inheritable: CapabilitySet::empty(),
        },
    )?;
    Ok(Dropped {
        kept: keep,
        bounding,
    })
}

/// What [`confine_to_reading`] could enforce on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confinement {
    /// Every file-system and network right Landlock knows here is handled.
    Full,
    /// An older Landlock: some rights (truncation from 6.2, network from
    /// 6.7, scopes from 6.12) are not handled.
    Partial,
    /// No Landlock (before 5.13, or not enabled): only the other limits.
    None,
}

/// Landlock for a process that only reads the files it is handed: every
/// file-system right but reading files and listing directories is denied
/// everywhere (write, truncate, unlink, rename, make, execute, ioctl on
/// devices), and so are TCP bind and connect, abstract sockets and
/// signals to processes outside. Reading is not handled at all, so a
/// binary in another mount namespace (a container's) can still be read.
/// The symbolizer worker runs as uid 0 without capabilities, which still
/// owns root's files: this is what keeps a compromised parser from
/// changing them. Needs no_new_privs (or CAP_SYS_ADMIN). Best effort on
/// older kernels: the result says how much held.
pub fn confine_to_reading() -> io::Result<Confinement> {
    use landlock::{ABI, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetStatus, Scope};
    let abi = ABI::V6;
    let status = Ruleset::default()
        .handle_access(AccessFs::from_write(abi) | AccessFs::Execute)
        .and_then(|r| r.handle_access(AccessNet::from_all(abi)))
        .and_then(|r| r.scope(Scope::from_all(abi)))
        .and_then(|r| r.create())
        .and_then(|r| r.restrict_self())
        .map_err(io::Error::other)?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Confinement::Full,
        RulesetStatus::PartiallyEnforced => Confinement::Partial,
        _ => Confinement::None,
    })
}

/// Spawn a thread that drops every capability before it runs `f` (and
/// does not run it if it cannot: the error goes to the log).
pub fn spawn_unprivileged(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> io::Result<std::thread::JoinHandle<()>> {
    let name = name.to_string();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || match drop_all() {
            Ok(_) => f(),
            Err(e) => tracing::error!("the {name} thread cannot drop its capabilities: {e}"),
        })
}

/// `CapEff`/`CapPrm`/`CapBnd` as /proc/PID/status shows them.
pub fn status_hex(set: CapabilitySet) -> String {
    format!("{:016x}", set.bits())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_set_is_the_documented_one() {
        let names: Vec<&str> = KEPT.iter().map(|k| k.name).collect();
        assert_eq!(
            names,
            [
                "CAP_BPF",
                "CAP_PERFMON",
                "CAP_SYS_PTRACE",
                "CAP_DAC_READ_SEARCH",
                "CAP_CHECKPOINT_RESTORE",
                "CAP_KILL"
            ]
        );
        // Bits 39, 38, 19, 2, 40, 5 (this kernel knows CAP_CHECKPOINT_RESTORE).
        if last_cap() >= 40 && !paranoid() {
            assert_eq!(status_hex(kept_set(false)), "000001c000080024");
            assert_eq!(status_hex(kept_set(true)), "000001c000280024");
        }
    }

    /// In a child process (Landlock binds the calling thread and its
    /// children for good): once confined, files can be read and listed
    /// but not written, truncated, created or removed, and nothing can be
    /// executed.
    #[test]
    fn confined_to_reading_changes_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"kept").unwrap();
        // SAFETY: the child only makes system calls and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = (|| {
                set_no_new_privs(true).ok()?;
                let c = confine_to_reading().ok()?;
                let denied =
                    |r: io::Result<()>| r.is_err_and(|e| e.raw_os_error() == Some(libc::EACCES));
                let checks = [
                    c == Confinement::Full,
                    std::fs::read(&file).ok()? == b"kept",
                    std::fs::read_dir(dir.path()).is_ok(),
                    denied(std::fs::write(&file, b"x")),
                    denied(
                        std::fs::OpenOptions::new()
                            .write(true)
                            .truncate(true)
                            .open(&file)
                            .map(drop),
                    ),
                    denied(std::fs::write(dir.path().join("new"), b"x")),
                    denied(std::fs::remove_file(&file)),
                    denied(std::fs::create_dir(dir.path().join("d"))),
                    std::process::Command::new("/bin/true").status().is_err(),
                ];
                let first_failed = checks.iter().position(|ok| !ok);
                Some(first_failed.map_or(0, |i| 10 + i as i32))
            })()
            .unwrap_or(1);
            // SAFETY: leave the forked child without running the harness.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "check {} failed (10 is the first)",
            libc::WEXITSTATUS(status)
        );
        assert_eq!(std::fs::read(&file).unwrap(), b"kept");
    }

    /// In a child process (capabilities are per thread, and the test
    /// harness's threads must keep theirs): drop, then read the sets back.
    #[test]
    fn dropping_leaves_only_the_kept_set() {
        // SAFETY: the child only makes system calls and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = drop_privileges(false).is_ok_and(|d| {
                let now = capabilities(None).ok();
                now.is_some_and(|n| n.effective == d.kept && n.permitted == d.kept)
                    && (d.kept - kept_set(false)).is_empty()
                    && rustix::thread::no_new_privs().unwrap_or(false)
            });
            // SAFETY: leave the forked child without running the harness.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(libc::WEXITSTATUS(status), 0);
    }
}
