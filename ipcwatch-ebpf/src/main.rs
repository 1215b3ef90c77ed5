//! ipcwatch's kernel side (see docs/architecture.md).
//!
//! Hot path: two programs see every syscall, `ipcwatch_sys_exit` on the
//! `sys_exit` tracepoint and `ipcwatch_sys_enter` on `sys_enter`, each on
//! tp_btf with a raw-tracepoint fallback (`dispatch.rs`). One lookup in the
//! `SYSCALLS` array (architecture syscall number -> code, filled by
//! userspace) turns away the syscalls ipcwatch does not follow; the others
//! read their arguments back from the saved user registers at exit, so
//! nothing is kept between entry and exit (`sys_enter` only sees close,
//! close_range and large writes). A descriptor is classified by walking
//! `current->files` with offsets that userspace read from the kernel's BTF
//! and wrote into the read-only `CONFIG` global; only wanted kinds (pipe,
//! FIFO, socket...) produce events.
//!
//! Beside it: process lifecycle (`sched_process_fork`, `_exec`, `_exit`),
//! write faults, uprobes on libc's lock calls, and the watchpoint program
//! of the race detector.
//!
//! Every event starts with `EventHeader`; a per-CPU sequence number advances
//! for every event, emitted or dropped, and failed reservations are counted
//! in `STATS`, so userspace can show every loss.
//!
//! Layers, each using only those below it: `maps` (every map and global);
//! the helpers `block`, `user`, `file`, `emit`, `filter`, `shared`,
//! `socket`, `io`, `log`; the programs in `probes/`, one file per hook
//! family; `dispatch`, which routes each followed syscall to its family.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Atomic fetch-add for per-CPU counters: the bpf target has no atomic
// types with read-modify-write methods.
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

#[cfg(target_arch = "bpf")]
mod block;
#[cfg(target_arch = "bpf")]
mod dispatch;
#[cfg(target_arch = "bpf")]
mod emit;
#[cfg(target_arch = "bpf")]
mod file;
#[cfg(target_arch = "bpf")]
mod filter;
#[cfg(target_arch = "bpf")]
mod io;
#[cfg(target_arch = "bpf")]
mod log;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod probes;
#[cfg(target_arch = "bpf")]
mod shared;
#[cfg(target_arch = "bpf")]
mod socket;
#[cfg(target_arch = "bpf")]
mod user;

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
