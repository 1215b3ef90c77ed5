//! `cargo xtask kernels`: ipcwatch's doctor and root integration tests on
//! Debian's kernels, each booted under QEMU (TCG), with one table out.
//!
//! Each kernel comes from Debian's own packages (`linux-image-*-unsigned`,
//! fetched with `apt-get download` through a private apt state per suite
//! under target/kernels/apt, and cached under target/kernels). The guest
//! boots from one initramfs built here: busybox, an /init, ipcwatch,
//! ipcwatch-workload, the test binaries and the shared libraries they
//! load, at the paths they have on this machine. No module has to be
//! loaded and no file system shared, so the same initramfs boots every
//! kernel, whatever its config (Debian's cloud kernels have no 9p).
//! docs/kernels.md says why, and holds the table of the last full run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::cmd::{cargo, output, root, run, show};

mod cost;

/// One kernel of the matrix: a Debian suite and a flavour of its
/// `linux-image-<flavour>` meta-package.
#[derive(Clone, Copy)]
pub struct Kernel {
    pub suite: &'static str,
    pub debian: &'static str,
    pub flavour: &'static str,
}

/// Every amd64 kernel Debian's archive serves from deb.debian.org
/// (docs/kernels.md lists what is left out and why).
pub const MATRIX: [Kernel; 6] = [
    Kernel {
        suite: "bullseye",
        debian: "11",
        flavour: "amd64",
    },
    Kernel {
        suite: "bullseye",
        debian: "11",
        flavour: "cloud-amd64",
    },
    Kernel {
        suite: "bookworm",
        debian: "12",
        flavour: "amd64",
    },
    Kernel {
        suite: "bookworm",
        debian: "12",
        flavour: "cloud-amd64",
    },
    Kernel {
        suite: "trixie",
        debian: "13",
        flavour: "amd64",
    },
    Kernel {
        suite: "trixie",
        debian: "13",
        flavour: "cloud-amd64",
    },
];

/// The root integration test groups of the full matrix.
const GROUPS: [&str; 5] = ["pipes", "sockets", "shm", "races", "faults"];

/// The fast subset CI runs: doctor, one pipes test and one race test
/// (a whole group takes tens of minutes under TCG: docs/kernels.md). The
/// race test is the pipe-interleave finding, not a shared-memory
/// collision: under QEMU's TCG a hardware watchpoint attaches but never
/// traps (measured: windows opened, 0 traps), so no collision can be
/// seen in a guest.
const FAST: [(&str, Option<&str>); 2] = [
    (
        "pipes",
        Some("parent_writes_3_times_1000_bytes_to_its_child"),
    ),
    ("races", Some("pipe_writers_of_64k_records_interleave")),
];

/// Tests that only pass when a hardware watchpoint traps: the race
/// detector's collisions and `--deep`'s sampled writes. A guest whose
/// doctor says `hw watchpoint NO` (it attached but trapped nothing, as
/// under TCG) runs its group without them and the table says so.
const NEEDS_TRAPS: [(&str, &str); 7] = [
    ("races", "racy_shared_anonymous_memory"),
    ("races", "racy_memfd"),
    ("races", "racy_sysv_shm"),
    ("races", "racy_posix_shm_between_unrelated_processes"),
    (
        "races",
        "record_fail_on_race_exits_3_only_when_a_race_was_found",
    ),
    ("races", "deep_mode_flags_writes_that_nothing_orders"),
    (
        "races",
        "deep_mode_orders_a_childs_writes_before_its_parents_wait",
    ),
];

#[derive(Args)]
pub struct KernelsArgs {
    /// Only the kernels whose name contains this (e.g. `12-cloud`).
    #[arg(long)]
    pub only: Option<String>,
    /// The fast subset (doctor, pipes, one race test), as CI runs it.
    #[arg(long)]
    pub fast: bool,
    /// Only `ipcwatch doctor` in each kernel (no test group).
    #[arg(long, conflicts_with = "fast")]
    pub doctor_only: bool,
    /// Time the ping-pongs under each kind of empty hook (raw tracepoint,
    /// tp_btf, fentry, fexit, kprobe, kretprobe) and under ipcwatch, in
    /// each kernel; the table goes to docs/kernels.md.
    #[arg(long, conflicts_with_all = ["fast", "doctor_only"])]
    pub hook_cost: bool,
    /// Only these groups of the full matrix (e.g. `--group pipes`).
    #[arg(long, conflicts_with_all = ["fast", "doctor_only", "hook_cost"])]
    pub group: Vec<String>,
    /// Only the tests whose name contains this, in each group run.
    #[arg(long, conflicts_with_all = ["fast", "doctor_only", "hook_cost"])]
    pub test: Option<String>,
    /// Run this shell command in each guest after doctor (the binaries
    /// are at their paths on this machine; `$IPCWATCH` and `$WORKLOAD`
    /// name them) and print the guest's console, instead of the groups.
    #[arg(long, conflicts_with_all = ["fast", "doctor_only", "hook_cost", "group", "test"])]
    pub run: Option<String>,
    /// The guest kernel's console log level (4 by default: warnings;
    /// 7 shows the stacks of a soft lockup).
    #[arg(long, default_value_t = 4)]
    pub loglevel: u8,
    /// Do not rewrite the table in docs/kernels.md.
    #[arg(long)]
    pub no_docs: bool,
}

