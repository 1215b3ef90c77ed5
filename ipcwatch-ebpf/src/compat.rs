//! The compat object, `ipcwatch-compat`: the same programs as `main.rs`'s,
//! for kernels without BPF's atomic fetch-and-add (BPF_ATOMIC | BPF_FETCH,
//! Linux 5.12+). Linux 5.10 checks every instruction of a program before
//! it verifies it, dead code included, and refuses the whole program for
//! one such instruction ("BPF_STX uses reserved fields"): a branch taken
//! at run time cannot avoid it, so the instruction must not be in the
//! object at all. Here `COMPAT` is true and LLVM leaves it out.
//!
//! The same constant leaves out the helpers 5.10 lacks (unknown helpers
//! are refused by its verifier, and the callbacks of `bpf_loop` and
//! `bpf_find_vma` by its check of the BTF func_info first):
//! `bpf_get_current_task_btf` (tp_btf programs read the task through
//! `bpf_get_current_task` and `bpf_probe_read_kernel` instead, as the
//! raw-tracepoint forms do, and the name with `bpf_get_current_comm`);
//! `bpf_loop` (the path of a mapped file is walked by a bounded loop of
//! calls); `bpf_find_vma` (a shared anonymous mapping's shmem file is not
//! found: its events carry no inode, and userspace says so).
//!
//! Without it, the per-CPU sequence number is a plain load and store
//! (`emit.rs`). That is exact on these kernels: up to 5.10 at least,
//! tracepoint, raw tracepoint, tp_btf, uprobe and kprobe programs run
//! with preemption disabled, so no other of these programs runs on the
//! same CPU between the load and the store.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

/// See `main.rs`.
#[cfg(target_arch = "bpf")]
const COMPAT: bool = true;

include!("root.rs");
