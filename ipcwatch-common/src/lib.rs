//! Plain data shared by the eBPF programs and userspace.
//!
//! Every event the kernel side emits starts with an [`EventHeader`] whose
//! `kind` says which payload struct follows. All types are `#[repr(C)]`,
//! `Copy`, and laid out without implicit padding so that both sides agree on
//! every byte. Userspace decodes them in `ipcwatch::decode`.
//!
//! One module per event family; everything is also re-exported here, so
//! `ipcwatch_common::FileId` and `ipcwatch_common::fd::FileId` are the
//! same type. The modules import each other directly, never through these
//! re-exports:
//!
//! - [`header`]: [`EventHeader`], the event kinds, the `STATS` indices;
//! - [`fd`]: descriptors, pipes and FIFOs, I/O events;
//! - [`sock`]: sockets; [`mq`]: POSIX and SysV message queues;
//! - [`process`]: fork, exec, exit, wait;
//! - [`shm`]: shared memory, locks, faults, uprobes;
//! - [`race`]: collision sampling (watchpoints);
//! - [`config`]: the `CONFIG` global; [`sc`]: syscall codes.
#![no_std]

pub mod config;
pub mod fd;
pub mod header;
pub mod mq;
pub mod process;
pub mod race;
pub mod sc;
pub mod shm;
pub mod sock;

pub use config::{Config, KernelOffsets, filter, traced};
pub use fd::{
    DataEvent, FdEvent, FileId, IoEvent, IoKey, IoTotals, MAX_CAPTURE, OpenEvent, PIPE_BUF,
    PathEvent, PipeEvent, SpanEvent, file_kind, op,
};
pub use header::{COMM_LEN, EventHeader, PATH_LEN, kind, stat};
pub use mq::{MQ_NAME_LEN, MqEvent, MsgEvent};
pub use process::{ExecEvent, ExitEvent, ForkEvent, WaitEvent};
pub use sc::MAX_SYSCALL_NR;

// Every event kind has its own slot of drops (`stat::dropped_kind`).
const _: () =
    assert!(race::KIND_COLLISION < stat::KIND_SLOTS && race::KIND_WRITE_SAMPLE < stat::KIND_SLOTS);
pub use sock::{ADDR_LEN, CTL_LEN, SockConfig, SockEvent, SockOffsets, sock_op};

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(size_of::<EventHeader>(), 48);
        assert_eq!(size_of::<FileId>(), 16);
        assert_eq!(size_of::<IoEvent>(), 48 + 16 + 8 + 16);
        assert_eq!(size_of::<PipeEvent>(), 48 + 16 + 16);
        assert_eq!(size_of::<FdEvent>(), 48 + 16 + 16);
        assert_eq!(size_of::<OpenEvent>(), 48 + 16 + 16 + PATH_LEN);
        assert_eq!(size_of::<PathEvent>(), 48 + 8 + PATH_LEN);
        assert_eq!(size_of::<ForkEvent>(), 48 + 16);
        assert_eq!(size_of::<ExecEvent>(), 48 + 16 + PATH_LEN);
        assert_eq!(size_of::<ExitEvent>(), 48 + 8);
        assert_eq!(size_of::<KernelOffsets>(), 22 * 4);
        assert_eq!(size_of::<Config>(), 36 + 22 * 4);
        assert_eq!(size_of::<IoKey>(), 24);
        assert_eq!(size_of::<IoTotals>(), 24);
        assert_eq!(size_of::<DataEvent>(), 48 + 8 + MAX_CAPTURE);
        assert_eq!(size_of::<race::Slot>(), 48);
        assert_eq!(size_of::<race::CollisionEvent>(), 48 + 32 + 48);
        assert_eq!(
            size_of::<SockEvent>(),
            48 + 16 + 32 + 16 + 8 + 32 + 8 + 64 + 112
        );
        assert_eq!(size_of::<MqEvent>(), 48 + 16 + 24 + 64 + MQ_NAME_LEN);
        assert_eq!(size_of::<MsgEvent>(), 48 + 8 + 8 + 8 + 8);
        assert_eq!(size_of::<WaitEvent>(), 48 + 8);
        assert_eq!(size_of::<SockConfig>(), 16 * 4);
    }

    #[test]
    fn layouts_not_checked_above() {
        use core::mem::offset_of;
        assert_eq!(size_of::<SpanEvent>(), 48 + 8);
        assert_eq!(size_of::<SockOffsets>(), 16 * 4);
        assert_eq!(size_of::<race::WatchKey>(), 16);
        assert_eq!(offset_of!(EventHeader, kind), 0);
        assert_eq!(offset_of!(EventHeader, cpu), 4);
        assert_eq!(offset_of!(EventHeader, seq), 8);
        assert_eq!(offset_of!(EventHeader, ts_ns), 16);
        assert_eq!(offset_of!(EventHeader, pid), 24);
        assert_eq!(offset_of!(EventHeader, tid), 28);
        assert_eq!(offset_of!(EventHeader, comm), 32);
        assert_eq!(offset_of!(Config, off), 36);
        assert_eq!(offset_of!(SockEvent, ctl), 48 + 16 + 32 + 16 + 8 + 32 + 8);
        assert_eq!(offset_of!(race::CollisionEvent, other), 48 + 32);
    }

    #[test]
    fn syscall_names_are_unique() {
        let all: std::vec::Vec<(u32, &str)> = sc::NAMES
            .iter()
            .chain(sc::CHANNEL_NAMES.iter())
            .copied()
            .collect();
        for (i, (a, n)) in all.iter().enumerate() {
            assert_eq!(sc::name(*a), *n);
            for (b, m) in &all[i + 1..] {
                assert_ne!(a, b);
                assert_ne!(n, m);
            }
        }
    }
}