/// A kernel, extracted: its image and its release.
pub struct Fetched {
    name: String,
    release: String,
    vmlinuz: PathBuf,
}

fn kernels_dir() -> PathBuf {
    root().join("target/kernels")
}

impl Kernel {
    pub fn name(&self) -> String {
        let f = self.flavour.trim_end_matches("amd64").trim_end_matches('-');
        if f.is_empty() {
            format!("debian-{}", self.debian)
        } else {
            format!("debian-{}-{f}", self.debian)
        }
    }

    /// apt-get or apt-cache with this suite's private state (the host's
    /// apt sources and lists are neither read nor changed).
    fn apt(&self, tool: &str) -> Result<Command> {
        let dir = kernels_dir().join("apt").join(self.suite);
        fs::create_dir_all(dir.join("lists/partial"))?;
        fs::create_dir_all(dir.join("cache/archives/partial"))?;
        let list = dir.join("sources.list");
        fs::write(
            &list,
            format!(
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
                 http://deb.debian.org/debian {} main\n",
                self.suite
            ),
        )?;
        let mut c = Command::new(tool);
        for (k, v) in [
            ("Dir::Etc::SourceList", list.clone()),
            ("Dir::Etc::SourceParts", PathBuf::from("/dev/null")),
            ("Dir::State::Lists", dir.join("lists")),
            ("Dir::Cache", dir.join("cache")),
            ("Dir::State::status", PathBuf::from("/dev/null")),
        ] {
            c.arg("-o").arg(format!("{k}={}", v.display()));
        }
        c.args([
            "-o",
            "APT::Architecture=amd64",
            "-o",
            "Debug::NoLocking=1",
            "-o",
            "APT::Sandbox::User=root",
            "-q",
        ]);
        Ok(c)
    }

    /// The newest kernel of this suite and flavour, downloaded and
    /// extracted once; a cached one when the archive cannot be reached.
    pub fn fetch(&self) -> Result<Fetched> {
        let name = self.name();
        let cache = kernels_dir().join(&name);
        let lists = kernels_dir().join("apt").join(self.suite).join("lists");
        let fresh = fs::metadata(&lists)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age < Duration::from_secs(24 * 3600))
            && fs::read_dir(&lists).is_ok_and(|d| d.count() > 2);
        let resolved = (|| -> Result<String> {
            if !fresh {
                run(self.apt("apt-get")?.arg("update"))?;
                // The directory's time says when the lists were fetched.
                File::open(&lists)?.set_modified(std::time::SystemTime::now())?;
            }
            let meta = format!("linux-image-{}", self.flavour);
            let deps = output(self.apt("apt-cache")?.args(["depends", &meta]))?;
            deps.lines()
                .filter_map(|l| l.trim().strip_prefix("Depends: "))
                .find(|p| p.starts_with("linux-image-"))
                .map(|p| format!("{}-unsigned", p.trim()))
                .with_context(|| format!("{meta} in {} depends on no kernel image", self.suite))
        })();
        let package = match resolved {
            Ok(p) => p,
            Err(e) => match cached(&cache) {
                Some(f) => {
                    eprintln!(
                        "warning: {name}: the archive cannot be reached ({e:#}); using the cached {}",
                        f.release
                    );
                    return Ok(f);
                }
                None => return Err(e.context(format!("{name}: no kernel to boot"))),
            },
        };
        let stamp = cache.join("package");
        if fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == package)
            && let Some(f) = cached(&cache)
        {
            return Ok(f);
        }
        eprintln!("xtask: fetching {package} ({name})");
        let debs = kernels_dir().join("debs");
        fs::create_dir_all(&debs)?;
        run(self
            .apt("apt-get")?
            .args(["download", &package])
            .current_dir(&debs))?;
        let deb = fs::read_dir(&debs)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{package}_")))
            })
            .with_context(|| format!("apt-get download {package} left no .deb in {debs:?}"))?;
        if cache.exists() {
            fs::remove_dir_all(&cache)?;
        }
        fs::create_dir_all(&cache)?;
        // Only /boot: the image and its config (the guest loads no module).
        let tar = format!(
            "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' ./boot",
            deb.display(),
            cache.display()
        );
        run(Command::new("sh").args(["-c", &tar]))?;
        fs::remove_file(&deb)?;
        fs::write(&stamp, format!("{package}\n"))?;
        cached(&cache).with_context(|| format!("{package} holds no /boot/vmlinuz-*"))
    }
}

fn cached(dir: &Path) -> Option<Fetched> {
    let boot = dir.join("boot");
    let vmlinuz = fs::read_dir(&boot)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })?;
    let release = vmlinuz.file_name()?.to_str()?["vmlinuz-".len()..].to_string();
    Some(Fetched {
        name: dir.file_name()?.to_string_lossy().into_owned(),
        release,
        vmlinuz,
    })
}

/// The binaries the guest runs, built on this machine.
struct Binaries {
    ipcwatch: PathBuf,
    /// (group, test binary)
    tests: Vec<(String, PathBuf)>,
}

