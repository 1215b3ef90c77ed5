//! The state before the start: what processes, descriptors and sockets
//! already exist when ipcwatch begins ([`procs`]: processes and their
//! descriptors, [`maps`]: shared memory, [`sockdiag`]: the kernel's socket
//! tables).

pub mod maps;
pub mod procs;
pub mod sockdiag;
