//! Shared memory, synchronization and write faults: the kernel events and
//! configuration behind the `region`, `mapping`, `sync` and `fault` lines.
//!
//! Kept apart from the pipe types so that each feature owns its numbers:
//! event kinds and syscall codes here are 64..127.

/// Values of `EventHeader::kind` for the events of this module.
pub mod kind {
    /// [`super::MemEvent`]: shmget/shmat/shmdt/shmctl, mmap/munmap/mremap
    /// of shared memory, memfd_create, open/unlink under /dev/shm.
    pub const MEM: u32 = 64;
    /// [`super::LockEvent`]: futex, flock, fcntl record locks.
    pub const LOCK: u32 = 65;
    /// [`super::FaultEvent`]: a write page fault in a process that maps
    /// shared memory.
    pub const FAULT: u32 = 66;
    /// [`super::UprobeEvent`]: a pthread/semaphore call seen by a uprobe.
    pub const UPROBE: u32 = 67;
}

/// Architecture-independent syscall codes (the `SYSCALLS` map values).
pub mod sc {
    pub const SHMGET: u32 = 64;
    pub const SHMAT: u32 = 65;
    pub const SHMDT: u32 = 66;
    pub const SHMCTL: u32 = 67;
    pub const MMAP: u32 = 68;
    pub const MUNMAP: u32 = 69;
    pub const MREMAP: u32 = 70;
    pub const MEMFD_CREATE: u32 = 71;
    pub const FUTEX: u32 = 72;
    pub const FLOCK: u32 = 73;
    pub const UNLINK: u32 = 74;
    pub const UNLINKAT: u32 = 75;
    pub const FTRUNCATE: u32 = 76;

    /// Every code with its syscall name.
    pub const NAMES: [(u32, &str); 13] = [
        (SHMGET, "shmget"),
        (SHMAT, "shmat"),
        (SHMDT, "shmdt"),
        (SHMCTL, "shmctl"),
        (MMAP, "mmap"),
        (MUNMAP, "munmap"),
        (MREMAP, "mremap"),
        (MEMFD_CREATE, "memfd_create"),
        (FUTEX, "futex"),
        (FLOCK, "flock"),
        (UNLINK, "unlink"),
        (UNLINKAT, "unlinkat"),
        (FTRUNCATE, "ftruncate"),
    ];
}

/// Values of [`UprobeEvent::func`]: the libc function that was hit.
pub mod func {
    pub const MUTEX_INIT: u32 = 1;
    pub const RWLOCK_INIT: u32 = 2;
    pub const SPIN_INIT: u32 = 3;
    pub const SEM_INIT: u32 = 4;
    /// Return of sem_open (the address is the return value).
    pub const SEM_OPEN: u32 = 5;
    pub const MUTEXATTR_SETPSHARED: u32 = 6;
    pub const RWLOCKATTR_SETPSHARED: u32 = 7;
    // Hot calls (`--lock-probes`). Acquire-type calls are reported at
    // return (with the result), release-type calls at entry.
    pub const MUTEX_LOCK: u32 = 16;
    pub const MUTEX_TRYLOCK: u32 = 17;
    pub const MUTEX_TIMEDLOCK: u32 = 18;
    pub const MUTEX_UNLOCK: u32 = 19;
    pub const RWLOCK_RDLOCK: u32 = 20;
    pub const RWLOCK_TRYRDLOCK: u32 = 21;
    pub const RWLOCK_TIMEDRDLOCK: u32 = 22;
    pub const RWLOCK_WRLOCK: u32 = 23;
    pub const RWLOCK_TRYWRLOCK: u32 = 24;
    pub const RWLOCK_TIMEDWRLOCK: u32 = 25;
    pub const RWLOCK_UNLOCK: u32 = 26;
    pub const SPIN_LOCK: u32 = 27;
    pub const SPIN_TRYLOCK: u32 = 28;
    pub const SPIN_UNLOCK: u32 = 29;
    pub const SEM_WAIT: u32 = 30;
    pub const SEM_TRYWAIT: u32 = 31;
    pub const SEM_TIMEDWAIT: u32 = 32;
    pub const SEM_POST: u32 = 33;