fn build(groups: &[&str]) -> Result<Binaries> {
    run(cargo().args([
        "build",
        "--package",
        "ipcwatch",
        "--package",
        "ipcwatch-workload",
        "--bins",
    ]))?;
    let ipcwatch = root().join("target/debug/ipcwatch");
    if groups.is_empty() {
        return Ok(Binaries {
            ipcwatch,
            tests: Vec::new(),
        });
    }
    let mut c = cargo();
    c.args([
        "test",
        "--package",
        "ipcwatch",
        "--no-run",
        "--message-format=json",
    ]);
    for g in groups {
        c.args(["--test", g]);
    }
    c.current_dir(root());
    eprintln!("+ {}", show(&c));
    let out = output(&mut c)?;
    let mut tests = Vec::new();
    for line in out.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(exe), Some(name)) = (v["executable"].as_str(), v["target"]["name"].as_str())
        else {
            continue;
        };
        if v["target"]["kind"][0] == "test" && groups.contains(&name) {
            tests.push((name.to_string(), PathBuf::from(exe)));
        }
    }
    for g in groups {
        if !tests.iter().any(|(n, _)| n == g) {
            bail!("cargo test --no-run built no test binary for {g}");
        }
    }
    Ok(Binaries { ipcwatch, tests })
}

enum Entry {
    Dir,
    File { from: PathBuf, mode: u32 },
    Data { bytes: Vec<u8>, mode: u32 },
}

/// The files of an initramfs, by their path in the guest.
#[derive(Default)]
struct Image {
    entries: BTreeMap<PathBuf, Entry>,
}

impl Image {
    fn dirs(&mut self, path: &Path) {
        for a in path.ancestors().skip(1) {
            if a != Path::new("/") {
                self.entries.entry(a.to_path_buf()).or_insert(Entry::Dir);
            }
        }
    }

    fn file(&mut self, at: &Path, from: &Path) -> Result<()> {
        let mode = fs::metadata(from)
            .with_context(|| format!("{} is missing", from.display()))?
            .permissions()
            .mode()
            & 0o7777;
        self.dirs(at);
        self.entries.insert(
            at.to_path_buf(),
            Entry::File {
                from: fs::canonicalize(from)?,
                mode,
            },
        );
        Ok(())
    }

    fn data(&mut self, at: &str, bytes: Vec<u8>, mode: u32) {
        self.dirs(Path::new(at));
        self.entries
            .insert(PathBuf::from(at), Entry::Data { bytes, mode });
    }

    fn dir(&mut self, at: &str) {
        self.dirs(Path::new(at));
        self.entries.insert(PathBuf::from(at), Entry::Dir);
    }

    /// An executable at its own path, with the shared libraries it loads
    /// (as ldd names them), debug info stripped when `strip`.
    fn executable(&mut self, path: &Path, strip: Option<&Path>) -> Result<()> {
        match strip {
            Some(dir) => {
                let stripped = dir.join(path.file_name().context("no file name")?);
                run(Command::new("objcopy")
                    .arg("--strip-debug")
                    .arg(path)
                    .arg(&stripped))?;
                self.file(path, &stripped)?;
            }
            None => self.file(path, path)?,
        }
        let ldd = Command::new("ldd").arg(path).output()?;
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            let lib = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(lib) = lib.filter(|l| l.starts_with('/')) {
                self.file(Path::new(lib), Path::new(lib))?;
            }
        }
        Ok(())
    }

    /// Write it as a newc cpio archive (uncompressed: the guest unpacks it
    /// under TCG, where decompressing costs more than reading).
    fn write(&self, to: &Path) -> Result<()> {
        let mut w = BufWriter::new(File::create(to)?);
        for (ino, (path, entry)) in (1u32..).zip(&self.entries) {
            let name = path.strip_prefix("/").unwrap_or(path);
            let name = name.to_str().context("non-UTF-8 path")?;
            match entry {
                Entry::Dir => header(&mut w, ino, 0o040755, 0, name)?,
                Entry::Data { bytes, mode } => {
                    header(&mut w, ino, 0o100000 | mode, bytes.len() as u64, name)?;
                    w.write_all(bytes)?;
                    pad(&mut w, bytes.len() as u64)?;
                }
                Entry::File { from, mode } => {
                    let mut f = File::open(from)?;
                    let len = f.metadata()?.len();
                    header(&mut w, ino, 0o100000 | mode, len, name)?;
                    let copied = std::io::copy(&mut (&mut f).take(len), &mut w)?;
                    if copied != len {
                        bail!("{} changed while it was copied", from.display());
                    }
                    pad(&mut w, len)?;
                }
            }
        }
        header(&mut w, 0, 0, 0, "TRAILER!!!")?;
        w.flush()?;
        Ok(())
    }
}

fn header(w: &mut impl Write, ino: u32, mode: u32, size: u64, name: &str) -> Result<()> {
    let size = u32::try_from(size).context("a file over 4 GiB")?;
    let namesize = name.len() + 1;
    write!(
        w,
        "070701{ino:08X}{mode:08X}{:08X}{:08X}{:08X}{:08X}{size:08X}{:08X}{:08X}{:08X}{:08X}{namesize:08X}{:08X}",
        0, 0, 1, 0, 0, 0, 0, 0, 0
    )?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    pad(w, (110 + namesize) as u64)
}

fn pad(w: &mut impl Write, len: u64) -> Result<()> {
    let n = (4 - len % 4) % 4;
    w.write_all(&[0u8; 3][..n as usize])?;
    Ok(())
}

