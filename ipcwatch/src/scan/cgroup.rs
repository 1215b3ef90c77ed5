//! Where a process runs: its cgroup on the unified (v2) hierarchy, the
//! container or systemd unit named by that cgroup's path, and its pid in
//! its own pid namespace.
//!
//! The kernel reports cgroup ids (`bpf_get_current_cgroup_id`) in the
//! process lifecycle events only; [`Cgroups`] turns each id into its path
//! once (a file handle on the unified hierarchy's mount: the id is the
//! handle) and keeps it. Processes found at start are read from
//! /proc/PID/cgroup instead. Cgroup paths are chosen by whoever creates the
//! cgroup: they are kept as text and sanitized where shown.

use std::fs;
use std::io::{self, BufRead as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};

use foldhash::HashMap;

use crate::record::{Container, Origin, Text};
use crate::scan::runtime::Names;
use crate::text::{clean, clean_path};

/// Cache entries kept before the cache starts over (cgroups come and go
/// with containers and sessions).
const MAX_CACHED: usize = 16_384;

/// The container or unit a cgroup path names (the `cgroup` and `nspid`
/// fields of the result are left to the caller).
pub fn classify(path: &str) -> Origin {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    // The deepest component that names a container wins: runtimes nest
    // their own cgroups (a `container` or `init.scope` below the scope).
    for (i, part) in parts.iter().enumerate().rev() {
        let parent = i.checked_sub(1).map(|j| parts[j]);
        if let Some(container) = container_of(part, parent) {
            return Origin {
                container: Some(container),
                ..Origin::default()
            };
        }
    }
    let unit = parts
        .iter()
        .rev()
        .find(|p| p.ends_with(".service") || p.ends_with(".scope"))
        .map(|p| Text::from(*p));
    Origin {
        unit,
        ..Origin::default()
    }
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A container named by one cgroup path component (`parent` is the one
/// above it).
fn container_of(part: &str, parent: Option<&str>) -> Option<Container> {
    let scoped = part.strip_suffix(".scope").unwrap_or(part);
    // Prefixed layouts: systemd scopes ("docker-ID.scope") and podman's
    // cgroupfs layout ("libpod_parent/libpod-ID"). The runtimes' monitor
    // processes ("libpod-conmon-ID", "crio-conmon-ID") are not the
    // container.
    const PREFIXES: [(&str, &str); 4] = [
        ("docker-", "docker"),
        ("libpod-", "podman"),
        ("cri-containerd-", "containerd"),
        ("crio-", "crio"),
    ];
    for (prefix, runtime) in PREFIXES {
        if let Some(id) = scoped.strip_prefix(prefix)
            && is_id(id)
        {
            return Some(Container {
                id: Text::from(id),
                runtime: Text::from(runtime),
                ..Container::default()
            });
        }
    }
    // Bare ids: "/docker/ID" (docker on cgroupfs), "/kubepods/.../podUID/ID"
    // (a CRI runtime on cgroupfs: which one the path does not say).
    if is_id(part) {
        let runtime = match parent {
            Some("docker") => "docker",
            Some(p) if p.starts_with("pod") => "cri",
            _ => return None,
        };
        return Some(Container {
            id: Text::from(part),
            runtime: Text::from(runtime),
            ..Container::default()
        });
    }
    None
}

/// The unified hierarchy's cgroup path of `pid`, from /proc/PID/cgroup
/// (the "0::" line; on a hybrid layout the v1 lines come first).
pub fn cgroup_of(pid: u32) -> Option<String> {
    let file = fs::File::open(format!("/proc/{pid}/cgroup")).ok()?;
    io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
}

/// `pid` as its own pid namespace numbers it (the last NSpid entry of
/// /proc/PID/status), when that differs from `pid`.
pub fn nspid_of(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    let inner: u32 = line.split_whitespace().last()?.parse().ok()?;
    (inner != pid).then_some(inner)
}

/// The origin of a process found at start (or whose cgroup is known by
/// path): cgroup, container or unit, and its pid inside a container.
pub fn origin_of_path(path: &str, pid: u32) -> Origin {
    let mut o = classify(path);
    o.cgroup = Some(path.to_owned());
    if o.container.is_some() {
        o.nspid = nspid_of(pid);
    }
    o
}

/// The origin of a process running now, from /proc.
pub fn origin_of_pid(pid: u32) -> Origin {
    match cgroup_of(pid) {
        Some(path) => origin_of_path(&path, pid),
        None => Origin::default(),
    }
}

/// Where the unified (cgroup2) hierarchy is mounted, from
/// /proc/self/mountinfo (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a
/// hybrid layout).
pub fn unified_mount() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    unified_mount_in(&info)
}

fn unified_mount_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        // Fields: id parent major:minor root mount-point ...
        let mut f = left.split_whitespace();
        let root = f.nth(3)?;
        let point = f.next()?;
        // Only a mount of the whole hierarchy maps ids to full paths.
        (root == "/").then(|| PathBuf::from(unescape_octal(point)))
    })
}

