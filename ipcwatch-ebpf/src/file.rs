//! What a descriptor is: from `fd` to its `struct file *` in the current
//! task (walking `current->files->fdt`), and from that to a [`FileId`]
//! (kind, inode, device) with offsets from the kernel's BTF.

use aya_ebpf::helpers::generated::{bpf_get_current_task, bpf_get_current_task_btf};
use ipcwatch_common::{FileId, file_kind};

use crate::{
    block::{Block, kread, min},
    maps::{KERNEL_FS, conf},
};

pub(crate) const S_IFMT: u32 = 0o170000;
pub(crate) const S_IFIFO: u32 = 0o010000;
const S_IFSOCK: u32 = 0o140000;
const PIPEFS_MAGIC: u64 = 0x5049_5045;
const SOCKFS_MAGIC: u64 = 0x534F_434B;
/// [`KERNEL_FS`] slots.
const SOCKFS: u32 = 0;
const PIPEFS: u32 = 2;
const FMODE_READ: u32 = 0x1;
pub(crate) const FMODE_WRITE: u32 = 0x2;

/// Is `file` of a kind userspace asked for?
#[inline(always)]
pub(crate) fn wanted(file: &FileId) -> bool {
    file.kind != file_kind::NONE && conf!(kinds) & file_kind::bit(file.kind) != 0
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

/// [`file_of_fd`], or [`file_of_fd_btf`] in a tp_btf program (not in the
/// compat object: 5.10 has no `bpf_get_current_task_btf`).
#[inline(always)]
pub(crate) fn file_of_fd_any<const BTF: bool>(fd: i64) -> u64 {
    if BTF && !crate::COMPAT {
        file_of_fd_btf(fd)
    } else if BTF {
        file_of_fd_frame(fd)
    } else {
        file_of_fd(fd)
    }
}

/// [`file_of_fd`] in a frame of its own: the compat object's tp_btf
/// forms, whose callers' frames were sized for [`file_of_fd_btf`] (on
/// Linux 5.10 the read/write family's chain of calls came to 576 bytes
/// with it inlined, over the 512 allowed).
#[inline(never)]
fn file_of_fd_frame(fd: i64) -> u64 {
    file_of_fd(fd)
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

/// Classify a `struct file *`: kind, inode and device. The file and its
/// inode are each read as one block, one after the other into the same
/// words; the superblock's device, and its magic for a FIFO, one read
/// each. Linux 6.1's verifier allows 512 bytes of stack for a chain of
/// calls (each frame rounded up to 32), and three blocks of their own
/// took 456 here.
#[inline(never)]
pub(crate) fn classify_file(file: u64) -> FileId {
    // One exit, built from scalars: `return FileId::default()` on the
    // early exits was a call to memset (one more frame in the chain).
    let (ino, dev, kind, fmode) = 'c: {
        if file == 0 {
            break 'c (0, 0, file_kind::NONE, 0);
        }
        let (inode_off, fmode_off) = (conf!(off.file_inode), conf!(off.file_mode));
        let mut b = Block::<10>::read(file, min(inode_off, fmode_off));
        let Some(inode) = b.u64(inode_off) else {
            break 'c (0, 0, file_kind::NONE, 0);
        };
        let fmode = b.u32(fmode_off).unwrap_or(0);
        let (mode_off, sb_off, ino_off) = (
            conf!(off.inode_mode),
            conf!(off.inode_sb),
            conf!(off.inode_ino),
        );
        b.reread(inode, min(mode_off, min(sb_off, ino_off)));
        let Some(mode) = b.u16(mode_off) else {
            break 'c (0, 0, file_kind::NONE, 0);
        };
        let is_fifo = match mode as u32 & S_IFMT {
            S_IFIFO => true,
            S_IFSOCK => false,
            _ => break 'c (0, 0, file_kind::NONE, 0),
        };
        let ino = b.u64(ino_off).unwrap_or(0);
        let sb = b.u64(sb_off).unwrap_or(0);
        // Sockets and pipes, nearly every event: their filesystem's
        // device without reading the superblock.
        let (slot, magic) = if is_fifo {
            (PIPEFS, PIPEFS_MAGIC)
        } else {
            (SOCKFS, SOCKFS_MAGIC)
        };
        let (dev, kind) = match kernel_fs_dev(sb, slot, magic) {
            Some(dev) if is_fifo => (dev, file_kind::PIPE),
            Some(dev) => (dev, file_kind::SOCKET),
            None => {
                let dev = kread::<u32>(sb, conf!(off.sb_dev)).unwrap_or(0);
                let kind = if is_fifo {
                    file_kind::FIFO
                } else {
                    file_kind::SOCKET
                };
                (dev, kind)
            }
        };
        (ino, dev, kind, fmode)
    };
    FileId {
        ino,
        dev,
        kind,
        access: (fmode & (FMODE_READ | FMODE_WRITE)) as u16,
    }
}

/// The device of superblock `sb` when it is the kernel's own sockfs or
/// pipefs ([`KERNEL_FS`] slot `slot`, superblock magic `magic`), or None
/// for any other filesystem (a FIFO on disk; a socket inode reached
/// through an O_PATH descriptor on disk). Learned the first time: the
/// magic is read and checked, then the address and the device are kept.
/// A hit costs no helper call (the JIT inlines array lookups) where the
/// superblock's device and magic were two reads each time.
///
/// Both filesystems live as long as the kernel, so a kept address never
/// names another superblock. The device is stored before the address and
/// is never 0 (anonymous devices start at minor 1): a reader that sees
/// the address but not yet the device (another CPU, storing now) reads
/// the superblock itself.
#[inline(always)]
fn kernel_fs_dev(sb: u64, slot: u32, magic: u64) -> Option<u32> {
    if sb == 0 {
        return None;
    }
    if let (Some(&kept), Some(&dev)) = (KERNEL_FS.get(slot), KERNEL_FS.get(slot + 1))
        && kept == sb
        && dev != 0
    {
        return Some(dev as u32);
    }
    if kread::<u64>(sb, conf!(off.sb_magic)).unwrap_or(0) != magic {
        return None;
    }
    let dev = kread::<u32>(sb, conf!(off.sb_dev)).unwrap_or(0);
    if dev != 0
        && let (Some(d), Some(s)) = (KERNEL_FS.get_ptr_mut(slot + 1), KERNEL_FS.get_ptr_mut(slot))
    {
        // SAFETY: pointers into the array map's values, valid for the
        // program's run; every writer stores the same two values.
        unsafe {
            core::ptr::write_volatile(d, dev as u64);
            core::ptr::write_volatile(s, sb);
        }
    }
    Some(dev)
}

/// [`classify_file`] of descriptor `fd`.
#[inline(always)]
pub(crate) fn classify_fd(fd: i64) -> FileId {
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

/// Inode, device and superblock magic of a `struct file *`.
#[inline(always)]
pub(crate) fn file_ident(file: u64) -> (u64, u32, u64) {
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