/// Commands the root tests run, put in the guest's /bin from this
/// machine: (name, path here).
const HOST_TOOLS: [(&str, &str); 11] = [
    ("sh", "/usr/bin/dash"),
    ("cat", "/usr/bin/cat"),
    ("head", "/usr/bin/head"),
    ("wc", "/usr/bin/wc"),
    ("yes", "/usr/bin/yes"),
    ("sleep", "/usr/bin/sleep"),
    ("printf", "/usr/bin/printf"),
    ("true", "/usr/bin/true"),
    ("mkfifo", "/usr/bin/mkfifo"),
    ("flock", "/usr/bin/flock"),
    ("timeout", "/usr/bin/timeout"),
];

/// Which tests of a group the guest runs.
#[derive(Clone)]
enum Filter {
    All,
    /// The test of this exact name.
    Exact(String),
    /// The tests whose name contains this.
    Containing(String),
}

impl Filter {
    fn keeps(&self, test: &str) -> bool {
        match self {
            Filter::All => true,
            Filter::Exact(f) => f == test,
            Filter::Containing(f) => test.contains(f.as_str()),
        }
    }

    /// The test binary's arguments.
    fn args(&self) -> String {
        match self {
            Filter::All => String::new(),
            Filter::Exact(f) => format!(" --exact {f}"),
            Filter::Containing(f) => format!(" {f}"),
        }
    }
}

/// What the guest runs: (group, test binary, which of its tests).
type Plan = Vec<(String, PathBuf, Filter)>;

/// The start of every guest's /init: mount what ipcwatch needs, bring
/// `lo` up; `up` prints the uptime. Nothing is mounted on /tmp or /run:
/// the initramfs root is writable already, and the binaries sit at their
/// paths on this machine, so a tmpfs there would hide a workspace cloned
/// under /tmp (a clean clone in /tmp had doctor exit 127: "not found").
fn preamble() -> String {
    String::from(
        "#!/bin/busybox sh\n\
         /bin/busybox --install -s /bin\n\
         export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TMPDIR=/tmp\n\
         export IPCWATCH_TEST_PATIENCE=10\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev\n\
         mkdir -p /dev/shm /dev/pts /run /root /tmp\n\
         chmod 1777 /tmp\n\
         mount -t tmpfs tmpfs /dev/shm\n\
         mount -t debugfs debugfs /sys/kernel/debug\n\
         mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true\n\
         mount -t bpf bpf /sys/fs/bpf\n\
         ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up\n\
         up() { cut -d' ' -f1 /proc/uptime; }\n\
         echo \"@@IPCW boot $(up)\"\n",
    )
}

/// The guest's /init for the matrix: run doctor and each group, print a
/// marker line around each, power off.
fn init_script(ipcwatch: &Path, plan: &Plan) -> String {
    let mut s = preamble();
    let _ = writeln!(
        s,
        "echo \"@@IPCW start doctor $(up)\"\nIPCWATCH_VERIFIER_LOG=/tmp/verifier.log {} doctor >/tmp/doctor.out 2>&1\nusable=$?\ncat /tmp/doctor.out\necho \"@@IPCW end doctor $usable $(up)\"\n\
         if grep -qE '^hw watchpoint +yes' /tmp/doctor.out; then traps=1; else traps=0; fi\n\
         if [ -s /tmp/verifier.log ]; then echo \"@@IPCW verifier-log\"; grep -E '^====|combined|stack depth|^processed|unbounded|invalid|too large|R[0-9] ' /tmp/verifier.log | tail -n 80; fi",
        ipcwatch.display()
    );
    for (group, bin, filter) in plan {
        let untrapped: Vec<&str> = NEEDS_TRAPS
            .iter()
            .filter(|(g, t)| g == group && filter.keeps(t))
            .map(|(_, t)| *t)
            .collect();
        let filter = filter.args();
        let skips = if untrapped.is_empty() {
            String::new()
        } else {
            format!(
                "if [ $traps = 0 ]; then skips=\"--skip {}\"; echo \"@@IPCW untrapped {group} {}\"; fi\n",
                untrapped.join(" --skip "),
                untrapped.join(" ")
            )
        };
        let _ = writeln!(
            s,
            "if [ $usable = 0 ]; then\n\
             skips=\n{skips}\
             echo \"@@IPCW start {group} $(up)\"\n\
             (cd {} && {} --test-threads=1{filter} $skips 2>&1)\n\
             echo \"@@IPCW end {group} $? $(up)\"\n\
             else echo \"@@IPCW skip {group}\"; fi",
            root().join("ipcwatch").display(),
            bin.display()
        );
    }
    s.push_str("echo \"@@IPCW done $(up)\"\nsync\npoweroff -f\n");
    s
}

