//! The compat object, `ipcwatch-compat`: the same programs as `main.rs`'s,
//! for kernels without BPF's atomic fetch-and-add (BPF_ATOMIC | BPF_FETCH,
//! Linux 5.12+). Linux 5.10 checks every instruction of a program before
//! it verifies it, dead code included, and refuses the whole program for
//! one such instruction ("BPF_STX uses reserved fields"): a branch taken
//! at run time cannot avoid it, so the instruction must not be in the
//! object at all. Here `ATOMIC_FETCH` is false and LLVM leaves it out.
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
const ATOMIC_FETCH: bool = false;

include!("root.rs");
