//! Syscall and process-lifecycle probes that feed the collector.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_kernel_str_bytes, bpf_probe_read_user, bpf_probe_read_user_str_bytes,
        generated::{bpf_get_current_task, bpf_get_current_task_btf, bpf_get_smp_processor_id},
    },
    macros::{btf_tracepoint, map, raw_tracepoint, tracepoint},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};
use ipcwatch_common::{
    COMM_LEN, Config, DataEvent, EventHeader, ExecEvent, ExitEvent, FdEvent, FileId, ForkEvent,
    IoEvent, MAX_CAPTURE, MAX_SYSCALL_NR, OpenEvent, PIPE_BUF, PathEvent, PipeEvent, SpanEvent,
    WaitEvent, file_kind, filter, kind, op, sc, stat, traced,
};

/// Written by userspace before load.
#[unsafe(no_mangle)]
pub(crate) static CONFIG: Config = Config::zeroed();

/// Read one field of CONFIG. `read_volatile` keeps the compiler from
/// folding the zero initializer into the code.
macro_rules! conf {
    ($($field:ident).+) => {
        // SAFETY: CONFIG is a static; the pointer is valid and aligned.
        unsafe { core::ptr::read_volatile(&raw const $crate::tracer::CONFIG.$($field).+) }
    };
}
pub(crate) use conf;

#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);

#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

#[map]
static SEQ: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// tgid -> `traced::*` flags. Used when `CONFIG.filter` has `LISTED`.
#[map]
pub(crate) static TRACED: HashMap<u32, u32> = HashMap::with_max_entries(65536, 0);

/// comm -> 1. Used when `CONFIG.filter` has `COMM`.
#[map]
static COMMS: HashMap<[u8; COMM_LEN], u32> = HashMap::with_max_entries(64, 0);

/// tid -> start of a pipe write larger than PIPE_BUF, in flight.
#[map]
static WRITE_START: HashMap<u32, u64> = HashMap::with_max_entries(16384, 0);

/// Architecture syscall number -> `sc::*` code (0: not followed).
#[map]
static SYSCALLS: Array<u32> = Array::with_max_entries(MAX_SYSCALL_NR, 0);

const S_IFMT: u32 = 0o170000;
const S_IFIFO: u32 = 0o010000;
const S_IFSOCK: u32 = 0o140000;
const PIPEFS_MAGIC: u64 = 0x5049_5045;
const FMODE_READ: u32 = 0x1;
const FMODE_WRITE: u32 = 0x2;
const O_CLOEXEC: u64 = 0o2000000;
const F_DUPFD: u64 = 0;
const F_SETFD: u64 = 2;
const F_DUPFD_CLOEXEC: u64 = 1030;

#[inline(always)]
pub(crate) fn bump(index: u32) {
    if let Some(counter) = STATS.get_ptr_mut(index) {
        // SAFETY: a valid, aligned per-CPU slot. Atomic: tracing programs
        // can be preempted (migrate_disable only), so two on one CPU may
        // interleave here.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, 1) };
    }
}

/// [`header`] in a tp_btf program: the name is loaded from the task
/// directly instead of through bpf_get_current_comm.
#[inline(always)]
fn header_btf(kind: u32, pid_tgid: u64) -> EventHeader {
    // SAFETY: plain helper call.
    let task = unsafe { bpf_get_current_task_btf() } as u64;
    let at = task + conf!(off.task_comm) as u64;
    // SAFETY: `task` is a BTF-typed pointer in a tp_btf program; the
    // verifier checks both loads against task_struct.comm.
    let (lo, hi) = unsafe {
        (
            core::ptr::read_volatile(at as *const u64),
            core::ptr::read_volatile((at + 8) as *const u64),
        )
    };
    let mut hdr = header_no_comm(kind, pid_tgid);
    let lo = lo.to_le_bytes();
    let hi = hi.to_le_bytes();
    let mut i = 0;
    while i < 8 {
        hdr.comm[i] = lo[i];
        hdr.comm[i + 8] = hi[i];
        i += 1;
    }
    hdr
}

pub(crate) fn header(kind: u32, pid_tgid: u64) -> EventHeader {
    let mut hdr = header_no_comm(kind, pid_tgid);
    hdr.comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
    hdr
}

#[inline(always)]
fn header_no_comm(kind: u32, pid_tgid: u64) -> EventHeader {
    let seq = match SEQ.get_ptr_mut(0) {
        // SAFETY: a valid, aligned per-CPU slot; atomic, see `bump`.
        // SeqCst, not Relaxed: LLVM 22 compiles a relaxed add whose result
        // is used into BPF's plain locked add, which returns nothing (every
        // sequence number was 1); SeqCst gets atomic_fetch_add (ISA v3).
        Some(p) => unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(p, 1) },
        None => 0,
    };
    EventHeader {
        kind,
        // SAFETY: plain helper call.
        cpu: unsafe { bpf_get_smp_processor_id() },
        seq,
        // SAFETY: plain helper call.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        comm: [0; COMM_LEN],
    }
}

