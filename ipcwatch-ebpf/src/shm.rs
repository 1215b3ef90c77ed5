//! Shared memory, synchronization syscalls and write faults.
//!
//! Called from `tracer::sys_exit` for every followed syscall before the
//! pipe code (which ignores failures): a failed futex wait or a refused
//! `F_SETLK` is a fact about a lock. Everything is read back from the saved
//! user registers at exit, like the pipe probes.
//!
//! Cheap filters, all in the kernel:
//! - futex: only operations without `FUTEX_PRIVATE_FLAG`, which is what
//!   process-shared pthread objects and semaphores use;
//! - mmap: only `MAP_SHARED`; munmap/mremap and write faults only for
//!   processes that map shared memory (`SHM_PROCS`);
//! - open/unlink: only paths under `/dev/shm/`.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_kernel_str_bytes, bpf_probe_read_user,
        bpf_probe_read_user_str_bytes,
        generated::{bpf_find_vma, bpf_get_current_task_btf, bpf_loop},
    },
    macros::{map, tracepoint},
    maps::{HashMap, PerCpuArray},
    programs::TracePointContext,
};
use ipcwatch_common::{
    sc as base_sc,
    shm::{FaultEvent, LockEvent, MemEvent, PATH_PARTS, ShmConfig, kind, sc, shm_flags},
    stat,
};

use crate::tracer::{CONFIG, EVENTS, allowed, bump, emit, file_of_fd, header, kread, wake_flags};

/// Written by userspace before load.
#[unsafe(no_mangle)]
static SHM_CONFIG: ShmConfig = ShmConfig::zeroed();

macro_rules! shm_conf {
    ($field:ident) => {
        // SAFETY: SHM_CONFIG is a static; the pointer is valid and aligned.
        unsafe { core::ptr::read_volatile(&raw const SHM_CONFIG.$field) }
    };
}

macro_rules! conf {
    ($($field:ident).+) => {
        // SAFETY: CONFIG is a static; the pointer is valid and aligned.
        unsafe { core::ptr::read_volatile(&raw const CONFIG.$($field).+) }
    };
}

/// tgid -> 1 for processes that map shared memory (set on shmat and
/// MAP_SHARED mmap, inherited through fork, dropped at exit). Userspace
/// adds the processes it finds mapping shared memory at start.
#[map]
static SHM_PROCS: HashMap<u32, u32> = HashMap::with_max_entries(16384, 0);

/// Per-CPU scratch space where a [`MemEvent`] is built (too big for the
/// 512-byte BPF stack next to the caller's frame).
#[map]
static MEM_SCRATCH: PerCpuArray<MemEvent> = PerCpuArray::with_max_entries(1, 0);

const MAP_SHARED: u64 = 0x01;
const MAP_TYPE: u64 = 0x0f;
const MAP_SHARED_VALIDATE: u64 = 0x03;
const MAP_ANONYMOUS: u64 = 0x20;
const FUTEX_PRIVATE_FLAG: u64 = 128;
const IPC_RMID: u64 = 0;
const SHM_RDONLY: u32 = 0o10000;
const PROT_WRITE: u32 = 0x2;
const F_SETLK: u64 = 6;
const F_SETLKW: u64 = 7;
const F_OFD_SETLK: u64 = 37;
const F_OFD_SETLKW: u64 = 38;
const TMPFS_MAGIC: u64 = 0x0102_1994;
const SHM_PREFIX: &[u8; 9] = b"/dev/shm/";
const FAULT_WRITE: u64 = 0x2;

#[inline(always)]
fn arg(regs: u64, i: u32) -> u64 {
    let off = match i {
        0 => conf!(off.regs_arg0),
        1 => conf!(off.regs_arg1),
        2 => conf!(off.regs_arg2),
        3 => conf!(off.regs_arg3),
        4 => shm_conf!(regs_arg4),
        _ => shm_conf!(regs_arg5),
    };
    kread::<u64>(regs, off).unwrap_or(0)
}