    /// libc symbol of each function.
    pub const SYMBOLS: [(u32, &str); 25] = [
        (MUTEX_INIT, "pthread_mutex_init"),
        (RWLOCK_INIT, "pthread_rwlock_init"),
        (SPIN_INIT, "pthread_spin_init"),
        (SEM_INIT, "sem_init"),
        (SEM_OPEN, "sem_open"),
        (MUTEXATTR_SETPSHARED, "pthread_mutexattr_setpshared"),
        (RWLOCKATTR_SETPSHARED, "pthread_rwlockattr_setpshared"),
        (MUTEX_LOCK, "pthread_mutex_lock"),
        (MUTEX_TRYLOCK, "pthread_mutex_trylock"),
        (MUTEX_TIMEDLOCK, "pthread_mutex_timedlock"),
        (MUTEX_UNLOCK, "pthread_mutex_unlock"),
        (RWLOCK_RDLOCK, "pthread_rwlock_rdlock"),
        (RWLOCK_TRYRDLOCK, "pthread_rwlock_tryrdlock"),
        (RWLOCK_TIMEDRDLOCK, "pthread_rwlock_timedrdlock"),
        (RWLOCK_WRLOCK, "pthread_rwlock_wrlock"),
        (RWLOCK_TRYWRLOCK, "pthread_rwlock_trywrlock"),
        (RWLOCK_TIMEDWRLOCK, "pthread_rwlock_timedwrlock"),
        (RWLOCK_UNLOCK, "pthread_rwlock_unlock"),
        (SPIN_LOCK, "pthread_spin_lock"),
        (SPIN_TRYLOCK, "pthread_spin_trylock"),
        (SPIN_UNLOCK, "pthread_spin_unlock"),
        (SEM_WAIT, "sem_wait"),
        (SEM_TRYWAIT, "sem_trywait"),
        (SEM_TIMEDWAIT, "sem_timedwait"),
        (SEM_POST, "sem_post"),
    ];

    /// Hot calls are reported at return (acquire-type) rather than entry.
    pub const fn at_return(f: u32) -> bool {
        matches!(
            f,
            SEM_OPEN
                | MUTEX_LOCK
                | MUTEX_TRYLOCK
                | MUTEX_TIMEDLOCK
                | RWLOCK_RDLOCK
                | RWLOCK_TRYRDLOCK
                | RWLOCK_TIMEDRDLOCK
                | RWLOCK_WRLOCK
                | RWLOCK_TRYWRLOCK
                | RWLOCK_TIMEDWRLOCK
                | SPIN_LOCK
                | SPIN_TRYLOCK
                | SEM_WAIT
                | SEM_TRYWAIT
                | SEM_TIMEDWAIT
        )
    }

    pub fn symbol(f: u32) -> &'static str {
        let mut i = 0;
        while i < SYMBOLS.len() {
            if SYMBOLS[i].0 == f {
                return SYMBOLS[i].1;
            }
            i += 1;
        }
        "?"
    }
}

/// Bytes of a name captured in the kernel (memfd name, /dev/shm path,
/// dentry name of a mapped file).
pub const NAME_LEN: usize = 64;
/// Path components of a mapped file captured in the kernel (innermost
/// first), and the bytes of each.
pub const PATH_PARTS: usize = 10;
pub const PART_LEN: usize = 64;

/// A change to shared memory. Which fields mean what depends on `syscall`:
///
/// | syscall | `id` | `addr` | `len` | `arg` | `flags` |
/// |---|---|---|---|---|---|
/// | shmget | shmid (result) | | size | key | shmflg |
/// | shmat | shmid | address (result) | | | shmflg |
/// | shmdt | | address | | | |
/// | shmctl | shmid | | | | cmd |
/// | mmap | fd | address (result) | length | file offset | flags, prot in `prot` |
/// | munmap | | address | length | | |
/// | mremap | | old address | old length | new length | flags; new address in `new_addr` |
/// | memfd_create | fd (result) | | | | flags; name in `name` |
/// | openat/open | fd (result) | | | | open flags; path in `name` |
/// | unlink/unlinkat | | | | | path in `name` |
/// | ftruncate | fd | | length | | |
///
/// `file` identifies the file behind `id` when it is a descriptor (mmap,
/// memfd_create, open, ftruncate); `name` then holds its dentry name when
/// the syscall gave none.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemEvent {
    pub hdr: crate::header::EventHeader,
    pub id: i64,
    pub addr: u64,
    pub len: u64,
    pub arg: u64,
    pub new_addr: u64,
    pub ino: u64,
    /// `sb->s_dev` of the file (kernel encoding).
    pub dev: u32,
    pub flags: u32,
    pub prot: u32,
    /// One of [`sc`] (or `crate::sc::OPENAT`/`OPEN`).
    pub syscall: u32,
    /// Superblock magic of the file (tmpfs/shmem, hugetlbfs...).
    pub magic: u64,
    pub name: [u8; NAME_LEN],
    /// mmap of a file: how many of `parts` hold its path's components,
    /// innermost first, up to the root of the mount tree (0: none;
    /// more than `PATH_PARTS`: too deep, not captured).
    pub nparts: u32,
    pub _pad: u32,
    pub parts: [[u8; PART_LEN]; PATH_PARTS],
}

