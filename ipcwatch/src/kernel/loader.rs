//! Loading the eBPF object, configuring it, and attaching its probes.

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap, MapData, PerCpuArray, PerCpuHashMap, ProgramArray, RingBuf, StackTraceMap,
    },
    programs::{BtfTracePoint, PerfEvent, ProgramFd, RawTracePoint},
};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use ipcwatch_common::{
    COMM_LEN, Config, IoKey, IoTotals, SockConfig, file_kind, filter,
    race::{Seen, WatchKey},
    sc::exit_tail,
    stat, traced,
};

use crate::decode::{Dropped, RAW_KINDS};
use crate::error::Error;
use crate::host::give_back_heap;
use crate::kernel::attach::{
    Loaded, Skipped, attach_btf_or_raw, attach_loaded, attach_raw, attach_tp, load_btf_or_raw,
    load_error, program,
};
use crate::kernel::{btf, object, shm, syscalls};
use crate::scan::cgroup::{Selected, cgroup_of};

/// The normal eBPF object built by build.rs (crate ipcwatch-ebpf, with
/// BTF); `record` and doctor load the one [`object::chosen`] picks.
pub use crate::kernel::object::NORMAL as EBPF_OBJECT;

/// The ring buffer the events come through, as the event loop reads it.
pub type EventRing = RingBuf<MapData>;

/// Default ring buffer: 8 MiB.
pub const DEFAULT_RING_BYTES: u32 = 8 << 20;

/// Ring buffer of the eBPF side's log messages (aya-log's `AYA_LOGS`,
/// 128 KiB by default): they are rare, 64 KiB is plenty.
const KERNEL_LOG_BYTES: u32 = 64 << 10;

/// Every channel kind ipcwatch follows.
pub const ALL_KINDS: u32 = file_kind::bit(file_kind::PIPE)
    | file_kind::bit(file_kind::FIFO)
    | file_kind::bit(file_kind::UNIX)
    | file_kind::bit(file_kind::TCP)
    | file_kind::bit(file_kind::UDP)
    | file_kind::bit(file_kind::MQ)
    | file_kind::bit(file_kind::MSGQ);

/// `kinds` as the kernel needs it: any socket kind also needs the generic
/// SOCKET bit, so that close and dup of sockets are reported.
pub fn kernel_kinds(kinds: u32) -> u32 {
    let sockets = file_kind::bit(file_kind::UNIX)
        | file_kind::bit(file_kind::TCP)
        | file_kind::bit(file_kind::UDP);
    if kinds & sockets != 0 {
        kinds | file_kind::bit(file_kind::SOCKET)
    } else {
        kinds
    }
}

/// Which processes the kernel side reports.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub pids: Vec<u32>,
    pub comms: Vec<String>,
    /// Cgroups (`--cgroup`, `--container`): processes in them or below.
    pub cgroups: Vec<Selected>,
}

impl Filter {
    /// No pid, no name, no cgroup: every process.
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty() && self.comms.is_empty() && self.cgroups.is_empty()
    }

    /// Does the filter take process `pid` named `comm`? (Its cgroup is
    /// read from /proc when cgroups are filtered.)
    pub fn accepts(&self, pid: u32, comm: &str) -> bool {
        self.is_empty()
            || self.pids.contains(&pid)
            || self.comms.iter().any(|c| c == comm)
            || (!self.cgroups.is_empty()
                && cgroup_of(pid).is_some_and(|p| self.cgroups.iter().any(|s| s.holds(&p))))
    }
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
    /// Collision sampling: how long a trapped write is held, in ns.
    pub watch_delay_ns: u32,
    /// Deep mode: every trapped write is reported.
    pub deep: bool,
    /// Payload bytes copied per read/write (0: none).
    pub capture_bytes: u32,
    /// `--durations`: when each read, write, send, receive and lock call
    /// started (one more map update per such call, whole-system).
    pub durations: bool,
    /// `--lock-probes`: uprobes on the hot lock calls of every process
    /// that maps shared memory.
    pub lock_probes: bool,
    /// The live TUI with no per-event consumer: pipe and FIFO reads and
    /// writes are summed in the kernel (`IO_TOTALS`, read with
    /// [`Probes::io_totals`]) instead of one event each. Ignored with
    /// `deep`, `capture_bytes` or `durations`, which need every event.
    pub aggregate: bool,
}