/// `SHM_PROCS` values: the process has a shared mapping (its munmap,
/// mremap and shmdt matter), and a writable one (its write faults matter).
const MAPS_SHARED: u32 = 1;
const MAPS_WRITABLE: u32 = 2;

#[inline(always)]
fn shared_bits(tgid: u32) -> u32 {
    match SHM_PROCS.get_ptr(tgid) {
        // SAFETY: pointer from the map, valid for this read.
        Some(v) => unsafe { *v },
        None => 0,
    }
}

#[inline(always)]
fn maps_shared(tgid: u32) -> bool {
    shared_bits(tgid) & MAPS_SHARED != 0
}

#[inline(always)]
fn mark_shared(tgid: u32, writable: bool) {
    let old = shared_bits(tgid);
    let new = old | MAPS_SHARED | if writable { MAPS_WRITABLE } else { 0 };
    if new != old {
        let _ = SHM_PROCS.insert(tgid, new, 0);
    }
}

/// A fork: the child inherits the parent's shared mappings.
#[inline(always)]
pub(crate) fn fork(parent: u32, child: u32) {
    let bits = shared_bits(parent);
    if bits != 0 {
        let _ = SHM_PROCS.insert(child, bits, 0);
    }
}

#[inline(always)]
pub(crate) fn exit(tgid: u32) {
    let _ = SHM_PROCS.remove(tgid);
}

/// Inode, device and superblock magic of a `struct file *`.
#[inline(always)]
fn file_ident(file: u64) -> (u64, u32, u64) {
    if file == 0 {
        return (0, 0, 0);
    }
    let inode = kread::<u64>(file, conf!(off.file_inode)).unwrap_or(0);
    let ino = kread::<u64>(inode, conf!(off.inode_ino)).unwrap_or(0);
    let sb = kread::<u64>(inode, conf!(off.inode_sb)).unwrap_or(0);
    let dev = kread::<u32>(sb, conf!(off.sb_dev)).unwrap_or(0);
    let magic = kread::<u64>(sb, conf!(off.sb_magic)).unwrap_or(0);
    (ino, dev, magic)
}

/// Is the user string at `path` under /dev/shm/?
#[inline(always)]
fn under_dev_shm(path: u64) -> bool {
    // SAFETY: user pointer; bpf_probe_read_user tolerates faults.
    match unsafe { bpf_probe_read_user(path as *const [u8; 9]) } {
        Ok(p) => &p == SHM_PREFIX,
        Err(_) => false,
    }
}

/// Where a name comes from in a [`MemEvent`].
#[derive(Clone, Copy)]
enum Name {
    None,
    /// A user string (memfd name, path).
    User(u64),
    /// The dentry name of a `struct file *`.
    Dentry(u64),
}

#[inline(always)]
fn emit_mem(pid_tgid: u64, ev: &MemEvent, name: Name) {
    let hdr = header(kind::MEM, pid_tgid);
    let Some(mut entry) = EVENTS.reserve::<MemEvent>(0) else {
        bump(stat::DROPPED);
        return;
    };
    let (dentry_off, name_off) = (shm_conf!(file_dentry), shm_conf!(dentry_name));
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to reserved ring-buffer memory of the right size;
    // every field is written before submit.
    unsafe {
        (*e).hdr = hdr;
        (*e).id = ev.id;
        (*e).addr = ev.addr;
        (*e).len = ev.len;
        (*e).arg = ev.arg;
        (*e).new_addr = ev.new_addr;
        (*e).ino = ev.ino;
        (*e).dev = ev.dev;
        (*e).flags = ev.flags;
        (*e).prot = ev.prot;
        (*e).syscall = ev.syscall;
        (*e).magic = ev.magic;
        (*e).name[0] = 0;
        match name {
            Name::None => {}
            Name::User(p) => {
                if bpf_probe_read_user_str_bytes(p as *const u8, &mut (*e).name).is_err() {
                    (*e).name[0] = 0;
                }
            }
            Name::Dentry(file) => {
                let dentry = kread::<u64>(file, dentry_off).unwrap_or(0);
                let name = kread::<u64>(dentry, name_off).unwrap_or(0);
                if name == 0
                    || bpf_probe_read_kernel_str_bytes(name as *const u8, &mut (*e).name).is_err()
                {
                    (*e).name[0] = 0;
                }
            }
        }
        (*e).nparts = 0;
        (*e)._pad = 0;
    }
    if let Name::Dentry(file) = name {
        // SAFETY: as above: `e` is the reserved entry.
        unsafe { (*e).nparts = path_parts(file, e, name_off) };
    }
    entry.submit(wake_flags());
}

