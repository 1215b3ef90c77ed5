//! The one place channel and region ids are made and read: every stage
//! that names a pipe, a FIFO or a region (the collector, the /proc scan,
//! the model) names it the same way.
//!
//! Region ids are the same in every process:
//! - `sysv:<shmid>`: a SysV segment (its shm file's inode is the shmid);
//! - `posix:/<name>`: a file under /dev/shm (shm_open, sem_open);
//! - `memfd:<name>:<inode>`: memfd_create;
//! - `file:<path>`: any other file mapped `MAP_SHARED`;
//! - `anon:<dev>:<inode>`: `MAP_SHARED|MAP_ANONYMOUS`, shared through
//!   fork (the kernel backs it with a shmem inode; `dev` is the kernel's
//!   `major << 20 | minor`).

use ipcwatch_common::{FileId, file_kind};

use crate::record::{ChannelKind, RegionKind, Text};

/// Kernel dev_t (major << 20 | minor) split into major and minor.
pub fn kernel_dev(dev: u32) -> (u32, u32) {
    (dev >> 20, dev & 0xfffff)
}

/// The stable id of the channel behind a file, as ipcwatch names it.
pub fn channel_id(file: &FileId) -> Option<(ChannelKind, Text)> {
    match file.kind {
        file_kind::PIPE => Some((ChannelKind::Pipe, pipe_id(file.ino))),
        file_kind::FIFO => {
            let (major, minor) = kernel_dev(file.dev);
            Some((ChannelKind::Fifo, fifo_id(major, minor, file.ino)))
        }
        _ => None,
    }
}

/// "pipe:[ino]", as the kernel names a pipe in /proc/<pid>/fd.
pub fn pipe_id(ino: u64) -> Text {
    // Once per pipe event: put together on the stack and made text once
    // (format! and push_str cost more).
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(ino).as_bytes();
    let mut id = [0u8; 32];
    id[..6].copy_from_slice(b"pipe:[");
    id[6..6 + digits.len()].copy_from_slice(digits);
    let len = 7 + digits.len();
    id[len - 1] = b']';
    Text::from_utf8(&id[..len]).unwrap_or_default()
}

/// "unix:[a]", or "unix:[a-b]" for a connected pair (the caller sorts
/// them): a unix socket channel, made as [`pipe_id`] is (once per socket
/// event; format_compact! was a tenth of the collector's time on
/// pgbench's traffic).
pub fn unix_id(a: u64, b: Option<u64>) -> Text {
    let mut id = [0u8; 48];
    id[..6].copy_from_slice(b"unix:[");
    let mut len = 6;
    let mut digits = itoa::Buffer::new();
    let d = digits.format(a).as_bytes();
    id[len..len + d.len()].copy_from_slice(d);
    len += d.len();
    if let Some(b) = b {
        id[len] = b'-';
        len += 1;
        let d = digits.format(b).as_bytes();
        id[len..len + d.len()].copy_from_slice(d);
        len += d.len();
    }
    id[len] = b']';
    Text::from_utf8(&id[..len + 1]).unwrap_or_default()
}

/// "fifo:[major:minor:ino]": a FIFO's device and inode.
pub fn fifo_id(major: u32, minor: u32, ino: u64) -> Text {
    compact_str::format_compact!("fifo:[{major}:{minor}:{ino}]")
}

/// Kernel dev_t (major << 20 | minor) from a major and minor.
pub fn kdev(major: u32, minor: u32) -> u32 {
    (major << 20) | minor
}

/// Region kind from an id.
pub fn region_kind(id: &str) -> RegionKind {
    match id.split(':').next() {
        Some("sysv") => RegionKind::Sysv,
        Some("posix") => RegionKind::Posix,
        Some("memfd") => RegionKind::Memfd,
        Some("file") => RegionKind::File,
        _ => RegionKind::Anon,
    }
}

/// The human name in a region id (posix name, memfd name, file path).
pub fn region_name(id: &str) -> Option<String> {
    if let Some(n) = id.strip_prefix("posix:") {
        return Some(n.to_string());
    }
    if let Some(rest) = id.strip_prefix("memfd:") {
        return rest.rsplit_once(':').map(|(n, _)| n.to_string());
    }
    id.strip_prefix("file:").map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_ids() {
        assert_eq!(pipe_id(0), "pipe:[0]");
        assert_eq!(pipe_id(123_456), "pipe:[123456]");
        assert_eq!(pipe_id(u64::MAX), format!("pipe:[{}]", u64::MAX));
        assert_eq!(fifo_id(8, 1, 77), "fifo:[8:1:77]");
        assert_eq!(unix_id(0, None), "unix:[0]");
        assert_eq!(unix_id(12, Some(345)), "unix:[12-345]");
        assert_eq!(
            unix_id(u64::MAX, Some(u64::MAX)),
            format!("unix:[{}-{}]", u64::MAX, u64::MAX)
        );
    }
}
