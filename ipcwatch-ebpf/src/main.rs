//! ipcwatch's kernel side.
//!
//! Hot path: two generic programs, `ipcwatch_sys_enter` and
//! `ipcwatch_sys_exit`, are attached to the `syscalls:sys_{enter,exit}_*`
//! tracepoints of every syscall ipcwatch follows. Userspace fills the
//! `SYSCALLS` map (syscall number -> architecture-independent code), so the
//! same object works on every architecture. At entry a file descriptor is
//! classified by walking `current->files` with offsets that userspace read
//! from the kernel's BTF; only descriptors of a wanted kind (pipe, FIFO...)
//! leave state behind for the exit probe, so unrelated I/O costs a few
//! memory reads and nothing else.
//!
//! Process lifecycle comes from `sched_process_fork` (raw tracepoint, to
//! tell threads from processes), `sched_process_exec` and
//! `sched_process_exit`.
//!
//! Every event starts with `EventHeader`; a per-CPU sequence number advances
//! for every event, emitted or dropped, and failed reservations are counted
//! in `STATS`, so userspace can show every loss.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Atomic fetch-add for per-CPU counters: the bpf target has no atomic
// types with read-modify-write methods.
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

#[cfg(target_arch = "bpf")]
mod probes;
#[cfg(target_arch = "bpf")]
mod shm;
#[cfg(target_arch = "bpf")]
mod sock;
#[cfg(target_arch = "bpf")]
mod tracer;
#[cfg(target_arch = "bpf")]
mod uprobes;
#[cfg(target_arch = "bpf")]
mod watch;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects any program that could reach a panic.
    unsafe { core::hint::unreachable_unchecked() }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("ipcwatch-ebpf only builds for the bpf target; run `cargo xtask build`.");
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