/// The per-CPU scratch event, cleared, for `syscall`.
#[inline(always)]
fn mem(syscall: u32) -> Option<&'static mut MemEvent> {
    let p = MEM_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU slot; tracing programs do not preempt each other on
    // one CPU, and the reference does not outlive this program run.
    let ev = unsafe { &mut *p };
    ev.id = 0;
    ev.addr = 0;
    ev.len = 0;
    ev.arg = 0;
    ev.new_addr = 0;
    ev.ino = 0;
    ev.dev = 0;
    ev.flags = 0;
    ev.prot = 0;
    ev.syscall = syscall;
    ev.magic = 0;
    Some(ev)
}

/// Handle a syscall exit. Returns true when the syscall belongs to this
/// module only (the caller stops), false to let the pipe code see it too.
#[inline(always)]
pub(crate) fn sys_exit(regs: u64, code: u32, ret: i64) -> bool {
    let mine = (64..128).contains(&code);
    if !mine && code != base_sc::FCNTL && code != base_sc::OPENAT && code != base_sc::OPEN {
        return false;
    }
    sys_exit_mine(regs, code, ret, mine)
}

/// [`sys_exit`] for the syscalls shm.rs follows (its own stack frame).
#[inline(never)]
fn sys_exit_mine(regs: u64, code: u32, ret: i64, mine: bool) -> bool {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !allowed(tgid) {
        return mine;
    }
    match code {
        sc::FUTEX => futex(regs, ret, pid_tgid),
        sc::FLOCK => {
            let fd = arg(regs, 0);
            let (ino, dev, _) = file_ident(file_of_fd(fd as i64));
            emit(LockEvent {
                hdr: header(kind::LOCK, pid_tgid),
                addr: 0,
                ret,
                ino,
                start: 0,
                len: 0,
                dev,
                op: arg(regs, 1) as u32,
                arg: fd as u32,
                kind: 0,
                syscall: code,
                _pad: 0,
            });
        }
        base_sc::FCNTL => fcntl(regs, ret, pid_tgid),
        base_sc::OPEN | base_sc::OPENAT => {
            let path = if code == base_sc::OPEN {
                arg(regs, 0)
            } else {
                arg(regs, 1)
            };
            if ret < 0 || !under_dev_shm(path) {
                return false;
            }
            let (ino, dev, magic) = file_ident(file_of_fd(ret));
            let Some(ev) = mem(code) else {
                return false;
            };
            ev.id = ret;
            ev.ino = ino;
            ev.dev = dev;
            ev.magic = magic;
            ev.flags = if code == base_sc::OPEN {
                arg(regs, 1)
            } else {
                arg(regs, 2)
            } as u32;
            emit_mem(pid_tgid, ev, Name::User(path));
        }
        sc::UNLINK | sc::UNLINKAT => {
            let path = if code == sc::UNLINK {
                arg(regs, 0)
            } else {
                arg(regs, 1)
            };
            if ret != 0 || !under_dev_shm(path) {
                return true;
            }
            if let Some(ev) = mem(code) {
                emit_mem(pid_tgid, ev, Name::User(path));
            }
        }
        _ => memory(regs, code, ret, pid_tgid, tgid),
    }
    mine
}