/// `mode` names the initramfs, its staging directory and the console
/// logs, so runs of different modes do not overwrite each other's.
fn initramfs(bins: &Binaries, init: String, mode: &str) -> Result<PathBuf> {
    let dir = kernels_dir();
    let stage = dir.join(format!("stage-{mode}"));
    fs::create_dir_all(&stage)?;
    let mut img = Image::default();
    for d in [
        "/proc",
        "/sys",
        "/dev",
        "/tmp",
        "/run",
        "/root",
        "/sbin",
        "/usr/bin",
        "/usr/sbin",
    ] {
        img.dir(d);
    }
    img.file(Path::new("/bin/busybox"), Path::new("/bin/busybox"))
        .context("busybox-static is missing: run cargo xtask setup")?;
    img.executable(Path::new("/bin/bash"), None)?;
    // The tests' commands are this machine's, as on the host: busybox's
    // sh runs its applets without exec (a test counts cat's execs) and has
    // no flock. In /bin, where `busybox --install` then leaves them be.
    for (tool, from) in HOST_TOOLS {
        img.file(&Path::new("/bin").join(tool), Path::new(from))
            .with_context(|| format!("{from} is missing on this machine"))?;
        img.executable(Path::new(from), None)?;
    }
    img.executable(&bins.ipcwatch, Some(&stage))?;
    img.executable(
        &bins.ipcwatch.with_file_name("ipcwatch-workload"),
        Some(&stage),
    )?;
    for (_, bin) in &bins.tests {
        img.executable(bin, Some(&stage))?;
    }
    for f in ["/etc/passwd", "/etc/group"] {
        img.file(Path::new(f), Path::new(f))?;
    }
    // The tests run in their package's directory, as cargo runs them.
    img.dir(&root().join("ipcwatch").display().to_string());
    let schema = root().join("docs/ndjson.schema.json");
    img.file(&schema, &schema)?;
    img.data("/init", init.into_bytes(), 0o755);
    let out = dir.join(format!("initramfs-{mode}.cpio"));
    img.write(&out)?;
    fs::remove_dir_all(&stage)?;
    Ok(out)
}

/// One group's outcome in one kernel.
#[derive(Clone)]
enum Outcome {
    Pass(String),
    Fail(String),
    Skipped(String),
}

impl Outcome {
    /// The same outcome, saying that `n` tests were left out for want of
    /// watchpoint traps (`NEEDS_TRAPS`).
    fn untrapped(self, n: usize) -> Outcome {
        let note = format!("; {n} skipped: hw watchpoints do not trap here");
        match self {
            Outcome::Pass(d) => Outcome::Pass(d + &note),
            Outcome::Fail(d) => Outcome::Fail(d + &note),
            Outcome::Skipped(d) => Outcome::Skipped(d),
        }
    }

    fn cell(&self) -> String {
        match self {
            Outcome::Pass(d) => format!("pass ({d})"),
            Outcome::Fail(d) => format!("**FAIL** ({d})"),
            Outcome::Skipped(d) => format!("skipped: {d}"),
        }
    }
}

struct Row {
    name: String,
    release: String,
    boot_secs: f64,
    wall_secs: f64,
    features: String,
    /// doctor's output.
    doctor: Vec<String>,
    cells: BTreeMap<String, Outcome>,
}