/// Submit flags: wake the reader only when enough data waits. A wakeup
/// per event costs an inter-processor interrupt, which dominates the cost
/// of tracing in a virtual machine; the reader polls on a short timer too.
///
/// The wakeup is sent when the waiting data crosses a multiple of
/// `wake_bytes` (within the last `WAKE_WINDOW` bytes, a bound on one
/// event's size), not for every event once it is above the mark: a reader
/// that fell behind would otherwise cost the traced program an interrupt
/// per event, slowing it several times, right when the reader most needs
/// the CPU. A reader that missed a wakeup gets the next one 1/16 of the
/// buffer later, or its poll timer first. Past half the buffer, though,
/// events are about to be lost: then every submission wakes the reader,
/// which slows the traced program down before it loses its events.
#[inline(always)]
pub(crate) fn wake_flags() -> u64 {
    const WAKE_WINDOW: u64 = 512;
    let avail = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let mark = conf!(wake_bytes) as u64;
    if mark != 0
        && avail >= mark
        && (avail >= 8 * mark || avail / mark != avail.saturating_sub(WAKE_WINDOW) / mark)
    {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Write `event` to the ring buffer, counting a drop when it is full.
pub(crate) fn emit<T: 'static>(event: T) {
    match EVENTS.reserve::<T>(0) {
        Some(mut entry) => {
            entry.write(event);
            entry.submit(wake_flags());
        }
        None => bump(stat::DROPPED),
    }
}

pub(crate) fn allowed(tgid: u32) -> bool {
    if tgid == conf!(self_tgid) {
        return false;
    }
    let mode = conf!(filter);
    if mode & filter::LISTED == 0 {
        return true;
    }
    if TRACED.get_ptr(tgid).is_some() {
        return true;
    }
    if mode & filter::COMM != 0
        && let Ok(comm) = bpf_get_current_comm()
    {
        return COMMS.get_ptr(comm).is_some();
    }
    false
}

#[inline(always)]
fn wanted(file: &FileId) -> bool {
    file.kind != file_kind::NONE && conf!(kinds) & file_kind::bit(file.kind) != 0
}

/// Read a kernel value at `base + off`.
#[inline(always)]
pub(crate) fn kread<T>(base: u64, off: u32) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel tolerates any address.
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T).ok() }
}

/// Up to `W` words of a kernel object read in one helper call. The fields
/// the probes need sit within a few cache lines of each other, and one
/// bpf_probe_read_kernel costs far more than the bytes it copies, so each
/// object is read once; a field outside the block (another kernel's
/// layout) is read on its own.
pub(crate) struct Block<const W: usize> {
    base: u64,
    lo: u32,
    ok: bool,
    words: [u64; W],
}

impl<const W: usize> Block<W> {
    /// The block of `base` that starts at offset `lo` (rounded down to a
    /// word).
    #[inline(always)]
    pub(crate) fn read(base: u64, lo: u32) -> Self {
        let lo = lo & !7;
        // SAFETY: bpf_probe_read_kernel tolerates any address.
        match unsafe { bpf_probe_read_kernel((base + lo as u64) as *const [u64; W]) } {
            Ok(words) => Block {
                base,
                lo,
                ok: true,
                words,
            },
            Err(_) => Block {
                base,
                lo,
                ok: false,
                words: [0; W],
            },
        }
    }

    /// The word holding the `size` bytes at `off`, and the shift to them.
    #[inline(always)]
    fn word(&self, off: u32, size: u32) -> Option<(u64, u32)> {
        let d = off.wrapping_sub(self.lo);
        let i = (d / 8) as usize;
        if self.ok && d.is_multiple_of(size) && i < W {
            Some((self.words[i], (d % 8) * 8))
        } else {
            None
        }
    }

    #[inline(always)]
    pub(crate) fn u64(&self, off: u32) -> Option<u64> {
        match self.word(off, 8) {
            Some((w, _)) => Some(w),
            None => kread::<u64>(self.base, off),
        }
    }

    #[inline(always)]
    pub(crate) fn u32(&self, off: u32) -> Option<u32> {
        match self.word(off, 4) {
            Some((w, shift)) => Some((w >> shift) as u32),
            None => kread::<u32>(self.base, off),
        }
    }

    #[inline(always)]
    pub(crate) fn u16(&self, off: u32) -> Option<u16> {
        match self.word(off, 2) {
            Some((w, shift)) => Some((w >> shift) as u16),
            None => kread::<u16>(self.base, off),
        }
    }
}

/// The saved user registers of a syscall: its number and its arguments
/// sit within 72 bytes of each other on x86_64, read once.
pub(crate) type Regs = Block<9>;

impl Regs {
    /// The registers of `regs` (a `struct pt_regs *`).
    #[inline(always)]
    pub(crate) fn of(regs: u64) -> Self {
        Block::read(regs, Self::lo())
    }

    /// Where the block starts: the lowest of the offsets it holds.
    #[inline(always)]
    fn lo() -> u32 {
        min(
            min(conf!(off.regs_nr), conf!(off.regs_arg0)),
            min(
                min(conf!(off.regs_arg1), conf!(off.regs_arg2)),
                conf!(off.regs_arg3),
            ),
        ) & !7
    }

