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
//!
//! Two objects are built from this code, one per bin of the crate: this
//! one (`ipcwatch`), and `ipcwatch-compat` (`compat.rs`) for kernels
//! without BPF's atomic fetch-and-add (before 5.12), which refuse any
//! object holding one, even in code never reached. They differ only in
//! `COMPAT`; userspace picks one by probing the kernel
//! (`ipcwatch/src/kernel/object.rs`).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Atomic fetch-add for per-CPU counters: the bpf target has no atomic
// types with read-modify-write methods.
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

/// Whether this is the compat object (`compat.rs`), for kernels without
/// atomic fetch-and-add (before 5.12): it leaves out what Linux 5.10
/// lacks, the atomic (`emit.rs`) and the helpers that came later
/// (`bpf_get_current_task_btf` 5.11, `bpf_loop` and `bpf_find_vma`
/// 5.17). This object uses them all.
#[cfg(target_arch = "bpf")]
const COMPAT: bool = false;

include!("root.rs");