/// A synchronization syscall.
///
/// | syscall | `addr` | `op` | `arg` | `ret` | `ino`/`dev` | `start`/`len` |
/// |---|---|---|---|---|---|---|
/// | futex | uaddr | futex op | val | result | | uaddr2 in `start` |
/// | flock | | operation | fd | result | the file | |
/// | fcntl | | cmd | fd | result | the file | range; l_type/l_whence in `kind` |
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockEvent {
    pub hdr: crate::header::EventHeader,
    pub addr: u64,
    pub ret: i64,
    pub ino: u64,
    pub start: u64,
    pub len: u64,
    pub dev: u32,
    pub op: u32,
    pub arg: u32,
    /// fcntl: `l_type | l_whence << 16`.
    pub kind: u32,
    pub syscall: u32,
    pub _pad: u32,
}

/// A write page fault (`exceptions:page_fault_user` with the write bit).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultEvent {
    pub hdr: crate::header::EventHeader,
    pub addr: u64,
    pub ip: u64,
    pub error_code: u64,
}

/// A libc synchronization call seen by a uprobe.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UprobeEvent {
    pub hdr: crate::header::EventHeader,
    /// The object's address (first argument, or sem_open's result).
    pub addr: u64,
    /// Second argument at entry (attr pointer, pshared, ...), or the
    /// return value for calls reported at return.
    pub arg: u64,
    /// init calls: the process-shared flag read from the attribute
    /// (1 shared, 0 private, 2 unknown).
    pub pshared: u32,
    /// One of [`func`].
    pub func: u32,
}

/// Flags of [`ShmConfig::flags`].
pub mod shm_flags {
    /// Report every write fault of a traced process that maps shared
    /// memory (otherwise faults are off).
    pub const FAULTS: u32 = 1;
}

/// Second read-only configuration global (`SHM_CONFIG`), written by
/// userspace before load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShmConfig {
    /// `struct pt_regs` offsets of the fifth and sixth syscall arguments.
    pub regs_arg4: u32,
    pub regs_arg5: u32,
    /// `struct file` -> `f_path.dentry` and `struct dentry` -> `d_name.name`.
    pub file_dentry: u32,
    pub dentry_name: u32,
    pub flags: u32,
    /// `struct vm_area_struct` -> `vm_file`.
    pub vma_file: u32,
    /// For the path walk: `file` -> `f_path.mnt`, `dentry` -> `d_parent`,
    /// `struct mount` -> `mnt` (the embedded vfsmount), `mnt_parent`,
    /// `mnt_mountpoint`, and `vfsmount` -> `mnt_root`.
    pub file_mnt: u32,
    pub dentry_parent: u32,
    pub mount_mnt: u32,
    pub mount_parent: u32,
    pub mount_mountpoint: u32,
    pub vfsmount_root: u32,
}

impl ShmConfig {
    pub const fn zeroed() -> Self {
        ShmConfig {
            regs_arg4: 0,
            regs_arg5: 0,
            file_dentry: 0,
            dentry_name: 0,
            flags: 0,
            vma_file: 0,
            file_mnt: 0,
            dentry_parent: 0,
            mount_mnt: 0,
            mount_parent: 0,
            mount_mountpoint: 0,
            vfsmount_root: 0,
        }
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: ShmConfig is repr(C), Copy, made only of integers, with no padding.
    unsafe impl aya::Pod for super::ShmConfig {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(
            size_of::<MemEvent>(),
            48 + 6 * 8 + 16 + 8 + NAME_LEN + 8 + PATH_PARTS * PART_LEN
        );
        assert_eq!(size_of::<LockEvent>(), 48 + 5 * 8 + 24);
        assert_eq!(size_of::<FaultEvent>(), 48 + 24);
        assert_eq!(size_of::<UprobeEvent>(), 48 + 24);
        assert_eq!(size_of::<ShmConfig>(), 48);
    }

    #[test]
    fn codes_are_unique_and_in_range() {
        for (i, (a, n)) in sc::NAMES.iter().enumerate() {
            assert!((64..128).contains(a));
            assert_eq!(crate::sc::name(*a), *n);
            for (b, _) in &sc::NAMES[i + 1..] {
                assert_ne!(a, b);
            }
        }
        for (f, s) in func::SYMBOLS {
            assert_eq!(func::symbol(f), s);
        }
    }
}