/// mountinfo writes space, tab, newline and backslash as \ooo.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(oct) = s.get(i + 1..i + 4)
            && let Ok(v) = u8::from_str_radix(oct, 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A cgroup chosen with `--cgroup` or `--container`: processes in it or
/// below it are traced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Its id (the directory's inode number on the unified hierarchy).
    pub id: u64,
    /// Its path below the hierarchy's root ("/libpod_parent/libpod-...").
    pub path: String,
}

impl Selected {
    /// Is a process whose cgroup is `path` in this cgroup or below it?
    pub fn holds(&self, path: &str) -> bool {
        path == self.path
            || self.path == "/"
            || path
                .strip_prefix(&*self.path)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// Directories looked at, at most, when searching for a container's
/// cgroup.
const MAX_WALK: usize = 200_000;

/// The cgroup `arg` names: a path below the unified hierarchy's root
/// ("/system.slice/foo.service"), or below its mount point
/// ("/sys/fs/cgroup/unified/system.slice/foo.service").
pub fn select_cgroup(arg: &str) -> Result<Selected, String> {
    use std::os::unix::fs::MetadataExt as _;
    let mount = unified_mount()
        .ok_or("no cgroup2 (unified) hierarchy is mounted: cgroups cannot be told apart")?;
    let given = Path::new(arg);
    let rel = given.strip_prefix(&mount).unwrap_or(given);
    if rel.components().any(|c| {
        matches!(
            c,
            std::path::Component::ParentDir | std::path::Component::CurDir
        )
    }) {
        return Err(format!(
            "--cgroup {}: give the path without `.` or `..`",
            clean(arg)
        ));
    }
    let rel = rel.to_string_lossy();
    let path = format!("/{}", rel.trim_start_matches('/').trim_end_matches('/'));
    let dir = mount.join(path.trim_start_matches('/'));
    let meta = fs::metadata(&dir).map_err(|e| {
        format!(
            "--cgroup {}: no such cgroup ({}: {e})",
            clean(arg),
            clean_path(&dir)
        )
    })?;
    if !meta.is_dir() {
        return Err(format!("--cgroup {}: not a cgroup directory", clean(arg)));
    }
    Ok(Selected {
        id: meta.ino(),
        path,
    })
}

/// The cgroups of the running container `arg` names: a prefix of its id
/// (at least 4 hex digits), or its name as podman or docker know it.
pub fn select_container(arg: &str) -> Result<Vec<Selected>, String> {
    let mount = unified_mount()
        .ok_or("no cgroup2 (unified) hierarchy is mounted: containers cannot be told apart")?;
    let hex = arg.len() >= 4 && arg.bytes().all(|b| b.is_ascii_hexdigit());
    let mut found = if hex {
        containers_below(&mount, &arg.to_ascii_lowercase())
    } else {
        Vec::new()
    };
    if found.is_empty()
        && let Some(id) = runtime_id_of(arg)
    {
        found = containers_below(&mount, &id);
    }
    if found.is_empty() {
        return Err(format!(
            "--container {}: no running container has that id or name (searched the cgroups of docker, podman, containerd and CRI-O under {}, and asked podman and docker for the name)",
            clean(arg),
            clean_path(&mount)
        ));
    }
    let ids: std::collections::BTreeSet<&str> = found
        .iter()
        .filter_map(|(_, c)| Some(&*c.container.as_ref()?.id))
        .collect();
    if ids.len() > 1 {
        return Err(format!(
            "--container {}: {} containers have ids starting so; give more digits",
            clean(arg),
            ids.len()
        ));
    }
    Ok(found.into_iter().map(|(s, _)| s).collect())
}

/// Container cgroups under `mount` whose id starts with `prefix` (the
/// outermost cgroup of each: what is below it is held by it).
fn containers_below(mount: &Path, prefix: &str) -> Vec<(Selected, Origin)> {
    use std::os::unix::fs::MetadataExt as _;
    let mut out = Vec::new();
    let mut todo = vec![(mount.to_path_buf(), String::new())];
    let mut seen = 0;
    while let Some((dir, path)) = todo.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > MAX_WALK {
                return out;
            }
            let Ok(meta) = e.metadata() else { continue };
            if !meta.is_dir() {
                continue;
            }
            let sub = format!("{path}/{}", e.file_name().to_string_lossy());
            let o = classify(&sub);
            match &o.container {
                Some(c) if c.id.starts_with(prefix) => out.push((
                    Selected {
                        id: meta.ino(),
                        path: sub,
                    },
                    o,
                )),
                _ => todo.push((e.path(), sub)),
            }
        }
    }
    out
}

