//! Reading kernel memory: one value ([`kread`]), or a whole object in one
//! helper call ([`Block`]), and the saved user registers of a syscall
//! ([`Regs`]), where its number and arguments are.

use core::mem::MaybeUninit;

use aya_ebpf::helpers::{bpf_probe_read_kernel, generated};

use crate::maps::{conf, sconf, shm_conf};

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
///
/// `lo` is a whole word, and a failed read is a `lo` that no offset
/// reaches ([`UNREAD`]) rather than a flag beside it: LLVM packed a u32
/// `lo` and a bool into one spilled word, where the verifier lost the
/// constant and refused the variable-offset read of `words` that
/// followed.
///
/// The words are read in place, never copied: on Linux 6.1 the verifier
/// rounds every frame up to 32 bytes and allows 512 for a chain of calls,
/// and `classify_file`'s three blocks, read into a temporary and moved,
/// took 456 bytes.
pub(crate) struct Block<const W: usize> {
    base: u64,
    lo: u64,
    /// Initialized unless `lo` is [`UNREAD`].
    words: MaybeUninit<[u64; W]>,
}

/// The `lo` of a block that could not be read: every field falls back to
/// a read of its own.
const UNREAD: u64 = 1 << 40;

impl<const W: usize> Block<W> {
    /// The block of `base` that starts at offset `lo` (rounded down to a
    /// word).
    #[inline(always)]
    pub(crate) fn read(base: u64, lo: u32) -> Self {
        let mut b = Block {
            base,
            lo: UNREAD,
            words: MaybeUninit::uninit(),
        };
        b.reread(base, lo);
        b
    }

    /// Read the block of another object into the same words (one stack
    /// slot for a chain of objects).
    #[inline(always)]
    pub(crate) fn reread(&mut self, base: u64, lo: u32) {
        let lo = (lo & !7) as u64;
        // SAFETY: bpf_probe_read_kernel tolerates any source address and
        // writes at most W words to `self.words`.
        let ret = unsafe {
            generated::bpf_probe_read_kernel(
                self.words.as_mut_ptr().cast(),
                (W * 8) as u32,
                (base + lo) as *const core::ffi::c_void,
            )
        };
        self.base = base;
        self.lo = if ret == 0 { lo } else { UNREAD };
    }

    /// The word holding the `size` bytes at `off`, and the shift to them.
    #[inline(always)]
    fn word(&self, off: u32, size: u32) -> Option<(u64, u32)> {
        let d = (off as u64).wrapping_sub(self.lo);
        let i = (d / 8) as usize;
        if d.is_multiple_of(size as u64) && i < W {
            // SAFETY: `lo` is not UNREAD (no offset reaches it), so the
            // helper filled the words.
            let words = unsafe { self.words.assume_init_ref() };
            Some((words[i], (d % 8) as u32 * 8))
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

    /// [`Regs::of_btf`] in a tp_btf program, else [`Regs::of`].
    #[inline(always)]
    pub(crate) fn any<const BTF: bool>(regs: u64) -> Self {
        if BTF {
            Self::of_btf(regs)
        } else {
            Self::of(regs)
        }
    }

    /// [`Regs::of`] where `regs` is a BTF pointer (tp_btf): direct loads,
    /// into the block's words in place (no copy on the stack).
    #[inline(always)]
    pub(crate) fn of_btf(regs: u64) -> Self {
        let lo = Self::lo();
        let mut b = Block {
            base: regs,
            lo: lo as u64,
            words: MaybeUninit::uninit(),
        };
        let words = b.words.as_mut_ptr().cast::<u64>();
        let mut i = 0;
        while i < 9 {
            // SAFETY: `regs` is the kernel's `struct pt_regs *` of a
            // tp_btf program; the verifier checks the load against BTF.
            // `words` has 9 slots.
            unsafe {
                words.add(i).write(core::ptr::read_volatile(
                    (regs + lo as u64 + 8 * i as u64) as *const u64,
                ));
            }
            i += 1;
        }
        b
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

    /// The fifth (`i == 4`) or sixth syscall argument.
    #[inline(always)]
    pub(crate) fn arg_more(&self, i: usize) -> u64 {
        let off = if i == 4 {
            sconf!(off.regs_arg4)
        } else {
            sconf!(off.regs_arg5)
        };
        self.u64(off).unwrap_or(0)
    }
}

/// The smaller of two offsets.
#[inline(always)]
pub(crate) fn min(a: u32, b: u32) -> u32 {
    if a < b { a } else { b }
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

/// Syscall argument `i` (0..=5) from the saved user registers, one read
/// each (the shared-memory and lock probes).
#[inline(always)]
pub(crate) fn syscall_arg(regs: u64, i: u32) -> u64 {
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
