//! Shared memory that exists before the start: SysV segments
//! (/proc/sysvipc/shm) and the shared mappings in /proc/PID/maps, as
//! `existing` region and mapping records.

use std::collections::HashSet;
use std::fs;

use procfs::FromBufRead;
use procfs::process::MemoryMaps;

use crate::ids::{kdev, region_kind, region_name};
use crate::record::{MappingEvent, MappingLine, Record, RegionEvent, RegionLine, Text};

pub const DEV_SHM: &str = "/dev/shm/";

/// One line of /proc/<pid>/maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapsLine {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub offset: u64,
    pub major: u32,
    pub minor: u32,
    pub ino: u64,
    pub path: String,
}

/// One line of /proc/PID/maps: procfs-core parses the address range,
/// permissions, offset, device and inode; the path stays the text the
/// kernel wrote. procfs's `MMapPath` trims trailing blanks off a file
/// name (region ids must match the path the probes report) and panics on
/// a path that starts with "/SYSV" but is shorter than the kernel's
/// "/SYSV%08x" (it slices `[5..13]`), which any file can be named.
pub fn parse_maps_line(line: &str) -> Option<MapsLine> {
    // The path begins after the space that follows the inode.
    let path_at = line.match_indices(' ').nth(4)?.0 + 1;
    let (fields, path) = line.split_at(path_at);
    let map = MemoryMaps::from_buf_read(fields.as_bytes())
        .ok()?
        .into_iter()
        .next()?;
    Some(MapsLine {
        start: map.address.0,
        end: map.address.1,
        perms: map.perms.as_str(),
        offset: map.offset,
        major: map.dev.0 as u32,
        minor: map.dev.1 as u32,
        ino: map.inode,
        path: path.trim_start().to_string(),
    })
}

/// The region id of a shared mapping as /proc/<pid>/maps shows it.
pub fn region_of_maps_line(l: &MapsLine) -> Option<Text> {
    let path = l.path.strip_suffix(" (deleted)").unwrap_or(&l.path);
    if path.starts_with("/SYSV") {
        return Some(compact_str::format_compact!("sysv:{}", l.ino));
    }
    if let Some(name) = path.strip_prefix(DEV_SHM) {
        return Some(compact_str::format_compact!("posix:/{name}"));
    }
    if let Some(name) = path.strip_prefix("/memfd:") {
        return Some(compact_str::format_compact!("memfd:{name}:{}", l.ino));
    }
    if path == "/dev/zero" || path.is_empty() {
        let dev = kdev(l.major, l.minor);
        return Some(compact_str::format_compact!("anon:{dev}:{}", l.ino));
    }
    if path.starts_with('/') {
        return Some(compact_str::format_compact!("file:{path}"));
    }
    None
}

/// The mappings of `pid` (none once it has exited). Parsed line by line
/// with [`parse_maps_line`], not with `Process::maps()`: that one keeps
/// procfs's `MMapPath` (see there) and gives up on the whole file for one
/// line it cannot parse.
pub fn read_maps(pid: u32) -> Vec<MapsLine> {
    fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|t| t.lines().filter_map(parse_maps_line).collect())
        .unwrap_or_default()
}

/// One SysV segment from /proc/sysvipc/shm: (key, shmid, size, cpid).
///
/// Read by hand, not with procfs 0.18's `SharedMemorySegments`: that one
/// parses the uid and gid columns as u16 and fails the whole file when one
/// segment belongs to a uid above 65535 (a container's, for instance).
pub fn sysv_segments() -> Vec<(i64, i64, u64, u32)> {
    let Ok(text) = fs::read_to_string("/proc/sysvipc/shm") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            Some((
                w.first()?.parse().ok()?,
                w.get(1)?.parse().ok()?,
                w.get(3)?.parse().ok()?,
                w.get(4)?.parse().ok()?,
            ))
        })
        .collect()
}

pub fn region_line(ts: u64, event: RegionEvent, id: Text, size: u64) -> RegionLine {
    RegionLine {
        ts_ns: ts,
        event,
        kind: region_kind(&id),
        region: id,
        size,
        name: None,
        pid: None,
        comm: None,
    }
}