/// Boot `kernel` with `initrd`; the guest's console, or why it failed.
fn boot(
    kernel: &Fetched,
    initrd: &Path,
    mode: &str,
    timeout: Duration,
    loglevel: u8,
) -> Result<(String, f64)> {
    let log = kernels_dir()
        .join("logs")
        .join(format!("{}-{mode}.log", kernel.name));
    fs::create_dir_all(log.parent().context("no parent")?)?;
    let mut c = Command::new("qemu-system-x86_64");
    c.args([
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-m",
        "2048",
        "-smp",
        "2",
        "-net",
        "none",
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
    ])
    .arg("-serial")
    .arg(format!("file:{}", log.display()))
    .arg("-kernel")
    .arg(&kernel.vmlinuz)
    .arg("-initrd")
    .arg(initrd)
    .arg("-append")
    .arg(format!(
        "console=ttyS0 panic=-1 rdinit=/init quiet loglevel={loglevel}"
    ))
    .stdin(Stdio::null());
    eprintln!("+ {}", show(&c));
    let start = Instant::now();
    let mut child = c
        .spawn()
        .context("cannot start qemu-system-x86_64: run cargo xtask setup")?;
    let mut looked = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        // A guest whose kernel is stuck never powers off: stop it at its
        // first soft-lockup report rather than at the timeout.
        if looked.elapsed() > Duration::from_secs(5) {
            looked = Instant::now();
            let console = fs::read_to_string(&log).unwrap_or_default();
            if console.contains("BUG: soft lockup") {
                child.kill()?;
                child.wait()?;
                return Ok((console, start.elapsed().as_secs_f64()));
            }
        }
        if start.elapsed() > timeout {
            child.kill()?;
            child.wait()?;
            let console = fs::read_to_string(&log).unwrap_or_default();
            bail!(
                "the guest did not power off within {}s (console: {}; last line: {:?})",
                timeout.as_secs(),
                log.display(),
                console.lines().last().unwrap_or("")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let wall = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("qemu failed ({status}); console: {}", log.display());
    }
    Ok((fs::read_to_string(&log)?, wall))
}

/// The first line of a kernel crash in the guest's console: an oops, a
/// soft lockup or a panic. Seen under TCG, where the kernel patching its
/// own text (static keys, as a perf event or tracepoint is enabled) once
/// met an int3 it did not expect (6.12) and once left both CPUs stuck
/// (6.1); never on this machine's kernel.
fn guest_crash(console: &str) -> Option<String> {
    console
        .lines()
        .find(|l| {
            l.contains("Oops:") || l.contains("BUG: soft lockup") || l.contains("Kernel panic")
        })
        .map(|l| l.trim().chars().take(160).collect())
}

/// Turn the console into a row of the table.
fn parse(kernel: &Fetched, console: &str, wall: f64, groups: &[String]) -> Row {
    let mut row = Row {
        name: kernel.name.clone(),
        release: kernel.release.clone(),
        boot_secs: f64::NAN,
        wall_secs: wall,
        features: String::new(),
        doctor: Vec::new(),
        cells: BTreeMap::new(),
    };
    let mut current: Option<(String, f64, Vec<&str>)> = None;
    // Tests left out of a group because watchpoints do not trap here.
    let mut untrapped: BTreeMap<String, usize> = BTreeMap::new();
    for line in console.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("@@IPCW ") {
            let f: Vec<&str> = rest.split_whitespace().collect();
            match f.as_slice() {
                ["boot", t] => row.boot_secs = t.parse().unwrap_or(f64::NAN),
                ["skip", g] => {
                    row.cells.insert(
                        g.to_string(),
                        Outcome::Skipped(format!(
                            "doctor: this kernel lacks what ipcwatch needs ({})",
                            missing(&row.doctor)
                        )),
                    );
                }
                ["untrapped", g, tests @ ..] => {
                    untrapped.insert(g.to_string(), tests.len());
                }
                ["start", g, t] => {
                    current = Some((g.to_string(), t.parse().unwrap_or(0.0), Vec::new()))
                }
                ["end", g, rc, t] => {
                    if let Some((name, t0, lines)) = current.take()
                        && name == *g
                    {
                        let secs = t.parse::<f64>().unwrap_or(0.0) - t0;
                        if name == "doctor" {
                            row.features = features(&lines);
                            row.doctor = lines.iter().map(|l| l.to_string()).collect();
                            // A family of the syscall programs that does
                            // not load is only a warning for a user, but
                            // events lost on this kernel: a failure here;
                            // so are the programs with the live TUI's io
                            // totals (the TUI falls back to one event per
                            // call).
                            let refused = lines.iter().any(|l| {
                                (l.starts_with("syscall families") || l.starts_with("io totals"))
                                    && l.contains(" NO ")
                            });
                            row.cells.insert(
                                name,
                                if *rc != "0" {
                                    Outcome::Fail(format!("exit {rc}"))
                                } else if refused {
                                    Outcome::Fail(
                                        "a family of the syscall programs (or their io totals variant) was refused".into(),
                                    )
                                } else {
                                    Outcome::Pass(format!("{secs:.0} s"))
                                },
                            );
                        } else {
                            let outcome = group_outcome(&lines, rc, secs);
                            let outcome = match untrapped.get(&name) {
                                Some(n) => outcome.untrapped(*n),
                                None => outcome,
                            };
                            row.cells.insert(name, outcome);
                        }
                    }
                }
                _ => {}
            }
        } else if let Some((_, _, lines)) = current.as_mut() {
            lines.push(line);
        }
    }
    let unfinished = current.map(|(g, _, _)| g);
    for g in std::iter::once("doctor".to_string()).chain(groups.iter().cloned()) {
        row.cells.entry(g.clone()).or_insert_with(|| {
            if unfinished.as_deref() == Some(&g) {
                Outcome::Fail("the guest stopped during this group (see its console log)".into())
            } else {
                Outcome::Fail("never ran (see the console log)".into())
            }
        });
    }
    row
}

/// doctor's feature table as one line: `ring buffer yes, kprobe NO, ...`.
fn features(lines: &[&str]) -> String {
    let mut out = Vec::new();
    let mut in_table = false;
    for l in lines {
        if l.starts_with("FEATURE") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        if l.trim().is_empty() {
            break;
        }
        let feature = l.get(..20).unwrap_or(l).trim();
        let ok = l.get(21..25).unwrap_or("").trim();
        if !feature.is_empty() && !ok.is_empty() {
            out.push(format!("{feature} {ok}"));
        }
    }
    out.join(", ")
}

/// The features doctor requires (its `required` checks).
const REQUIRED: [&str; 6] = [
    "privileges",
    "tracefs",
    "BTF",
    "ring buffer",
    "tracepoint",
    "syscall programs",
];

/// The required features doctor says are missing (its `NO` lines).
fn missing(doctor: &[String]) -> String {
    let lines: Vec<&str> = doctor.iter().map(String::as_str).collect();
    let no: Vec<String> = features(&lines)
        .split(", ")
        .filter_map(|f| f.strip_suffix(" NO").map(String::from))
        .filter(|f| REQUIRED.contains(&f.as_str()))
        .collect();
    if no.is_empty() {
        "doctor exited non-zero".into()
    } else {
        format!("no {}", no.join(", no "))
    }
}

fn group_outcome(lines: &[&str], rc: &str, secs: f64) -> Outcome {
    let result = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("test result: "))
        .map(|r| {
            r.split(';')
                .map(str::trim)
                .filter(|p| {
                    p.ends_with("passed") || p.ends_with("failed") || p.ends_with("ignored")
                })
                .filter(|p| !p.starts_with("0 ") || p.ends_with("passed"))
                .collect::<Vec<_>>()
                .join(", ")
        });
    let failed: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("test ")?.strip_suffix(" ... FAILED"))
        .collect();
    match (rc, result) {
        ("0", Some(r)) => {
            let r = r.trim_start_matches("ok. ").to_string();
            Outcome::Pass(format!("{r}, {secs:.0} s"))
        }
        (_, Some(r)) => Outcome::Fail(format!(
            "{}; failed: {}",
            r.trim_start_matches("FAILED. "),
            failed.join(" ")
        )),
        (rc, None) => Outcome::Fail(format!("exit {rc} before any result")),
    }
}