#[inline(always)]
fn memory(regs: u64, code: u32, ret: i64, pid_tgid: u64, tgid: u32) {
    // Addresses returned by shmat/mmap/mremap are user addresses, so
    // positive; errors are -4095..-1.
    if ret < 0 {
        return;
    }
    let Some(ev) = mem(code) else {
        return;
    };
    match code {
        sc::SHMGET => {
            ev.id = ret;
            ev.arg = arg(regs, 0);
            ev.len = arg(regs, 1);
            ev.flags = arg(regs, 2) as u32;
            emit_mem(pid_tgid, ev, Name::None);
        }
        sc::SHMAT => {
            ev.id = arg(regs, 0) as i64;
            ev.addr = ret as u64;
            ev.flags = arg(regs, 2) as u32;
            mark_shared(tgid, ev.flags & SHM_RDONLY == 0);
            emit_mem(pid_tgid, ev, Name::None);
        }
        sc::SHMDT => {
            if !maps_shared(tgid) {
                return;
            }
            ev.addr = arg(regs, 0);
            emit_mem(pid_tgid, ev, Name::None);
        }
        sc::SHMCTL => {
            ev.id = arg(regs, 0) as i64;
            let cmd = arg(regs, 1);
            if cmd & 0xff != IPC_RMID {
                return;
            }
            ev.flags = cmd as u32;
            emit_mem(pid_tgid, ev, Name::None);
        }
        sc::MMAP => {
            let flags = arg(regs, 3);
            let ty = flags & MAP_TYPE;
            if ty != MAP_SHARED && ty != MAP_SHARED_VALIDATE {
                return;
            }
            ev.addr = ret as u64;
            ev.len = arg(regs, 1);
            ev.prot = arg(regs, 2) as u32;
            ev.flags = flags as u32;
            ev.arg = arg(regs, 5);
            // Read-only shared mappings (locale caches...) cannot be
            // written: no faults to report for them.
            mark_shared(tgid, ev.prot & PROT_WRITE != 0);
            if flags & MAP_ANONYMOUS != 0 {
                // The kernel backs shared anonymous memory with a shmem
                // file: find it through the new vma.
                let mut found = VmaFile { file: 0 };
                // SAFETY: helper call; the callback only reads kernel
                // memory through bpf_probe_read_kernel and writes `found`.
                unsafe {
                    bpf_find_vma(
                        bpf_get_current_task_btf(),
                        ret as u64,
                        vma_file_cb as *mut core::ffi::c_void,
                        (&raw mut found).cast(),
                        0,
                    );
                }
                let (ino, dev, magic) = file_ident(found.file);
                ev.id = -1;
                ev.ino = ino;
                ev.dev = dev;
                ev.magic = magic;
                emit_mem(pid_tgid, ev, Name::None);
            } else {
                let fd = arg(regs, 4) as i32 as i64;
                let file = file_of_fd(fd);
                let (ino, dev, magic) = file_ident(file);
                ev.id = fd;
                ev.ino = ino;
                ev.dev = dev;
                ev.magic = magic;
                emit_mem(pid_tgid, ev, Name::Dentry(file));
            }
        }
        sc::MUNMAP => {
            if !maps_shared(tgid) {
                return;
            }
            ev.addr = arg(regs, 0);
            ev.len = arg(regs, 1);
            emit_mem(pid_tgid, ev, Name::None);
        }
        sc::MREMAP => {
            if !maps_shared(tgid) {
                return;
            }
            ev.addr = arg(regs, 0);
            ev.len = arg(regs, 1);
            ev.arg = arg(regs, 2);
            ev.flags = arg(regs, 3) as u32;
            ev.new_addr = ret as u64;
            emit_mem(pid_tgid, ev, Name::None);
        }
        sc::MEMFD_CREATE => {
            let file = file_of_fd(ret);
            let (ino, dev, magic) = file_ident(file);
            ev.id = ret;
            ev.ino = ino;
            ev.dev = dev;
            ev.magic = magic;
            ev.flags = arg(regs, 1) as u32;
            emit_mem(pid_tgid, ev, Name::User(arg(regs, 0)));
        }
        sc::FTRUNCATE => {
            let fd = arg(regs, 0) as i64;
            let file = file_of_fd(fd);
            let (ino, dev, magic) = file_ident(file);
            if magic != TMPFS_MAGIC {
                return;
            }
            ev.id = fd;
            ev.len = arg(regs, 1);
            ev.ino = ino;
            ev.dev = dev;
            ev.magic = magic;
            emit_mem(pid_tgid, ev, Name::Dentry(file));
        }
        _ => {}
    }
}