    /// [`Regs::of`] where `regs` is a BTF pointer (tp_btf): direct loads.
    #[inline(always)]
    pub(crate) fn of_btf(regs: u64) -> Self {
        let lo = Self::lo();
        let mut words = [0u64; 9];
        let mut i = 0;
        while i < 9 {
            // SAFETY: `regs` is the kernel's `struct pt_regs *` of a
            // tp_btf program; the verifier checks the load against BTF.
            words[i] = unsafe {
                core::ptr::read_volatile((regs + lo as u64 + 8 * i as u64) as *const u64)
            };
            i += 1;
        }
        Block {
            base: regs,
            lo,
            ok: true,
            words,
        }
    }

    /// The syscall number.
    #[inline(always)]
    pub(crate) fn nr(&self) -> Option<u64> {
        self.u64(conf!(off.regs_nr))
    }

    /// Syscall argument `i` (0..=3).
    #[inline(always)]
    pub(crate) fn arg(&self, i: usize) -> u64 {
        let off = match i {
            0 => conf!(off.regs_arg0),
            1 => conf!(off.regs_arg1),
            2 => conf!(off.regs_arg2),
            _ => conf!(off.regs_arg3),
        };
        self.u64(off).unwrap_or(0)
    }
}

#[inline(always)]
fn min(a: u32, b: u32) -> u32 {
    if a < b { a } else { b }
}

/// [`file_of_fd`] in a tp_btf program: the task, its files and fdtable
/// are typed pointers, loaded directly; only the array slot needs a
/// helper.
#[inline(always)]
fn file_of_fd_btf(fd: i64) -> u64 {
    if !(0..=i32::MAX as i64).contains(&fd) {
        return 0;
    }
    let load = |base: u64, off: u32| -> u64 {
        // SAFETY: `base` is a BTF-typed kernel pointer in a tp_btf
        // program; the verifier checks the load and the JIT turns faults
        // into zeros.
        unsafe { core::ptr::read_volatile((base + off as u64) as *const u64) }
    };
    // SAFETY: plain helper call.
    let task = unsafe { bpf_get_current_task_btf() } as u64;
    let files = load(task, conf!(off.task_files));
    if files == 0 {
        return 0;
    }
    let fdt = load(files, conf!(off.files_fdt));
    if fdt == 0 {
        return 0;
    }
    let max_at = fdt + conf!(off.fdt_max_fds) as u64;
    // SAFETY: as above, a u32 field.
    let max = unsafe { core::ptr::read_volatile(max_at as *const u32) };
    if fd as u64 >= max as u64 {
        return 0;
    }
    let array = load(fdt, conf!(off.fdt_fd));
    kread::<u64>(array + (fd as u64) * 8, 0).unwrap_or(0)
}

/// [`file_of_fd`], or [`file_of_fd_btf`] in a tp_btf program.
#[inline(always)]
pub(crate) fn file_of_fd_any<const BTF: bool>(fd: i64) -> u64 {
    if BTF {
        file_of_fd_btf(fd)
    } else {
        file_of_fd(fd)
    }
}

/// [`header`], or [`header_btf`] in a tp_btf program.
#[inline(always)]
pub(crate) fn header_any<const BTF: bool>(kind: u32, pid_tgid: u64) -> EventHeader {
    if BTF {
        header_btf(kind, pid_tgid)
    } else {
        header(kind, pid_tgid)
    }
}

/// `struct file *` of `fd` in the current task, or 0.
#[inline(always)]
pub(crate) fn file_of_fd(fd: i64) -> u64 {
    if !(0..=i32::MAX as i64).contains(&fd) {
        return 0;
    }
    // SAFETY: plain helper call.
    let task = unsafe { bpf_get_current_task() };
    let Some(files) = kread::<u64>(task, conf!(off.task_files)) else {
        return 0;
    };
    let Some(fdt) = kread::<u64>(files, conf!(off.files_fdt)) else {
        return 0;
    };
    let (max_off, fd_off) = (conf!(off.fdt_max_fds), conf!(off.fdt_fd));
    let table = Block::<2>::read(fdt, min(max_off, fd_off));
    let Some(max) = table.u32(max_off) else {
        return 0;
    };
    if fd as u64 >= max as u64 {
        return 0;
    }
    let Some(array) = table.u64(fd_off) else {
        return 0;
    };
    kread::<u64>(array + (fd as u64) * 8, 0).unwrap_or(0)
}