/// How long a runtime's command may take to name a container.
const RUNTIME_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The full id of the container named `name`, as podman or docker (the
/// first that knows it) reports it.
fn runtime_id_of(name: &str) -> Option<String> {
    use std::process::{Command, Stdio};
    for runtime in ["podman", "docker"] {
        let Ok(mut child) = Command::new(runtime)
            .args(["container", "inspect", "--format", "{{.Id}}", "--", name])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
        else {
            continue;
        };
        let start = std::time::Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if start.elapsed() < RUNTIME_TIMEOUT => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        if !status.is_some_and(|s| s.success()) {
            continue;
        }
        let mut out = String::new();
        if let Some(stdout) = child.stdout.take() {
            use std::io::Read as _;
            let _ = stdout.take(4096).read_to_string(&mut out);
        }
        let id = out.trim();
        if is_id(id) {
            return Some(id.to_owned());
        }
    }
    None
}

/// Cgroup id -> origin, resolved once per id.
#[derive(Debug, Default)]
pub struct Cgroups {
    mount: Option<(PathBuf, OwnedFd)>,
    opened: bool,
    cache: HashMap<u64, Origin>,
    /// Containers' names and images, from their runtimes.
    pub names: Names,
}

impl Cgroups {
    pub fn new() -> Self {
        Self::default()
    }

    /// The origin of cgroup `id` (without `nspid`). Unknown ids (0, or a
    /// cgroup removed before it was looked up) give an empty origin.
    pub fn resolve(&mut self, id: u64) -> Origin {
        if id == 0 {
            return Origin::default();
        }
        if let Some(o) = self.cache.get(&id) {
            let mut o = o.clone();
            self.name(&mut o);
            return o;
        }
        let origin = match self.path_of(id) {
            Some(path) => {
                let mut o = classify(&path);
                o.cgroup = Some(path);
                o
            }
            None => Origin::default(),
        };
        if self.cache.len() >= MAX_CACHED {
            self.cache.clear();
        }
        self.cache.insert(id, origin.clone());
        let mut origin = origin;
        self.name(&mut origin);
        origin
    }

    /// Name `o`'s container if its runtime answered already, and ask it
    /// otherwise (in the background).
    pub fn name(&mut self, o: &mut Origin) {
        if let Some(c) = &mut o.container {
            self.names.fill(c);
            if c.name.is_none() {
                self.names.request(c);
            }
        }
    }

    fn mount(&mut self) -> Option<&(PathBuf, OwnedFd)> {
        if !self.opened {
            self.opened = true;
            self.mount = unified_mount().and_then(|p| {
                let dir = fs::File::open(&p)
                    .inspect_err(|e| tracing::debug!("cgroup2 mount {}: {e}", p.display()))
                    .ok()?;
                Some((p, OwnedFd::from(dir)))
            });
        }
        self.mount.as_ref()
    }

    /// The path of cgroup `id` below the hierarchy's root: on cgroup2 a
    /// cgroup's id is its file handle (as for `name_to_handle_at`), so the
    /// directory opens by handle and its /proc/self/fd link is the path.
    fn path_of(&mut self, id: u64) -> Option<String> {
        let (root, dir) = self.mount()?;
        let fd = open_by_id(dir, id)
            .inspect_err(|e| tracing::debug!("cgroup {id}: {e}"))
            .ok()?;
        let link = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
        relative(&link, root)
    }
}

/// `link` below `root`, as a cgroup path ("/" for the root itself).
fn relative(link: &Path, root: &Path) -> Option<String> {
    let rest = link.strip_prefix(root).ok()?;
    Some(format!("/{}", rest.to_string_lossy()))
}

/// `struct file_handle` with room for a kernfs handle (the 64-bit id).
#[repr(C)]
struct KernfsHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; 8],
}