/// State of the path walk, passed to [`path_step`] by `bpf_loop` (a
/// callback is verified once, where an unrolled loop made the verifier
/// give up).
#[repr(C)]
struct PathWalk {
    dentry: u64,
    mnt: u64,
    e: u64,
    n: u32,
    name_off: u32,
}

/// Walk a file's path up to the root of the mount tree, writing each
/// component (innermost first) into `e.parts`. Returns how many were
/// written, or `PATH_PARTS + 1` when the path is too deep.
#[inline(always)]
fn path_parts(file: u64, e: *mut MemEvent, name_off: u32) -> u32 {
    let dentry = kread::<u64>(file, shm_conf!(file_dentry)).unwrap_or(0);
    let vfsmnt = kread::<u64>(file, shm_conf!(file_mnt)).unwrap_or(0);
    if dentry == 0 || vfsmnt == 0 {
        return 0;
    }
    let mut walk = PathWalk {
        dentry,
        mnt: vfsmnt - shm_conf!(mount_mnt) as u64,
        e: e as u64,
        n: 0,
        name_off,
    };
    // SAFETY: helper call; the callback reads kernel memory with
    // bpf_probe_read_kernel and writes only `walk` and the entry `e`.
    unsafe {
        bpf_loop(
            PATH_STEPS,
            path_step as *mut core::ffi::c_void,
            (&raw mut walk).cast(),
            0,
        );
    }
    walk.n
}

/// One step of the path walk: 1 stops the loop.
#[inline(never)]
extern "C" fn path_step(_index: u64, ctx: *mut PathWalk) -> i64 {
    // SAFETY: `ctx` is the caller's PathWalk on its stack.
    let w = unsafe { &mut *ctx };
    let mount_mnt = shm_conf!(mount_mnt) as u64;
    let root = kread::<u64>(w.mnt + mount_mnt, shm_conf!(vfsmount_root)).unwrap_or(0);
    if w.dentry == root {
        let parent = kread::<u64>(w.mnt, shm_conf!(mount_parent)).unwrap_or(0);
        if parent == w.mnt || parent == 0 {
            return 1;
        }
        w.dentry = kread::<u64>(w.mnt, shm_conf!(mount_mountpoint)).unwrap_or(0);
        w.mnt = parent;
        return 0;
    }
    let parent = kread::<u64>(w.dentry, shm_conf!(dentry_parent)).unwrap_or(0);
    if parent == w.dentry || parent == 0 {
        return 1;
    }
    let n = w.n as usize;
    if n >= PATH_PARTS {
        w.n = PATH_PARTS as u32 + 1;
        return 1;
    }
    let name = kread::<u64>(w.dentry, w.name_off).unwrap_or(0);
    let e = w.e as *mut MemEvent;
    // SAFETY: `e` is the reserved ring-buffer entry; `n` is checked above.
    unsafe {
        if bpf_probe_read_kernel_str_bytes(name as *const u8, &mut (*e).parts[n]).is_err() {
            (*e).parts[n][0] = 0;
        }
    }
    w.n += 1;
    w.dentry = parent;
    0
}