/// Classify a `struct file *`: kind, inode and device. Three reads: the
/// file, its inode and the inode's superblock, each as one block.
#[inline(never)]
fn classify_file(file: u64) -> FileId {
    let none = FileId::default();
    if file == 0 {
        return none;
    }
    let (inode_off, fmode_off) = (conf!(off.file_inode), conf!(off.file_mode));
    let f = Block::<6>::read(file, min(inode_off, fmode_off));
    let Some(inode) = f.u64(inode_off) else {
        return none;
    };
    let fmode = f.u32(fmode_off).unwrap_or(0);
    let (mode_off, sb_off, ino_off) = (
        conf!(off.inode_mode),
        conf!(off.inode_sb),
        conf!(off.inode_ino),
    );
    let i = Block::<10>::read(inode, min(mode_off, min(sb_off, ino_off)));
    let Some(mode) = i.u16(mode_off) else {
        return none;
    };
    let is_fifo = match mode as u32 & S_IFMT {
        S_IFIFO => true,
        S_IFSOCK => false,
        _ => return none,
    };
    let ino = i.u64(ino_off).unwrap_or(0);
    let sb = i.u64(sb_off).unwrap_or(0);
    let (dev_off, magic_off) = (conf!(off.sb_dev), conf!(off.sb_magic));
    let s = Block::<14>::read(sb, min(dev_off, magic_off));
    let dev = s.u32(dev_off).unwrap_or(0);
    let kind = if !is_fifo {
        file_kind::SOCKET
    } else if s.u64(magic_off).unwrap_or(0) == PIPEFS_MAGIC {
        file_kind::PIPE
    } else {
        file_kind::FIFO
    };
    FileId {
        ino,
        dev,
        kind,
        access: (fmode & (FMODE_READ | FMODE_WRITE)) as u16,
    }
}

fn classify_fd(fd: i64) -> FileId {
    classify_file(file_of_fd(fd))
}

/// Channel kinds userspace asked for (`file_kind::bit`s).
#[inline(always)]
pub(crate) fn kinds() -> u32 {
    conf!(kinds)
}

/// Inode number of a `struct file *`, 0 if unreadable.
#[inline(always)]
pub(crate) fn ino_of_file(file: u64) -> u64 {
    let inode = kread::<u64>(file, conf!(off.file_inode)).unwrap_or(0);
    kread::<u64>(inode, conf!(off.inode_ino)).unwrap_or(0)
}

/// Inode number of a `struct file *` on the mqueue filesystem, else 0.
#[inline(always)]
pub(crate) fn mqueue_ino(file: u64) -> u64 {
    const MQUEUE_MAGIC: u64 = 0x1980_0202;
    let inode = kread::<u64>(file, conf!(off.file_inode)).unwrap_or(0);
    let sb = kread::<u64>(inode, conf!(off.inode_sb)).unwrap_or(0);
    if kread::<u64>(sb, conf!(off.sb_magic)).unwrap_or(0) != MQUEUE_MAGIC {
        return 0;
    }
    kread::<u64>(inode, conf!(off.inode_ino)).unwrap_or(0)
}

/// Offset of `inode.i_ino`.
#[inline(always)]
pub(crate) fn inode_ino_off() -> u32 {
    conf!(off.inode_ino)
}

/// Syscall argument `i` (0..=3) from the saved user registers.
#[inline(always)]
pub(crate) fn regs_arg(regs: u64, i: usize) -> u64 {
    let off = match i {
        0 => conf!(off.regs_arg0),
        1 => conf!(off.regs_arg1),
        2 => conf!(off.regs_arg2),
        _ => conf!(off.regs_arg3),
    };
    kread::<u64>(regs, off).unwrap_or(0)
}

/// `sys_enter(struct pt_regs *regs, long id)`, for every syscall: entry of
/// close and close_range (the descriptor must be classified before the
/// kernel drops it), and of write and writev larger than PIPE_BUF to a
/// pipe (such writes can interleave: their start is kept). A raw
/// tracepoint costs far less per call than the syscalls:sys_enter_* ones
/// (no perf buffer), and the syscall number comes as an argument, so
/// every other syscall is turned away after one array lookup.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn ipcwatch_sys_enter(ctx: RawTracePointContext) -> i32 {
    sys_enter::<false>(ctx.arg(0), ctx.arg(1));
    0
}

/// The same on tp_btf (see `ipcwatch_sys_exit_btf`): a write's length is
/// loaded from the registers directly.
#[btf_tracepoint(function = "sys_enter")]
pub fn ipcwatch_sys_enter_btf(ctx: BtfTracePointContext) -> i32 {
    sys_enter::<true>(ctx.arg(0), ctx.arg(1));
    0
}