/// Entries of `IO_TOTALS` when aggregating: descriptors (per process and
/// direction) that moved bytes and are not yet closed. Past it, events go
/// to the ring buffer as without aggregation.
pub const IO_TOTALS_ENTRIES: u32 = 8192;

impl Default for Options {
    fn default() -> Self {
        Options {
            filter: Filter::default(),
            listed_only: false,
            kinds: ALL_KINDS,
            ring_bytes: DEFAULT_RING_BYTES,
            watch_delay_ns: 50_000,
            deep: false,
            capture_bytes: 0,
            durations: false,
            lock_probes: false,
            aggregate: false,
        }
    }
}

/// The loaded, attached probes. Dropping this detaches everything: no
/// program or map is pinned, so nothing outlives the process.
pub struct Probes {
    // Keeps programs and links alive.
    ebpf: Ebpf,
    ring: Option<RingBuf<MapData>>,
    stats: PerCpuArray<MapData, u64>,
    /// Per-CPU next sequence numbers (`SEQ`), to count trailing losses.
    seq: Option<PerCpuArray<MapData, u64>>,
    traced: HashMap<MapData, u32, u32>,
    pub skipped: Vec<Skipped>,
    /// Shared memory: processes that map it (kernel filter for faults).
    shm_procs: HashMap<MapData, u32, u32>,
    /// `--lock-probes`, when on.
    lock_probes: Option<shm::LockProbes>,
    /// The eBPF side's log messages (why an event was skipped), when the
    /// `log` crate's level is debug or finer at load.
    kernel_log: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
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
    /// Load the eBPF object for `opts`, fill its maps, attach every probe
    /// (those that cannot be attached are in `skipped`), take the maps
    /// userspace reads. When the programs with the kernel's io totals
    /// ([`Options::aggregate`]) do not load, they are loaded without
    /// (one event per read and write), with a warning.
    pub fn load(opts: &Options) -> Result<Probes, Error> {
        match Self::load_as(opts) {
            Err(e) if aggregating(opts) => {
                tracing::warn!(
                    "the kernel's io totals did not load ({e}): one event per read and write instead"
                );
                Self::load_as(&Options {
                    aggregate: false,
                    ..opts.clone()
                })
            }
            r => r,
        }
    }