/// A markdown table's head: the `fixed` columns, then `more`.
fn table_head<T: std::fmt::Display>(fixed: &[&str], more: &[T]) -> String {
    let mut s = String::from("|");
    for c in fixed {
        let _ = write!(s, " {c} |");
    }
    for c in more {
        let _ = write!(s, " {c} |");
    }
    s.push_str("\n|");
    for _ in 0..fixed.len() + more.len() {
        s.push_str("---|");
    }
    s.push('\n');
    s
}

fn table(rows: &[Row], groups: &[String]) -> String {
    let mut s = table_head(&["kernel", "release", "boot (s)", "doctor"], groups);
    for r in rows {
        let _ = write!(
            s,
            "| {} | {} | {:.1} | {} |",
            r.name,
            r.release,
            r.boot_secs,
            r.cells["doctor"].cell()
        );
        for g in groups {
            let _ = write!(s, " {} |", r.cells[g].cell());
        }
        s.push('\n');
    }
    let untrapped = rows
        .iter()
        .flat_map(|r| r.cells.values())
        .any(|c| c.cell().contains("do not trap here"));
    if untrapped {
        s.push_str(
            "\nLeft out where doctor's `hw watchpoint` check trapped none of its writes \
             (`NEEDS_TRAPS` in xtask/src/kernels.rs):",
        );
        for (g, t) in NEEDS_TRAPS {
            let _ = write!(s, " {g}::{t}");
        }
        s.push('\n');
    }
    s.push_str("\ndoctor's features, per kernel:\n\n");
    for r in rows {
        let _ = writeln!(
            s,
            "- {} ({}, guest wall time {:.0} s): {}",
            r.name, r.release, r.wall_secs, r.features
        );
    }
    s
}

const BEGIN: &str = "<!-- kernels table: begin (cargo xtask kernels writes it) -->";
const END: &str = "<!-- kernels table: end -->";

/// Replace what docs/kernels.md holds between the markers `begin` and `end`.
fn write_section(begin: &str, end: &str, table: &str) -> Result<()> {
    let path = root().join("docs/kernels.md");
    let doc = fs::read_to_string(&path).context("docs/kernels.md is missing")?;
    let (Some(b), Some(e)) = (doc.find(begin), doc.find(end)) else {
        bail!("docs/kernels.md has no `{begin}` ... `{end}` markers");
    };
    let date = output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))?;
    let new = format!(
        "{}{begin}\nRun of {}, host {} {table}{}",
        &doc[..b],
        date.trim(),
        output(Command::new("uname").arg("-r"))?.trim(),
        &doc[e..]
    );
    fs::write(&path, new)?;
    eprintln!("xtask: table written to {}", path.display());
    Ok(())
}

/// `--run CMD`: boot each kernel, run `cmd` after doctor, print the
/// console.
fn run_command(kernels: &[Kernel], cmd: &str, loglevel: u8) -> Result<()> {
    let bins = build(&[])?;
    let mut init = preamble();
    let _ = writeln!(
        init,
        "export IPCWATCH={} WORKLOAD={}
         echo \"@@IPCW start doctor $(up)\"\n$IPCWATCH doctor\necho \"@@IPCW end doctor $? $(up)\"\n         echo \"@@IPCW start run $(up)\"\n         sh -c '{}' 2>&1\n         echo \"@@IPCW end run $? $(up)\"\n         echo \"@@IPCW done $(up)\"\nsync\npoweroff -f",
        bins.ipcwatch.display(),
        bins.ipcwatch.with_file_name("ipcwatch-workload").display(),
        cmd.replace('\'', "'\\''")
    );
    let initrd = initramfs(&bins, init, "run")?;
    for k in kernels {
        let fetched = k.fetch()?;
        let (console, wall) = boot(
            &fetched,
            &initrd,
            "run",
            Duration::from_secs(3600),
            loglevel,
        )?;
        println!(
            "==== {} ({}), {wall:.0} s\n{console}",
            fetched.name, fetched.release
        );
    }
    Ok(())
}