#[inline(always)]
fn sys_enter<const BTF: bool>(regs: u64, nr: u64) {
    let code = match SYSCALLS.get(nr as u32) {
        Some(&c) if matches!(c, sc::CLOSE | sc::CLOSE_RANGE | sc::WRITE | sc::WRITEV) => c,
        _ => return,
    };
    let arg = |i: usize| regs_arg(regs, i);
    if code == sc::WRITE {
        let len = if BTF {
            let at = regs + conf!(off.regs_arg2) as u64;
            // SAFETY: `regs` is the kernel's `struct pt_regs *` of a
            // tp_btf program; the verifier checks the load against BTF.
            unsafe { core::ptr::read_volatile(at as *const u64) }
        } else {
            arg(2)
        };
        if len <= PIPE_BUF {
            return;
        }
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if !allowed((pid_tgid >> 32) as u32) {
        return;
    }
    match code {
        sc::CLOSE => {
            let fd = arg(0) as i32;
            let fptr = file_of_fd(fd as i64);
            let file = classify_file(fptr);
            if wanted(&file) {
                emit(FdEvent {
                    hdr: header(kind::CLOSE, pid_tgid),
                    file,
                    fd,
                    arg: 0,
                    flags: 0,
                    syscall: code,
                });
            } else if file.kind == file_kind::NONE && fptr != 0 {
                crate::sock::mq_close(pid_tgid, fptr, fd);
            }
        }
        sc::CLOSE_RANGE => emit(FdEvent {
            hdr: header(kind::CLOSE_RANGE, pid_tgid),
            file: FileId::default(),
            fd: arg(0) as i32,
            arg: arg(1) as u32,
            flags: arg(2) as u32,
            syscall: code,
        }),
        _ => {
            if code == sc::WRITEV && iov_len(arg(1), arg(2)) <= PIPE_BUF {
                return;
            }
            let file = classify_fd(arg(0) as i64);
            if (file.kind == file_kind::PIPE || file.kind == file_kind::FIFO) && wanted(&file) {
                // SAFETY: plain helper call.
                let now = unsafe { bpf_ktime_get_ns() };
                let _ = WRITE_START.insert(pid_tgid as u32, now, 0);
            }
        }
    }
}

/// Total length of the first iovecs of a writev (enough to tell a write
/// larger than PIPE_BUF).
#[inline(always)]
fn iov_len(iov: u64, count: u64) -> u64 {
    let mut total = 0u64;
    for i in 0..8u64 {
        if i >= count {
            break;
        }
        // SAFETY: user pointer; probe_read tolerates faults.
        let len = unsafe { bpf_probe_read_user((iov + i * 16 + 8) as *const u64) }.unwrap_or(0);
        total += len;
    }
    total
}

/// The user buffer of a read/write that moved `ret` bytes, and how many of
/// them it holds (readv/writev: the first iovec's).
#[inline(always)]
fn user_buf(code: u32, arg1: u64, ret: i64) -> (u64, i64) {
    if code == sc::READV || code == sc::WRITEV {
        first_iov(arg1, ret)
    } else {
        (arg1, ret)
    }
}

/// The first buffer of an iovec array, and how many of `moved` bytes it
/// holds.
#[inline(always)]
pub(crate) fn first_iov(iov: u64, moved: i64) -> (u64, i64) {
    // SAFETY: user pointers; probe_read tolerates faults.
    let base = unsafe { bpf_probe_read_user(iov as *const u64) }.unwrap_or(0);
    // SAFETY: as above.
    let len = unsafe { bpf_probe_read_user((iov + 8) as *const u64) }.unwrap_or(0) as i64;
    (base, if len < moved { len } else { moved })
}

/// Whether `--capture-bytes` asks for payloads.
#[inline(always)]
pub(crate) fn capturing() -> bool {
    conf!(capture_bytes) != 0
}

/// With `--capture-bytes`: before the IO event, the first bytes moved.
#[inline(always)]
fn capture(pid_tgid: u64, file: &FileId, (buf, len): (u64, i64)) {
    if wanted(file) {
        capture_user(pid_tgid, buf, len);
    }
}

/// With `--capture-bytes`: the first of `len` bytes at user address `buf`,
/// sent just before the IO event they belong to (the collector pairs them
/// by CPU and sequence number: call it only when that event follows).
#[inline(never)]
pub(crate) fn capture_user(pid_tgid: u64, buf: u64, len: i64) {
    let cap = conf!(capture_bytes) as i64;
    if cap == 0 || len <= 0 || buf == 0 {
        return;
    }
    let n = if len < cap { len } else { cap } as u32;
    let hdr = header(kind::DATA, pid_tgid);
    let Some(mut entry) = EVENTS.reserve::<DataEvent>(0) else {
        bump(stat::DROPPED);
        return;
    };
    let e = entry.as_mut_ptr();
    // Bounded for the verifier: 1..=MAX_CAPTURE.
    let len = if n as usize > MAX_CAPTURE {
        MAX_CAPTURE as u32
    } else {
        n
    };
    // SAFETY: `e` is reserved ring-buffer memory of DataEvent's size; the
    // read is at most MAX_CAPTURE bytes into `data`, from a user pointer.
    unsafe {
        (*e).hdr = hdr;
        (*e).len = len;
        (*e)._pad = 0;
        let rc = aya_ebpf::helpers::generated::bpf_probe_read_user(
            (*e).data.as_mut_ptr().cast(),
            len,
            buf as *const core::ffi::c_void,
        );
        if rc != 0 {
            (*e).len = 0;
        }
    }
    entry.submit(wake_flags());
}

/// wait4/waitid that returned a child which exited or was killed (for the
/// happens-before edge from its end to this return).
#[inline(never)]
fn wait(r: &Regs, pid_tgid: u64, code: u32, ret: i64) {
    const WUNTRACED: u64 = 2;
    const WCONTINUED: u64 = 8;
    const CLD_EXITED: i32 = 1;
    const CLD_KILLED: i32 = 2;
    const CLD_DUMPED: i32 = 3;
    let read = |addr: u64| -> Option<i32> {
        // SAFETY: user pointer; probe_read tolerates faults.
        unsafe { bpf_probe_read_user(addr as *const i32) }.ok()
    };
    let (child, status) = if code == sc::WAIT4 {
        // The pid, or 0 (WNOHANG and nothing to report).
        if ret <= 0 {
            return;
        }
        let status = match r.arg(1) {
            0 => None,
            p => read(p),
        };
        match status {
            // Stopped (0x7f in the low byte) or continued (0xffff).
            Some(st) if st & 0xff == 0x7f || st == 0xffff => return,
            Some(st) => (ret as u32, st as u32),
            // No status to look at: only exits can be reported.
            None if r.arg(2) & (WUNTRACED | WCONTINUED) != 0 => return,
            None => (ret as u32, 0),
        }
    } else {
        // siginfo_t: si_code at 8, si_pid at 16, si_status at 24.
        let info = r.arg(2);
        let (Some(si_code), Some(pid), Some(st)) =
            (read(info + 8), read(info + 16), read(info + 24))
        else {
            return;
        };
        match si_code {
            _ if pid <= 0 => return,
            CLD_EXITED => (pid as u32, ((st & 0xff) << 8) as u32),
            CLD_KILLED | CLD_DUMPED => (pid as u32, (st & 0x7f) as u32),
            _ => return,
        }
    };
    emit(WaitEvent {
        hdr: header(kind::WAIT, pid_tgid),
        child_pid: child,
        status,
    });
}

/// Before the IO event of a large pipe write: when it started.
#[inline(never)]
fn span(pid_tgid: u64, ret: i64) {
    if ret as u64 <= PIPE_BUF {
        return;
    }
    let tid = pid_tgid as u32;
    // SAFETY: the value is copied out at once.
    if let Some(&start_ns) = unsafe { WRITE_START.get(tid) } {
        let _ = WRITE_START.remove(tid);
        emit(SpanEvent {
            hdr: header(kind::SPAN, pid_tgid),
            start_ns,
        });
    }
}

#[inline(always)]
fn io(pid_tgid: u64, file: FileId, fd: i32, op: u32, bytes: i64, syscall: u32) {
    io_event::<false>(pid_tgid, &file, 0, pack(fd, op, syscall), bytes);
}

/// A descriptor, a direction and a syscall code in one argument (BPF
/// functions take at most five).
#[inline(always)]
fn pack(fd: i32, op: u32, syscall: u32) -> u64 {
    ((fd as u32 as u64) << 32) | ((op as u64) << 16) | syscall as u64
}

/// The IO event itself, in its own BPF function (its own stack frame:
/// `sys_exit` handles many syscalls and must stay under 512 bytes).
/// `fptr` is the `struct file *` when the caller has it (0: look it up).
#[inline(never)]
fn io_event<const BTF: bool>(pid_tgid: u64, file: &FileId, fptr: u64, fd_op_sc: u64, bytes: i64) {
    let fd = (fd_op_sc >> 32) as i32;
    let (op, syscall) = ((fd_op_sc >> 16) as u32 & 0xffff, fd_op_sc as u32 & 0xffff);
    if file.kind == file_kind::SOCKET && bytes > 0 {
        let fptr = if fptr == 0 {
            file_of_fd(fd as i64)
        } else {
            fptr
        };
        crate::sock::fd_io::<BTF>(pid_tgid, fptr, fd_op_sc, bytes as u64, file.ino);
        return;
    }
    if bytes <= 0 || !wanted(file) {
        return;
    }
    emit(IoEvent {
        hdr: header_any::<BTF>(kind::IO, pid_tgid),
        file: *file,
        bytes: bytes as u64,
        fd,
        op,
        syscall,
        _pad: 0,
    });
}

/// `sys_exit(struct pt_regs *regs, long ret)`, for every syscall: one
/// array lookup turns away the ones ipcwatch does not follow. The
/// arguments are read back from the saved user registers, so nothing is
/// kept between entry and exit.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn ipcwatch_sys_exit(ctx: RawTracePointContext) -> i32 {
    sys_exit::<false>(ctx.arg(0), ctx.arg(1));
    0
}