/// Records for the SysV segments that exist now (`existing`).
pub fn scan_sysv(ts: u64, out: &mut Vec<Record>) {
    for (key, shmid, size, cpid) in sysv_segments() {
        let mut l = region_line(
            ts,
            RegionEvent::Existing,
            compact_str::format_compact!("sysv:{shmid}"),
            size,
        );
        if key != 0 {
            l.name = Some(format!("key {key:#x}"));
        }
        l.pid = Some(cpid);
        out.push(Record::Region(l));
    }
}

/// Records for the shared mappings of `pid` that exist now: a region line
/// the first time a region is seen (tracked in `seen`), then a mapping
/// line per shared mapping.
pub fn scan_maps(pid: u32, comm: &Text, ts: u64, seen: &mut HashSet<Text>, out: &mut Vec<Record>) {
    for l in read_maps(pid) {
        if l.perms.as_bytes().get(3) != Some(&b's') {
            continue;
        }
        let Some(id) = region_of_maps_line(&l) else {
            continue;
        };
        if seen.insert(id.clone()) {
            let mut r = region_line(ts, RegionEvent::Existing, id.clone(), 0);
            r.size = fs::metadata(format!("/proc/{pid}/map_files/{:x}-{:x}", l.start, l.end))
                .map(|m| m.len())
                .unwrap_or(0);
            r.name = region_name(&id);
            out.push(Record::Region(r));
        }
        let prot: String = l.perms.chars().take(3).filter(|c| *c != '-').collect();
        out.push(Record::Mapping(MappingLine {
            ts_ns: ts,
            event: MappingEvent::Existing,
            region: id,
            pid,
            comm: comm.clone(),
            start: l.start,
            end: l.end,
            offset: l.offset,
            prot: prot.into(),
        }));
    }
}

/// Regions and mappings that exist now: every SysV segment, and the
/// shared mappings of the processes of a /proc scan (`existing` lines).
pub fn scan_existing(found: &[Record], ts: u64) -> Vec<Record> {
    let mut out = Vec::new();
    scan_sysv(ts, &mut out);
    let mut seen: HashSet<Text> = out
        .iter()
        .filter_map(|r| match r {
            Record::Region(l) => Some(l.region.clone()),
            _ => None,
        })
        .collect();
    for r in found {
        if let Record::Process(p) = r {
            scan_maps(p.pid, &p.comm, ts, &mut seen, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_name_their_regions() {
        let l = parse_maps_line(
            "7f0000000000-7f0000001000 rw-s 00000000 00:01 32770                      /SYSV00000000 (deleted)",
        )
        .unwrap();
        assert_eq!(region_of_maps_line(&l).unwrap(), "sysv:32770");
        let l = parse_maps_line("7f0000000000-7f0000002000 rw-s 00001000 00:1a 12 /dev/shm/ipcw")
            .unwrap();
        assert_eq!((l.offset, l.end - l.start), (0x1000, 0x2000));
        assert_eq!(region_of_maps_line(&l).unwrap(), "posix:/ipcw");
        let l =
            parse_maps_line("1000-2000 rw-s 00000000 00:01 2049 /memfd:ring (deleted)").unwrap();
        assert_eq!(region_of_maps_line(&l).unwrap(), "memfd:ring:2049");
        let l = parse_maps_line("1000-2000 rw-s 00000000 00:01 7 /dev/zero (deleted)").unwrap();
        assert_eq!(region_of_maps_line(&l).unwrap(), "anon:1:7");
        let l = parse_maps_line("1000-2000 r--s 00000000 08:01 99 /var/db/x y").unwrap();
        assert_eq!(region_of_maps_line(&l).unwrap(), "file:/var/db/x y");
    }

    #[test]
    fn maps_paths_stay_as_the_kernel_wrote_them() {
        // A file name with a trailing blank, and one that starts like a
        // SysV segment without being one (procfs's MMapPath would trim the
        // first and panic on the second).
        let l = parse_maps_line("1000-2000 rw-s 00000000 08:01 5 /tmp/a file ").unwrap();
        assert_eq!(region_of_maps_line(&l).unwrap(), "file:/tmp/a file ");
        let l = parse_maps_line("1000-2000 rw-s 00000000 08:01 6 /SYSVx").unwrap();
        assert_eq!(l.path, "/SYSVx");
        let l = parse_maps_line("7f00-7f01 rw-p 00000000 00:00 0 ").unwrap();
        assert_eq!((l.start, l.end, l.path.as_str()), (0x7f00, 0x7f01, ""));
        assert_eq!(l.perms, "rw-p");
        assert!(parse_maps_line("not a maps line").is_none());
    }
}
