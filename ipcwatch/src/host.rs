//! Facts about this machine that every record stream starts with: the
//! kernel release, the host name, and the clock of every `ts_ns`.

use rustix::time::{ClockId, clock_gettime};

/// `uname -r`.
pub fn release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

/// `uname -n`.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`, used
/// for every `ts_ns`.
pub fn monotonic_ns() -> u64 {
    let ts = clock_gettime(ClockId::Monotonic);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Give the heap's free memory back to the system (glibc's
/// `malloc_trim`): after a burst of allocations that were freed (loading
/// the eBPF object and parsing the kernel's BTF at start-up, a /proc
/// scan, thousands of new channels), glibc keeps the free memory in the
/// middle of the heap otherwise. Nothing in the static build (musl's
/// allocator has no such call and gives memory back by itself).
pub fn give_back_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_and_hostname_match_proc() {
        let proc = |f: &str| std::fs::read_to_string(f).unwrap().trim().to_string();
        assert_eq!(release(), proc("/proc/sys/kernel/osrelease"));
        assert_eq!(hostname(), proc("/proc/sys/kernel/hostname"));
        let a = monotonic_ns();
        assert!(monotonic_ns() >= a);
    }
}
