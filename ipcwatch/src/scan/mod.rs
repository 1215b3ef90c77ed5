//! The state before the start: what processes, descriptors and sockets
//! already exist when ipcwatch begins ([`procs`]: processes and their
//! descriptors, [`maps`]: shared memory, [`sockdiag`]: the kernel's socket
//! tables, [`cgroup`]: the cgroup, container or unit of a process,
//! [`runtime`]: a container's name and image, from its runtime).

pub mod cgroup;
pub mod maps;
pub mod procs;
pub mod runtime;
pub mod sockdiag;
