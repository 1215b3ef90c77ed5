//! Reading user memory: a value, and the buffers of an iovec array.

use aya_ebpf::helpers::bpf_probe_read_user;

/// A `T` at user address `addr`, if it is not null and readable.
#[inline(always)]
pub(crate) fn user<T>(addr: u64) -> Option<T> {
    if addr == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_user tolerates any address.
    unsafe { bpf_probe_read_user(addr as *const T).ok() }
}

/// Total length of the first iovecs of a writev (enough to tell a write
/// larger than PIPE_BUF).
#[inline(always)]
pub(crate) fn iov_len(iov: u64, count: u64) -> u64 {
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
