//! The programs, one file per hook family. A probe file uses the helpers
//! below it (maps, kernel and user reads, descriptors, sockets, events)
//! and never another probe file; `dispatch.rs`, above, routes each
//! followed syscall to its family.

pub(crate) mod doctor;
pub(crate) mod fault;
pub(crate) mod fd;
pub(crate) mod mq;
pub(crate) mod process;
pub(crate) mod shm;
pub(crate) mod sock;
pub(crate) mod sync;
pub(crate) mod uprobes;
pub(crate) mod watch;
