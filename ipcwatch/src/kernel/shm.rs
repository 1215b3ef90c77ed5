//! Loading and attaching the shared-memory probes: the `SHM_CONFIG`
//! global, the write-fault tracepoint, the set-up uprobes on libc, and the
//! per-process hot-call uprobes of `--lock-probes`.

use std::collections::HashMap as StdHashMap;
use std::num::NonZeroU32;
use std::path::Path;

use aya::Ebpf;
use aya::maps::{HashMap, MapData};
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope};
use aya::programs::{TracePoint, UProbe};
use btf_rs::Btf;
use ipcwatch_common::shm::{ShmConfig, func, shm_flags};

use crate::error::Error;
use crate::kernel::attach::{Skipped, load_error, program};
use crate::kernel::btf::member_offset;
use crate::scan::maps::read_maps;

/// The set-up calls, always probed (they are rare).
pub const INVENTORY: [u32; 7] = [
    func::MUTEX_INIT,
    func::RWLOCK_INIT,
    func::SPIN_INIT,
    func::SEM_INIT,
    func::SEM_OPEN,
    func::MUTEXATTR_SETPSHARED,
    func::RWLOCKATTR_SETPSHARED,
];

/// The hot calls probed with `--lock-probes`.
pub const HOT: [u32; 18] = [
    func::MUTEX_LOCK,
    func::MUTEX_TRYLOCK,
    func::MUTEX_TIMEDLOCK,
    func::MUTEX_UNLOCK,
    func::RWLOCK_RDLOCK,
    func::RWLOCK_TRYRDLOCK,
    func::RWLOCK_TIMEDRDLOCK,
    func::RWLOCK_WRLOCK,
    func::RWLOCK_TRYWRLOCK,
    func::RWLOCK_TIMEDWRLOCK,
    func::RWLOCK_UNLOCK,
    func::SPIN_LOCK,
    func::SPIN_TRYLOCK,
    func::SPIN_UNLOCK,
    func::SEM_WAIT,
    func::SEM_TRYWAIT,
    func::SEM_TIMEDWAIT,
    func::SEM_POST,
];

/// The configuration the shared-memory probes read.
pub fn config(btf_path: &Path) -> Result<ShmConfig, Error> {
    let btf = Btf::from_file(btf_path)
        .map_err(|e| Error::Btf(format!("cannot read {}: {e}", btf_path.display())))?;
    let off = |s: &str, f: &str| member_offset(&btf, s, f);
    Ok(ShmConfig {
        regs_arg4: off("pt_regs", "r8")?,
        regs_arg5: off("pt_regs", "r9")?,
        file_dentry: off("file", "f_path")? + off("path", "dentry")?,
        dentry_name: off("dentry", "d_name")? + off("qstr", "name")?,
        flags: shm_flags::FAULTS,
        vma_file: off("vm_area_struct", "vm_file")?,
        file_mnt: off("file", "f_path")? + off("path", "mnt")?,
        dentry_parent: off("dentry", "d_parent")?,
        mount_mnt: off("mount", "mnt")?,
        mount_parent: off("mount", "mnt_parent")?,
        mount_mountpoint: off("mount", "mnt_mountpoint")?,
        vfsmount_root: off("vfsmount", "mnt_root")?,
    })
}

/// The C library a process runs with, from its /proc/<pid>/maps (without
/// the " (deleted)" a library replaced on disk since it was mapped shows).
pub fn libc_of(pid: u32) -> Option<String> {
    read_maps(pid).into_iter().find_map(|l| {
        let path = l.path.strip_suffix(" (deleted)").unwrap_or(&l.path);
        let base = path.rsplit('/').next()?;
        (base.starts_with("libc.so") || base.starts_with("libc-")).then(|| path.to_string())
    })
}

/// Where the usual installs keep the C library, in the order tried.
const LIBC_PATHS: [&str; 6] = [
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/lib64/libc.so.6",
    "/usr/lib64/libc.so.6",
    "/lib/libc.so.6",
    "/usr/lib/libc.so.6",
];

/// The machine's C library, where the set-up uprobes go: the one ipcwatch
/// runs with; for the static build, which runs with none, init's (pid 1),
/// else the first of [`LIBC_PATHS`] that exists.
pub fn system_libc() -> Option<String> {
    libc_of(std::process::id())
        .or_else(|| libc_of(1))
        .or_else(|| {
            // Canonical, as maps name it (/lib is often a link to /usr/lib).
            LIBC_PATHS
                .iter()
                .find_map(|p| std::fs::canonicalize(p).ok())
                .map(|p| p.to_string_lossy().into_owned())
        })
}