/// Run `kernels` (the whole plan or the fast subset) and return the
/// table; fail when a kernel cannot be fetched or booted or a group fails.
fn run_matrix(kernels: &[Kernel], args: &KernelsArgs) -> Result<(String, bool)> {
    let (fast, doctor_only) = (args.fast, args.doctor_only);
    for g in &args.group {
        if !GROUPS.contains(&g.as_str()) {
            bail!("no group {g}: the groups are {}", GROUPS.join(", "));
        }
    }
    let groups: Vec<&str> = if doctor_only {
        Vec::new()
    } else if fast {
        FAST.iter().map(|(g, _)| *g).collect()
    } else if !args.group.is_empty() {
        GROUPS
            .into_iter()
            .filter(|g| args.group.iter().any(|a| a == g))
            .collect()
    } else {
        GROUPS.to_vec()
    };
    let bins = build(&groups)?;
    let plan: Plan = if doctor_only {
        Vec::new()
    } else if fast {
        FAST.iter()
            .map(|(g, f)| {
                let bin = bins
                    .tests
                    .iter()
                    .find(|(n, _)| n == g)
                    .map(|(_, b)| b.clone());
                let filter = f.map_or(Filter::All, |f| Filter::Exact(f.to_string()));
                (g.to_string(), bin.unwrap_or_default(), filter)
            })
            .collect()
    } else {
        bins.tests
            .iter()
            .map(|(g, b)| {
                let filter = args.test.clone().map_or(Filter::All, Filter::Containing);
                (g.clone(), b.clone(), filter)
            })
            .collect()
    };
    let columns: Vec<String> = plan.iter().map(|(g, _, _)| g.clone()).collect();
    let mode = if doctor_only {
        "doctor"
    } else if fast {
        "fast"
    } else {
        "full"
    };
    let initrd = initramfs(&bins, init_script(&bins.ipcwatch, &plan), mode)?;
    eprintln!(
        "xtask: initramfs {} ({} MiB)",
        initrd.display(),
        fs::metadata(&initrd)?.len() >> 20
    );
    let timeout = Duration::from_secs(if doctor_only {
        600
    } else if fast {
        1200
    } else {
        4 * 3600
    });
    let mut rows = Vec::new();
    let mut ok = true;
    for k in kernels {
        let fetched = k.fetch()?;
        let mut booted = boot(&fetched, &initrd, mode, timeout, args.loglevel);
        if let Ok((console, _)) = &booted
            && let Some(crash) = guest_crash(console)
        {
            // Not a test's failure: the emulated machine's kernel died
            // (docs/kernels.md: text patching under TCG). Said, and once
            // more; a second crash is a failure.
            eprintln!(
                "xtask: warning: the {} guest's kernel crashed ({crash}); booting it once more",
                fetched.name
            );
            booted = boot(&fetched, &initrd, mode, timeout, args.loglevel);
            if let Ok((console, _)) = &booted
                && let Some(again) = guest_crash(console)
            {
                booted = Err(anyhow::anyhow!("the guest's kernel crashed twice: {again}"));
            }
        }
        let row = match booted {
            Ok((console, wall)) => parse(&fetched, &console, wall, &columns),
            Err(e) => {
                let mut cells = BTreeMap::new();
                for g in std::iter::once("doctor".to_string()).chain(columns.iter().cloned()) {
                    cells.insert(g, Outcome::Fail(format!("{e:#}")));
                }
                Row {
                    name: fetched.name.clone(),
                    release: fetched.release.clone(),
                    boot_secs: f64::NAN,
                    wall_secs: f64::NAN,
                    features: String::new(),
                    doctor: Vec::new(),
                    cells,
                }
            }
        };
        ok &= row.cells.values().all(|c| !matches!(c, Outcome::Fail(_)));
        eprintln!("{}", table(std::slice::from_ref(&row), &columns));
        rows.push(row);
    }
    Ok((table(&rows, &columns), ok))
}

pub fn run_kernels(args: &KernelsArgs) -> Result<()> {
    let kernels: Vec<Kernel> = MATRIX
        .iter()
        .filter(|k| {
            args.only
                .as_ref()
                .is_none_or(|o| k.name().contains(o.as_str()))
        })
        .copied()
        .collect();
    if kernels.is_empty() {
        bail!(
            "no kernel of the matrix matches --only: they are {}",
            MATRIX
                .iter()
                .map(Kernel::name)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(cmd) = &args.run {
        return run_command(&kernels, cmd, args.loglevel);
    }
    if args.hook_cost {
        let table = cost::run(&kernels, args.loglevel)?;
        println!("{table}");
        if !args.no_docs && args.only.is_none() {
            write_section(cost::BEGIN, cost::END, &table)?;
        }
        return Ok(());
    }
    let (table, ok) = run_matrix(&kernels, args)?;
    println!("{table}");
    let partial = args.only.is_some() || !args.group.is_empty() || args.test.is_some();
    if !args.no_docs && !args.doctor_only && !partial {
        let mode = if args.fast { " --fast" } else { "" };
        write_section(
            BEGIN,
            END,
            &format!("(`cargo xtask kernels{mode}`)\n\n{table}"),
        )?;
    }
    if !ok {
        bail!("a kernel of the matrix failed: see the table and target/kernels/logs");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No mount of the guest's /init hides the workspace, wherever it is.
    #[test]
    fn a_kernel_crash_in_the_console_is_found() {
        assert_eq!(guest_crash("@@IPCW boot 1\nok\n"), None);
        let oops = "[   35.557325] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI";
        assert_eq!(guest_crash(&format!("a\n{oops}\nb")).as_deref(), Some(oops));
        assert!(
            guest_crash("[ 112.79] watchdog: BUG: soft lockup - CPU#0 stuck for 45s!").is_some()
        );
    }

    #[test]
    fn the_init_mounts_nothing_over_the_workspace() {
        for at in ["/tmp/ci-clone", "/run/x", "/work/main"] {
            let bin = Path::new(at).join("target/debug/ipcwatch");
            let script = init_script(&bin, &Vec::new());
            for line in script
                .lines()
                .filter(|l| l.trim_start().starts_with("mount "))
            {
                let dir = line.split_whitespace().nth(4).unwrap_or("");
                assert!(
                    !bin.starts_with(dir),
                    "`{}` hides {}",
                    line.trim(),
                    bin.display()
                );
            }
        }
    }
}
