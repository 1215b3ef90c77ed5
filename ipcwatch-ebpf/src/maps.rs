//! Every map and read-only global of the object, at the bottom of the
//! crate: helpers and probes reach them from here. Userspace finds each
//! one by its name, so the names are part of the interface.

use aya_ebpf::{
    macros::map,
    maps::{
        Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, ProgramArray, RingBuf, StackTrace,
    },
};
use ipcwatch_common::{
    COMM_LEN, Config, IoKey, IoTotals, MAX_SYSCALL_NR, SockConfig,
    race::{MAX_SLOTS, Seen, Slot, WatchKey},
    sc::exit_tail,
    shm::{MemEvent, ShmConfig},
    stat,
};

/// Written by userspace before load.
#[unsafe(no_mangle)]
pub(crate) static CONFIG: Config = Config::zeroed();

/// Read one field of CONFIG. `read_volatile` keeps the compiler from
/// folding the zero initializer into the code.
macro_rules! conf {
    ($($field:ident).+) => {
        // SAFETY: CONFIG is a static; the pointer is valid and aligned.
        unsafe { core::ptr::read_volatile(&raw const $crate::maps::CONFIG.$($field).+) }
    };
}
pub(crate) use conf;

/// Offsets for the socket probes, written by userspace before load.
#[unsafe(no_mangle)]
pub(crate) static SOCK_CONFIG: SockConfig = SockConfig::zeroed();

/// Read one field of SOCK_CONFIG (see [`conf`]).
macro_rules! sconf {
    ($($field:ident).+) => {
        // SAFETY: SOCK_CONFIG is a static; the pointer is valid and aligned.
        unsafe { core::ptr::read_volatile(&raw const $crate::maps::SOCK_CONFIG.$($field).+) }
    };
}
pub(crate) use sconf;

/// Offsets and flags for shared memory, written by userspace before load.
#[unsafe(no_mangle)]
pub(crate) static SHM_CONFIG: ShmConfig = ShmConfig::zeroed();

/// Read one field of SHM_CONFIG (see [`conf`]).
macro_rules! shm_conf {
    ($field:ident) => {
        // SAFETY: SHM_CONFIG is a static; the pointer is valid and aligned.
        unsafe { core::ptr::read_volatile(&raw const $crate::maps::SHM_CONFIG.$field) }
    };
}
pub(crate) use shm_conf;

/// Every event, to userspace.
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);

/// Per-CPU counters, indexed by `stat::*`.
#[map]
pub(crate) static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

/// Per-CPU next sequence number of [`EVENTS`].
#[map]
pub(crate) static SEQ: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// With `CONFIG.aggregate` (the live TUI): bytes and calls through each
/// pipe or FIFO descriptor of each process, per direction, in place of
/// one IO event each. Per CPU: no other CPU touches a value. Sized by
/// userspace at load: 1 entry when aggregation is off. A full map sends
/// the event to the ring buffer as before, so nothing is lost.
#[map]
pub(crate) static IO_TOTALS: PerCpuHashMap<IoKey, IoTotals> =
    PerCpuHashMap::with_max_entries(1, 0);

/// tgid -> `traced::*` flags. Used when `CONFIG.filter` has `LISTED`.
#[map]
pub(crate) static TRACED: HashMap<u32, u32> = HashMap::with_max_entries(65536, 0);

/// comm -> 1. Used when `CONFIG.filter` has `COMM`.
#[map]
pub(crate) static COMMS: HashMap<[u8; COMM_LEN], u32> = HashMap::with_max_entries(64, 0);

/// Unified-hierarchy cgroup id -> 1. Used when `CONFIG.filter` has
/// `CGROUP`: processes in one of these cgroups, or below one, are traced.
#[map]
pub(crate) static CGROUPS: HashMap<u64, u32> = HashMap::with_max_entries(64, 0);

/// tid -> when the call in flight started: a pipe write larger than
/// PIPE_BUF, and with `--durations` every timed call. An LRU map: the
/// starts of calls whose exit reports nothing (a read of a regular file)
/// stay until overwritten by the thread's next call or evicted.
#[map]
pub(crate) static CALL_START: LruHashMap<u32, u64> = LruHashMap::with_max_entries(16384, 0);

/// The `sys_exit` families reached by tail call from the raw-tracepoint
/// dispatcher (`sc::exit_tail`), filled by userspace; an empty slot drops
/// its family.
#[map]
pub(crate) static EXIT_TAILS: ProgramArray = ProgramArray::with_max_entries(exit_tail::COUNT, 0);

/// The same for the tp_btf dispatcher (a program array holds programs of
/// one type).
#[map]
pub(crate) static EXIT_TAILS_BTF: ProgramArray =
    ProgramArray::with_max_entries(exit_tail::COUNT, 0);

/// The superblocks of sockfs and pipefs and their devices, learned on
/// first sight (`file::kernel_fs_dev`): [sockfs, its dev, pipefs, its
/// dev]. Both filesystems are mounted by the kernel at boot and never
/// unmounted, so a superblock address seen once stays theirs.
#[map]
pub(crate) static KERNEL_FS: Array<u64> = Array::with_max_entries(4, 0);

/// Architecture syscall number -> `sc::*` code (0: not followed).
#[map]
pub(crate) static SYSCALLS: Array<u32> = Array::with_max_entries(MAX_SYSCALL_NR, 0);

/// tgid -> `shared::MAPS_*` bits for processes that map shared memory (set
/// on shmat and MAP_SHARED mmap, inherited through fork, dropped at exit).
/// Userspace adds the processes it finds mapping shared memory at start.
#[map]
pub(crate) static SHM_PROCS: HashMap<u32, u32> = HashMap::with_max_entries(16384, 0);

/// Per-CPU scratch space where a [`MemEvent`] is built (too big for the
/// 512-byte BPF stack next to the caller's frame).
#[map]
pub(crate) static MEM_SCRATCH: PerCpuArray<MemEvent> = PerCpuArray::with_max_entries(1, 0);

/// tid -> object address of an acquire-type lock call in progress
/// (uprobe at entry, reported by the uretprobe).
#[map]
pub(crate) static PENDING: HashMap<u32, u64> = HashMap::with_max_entries(16384, 0);

/// (process, address) -> slot. Filled by userspace when it arms a word.
#[map]
pub(crate) static WATCH: HashMap<WatchKey, u32> = HashMap::with_max_entries(256, 0);

/// The write in flight on each watched slot.
#[map]
pub(crate) static SLOTS: Array<Slot> = Array::with_max_entries(MAX_SLOTS, 0);

/// Slot -> the distinct instructions that wrote its word.
#[map]
pub(crate) static SEEN: Array<Seen> = Array::with_max_entries(MAX_SLOTS, 0);

/// User stacks of trapped writes.
#[map]
pub(crate) static STACKS: StackTrace = StackTrace::with_max_entries(4096, 0);