/// `FILEID_KERNFS`: the handle type of cgroupfs directories.
const FILEID_KERNFS: i32 = 0xfe;

fn open_by_id(mount: &OwnedFd, id: u64) -> io::Result<OwnedFd> {
    let mut handle = KernfsHandle {
        handle_bytes: 8,
        handle_type: FILEID_KERNFS,
        f_handle: id.to_ne_bytes(),
    };
    // SAFETY: `handle` is a valid file_handle of 8 handle bytes, living
    // across the call; the descriptor returned is owned below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount.as_raw_fd(),
            &raw mut handle,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("descriptor out of range"))?;
    // SAFETY: a descriptor the kernel just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "04d6d93bf4dfcb60cc9f0b2c6ac5bcdf11588d1ebdc5b8573a799a100c8b6382";

    fn container(path: &str) -> Option<(String, String)> {
        classify(path)
            .container
            .map(|c| (c.id.to_string(), c.runtime.to_string()))
    }

    fn is(runtime: &str) -> Option<(String, String)> {
        Some((ID.to_owned(), runtime.to_owned()))
    }

    #[test]
    fn docker_layouts() {
        assert_eq!(container(&format!("/docker/{ID}")), is("docker"));
        assert_eq!(
            container(&format!("/system.slice/docker-{ID}.scope")),
            is("docker")
        );
        // A nested cgroup below the container's own.
        assert_eq!(
            container(&format!("/system.slice/docker-{ID}.scope/init.scope")),
            is("docker")
        );
    }

    #[test]
    fn podman_layouts() {
        assert_eq!(
            container(&format!("/libpod_parent/libpod-{ID}")),
            is("podman")
        );
        assert_eq!(
            container(&format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"
            )),
            is("podman")
        );
        assert_eq!(
            container(&format!("/machine.slice/libpod-{ID}.scope")),
            is("podman")
        );
        // conmon, the monitor, is not in the container.
        let conmon = classify(&format!("/machine.slice/libpod-conmon-{ID}.scope"));
        assert_eq!(conmon.container, None);
        assert_eq!(
            conmon.unit.as_deref(),
            Some(&*format!("libpod-conmon-{ID}.scope"))
        );
    }

    #[test]
    fn cri_layouts() {
        assert_eq!(
            container(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f5d1c1e_9b2a_4c7e_8f3e_1a2b3c4d5e6f.slice/cri-containerd-{ID}.scope"
            )),
            is("containerd")
        );
        assert_eq!(
            container(&format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234.slice/crio-{ID}.scope"
            )),
            is("crio")
        );
        assert_eq!(
            container(&format!(
                "/kubepods/burstable/pod0f5d1c1e-9b2a-4c7e-8f3e-1a2b3c4d5e6f/{ID}"
            )),
            is("cri")
        );
        assert_eq!(
            classify(&format!(
                "/kubepods.slice/kubepods-pod1.slice/crio-conmon-{ID}.scope"
            ))
            .container,
            None
        );
    }

    #[test]
    fn units_outside_containers() {
        assert_eq!(
            classify("/system.slice/ssh.service").unit.as_deref(),
            Some("ssh.service")
        );
        assert_eq!(
            classify("/user.slice/user-1000.slice/session-3.scope")
                .unit
                .as_deref(),
            Some("session-3.scope")
        );
        assert_eq!(
            classify("/user.slice/user-1000.slice/user@1000.service/app.slice/app-foo.scope")
                .unit
                .as_deref(),
            Some("app-foo.scope")
        );
        assert!(classify("/").is_empty());
        assert!(classify("/process_api/e9cc98c3874d275b2ed848135a0d0257").is_empty());
        // Not 64 hex digits: not a container id.
        assert_eq!(container("/docker/abc"), None);
        assert_eq!(container(&format!("/docker/{}", &ID[..63])), None);
        assert_eq!(container(&format!("/other/{ID}")), None);
    }

    #[test]
    fn hostile_paths_stay_text() {
        let o = classify("/a\u{1b}[2J.service");
        assert_eq!(o.unit.as_deref(), Some("a\u{1b}[2J.service"));
        assert_eq!(container(&format!("/docker-{ID}\n.scope")), None);
    }

    #[test]
    fn finds_the_unified_mount() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                      32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            unified_mount_in(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let v2 = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(unified_mount_in(v2), Some(PathBuf::from("/sys/fs/cgroup")));
        // A container's view (root is not the hierarchy's root): unusable.
        let inner = "30 23 0:26 /libpod_parent/x /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
        assert_eq!(unified_mount_in(inner), None);
        let spaced = "30 23 0:26 / /mnt/c\\040g rw - cgroup2 cgroup2 rw\n";
        assert_eq!(unified_mount_in(spaced), Some(PathBuf::from("/mnt/c g")));
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        // Every Linux process has a unified line (possibly "/").
        let path = cgroup_of(me).expect("0:: line");
        assert!(path.starts_with('/'), "{path}");
        // Not in a container here: no inner pid.
        assert_eq!(origin_of_pid(me).cgroup.as_deref(), Some(&*path));
    }

    #[test]
    fn a_selected_cgroup_holds_its_subtree() {
        let s = Selected {
            id: 7,
            path: "/a/b".into(),
        };
        assert!(s.holds("/a/b"));
        assert!(s.holds("/a/b/c"));
        assert!(!s.holds("/a/bc"));
        assert!(!s.holds("/a"));
        let root = Selected {
            id: 1,
            path: "/".into(),
        };
        assert!(root.holds("/x"));
    }

    #[test]
    fn selects_a_cgroup_by_path_and_refuses_others() {
        let mount = unified_mount().expect("a cgroup2 mount");
        let me = cgroup_of(std::process::id()).expect("0:: line");
        let s = select_cgroup(&me).unwrap();
        assert_eq!(s.path, me);
        // The same, through the mount point.
        let full = mount.join(me.trim_start_matches('/'));
        assert_eq!(select_cgroup(&full.to_string_lossy()).unwrap(), s);
        let err = select_cgroup("/no/such/cgroup/x").unwrap_err();
        assert!(err.contains("no such cgroup"), "{err}");
        let err = select_cgroup("/a/../b").unwrap_err();
        assert!(err.contains("`..`"), "{err}");
        let err = select_container("0123456789abcdef0123").unwrap_err();
        assert!(err.contains("no running container"), "{err}");
    }

    #[test]
    fn resolves_an_id_to_its_path() {
        use std::os::unix::fs::MetadataExt as _;
        let me = std::process::id();
        let path = cgroup_of(me).expect("0:: line");
        let mount = unified_mount().expect("a cgroup2 mount");
        // The cgroup's id is its directory's inode number.
        let id = fs::metadata(mount.join(path.trim_start_matches('/')))
            .expect("the cgroup directory")
            .ino();
        let mut cgroups = Cgroups::new();
        assert_eq!(cgroups.resolve(id).cgroup.as_deref(), Some(&*path));
        // Cached: the same answer again.
        assert_eq!(cgroups.resolve(id).cgroup.as_deref(), Some(&*path));
        assert!(cgroups.resolve(0).is_empty());
    }
}