/// Steps of the path walk: components plus mount crossings. Running out
/// of steps means too deep.
const PATH_STEPS: u32 = 16;

/// Out-parameter of [`vma_file_cb`].
#[repr(C)]
struct VmaFile {
    file: u64,
}

/// `bpf_find_vma` callback: the vma's `vm_file`.
#[inline(never)]
extern "C" fn vma_file_cb(_task: u64, vma: u64, ctx: *mut VmaFile) -> i64 {
    let file = kread::<u64>(vma, shm_conf!(vma_file)).unwrap_or(0);
    // SAFETY: `ctx` is the caller's VmaFile on its stack.
    unsafe { (*ctx).file = file };
    0
}

#[inline(always)]
fn futex(regs: u64, ret: i64, pid_tgid: u64) {
    let op = arg(regs, 1);
    if op & FUTEX_PRIVATE_FLAG != 0 {
        return;
    }
    emit(LockEvent {
        hdr: header(kind::LOCK, pid_tgid),
        addr: arg(regs, 0),
        ret,
        ino: 0,
        start: arg(regs, 4),
        len: 0,
        dev: 0,
        op: op as u32,
        arg: arg(regs, 2) as u32,
        kind: 0,
        syscall: sc::FUTEX,
        _pad: 0,
    });
}

/// `struct flock` as fcntl reads it (x86_64): l_type, l_whence, l_start,
/// l_len, l_pid.
#[repr(C)]
#[derive(Clone, Copy)]
struct Flock {
    l_type: i16,
    l_whence: i16,
    _pad: u32,
    l_start: i64,
    l_len: i64,
    l_pid: i32,
    _pad2: u32,
}

#[inline(always)]
fn fcntl(regs: u64, ret: i64, pid_tgid: u64) {
    let cmd = arg(regs, 1);
    if !matches!(cmd, F_SETLK | F_SETLKW | F_OFD_SETLK | F_OFD_SETLKW) {
        return;
    }
    let fd = arg(regs, 0);
    // SAFETY: user pointer passed to fcntl; probe_read tolerates faults.
    let Ok(fl) = (unsafe { bpf_probe_read_user(arg(regs, 2) as *const Flock) }) else {
        return;
    };
    let (ino, dev, _) = file_ident(file_of_fd(fd as i64));
    emit(LockEvent {
        hdr: header(kind::LOCK, pid_tgid),
        addr: 0,
        ret,
        ino,
        start: fl.l_start as u64,
        len: fl.l_len as u64,
        dev,
        op: cmd as u32,
        arg: fd as u32,
        kind: (fl.l_type as u16 as u32) | ((fl.l_whence as u16 as u32) << 16),
        syscall: base_sc::FCNTL,
        _pad: 0,
    });
}

/// `exceptions:page_fault_user`: write faults of traced processes that map
/// shared memory. Userspace keeps those that land in a shared region.
#[tracepoint]
pub fn ipcwatch_page_fault(ctx: TracePointContext) -> u32 {
    page_fault(&ctx);
    0
}

#[inline(always)]
fn page_fault(ctx: &TracePointContext) {
    if shm_conf!(flags) & shm_flags::FAULTS == 0 {
        return;
    }
    // SAFETY: page_fault_user: address at 8, ip at 16, error_code at 24.
    let (addr, ip, error_code) = unsafe {
        (
            ctx.read_at::<u64>(8).unwrap_or(0),
            ctx.read_at::<u64>(16).unwrap_or(0),
            ctx.read_at::<u64>(24).unwrap_or(0),
        )
    };
    if error_code & FAULT_WRITE == 0 {
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if shared_bits(tgid) & MAPS_WRITABLE == 0 || !allowed(tgid) {
        return;
    }
    emit(FaultEvent {
        hdr: header(kind::FAULT, pid_tgid),
        addr,
        ip,
        error_code,
    });
}
