//! Shared memory: shmget, shmat, shmdt, shmctl(IPC_RMID), mmap (only
//! `MAP_SHARED`), munmap, mremap, memfd_create, ftruncate on tmpfs, and
//! open and unlink under `/dev/shm/`. Called by `dispatch.rs` at syscall
//! exit; everything is read back from the saved user registers.
//!
//! Cheap filters, all in the kernel: munmap, mremap and shmdt only for
//! processes that map shared memory (`SHM_PROCS`); open/unlink only for
//! paths under `/dev/shm/` (a 9-byte user read).

use aya_ebpf::helpers::{
    bpf_probe_read_kernel_str_bytes, bpf_probe_read_user, bpf_probe_read_user_str_bytes,
    generated::{bpf_find_vma, bpf_get_current_task_btf, bpf_loop},
};
use ipcwatch_common::{
    sc as base_sc,
    shm::{MemEvent, PATH_PARTS, kind, sc},
};

use crate::{
    block::{kread, syscall_arg as arg},
    emit::{dropped, header, wake_flags},
    file::{file_ident, file_of_fd},
    maps::{EVENTS, MEM_SCRATCH, shm_conf},
    shared::{maps_shared, mark_shared},
};

const MAP_SHARED: u64 = 0x01;
const MAP_TYPE: u64 = 0x0f;
const MAP_SHARED_VALIDATE: u64 = 0x03;
const MAP_ANONYMOUS: u64 = 0x20;
const IPC_RMID: u64 = 0;
const SHM_RDONLY: u32 = 0o10000;
const PROT_WRITE: u32 = 0x2;
const TMPFS_MAGIC: u64 = 0x0102_1994;
const SHM_PREFIX: &[u8; 9] = b"/dev/shm/";

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
        dropped(kind::MEM);
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

/// open/openat of a path under /dev/shm/: the descriptor, its file and
/// flags.
#[inline(always)]
pub(crate) fn open(regs: u64, code: u32, ret: i64, pid_tgid: u64) {
    let path = if code == base_sc::OPEN {
        arg(regs, 0)
    } else {
        arg(regs, 1)
    };
    if ret < 0 || !under_dev_shm(path) {
        return;
    }
    let (ino, dev, magic) = file_ident(file_of_fd(ret));
    let Some(ev) = mem(code) else {
        return;
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

/// unlink/unlinkat of a path under /dev/shm/.
#[inline(always)]
pub(crate) fn unlink(regs: u64, code: u32, ret: i64, pid_tgid: u64) {
    let path = if code == sc::UNLINK {
        arg(regs, 0)
    } else {
        arg(regs, 1)
    };
    if ret != 0 || !under_dev_shm(path) {
        return;
    }
    if let Some(ev) = mem(code) {
        emit_mem(pid_tgid, ev, Name::User(path));
    }
}

/// The memory syscalls: shmget, shmat, shmdt, shmctl, mmap, munmap,
/// mremap, memfd_create, ftruncate.
#[inline(always)]
pub(crate) fn memory(regs: u64, code: u32, ret: i64, pid_tgid: u64, tgid: u32) {
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
        sc::MMAP => mmap(regs, ret, ev, pid_tgid, tgid),
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

/// mmap of shared memory: the mapping and what backs it (a file, or the
/// shmem file of `MAP_SHARED|MAP_ANONYMOUS`).
#[inline(always)]
fn mmap(regs: u64, ret: i64, ev: &mut MemEvent, pid_tgid: u64, tgid: u32) {
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
        // Not in the compat object (no bpf_find_vma before 5.17): no
        // inode for it then.
        let mut found = VmaFile { file: 0 };
        if !crate::COMPAT {
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
    if crate::COMPAT {
        // No bpf_loop before 5.17: the same steps, called in a bounded
        // loop.
        for i in 0..PATH_STEPS {
            if path_step(u64::from(i), &mut walk) != 0 {
                break;
            }
        }
        return walk.n;
    }
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