/// The same on a BTF-enabled tracepoint (tp_btf), where the registers and
/// the task's descriptor table are typed pointers: the verifier lets the
/// program load through them directly, without a helper call each.
/// Loaded when the kernel allows it; the raw tracepoint otherwise.
#[btf_tracepoint(function = "sys_exit")]
pub fn ipcwatch_sys_exit_btf(ctx: BtfTracePointContext) -> i32 {
    sys_exit::<true>(ctx.arg(0), ctx.arg(1));
    0
}

#[inline(always)]
fn sys_exit<const BTF: bool>(regs: u64, ret: i64) {
    let r = if BTF {
        Regs::of_btf(regs)
    } else {
        Regs::of(regs)
    };
    let Some(nr) = r.nr() else {
        return;
    };
    let code = match SYSCALLS.get(nr as u32) {
        Some(&c) if c != 0 && c != sc::CLOSE && c != sc::CLOSE_RANGE => c,
        _ => return,
    };
    // Shared memory and locks (ipcwatch-ebpf/src/shm.rs) see failures too.
    if crate::shm::sys_exit(regs, code, ret) {
        return;
    }
    // A non-blocking connect() in progress (-EINPROGRESS) is reported too.
    if ret < 0 && !(code == sc::CONNECT && ret == -115) {
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if !allowed((pid_tgid >> 32) as u32) {
        return;
    }
    if (32..64).contains(&code) {
        crate::sock::sys_exit::<BTF>(&r, pid_tgid, code, ret);
        return;
    }
    let arg = |i: usize| r.arg(i);
    match code {
        sc::READ | sc::READV | sc::WRITE | sc::WRITEV => {
            let fd = arg(0) as i32;
            let fptr = file_of_fd_any::<BTF>(fd as i64);
            let file = classify_file(fptr);
            let dir = if code == sc::READ || code == sc::READV {
                op::READ
            } else {
                op::WRITE
            };
            if dir == op::WRITE && (file.kind == file_kind::PIPE || file.kind == file_kind::FIFO) {
                span(pid_tgid, ret);
            }
            if capturing() {
                capture(pid_tgid, &file, user_buf(code, arg(1), ret));
            }
            io_event::<BTF>(pid_tgid, &file, fptr, pack(fd, dir, code), ret)
        }
        sc::VMSPLICE => {
            let fd = arg(0) as i32;
            let file = classify_fd(fd as i64);
            let dir = if file.access as u32 & FMODE_WRITE != 0 {
                op::WRITE
            } else {
                op::READ
            };
            io(pid_tgid, file, fd, dir, ret, code)
        }
        sc::SPLICE => {
            let (fd_in, fd_out) = (arg(0) as i32, arg(2) as i32);
            io(
                pid_tgid,
                classify_fd(fd_in as i64),
                fd_in,
                op::READ,
                ret,
                code,
            );
            io(
                pid_tgid,
                classify_fd(fd_out as i64),
                fd_out,
                op::WRITE,
                ret,
                code,
            );
        }
        // tee copies without consuming its input: only the output grows.
        sc::TEE => {
            let fd_out = arg(1) as i32;
            io(
                pid_tgid,
                classify_fd(fd_out as i64),
                fd_out,
                op::WRITE,
                ret,
                code,
            )
        }
        sc::WAIT4 | sc::WAITID => wait(&r, pid_tgid, code, ret),
        sc::DUP | sc::DUP2 | sc::DUP3 => {
            let cloexec = code == sc::DUP3 && arg(2) & O_CLOEXEC != 0;
            dup(pid_tgid, arg(0) as i32, ret, cloexec as u32, code)
        }
        sc::FCNTL => match arg(1) {
            F_DUPFD => dup(pid_tgid, arg(0) as i32, ret, 0, code),
            F_DUPFD_CLOEXEC => dup(pid_tgid, arg(0) as i32, ret, 1, code),
            F_SETFD => {
                let fd = arg(0) as i32;
                let file = classify_fd(fd as i64);
                if wanted(&file) {
                    emit(FdEvent {
                        hdr: header(kind::FD_FLAGS, pid_tgid),
                        file,
                        fd,
                        arg: 0,
                        flags: arg(2) as u32,
                        syscall: code,
                    });
                }
            }
            _ => {}
        },
        sc::PIPE | sc::PIPE2 => {
            // SAFETY: user pointer passed to pipe(); probe_read tolerates faults.
            let Ok(fds) = (unsafe { bpf_probe_read_user(arg(0) as *const [i32; 2]) }) else {
                return;
            };
            let file = classify_fd(fds[0] as i64);
            if !wanted(&file) {
                return;
            }
            emit(PipeEvent {
                hdr: header(kind::PIPE, pid_tgid),
                file,
                fds,
                flags: if code == sc::PIPE2 { arg(1) as u32 } else { 0 },
                syscall: code,
            });
        }
        sc::MKNOD | sc::MKNODAT => {
            let (path, mode) = if code == sc::MKNOD {
                (arg(0), arg(1) as u32)
            } else {
                (arg(1), arg(2) as u32)
            };
            if mode & S_IFMT != S_IFIFO || conf!(kinds) & file_kind::bit(file_kind::FIFO) == 0 {
                return;
            }
            let hdr = header(kind::MKFIFO, pid_tgid);
            let Some(mut entry) = EVENTS.reserve::<PathEvent>(0) else {
                bump(stat::DROPPED);
                return;
            };
            let e = entry.as_mut_ptr();
            // SAFETY: `e` points to reserved ring-buffer memory of the right size.
            unsafe {
                (*e).hdr = hdr;
                (*e).mode = mode;
                (*e).syscall = code;
                if bpf_probe_read_user_str_bytes(path as *const u8, &mut (*e).path).is_err() {
                    (*e).path[0] = 0;
                }
            }
            entry.submit(wake_flags());
        }
        sc::OPEN | sc::OPENAT | sc::OPENAT2 => {
            let file = classify_fd(ret);
            if !wanted(&file) {
                return;
            }
            let (path, flags) = match code {
                sc::OPEN => (arg(0), arg(1)),
                sc::OPENAT => (arg(1), arg(2)),
                // SAFETY: open_how.flags is the first u64 of a user struct.
                _ => (arg(1), unsafe {
                    bpf_probe_read_user(arg(2) as *const u64).unwrap_or(0)
                }),
            };
            let hdr = header(kind::OPEN, pid_tgid);
            let Some(mut entry) = EVENTS.reserve::<OpenEvent>(0) else {
                bump(stat::DROPPED);
                return;
            };
            let e = entry.as_mut_ptr();
            // SAFETY: `e` points to reserved ring-buffer memory of the right size.
            unsafe {
                (*e).hdr = hdr;
                (*e).file = file;
                (*e).fd = ret as i32;
                (*e).flags = flags as u32;
                (*e).syscall = code;
                (*e)._pad = 0;
                if bpf_probe_read_user_str_bytes(path as *const u8, &mut (*e).path).is_err() {
                    (*e).path[0] = 0;
                }
            }
            entry.submit(wake_flags());
        }
        _ => {}
    }
}

fn dup(pid_tgid: u64, old_fd: i32, new_fd: i64, cloexec: u32, code: u32) {
    let file = classify_fd(new_fd);
    if !wanted(&file) {
        return;
    }
    emit(FdEvent {
        hdr: header(kind::DUP, pid_tgid),
        file,
        fd: new_fd as i32,
        arg: old_fd as u32,
        flags: cloexec,
        syscall: code,
    });
}

/// `sched_process_fork(struct task_struct *parent, struct task_struct *child)`.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn ipcwatch_fork(ctx: RawTracePointContext) -> i32 {
    fork(&ctx);
    0
}

