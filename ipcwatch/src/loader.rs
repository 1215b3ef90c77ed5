//! Loading the eBPF object, configuring it, and attaching its probes.

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{RawTracePoint, TracePoint},
};
use ipcwatch_common::{COMM_LEN, Config, file_kind, filter, sc, stat, traced};

use crate::{Error, kernel};

/// The eBPF object built by build.rs (crate ipcwatch-ebpf, with BTF).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ipcwatch"));

/// Default ring buffer: 8 MiB.
pub const DEFAULT_RING_BYTES: u32 = 8 << 20;

/// Which processes the kernel side reports.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub pids: Vec<u32>,
    pub comms: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub filter: Filter,
    /// Trace only what `filter` names (and, for pids, their new children).
    /// When false and the filter is empty, the whole system is traced.
    pub listed_only: bool,
    /// Bitmask of `file_kind::bit`.
    pub kinds: u32,
    pub ring_bytes: u32,
    /// `--lock-probes`: uprobes on the hot lock calls of every process
    /// that maps shared memory.
    pub lock_probes: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            filter: Filter::default(),
            listed_only: false,
            kinds: file_kind::bit(file_kind::PIPE) | file_kind::bit(file_kind::FIFO),
            ring_bytes: DEFAULT_RING_BYTES,
            lock_probes: false,
        }
    }
}

/// A probe that could not be attached: tracing goes on without it.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub probe: String,
    pub reason: String,
}

/// The loaded, attached probes. Dropping this detaches everything: no
/// program or map is pinned, so nothing outlives the process.
pub struct Probes {
    // Keeps programs and links alive.
    _ebpf: Ebpf,
    ring: Option<RingBuf<MapData>>,
    stats: PerCpuArray<MapData, u64>,
    traced: HashMap<MapData, u32, u32>,
    pub skipped: Vec<Skipped>,
    /// Shared memory: processes that map it (kernel filter for faults).
    shm_procs: HashMap<MapData, u32, u32>,
    /// `--lock-probes`, when on.
    lock_probes: Option<crate::shmprobes::LockProbes>,
}

fn comm_key(name: &str) -> [u8; COMM_LEN] {
    let mut key = [0u8; COMM_LEN];
    let bytes = name.as_bytes();
    let n = bytes.len().min(COMM_LEN - 1);
    key[..n].copy_from_slice(&bytes[..n]);
    key
}

fn load_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Load(format!("{what}: {e}"))
}

impl Probes {
    pub fn load(opts: &Options) -> Result<Probes, Error> {
        let off = kernel::offsets_from(std::path::Path::new(kernel::VMLINUX_BTF))?;
        let mut mode = 0;
        if opts.listed_only || !opts.filter.pids.is_empty() || !opts.filter.comms.is_empty() {
            mode |= filter::LISTED;
        }
        if !opts.filter.comms.is_empty() {
            mode |= filter::COMM;
        }
        let config = Config {
            self_tgid: std::process::id(),
            filter: mode,
            kinds: opts.kinds,
            wake_bytes: opts.ring_bytes / 16,
            off,
        };
        let shm_config = crate::shmprobes::config(std::path::Path::new(kernel::VMLINUX_BTF))?;
        let mut ebpf = EbpfLoader::new()
            .override_global("CONFIG", &config, true)
            .override_global("SHM_CONFIG", &shm_config, true)
            .map_max_entries("EVENTS", opts.ring_bytes)
            .load(EBPF_OBJECT)
            .map_err(|e| load_err("loading the eBPF object", e))?;

        let mut syscalls: Array<_, u32> = Array::try_from(
            ebpf.map_mut("SYSCALLS")
                .ok_or_else(|| Error::Load("map SYSCALLS missing".into()))?,
        )
        .map_err(|e| load_err("map SYSCALLS", e))?;
        let numbers = kernel::syscall_numbers();
        for (code, nr) in &numbers {
            syscalls
                .set(*nr as u32, code, 0)
                .map_err(|e| load_err("filling SYSCALLS", e))?;
        }

        {
            let mut comms: HashMap<_, [u8; COMM_LEN], u32> = HashMap::try_from(
                ebpf.map_mut("COMMS")
                    .ok_or_else(|| Error::Load("map COMMS missing".into()))?,
            )
            .map_err(|e| load_err("map COMMS", e))?;
            for c in &opts.filter.comms {
                comms
                    .insert(comm_key(c), 1, 0)
                    .map_err(|e| load_err("filling COMMS", e))?;
            }
        }

        let mut skipped = Vec::new();
        // Everything but close is handled at syscall exit, by one raw
        // tracepoint that reads the arguments back from the registers.
        attach_raw(&mut ebpf, "ipcwatch_sys_exit", "sys_exit", &mut skipped);
        if skipped.iter().any(|s| s.probe == "raw_tp:sys_exit") {
            return Err(Error::Load(format!(
                "cannot attach the sys_exit raw tracepoint: {}",
                skipped[0].reason
            )));
        }
        // close must be seen at entry, before the descriptor is gone.
        let at_entry: Vec<(u32, i64)> = numbers
            .iter()
            .copied()
            .filter(|(c, _)| *c == sc::CLOSE || *c == sc::CLOSE_RANGE)
            .collect();
        attach_syscalls(
            &mut ebpf,
            "ipcwatch_sys_enter",
            "sys_enter",
            &at_entry,
            &mut skipped,
        )?;
        attach_raw(
            &mut ebpf,
            "ipcwatch_fork",
            "sched_process_fork",
            &mut skipped,
        );
        attach_tp(
            &mut ebpf,
            "ipcwatch_exec",
            "sched",
            "sched_process_exec",
            &mut skipped,
        );
        attach_tp(
            &mut ebpf,
            "ipcwatch_exit",
            "sched",
            "sched_process_exit",
            &mut skipped,
        );
        crate::shmprobes::attach(&mut ebpf, &mut skipped);
        let shm_procs = crate::shmprobes::shm_procs(&mut ebpf)?;

        let ring = RingBuf::try_from(
            ebpf.take_map("EVENTS")
                .ok_or_else(|| Error::Load("map EVENTS missing".into()))?,
        )
        .map_err(|e| load_err("map EVENTS", e))?;
        let stats = PerCpuArray::try_from(
            ebpf.take_map("STATS")
                .ok_or_else(|| Error::Load("map STATS missing".into()))?,
        )
        .map_err(|e| load_err("map STATS", e))?;
        let traced = HashMap::try_from(
            ebpf.take_map("TRACED")
                .ok_or_else(|| Error::Load("map TRACED missing".into()))?,
        )
        .map_err(|e| load_err("map TRACED", e))?;
        let mut probes = Probes {
            _ebpf: ebpf,
            ring: Some(ring),
            stats,
            traced,
            skipped,
            shm_procs,
            lock_probes: opts.lock_probes.then(crate::shmprobes::LockProbes::default),
        };
        for pid in &opts.filter.pids {
            probes.trace_pid(*pid, false)?;
        }
        Ok(probes)
    }