/// Attach the probe(s) of function `f`; returns the links made (program
/// name, link).
fn attach_one(
    ebpf: &mut Ebpf,
    f: u32,
    target: &str,
    scope: UProbeScope,
) -> Result<Vec<(&'static str, UProbeLinkId)>, String> {
    // sem_open is probed at its return only (the semaphore is its result);
    // the other calls probed at their return are probed at entry too.
    let progs: &[(&'static str, &str)] = match (func::at_return(f), f == func::SEM_OPEN) {
        (true, true) => &[("ipcwatch_uretprobe", "")],
        (true, false) => &[("ipcwatch_uprobe", ""), ("ipcwatch_uretprobe", " (return)")],
        (false, _) => &[("ipcwatch_uprobe", "")],
    };
    let symbol = func::symbol(f);
    // x86 uprobes refuse a lock-prefixed first instruction, and glibc's
    // pthread_spin_lock starts with `lock decl (%rdi)` (3 bytes): probe
    // the next instruction, where %rdi still holds the lock. (Its return
    // probe is taken there too; the return address is still on top.)
    // (pthread_spin_unlock starts with the store that releases the lock,
    // which then runs out of line, in the [uprobes] page, where the race
    // detector cannot read it: its collisions there count as undecoded.)
    let skip = match f {
        func::SPIN_LOCK if cfg!(target_arch = "x86_64") => 3,
        _ => 0,
    };
    let location = || {
        if skip > 0 {
            UProbeAttachLocation::SymbolOffset(symbol, skip)
        } else {
            UProbeAttachLocation::Symbol(symbol)
        }
    };
    progs
        .iter()
        .map(|&(prog, what)| {
            let p: &mut UProbe = program(ebpf, prog)?;
            let point = UProbeAttachPoint {
                location: location(),
                cookie: Some(f as u64),
            };
            let id = p
                .attach(point, target, scope)
                .map_err(|e| format!("{symbol}{what}: {e}"))?;
            Ok((prog, id))
        })
        .collect()
}

/// Where `symbol` starts in the ELF file `path`, as (address, file offset):
/// from its dynamic symbols (a C library keeps those when stripped).
fn symbol_at(path: &str, symbol: &str) -> Option<(u64, u64)> {
    use object::{Object, ObjectSection, ObjectSymbol};
    let data = std::fs::read(path).ok()?;
    let file = object::File::parse(&*data).ok()?;
    let sym = file
        .dynamic_symbols()
        .chain(file.symbols())
        .find(|s| s.name() == Ok(symbol) && s.is_definition())?;
    let section = file.section_by_index(sym.section_index()?).ok()?;
    let (offset, _) = section.file_range()?;
    Some((sym.address(), offset + (sym.address() - section.address())))
}

/// Whether `a` and `b` are one function in `path` (glibc's
/// pthread_spin_init is its pthread_spin_unlock: both store 1).
fn same_code(path: &str, a: &str, b: &str) -> bool {
    matches!((symbol_at(path, a), symbol_at(path, b)), (Some(x), Some(y)) if x.0 == y.0)
}

fn load_prog(ebpf: &mut Ebpf, name: &str) -> Result<(), String> {
    let p: &mut UProbe = program(ebpf, name)?;
    p.load().map_err(|e| load_error(name, &e))
}

/// Attach the fault tracepoint and the set-up uprobes; load the uprobe
/// programs for later per-process attachment. Failures are skipped probes.
pub fn attach(ebpf: &mut Ebpf, lock_probes: bool, skipped: &mut Vec<Skipped>) {
    let fault = (|| -> Result<(), String> {
        let p: &mut TracePoint = program(ebpf, "ipcwatch_page_fault")?;
        p.load()
            .map_err(|e| load_error("ipcwatch_page_fault", &e))?;
        p.attach("exceptions", "page_fault_user")
            .map_err(|e| e.to_string())?;
        Ok(())
    })();
    if let Err(reason) = fault {
        skipped.push(Skipped {
            probe: "exceptions:page_fault_user".into(),
            reason: format!("{reason} (no fault lines or page heat)"),
        });
    }
    let loaded =
        load_prog(ebpf, "ipcwatch_uprobe").and_then(|()| load_prog(ebpf, "ipcwatch_uretprobe"));
    if let Err(reason) = loaded {
        skipped.push(Skipped {
            probe: "uprobe:libc".into(),
            reason: format!("{reason} (no lock inventory, no --lock-probes)"),
        });
        return;
    }
    let Some(libc) = system_libc() else {
        skipped.push(Skipped {
            probe: "uprobe:libc".into(),
            reason: "no C library found (not in ipcwatch's nor init's /proc/PID/maps, nor in /lib, /usr/lib, /lib64) (no lock inventory)".into(),
        });
        return;
    };
    for f in INVENTORY {
        // Where pthread_spin_init is pthread_spin_unlock's code (glibc), a
        // probe on it fires on every unlock of every process, and runs the
        // releasing store out of line. With --lock-probes the unlock is
        // probed there anyway, and the collector tells the two apart.
        if f == func::SPIN_INIT
            && !lock_probes
            && same_code(
                &libc,
                func::symbol(func::SPIN_INIT),
                func::symbol(func::SPIN_UNLOCK),
            )
        {
            skipped.push(Skipped {
                probe: format!("uprobe:{libc}:{}", func::symbol(f)),
                reason: "it is pthread_spin_unlock's code in this C library: a probe there would fire on every unlock (process-shared spinlocks are inventoried with --lock-probes)".into(),
            });
            continue;
        }
        if let Err(reason) = attach_one(ebpf, f, &libc, UProbeScope::AllProcesses) {
            skipped.push(Skipped {
                probe: format!("uprobe:{libc}:{}", func::symbol(f)),
                reason,
            });
        }
    }
}

/// Processes given their hot-call uprobes, with the links to detach.
#[derive(Debug, Default)]
pub struct LockProbes {
    links: StdHashMap<u32, Vec<(&'static str, UProbeLinkId)>>,
}

impl LockProbes {
    /// Attach the hot-call uprobes to `pid` (once). Returns what could not
    /// be attached.
    pub fn attach(&mut self, ebpf: &mut Ebpf, pid: u32) -> Vec<Skipped> {
        let mut skipped = Vec::new();
        if self.links.contains_key(&pid) {
            return skipped;
        }
        let mine = self.links.entry(pid).or_default();
        let Some(scope) = NonZeroU32::new(pid).map(UProbeScope::OneProcess) else {
            return skipped;
        };
        let Some(libc) = libc_of(pid) else {
            skipped.push(Skipped {
                probe: format!("uprobe:pid {pid}"),
                reason: "no C library in its /proc/PID/maps (static binary, or it exited)".into(),
            });
            return skipped;
        };
        let target = format!("/proc/{pid}/root{libc}");
        let target = if Path::new(&target).exists() {
            target
        } else {
            libc
        };
        for f in HOT {
            match attach_one(ebpf, f, &target, scope) {
                Ok(links) => mine.extend(links),
                Err(reason) => skipped.push(Skipped {
                    probe: format!("uprobe:{}:pid {pid}", func::symbol(f)),
                    reason,
                }),
            }
        }
        skipped
    }

    /// Detach `pid`'s hot-call uprobes (it exec'd or exited).
    pub fn detach(&mut self, ebpf: &mut Ebpf, pid: u32) {
        for (prog, id) in self.links.remove(&pid).unwrap_or_default() {
            if let Ok(p) = program::<UProbe>(ebpf, prog) {
                // An error means the link is already gone.
                let _ = p.detach(id);
            }
        }
    }
}

/// The `SHM_PROCS` map: processes that map shared memory.
pub fn shm_procs(ebpf: &mut Ebpf) -> Result<HashMap<MapData, u32, u32>, Error> {
    let map = ebpf
        .take_map("SHM_PROCS")
        .ok_or_else(|| Error::Load("map SHM_PROCS missing".into()))?;
    HashMap::try_from(map).map_err(|e| Error::Load(format!("map SHM_PROCS: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_of_this_c_library_are_found() {
        let libc = libc_of(std::process::id()).expect("a C library");
        let init = symbol_at(&libc, "pthread_spin_init");
        let unlock = symbol_at(&libc, "pthread_spin_unlock");
        eprintln!("{libc}: init {init:x?} unlock {unlock:x?}");

        assert!(init.is_some() && unlock.is_some());
    }
}