    fn load_as(opts: &Options) -> Result<Probes, Error> {
        let mut ebpf = load_object(opts)?;
        fill_maps(&mut ebpf, opts)?;
        let skipped = attach_all(&mut ebpf, opts.lock_probes)?;
        let shm_procs = shm::shm_procs(&mut ebpf)?;
        // Loading parsed the object and the kernel's BTF several times
        // over (about 40 MiB, all freed): given back before the ring
        // buffer's mapping adds its pages, they no longer add up to the
        // process's peak.
        give_back_heap();
        let ring = RingBuf::try_from(take_map(&mut ebpf, "EVENTS")?)
            .map_err(|e| load_err("map EVENTS", e))?;
        let stats = PerCpuArray::try_from(take_map(&mut ebpf, "STATS")?)
            .map_err(|e| load_err("map STATS", e))?;
        let traced = HashMap::try_from(take_map(&mut ebpf, "TRACED")?)
            .map_err(|e| load_err("map TRACED", e))?;
        let seq = ebpf
            .take_map("SEQ")
            .and_then(|m| PerCpuArray::try_from(m).ok());
        let kernel_log = if kernel_log_level() == 0 {
            None
        } else {
            aya_log::EbpfLogger::init(&mut ebpf)
                .inspect_err(|e| tracing::debug!("no eBPF log: {e}"))
                .ok()
        };
        let mut probes = Probes {
            ebpf,
            ring: Some(ring),
            stats,
            seq,
            traced,
            skipped,
            shm_procs,
            lock_probes: opts.lock_probes.then(shm::LockProbes::default),
            kernel_log,
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

    /// Load the watchpoint program (once) for collision sampling.
    pub fn enable_watch(&mut self) -> Result<(), Error> {
        let p: &mut PerfEvent =
            program(&mut self.ebpf, "ipcwatch_watch").map_err(|e| load_err("ipcwatch_watch", e))?;
        if p.fd().is_err() {
            p.load()
                .map_err(|e| Error::Load(load_error("ipcwatch_watch", &e)))?;
        }
        Ok(())
    }

    /// Arm a write watchpoint on the 8 bytes at `addr` of process `pid`,
    /// in each of the threads `tids`, reporting to `slot`. Threads that
    /// cannot be armed (gone, or out of debug registers) are returned
    /// with their error. Closing the returned descriptors disarms them;
    /// reading one gives the writes its thread made to the word.
    pub fn watch(&mut self, slot: u32, pid: u32, addr: u64, tids: &[u32]) -> Result<Armed, Error> {
        {
            let mut watch: HashMap<_, WatchKey, u32> =
                HashMap::try_from(map_mut(&mut self.ebpf, "WATCH")?)
                    .map_err(|e| load_err("map WATCH", e))?;
            let key = WatchKey {
                tgid: pid,
                _pad: 0,
                addr,
            };
            watch
                .insert(key, slot, 0)
                .map_err(|e| load_err("filling WATCH", e))?;
        }
        let p: &mut PerfEvent =
            program(&mut self.ebpf, "ipcwatch_watch").map_err(|e| load_err("ipcwatch_watch", e))?;
        let prog = p.fd().map_err(|e| load_err("ipcwatch_watch", e))?;
        let prog = prog.as_fd().as_raw_fd();
        let mut armed = Armed::default();
        for &tid in tids {
            match watchpoint(tid, addr, prog) {
                Ok(fd) => armed.fds.push((tid, fd)),
                Err(e) => armed.failed.push((tid, e)),
            }
        }
        Ok(armed)
    }

    /// The distinct instructions that wrote slot `slot`'s word since it
    /// was last cleared.
    pub fn seen(&self, slot: u32) -> Seen {
        self.ebpf
            .map("SEEN")
            .and_then(|m| Array::<_, Seen>::try_from(m).ok())
            .and_then(|a| a.get(&slot, 0).ok())
            .unwrap_or_default()
    }

    /// Forget what slot `slot` saw (before it watches another word).
    pub fn clear_seen(&mut self, slot: u32) {
        if let Some(m) = self.ebpf.map_mut("SEEN")
            && let Ok(mut a) = Array::<_, Seen>::try_from(m)
        {
            let _ = a.set(slot, Seen::default(), 0);
        }
    }

    /// Disarm what [`Probes::watch`] armed.
    pub fn unwatch(&mut self, pid: u32, addr: u64, fds: Vec<(u32, OwnedFd)>) {
        drop(fds);
        if let Some(map) = self.ebpf.map_mut("WATCH")
            && let Ok(mut watch) = HashMap::<_, WatchKey, u32>::try_from(map)
        {
            let _ = watch.remove(&WatchKey {
                tgid: pid,
                _pad: 0,
                addr,
            });
        }
    }

    /// Instruction pointers of a user stack recorded by the watchpoint
    /// program, innermost first.
    pub fn stack(&self, id: i64) -> Vec<u64> {
        let Ok(id) = u32::try_from(id) else {
            return Vec::new();
        };
        self.ebpf
            .map("STACKS")
            .and_then(|m| StackTraceMap::try_from(m).ok())
            .and_then(|m| m.get(&id, 0).ok())
            .map(|st| st.frames().iter().map(|f| f.ip).collect())
            .unwrap_or_default()
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
            Some(lp) => lp.attach(&mut self.ebpf, pid),
            None => Vec::new(),
        }
    }

    /// Detach `pid`'s `--lock-probes` (it exec'd or exited).
    pub fn detach_lock_probes(&mut self, pid: u32) {
        if let Some(lp) = &mut self.lock_probes {
            lp.detach(&mut self.ebpf, pid);
        }
    }

    /// Kernel-side counter `index` (one of `stat::*`), summed over CPUs.
    pub fn stat(&self, index: u32) -> u64 {
        self.stats
            .get(&index, 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }

    /// The kernel's next sequence number for each CPU (index = CPU).
    pub fn kernel_seqs(&self) -> Vec<u64> {
        self.seq
            .as_ref()
            .and_then(|m| m.get(&0, 0).ok())
            .map(|v| v.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Events the kernel could not write because the ring buffer was full.
    pub fn dropped(&self) -> u64 {
        self.stat(stat::DROPPED)
    }

    /// [`Self::dropped`], and by event kind: one map lookup per kind, so
    /// read once a second and at the stop, not per tick.
    pub fn dropped_by_kind(&self) -> Dropped {
        Dropped {
            total: self.dropped(),
            by_kind: RAW_KINDS.map(|k| self.stat(stat::dropped_kind(k))),
        }
    }

    /// Pass what the eBPF programs logged to the `log` crate (debug level,
    /// only when it was at least debug at load). Not driven by itself: the
    /// event loop calls it on its poll timer; it returns at once when
    /// nothing waits.
    pub fn flush_kernel_log(&mut self) {
        if let Some(logger) = &mut self.kernel_log {
            logger.flush();
        }
    }

    /// With [`Options::aggregate`]: every entry of `IO_TOTALS`, summed
    /// over CPUs (`last_ns`: the latest). Empty when aggregation is off.
    pub fn io_totals(&self) -> Vec<(IoKey, IoTotals)> {
        let Some(map) = self
            .ebpf
            .map("IO_TOTALS")
            .and_then(|m| PerCpuHashMap::<_, IoKey, IoTotals>::try_from(m).ok())
        else {
            return Vec::new();
        };
        map.iter()
            .filter_map(Result::ok)
            .map(|(key, per_cpu)| (key, sum_per_cpu(per_cpu.iter())))
            .collect()
    }

    /// Remove these entries of `IO_TOTALS` (their descriptors are closed).
    pub fn forget_io_totals(&mut self, keys: &[IoKey]) {
        if let Some(m) = self.ebpf.map_mut("IO_TOTALS")
            && let Ok(mut map) = PerCpuHashMap::<_, IoKey, IoTotals>::try_from(m)
        {
            for key in keys {
                let _ = map.remove(key);
            }
        }
    }

    /// The ring buffer, for the reader (once).
    pub fn take_ring(&mut self) -> Result<RingBuf<MapData>, Error> {
        self.ring
            .take()
            .ok_or_else(|| Error::Load("the ring buffer was already taken".into()))
    }
}

/// One `IO_TOTALS` entry's values on each CPU, as one: bytes and calls
/// added up, the latest time.
pub fn sum_per_cpu<'a>(per_cpu: impl Iterator<Item = &'a IoTotals>) -> IoTotals {
    per_cpu.fold(IoTotals::default(), |a, v| IoTotals {
        bytes: a.bytes.wrapping_add(v.bytes),
        ops: a.ops.wrapping_add(v.ops),
        last_ns: a.last_ns.max(v.last_ns),
    })
}

/// Whether `opts` sum pipe and FIFO io in the kernel: asked for, and no
/// option that needs every event (deep mode's happens-before edges, the
/// payloads and spans paired with their event).
pub fn aggregating(opts: &Options) -> bool {
    opts.aggregate && !opts.deep && opts.capture_bytes == 0 && !opts.durations
}

/// The eBPF object with its read-only globals set from this kernel's BTF
/// and `opts` (the verifier sees them as constants).
pub(crate) fn load_object(opts: &Options) -> Result<Ebpf, Error> {
    let vmlinux = std::path::Path::new(btf::VMLINUX_BTF);
    let mut mode = 0;
    if opts.listed_only || !opts.filter.is_empty() {
        mode |= filter::LISTED;
    }
    if !opts.filter.comms.is_empty() {
        mode |= filter::COMM;
    }
    if !opts.filter.cgroups.is_empty() {
        mode |= filter::CGROUP;
    }
    let config = Config {
        self_tgid: std::process::id(),
        filter: mode,
        kinds: kernel_kinds(opts.kinds),
        wake_bytes: opts.ring_bytes / 16,
        watch_delay_ns: opts.watch_delay_ns,
        deep: opts.deep as u32,
        capture_bytes: opts.capture_bytes.min(ipcwatch_common::MAX_CAPTURE as u32),
        durations: opts.durations as u32,
        aggregate: aggregating(opts) as u32,
        off: btf::offsets_from(vmlinux)?,
    };
    let sock_config = SockConfig {
        off: btf::sock_offsets_from(vmlinux)?,
    };
    let shm_config = shm::config(vmlinux)?;
    let choice = object::chosen();
    tracing::info!("eBPF object: {}", choice.describe());
    EbpfLoader::new()
        .override_global("CONFIG", &config, true)
        .override_global("SOCK_CONFIG", &sock_config, true)
        .override_global("SHM_CONFIG", &shm_config, true)
        .override_global(aya_log::LEVEL, &kernel_log_level(), false)
        .map_max_entries("EVENTS", opts.ring_bytes)
        .map_max_entries("AYA_LOGS", KERNEL_LOG_BYTES)
        .map_max_entries(
            "IO_TOTALS",
            if aggregating(opts) {
                IO_TOTALS_ENTRIES
            } else {
                1
            },
        )
        .load(choice.object())
        .map_err(|e| load_err("loading the eBPF object", e))
}

/// The eBPF side logs at debug level only: below it, level 0 turns its
/// messages off (a constant, so the verifier drops their code).
fn kernel_log_level() -> u8 {
    match log::max_level() {
        log::LevelFilter::Debug | log::LevelFilter::Trace => log::max_level() as u8,
        _ => 0,
    }
}

fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::maps::Map, Error> {
    ebpf.map_mut(name)
        .ok_or_else(|| Error::Load(format!("map {name} missing")))
}

fn take_map(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map, Error> {
    ebpf.take_map(name)
        .ok_or_else(|| Error::Load(format!("map {name} missing")))
}

/// SYSCALLS (this architecture's numbers), COMMS (`--comm`) and CGROUPS
/// (`--cgroup`, `--container`).
fn fill_maps(ebpf: &mut Ebpf, opts: &Options) -> Result<(), Error> {
    let mut syscalls: Array<_, u32> =
        Array::try_from(map_mut(ebpf, "SYSCALLS")?).map_err(|e| load_err("map SYSCALLS", e))?;
    for (code, nr) in &syscalls::syscall_numbers() {
        syscalls
            .set(*nr as u32, code, 0)
            .map_err(|e| load_err("filling SYSCALLS", e))?;
    }
    let mut comms: HashMap<_, [u8; COMM_LEN], u32> =
        HashMap::try_from(map_mut(ebpf, "COMMS")?).map_err(|e| load_err("map COMMS", e))?;
    for c in &opts.filter.comms {
        comms
            .insert(comm_key(c), 1, 0)
            .map_err(|e| load_err("filling COMMS", e))?;
    }
    let mut cgroups: HashMap<_, u64, u32> =
        HashMap::try_from(map_mut(ebpf, "CGROUPS")?).map_err(|e| load_err("map CGROUPS", e))?;
    for s in &opts.filter.cgroups {
        cgroups
            .insert(s.id, 1, 0)
            .map_err(|e| load_err("filling CGROUPS", e))?;
    }
    Ok(())
}

/// Load the syscall programs as `record` loads them: the sys_exit
/// dispatcher (on tp_btf, or the raw tracepoint), which `record` cannot
/// do without, then its families of the same form (`sc::exit_tail`),
/// each put in the dispatcher's program array. A family that does not
/// load goes to `skipped`, with what is lost: the dispatcher finds its
/// slot empty and drops its syscalls; but reads and writes are required
/// like the dispatcher. `ipcwatch doctor` calls it too.
pub fn load_syscall_programs(
    ebpf: &mut Ebpf,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<Loaded>, String> {
    let dispatcher = load_btf_or_raw(ebpf, "ipcwatch_sys_exit", "sys_exit", skipped)?;
    let (suffix, array) = if dispatcher.btf {
        ("_btf", "EXIT_TAILS_BTF")
    } else {
        ("", "EXIT_TAILS")
    };
    let mut loaded = vec![dispatcher];
    for index in 0..exit_tail::COUNT {
        let name = format!("{}{suffix}", exit_tail::PROGRAMS[index as usize]);
        let family = (|| {
            let (l, fd) = load_tail(ebpf, &name, suffix == "_btf")?;
            let map = ebpf
                .map_mut(array)
                .ok_or_else(|| format!("map {array} missing"))?;
            let mut tails = ProgramArray::try_from(map).map_err(|e| e.to_string())?;
            tails
                .set(index, &fd, 0)
                .map_err(|e| format!("{array}[{index}] = {name}: {e}"))?;
            Ok::<_, String>(l)
        })();
        match family {
            Ok(l) => loaded.push(l),
            // Reads and writes are the core: without them nothing is
            // worth recording.
            Err(reason) if index == exit_tail::READ_WRITE => return Err(reason),
            Err(reason) => skipped.push(Skipped {
                probe: format!("sys_exit:{name}"),
                reason: format!("{reason} ({})", exit_tail::LOSES[index as usize]),
            }),
        }
    }
    Ok(loaded)
}

/// Load `name`, a family of sys_exit reached by tail call (not attached).
fn load_tail(ebpf: &mut Ebpf, name: &str, btf: bool) -> Result<(Loaded, ProgramFd), String> {
    let t = std::time::Instant::now();
    let fd = if btf {
        let kernel = aya::Btf::from_sys_fs().map_err(|e| e.to_string())?;
        let p: &mut BtfTracePoint = program(ebpf, name)?;
        p.load("sys_exit", &kernel)
            .map_err(|e| load_error(name, &e))?;
        p.fd().and_then(|f| Ok(f.try_clone()?))
    } else {
        let p: &mut RawTracePoint = program(ebpf, name)?;
        p.load().map_err(|e| load_error(name, &e))?;
        p.fd().and_then(|f| Ok(f.try_clone()?))
    }
    .map_err(|e| format!("{name}: {e}"))?;
    let secs = t.elapsed().as_secs_f64();
    let insns = ebpf
        .program(name)
        .and_then(|p| p.info().ok())
        .and_then(|i| i.verified_instruction_count());
    Ok((
        Loaded {
            program: name.to_string(),
            btf,
            insns,
            secs,
        },
        fd,
    ))
}

/// Attach every probe; only the sys_exit program is required.
fn attach_all(ebpf: &mut Ebpf, lock_probes: bool) -> Result<Vec<Skipped>, Error> {
    let mut skipped = Vec::new();
    // Everything but close is handled at syscall exit, by one program (on
    // tp_btf, or the raw tracepoint) that reads the arguments back from
    // the registers.
    let attached = load_syscall_programs(ebpf, &mut skipped)
        .and_then(|l| attach_loaded(ebpf, &l[0], "sys_exit"));
    if let Err(reason) = attached {
        let btf = skipped
            .iter()
            .find(|s| s.probe == "tp_btf:sys_exit")
            .map(|s| format!("; on tp_btf: {}", s.reason))
            .unwrap_or_default();
        return Err(Error::Load(format!(
            "cannot trace syscalls: the sys_exit program did not load or attach: {reason}{btf}"
        )));
    }
    // close must be seen at entry, before the descriptor is gone; the
    // start of large pipe writes too (they may interleave).
    attach_btf_or_raw(ebpf, "ipcwatch_sys_enter", "sys_enter", &mut skipped);
    attach_raw(ebpf, "ipcwatch_fork", "sched_process_fork", &mut skipped);
    attach_tp(
        ebpf,
        "ipcwatch_exec",
        "sched",
        "sched_process_exec",
        &mut skipped,
    );
    attach_tp(
        ebpf,
        "ipcwatch_exit",
        "sched",
        "sched_process_exit",
        &mut skipped,
    );
    shm::attach(ebpf, lock_probes, &mut skipped);
    Ok(skipped)
}

/// What [`Probes::watch`] armed in one process.
#[derive(Debug, Default)]
pub struct Armed {
    /// One perf event per armed thread, with the thread.
    pub fds: Vec<(u32, OwnedFd)>,
    /// Threads that could not be armed: ESRCH (gone), ENOSPC (its debug
    /// registers are taken, by a debugger or another perf user), EMFILE.
    pub failed: Vec<(u32, std::io::Error)>,
}

/// Writes counted by a watchpoint's perf event so far.
pub fn hits(fd: &OwnedFd) -> u64 {
    let mut count = 0u64;
    // SAFETY: reading 8 bytes into a u64 from our own perf descriptor
    // (read_format 0: the value alone).
    let n = unsafe { libc::read(fd.as_raw_fd(), (&raw mut count).cast(), 8) };
    if n == 8 { count } else { 0 }
}

/// A write watchpoint (PERF_TYPE_BREAKPOINT) on the 8 bytes at `addr` in
/// thread `tid`, running program `prog` on every hit. Opened here rather
/// than through aya, which asks for precise_ip without a callchain: the
/// kernel then refuses programs that read the user stack (EPROTO).
pub(crate) fn watchpoint(tid: u32, addr: u64, prog: RawFd) -> std::io::Result<OwnedFd> {
    use aya_obj::generated::{
        HW_BREAKPOINT_LEN_8, HW_BREAKPOINT_W, PERF_EVENT_IOC_ENABLE, PERF_EVENT_IOC_SET_BPF,
        PERF_FLAG_FD_CLOEXEC, perf_event_attr, perf_type_id,
    };
    // SAFETY: perf_event_attr is plain data; all-zero is its default.
    let mut attr: perf_event_attr = unsafe { std::mem::zeroed() };
    attr.type_ = perf_type_id::PERF_TYPE_BREAKPOINT as u32;
    attr.size = std::mem::size_of::<perf_event_attr>() as u32;
    attr.bp_type = HW_BREAKPOINT_W;
    attr.__bindgen_anon_3.bp_addr = addr;
    attr.__bindgen_anon_4.bp_len = HW_BREAKPOINT_LEN_8 as u64;
    attr.__bindgen_anon_1.sample_period = 1;
    attr.__bindgen_anon_2.wakeup_events = 1;
    // SAFETY: a valid attr; the result is a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const perf_event_attr,
            tid as libc::pid_t,
            -1,
            -1,
            PERF_FLAG_FD_CLOEXEC as libc::c_ulong,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: perf_event_open returned a fresh descriptor that we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    // SAFETY: ioctls on our own perf descriptor with valid arguments.
    unsafe {
        if libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_SET_BPF as _, prog) != 0
            || libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_ENABLE as _, 0) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_totals_per_cpu_add_up_and_keep_the_latest_time() {
        let t = |bytes, ops, last_ns| IoTotals {
            bytes,
            ops,
            last_ns,
        };
        let per_cpu = [t(1000, 1, 50), t(2000, 2, 90), t(0, 0, 0)];
        assert_eq!(sum_per_cpu(per_cpu.iter()), t(3000, 3, 90));
    }

    #[test]
    fn aggregation_only_without_options_that_need_every_event() {
        let on = Options {
            aggregate: true,
            ..Options::default()
        };
        assert!(aggregating(&on));
        assert!(!aggregating(&Options::default()));
        for off in [
            Options {
                deep: true,
                ..on.clone()
            },
            Options {
                capture_bytes: 16,
                ..on.clone()
            },
            Options {
                durations: true,
                ..on.clone()
            },
        ] {
            assert!(!aggregating(&off));
        }
    }
}