    /// Trace `pid` from now on (and the processes it forks, with `follow`).
    pub fn trace_pid(&mut self, pid: u32, follow: bool) -> Result<(), Error> {
        let flags = if follow { traced::FOLLOW_FORKS } else { 0 };
        self.traced
            .insert(pid, flags, 0)
            .map_err(|e| load_err("filling TRACED", e))
    }

    /// `pid` maps shared memory (found at start): report its write faults.
    pub fn mark_shared(&mut self, pid: u32) -> Result<(), Error> {
        // Both bits of the kernel's SHM_PROCS value: maps shared memory,
        // writable.
        self.shm_procs
            .insert(pid, 3, 0)
            .map_err(|e| load_err("filling SHM_PROCS", e))
    }

    /// With `--lock-probes`, attach the hot-call uprobes to `pid`; returns
    /// the probes that could not be attached.
    pub fn attach_lock_probes(&mut self, pid: u32) -> Vec<Skipped> {
        match &mut self.lock_probes {
            Some(lp) => lp.attach(&mut self._ebpf, pid),
            None => Vec::new(),
        }
    }

    /// Detach `pid`'s `--lock-probes` (it exec'd or exited).
    pub fn detach_lock_probes(&mut self, pid: u32) {
        if let Some(lp) = &mut self.lock_probes {
            lp.detach(&mut self._ebpf, pid);
        }
    }

    /// Kernel-side counter `index` (one of `stat::*`), summed over CPUs.
    pub fn stat(&self, index: u32) -> u64 {
        self.stats
            .get(&index, 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }

    /// Events the kernel could not write because the ring buffer was full.
    pub fn dropped(&self) -> u64 {
        self.stat(stat::DROPPED)
    }

    /// The ring buffer, for the reader (once).
    pub fn take_ring(&mut self) -> Result<RingBuf<MapData>, Error> {
        self.ring
            .take()
            .ok_or_else(|| Error::Load("the ring buffer was already taken".into()))
    }
}

fn attach_syscalls(
    ebpf: &mut Ebpf,
    prog: &str,
    prefix: &str,
    numbers: &[(u32, i64)],
    skipped: &mut Vec<Skipped>,
) -> Result<(), Error> {
    let program: &mut TracePoint = ebpf
        .program_mut(prog)
        .ok_or_else(|| Error::Load(format!("program {prog} missing")))?
        .try_into()
        .map_err(|e| load_err(prog, e))?;
    program.load().map_err(|e| load_err(prog, e))?;
    let mut attached = 0;
    for (code, _) in numbers {
        let name = format!("{prefix}_{}", sc::name(*code));
        match program.attach("syscalls", &name) {
            Ok(_) => attached += 1,
            Err(e) => skipped.push(Skipped {
                probe: format!("syscalls:{name}"),
                reason: e.to_string(),
            }),
        }
    }
    if attached == 0 {
        return Err(Error::Load(format!(
            "no syscalls:{prefix}_* tracepoint could be attached (is tracefs mounted at /sys/kernel/tracing?)"
        )));
    }
    Ok(())
}

fn attach_raw(ebpf: &mut Ebpf, prog: &str, tp: &str, skipped: &mut Vec<Skipped>) {
    let result = (|| -> Result<(), String> {
        let program: &mut RawTracePoint = ebpf
            .program_mut(prog)
            .ok_or("program missing")?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| e.to_string())?;
        program.load().map_err(|e| e.to_string())?;
        program.attach(tp).map_err(|e| e.to_string())?;
        Ok(())
    })();
    if let Err(reason) = result {
        skipped.push(Skipped {
            probe: format!("raw_tp:{tp}"),
            reason,
        });
    }
}

fn attach_tp(ebpf: &mut Ebpf, prog: &str, cat: &str, tp: &str, skipped: &mut Vec<Skipped>) {
    let result = (|| -> Result<(), String> {
        let program: &mut TracePoint = ebpf
            .program_mut(prog)
            .ok_or("program missing")?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| e.to_string())?;
        program.load().map_err(|e| e.to_string())?;
        program.attach(cat, tp).map_err(|e| e.to_string())?;
        Ok(())
    })();
    if let Err(reason) = result {
        skipped.push(Skipped {
            probe: format!("{cat}:{tp}"),
            reason,
        });
    }
}
