//! The kernel side as userspace sees it, and the only place aya appears:
//! checks before loading ([`preflight`]), struct offsets from BTF
//! ([`btf`]), syscall tables ([`syscalls`]), which eBPF object this
//! kernel takes ([`object`]), loading and attaching the
//! eBPF programs ([`loader`], with the shared-memory and lock probes in
//! [`shm`]), the capabilities dropped after start-up ([`privileges`]), and
//! `ipcwatch doctor` ([`doctor`]).

pub mod attach;
pub mod btf;
pub mod doctor;
pub mod loader;
pub mod object;
pub mod preflight;
pub mod privileges;
pub mod shm;
pub mod syscalls;