fn fork(ctx: &RawTracePointContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let parent = (pid_tgid >> 32) as u32;
    let child: u64 = ctx.arg(1);
    let Some(child_tgid) = kread::<u32>(child, conf!(off.task_tgid)) else {
        return;
    };
    if child_tgid == parent {
        return; // a new thread
    }
    let child_tid = kread::<u32>(child, conf!(off.task_pid)).unwrap_or(child_tgid);
    crate::shm::fork(parent, child_tgid);
    if let Some(flags) = TRACED.get_ptr(parent) {
        // SAFETY: pointer from the map, valid for this read.
        let flags = unsafe { *flags };
        if flags & traced::FOLLOW_FORKS != 0 {
            let _ = TRACED.insert(child_tgid, flags, 0);
        }
    }
    if !allowed(parent) {
        return;
    }
    emit(ForkEvent {
        hdr: header(kind::FORK, pid_tgid),
        child_pid: child_tgid,
        child_tid,
    });
}

#[tracepoint]
pub fn ipcwatch_exec(ctx: TracePointContext) -> u32 {
    exec(&ctx);
    0
}

fn exec(ctx: &TracePointContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !allowed((pid_tgid >> 32) as u32) {
        return;
    }
    // SAFETY: sched_process_exec: __data_loc filename at 8, old_pid at 16.
    let (loc, old_tid) = unsafe {
        (
            ctx.read_at::<u32>(8).unwrap_or(0),
            ctx.read_at::<u32>(16).unwrap_or(0),
        )
    };
    let hdr = header(kind::EXEC, pid_tgid);
    let Some(mut entry) = EVENTS.reserve::<ExecEvent>(0) else {
        bump(stat::DROPPED);
        return;
    };
    let e = entry.as_mut_ptr();
    let src = (ctx.as_ptr() as u64 + (loc & 0xffff) as u64) as *const u8;
    // SAFETY: `e` points to reserved ring-buffer memory of the right size;
    // `src` lies inside the tracepoint record.
    unsafe {
        (*e).hdr = hdr;
        (*e).old_tid = old_tid;
        (*e)._pad = 0;
        if bpf_probe_read_kernel_str_bytes(src, &mut (*e).filename).is_err() {
            (*e).filename[0] = 0;
        }
    }
    entry.submit(0);
}

#[tracepoint]
pub fn ipcwatch_exit(_ctx: TracePointContext) -> u32 {
    exit();
    0
}

fn exit() {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // SAFETY: plain helper call.
    let task = unsafe { bpf_get_current_task() };
    let signal = kread::<u64>(task, conf!(off.task_signal)).unwrap_or(0);
    let live = kread::<i32>(signal, conf!(off.signal_live)).unwrap_or(0);
    if live != 0 {
        return; // other threads of the process are still running
    }
    let traced = TRACED.get_ptr(tgid).is_some();
    let allow = allowed(tgid);
    if traced {
        let _ = TRACED.remove(tgid);
    }
    crate::shm::exit(tgid);
    if !allow {
        return;
    }
    let exit_code = kread::<u32>(task, conf!(off.task_exit_code)).unwrap_or(0);
    emit(ExitEvent {
        hdr: header(kind::EXIT, pid_tgid),
        exit_code,
        _pad: 0,
    });
}
