//! `cargo xtask dist`: what people install, in target/dist/:
//! - `ipcwatch`: a static x86_64 binary (musl, static-pie) with the eBPF
//!   object embedded, stripped, and `ipcwatch.debug` (its debug info,
//!   named by a .gnu_debuglink);
//! - `man/`: ipcwatch(8), one page per subcommand, ipcwatch-ndjson(5);
//! - `completions/`: bash, zsh and fish;
//! - `ipcwatch_VERSION-1_amd64.deb`, built with dpkg-deb from a tree laid
//!   out here (what cargo-deb would do, without its build of the binary:
//!   ours is the static one).
//!
//! `ipcwatch/tests/dist.rs` checks all of it (`cargo xtask test` runs it
//! after this).

mod manpage;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::cmd::{cargo, output, root, run};

pub const TARGET: &str = "x86_64-unknown-linux-musl";
/// Debian revision of the package.
const REVISION: &str = "1";
/// Where the package puts the binary: a root tool (man section 8).
const BIN: &str = "usr/sbin/ipcwatch";
/// The systemd unit of the daemon mode (the production issue) goes in the
/// package as usr/lib/systemd/system/ipcwatch.service once it exists.
const SYSTEMD_UNIT: Option<&str> = None;
/// The demo's racing function, kept in the stripped binary's dynamic
/// symbol table so that `ipcwatch demo` names it in its finding.
const EXPORTED: &str = "ipcwatch_demo_bump_unsynchronized";

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

fn dist_dir() -> PathBuf {
    root().join("target/dist")
}

/// How the static binary is compiled.
#[derive(Clone, Copy)]
pub enum Profile {
    /// `cargo xtask dist`: the release profile, what people install.
    Release,
    /// `cargo xtask test`: the same steps with the `dist-check` profile
    /// (Cargo.toml: release with opt-level 1), which compiles in about
    /// half the time: the test checks how the package is made and what
    /// it holds, not how fast the binary runs, and CI has 45 minutes.
    Check,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Check => "dist-check",
        }
    }
}

/// Builds everything into target/dist and prints what it made.
pub fn run_dist(profile: Profile) -> Result<()> {
    let out = dist_dir();
    if out.exists() {
        fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
    }
    fs::create_dir_all(&out)?;
    let bin = build_static(&out, profile)?;
    let man = out.join("man");
    run(Command::new(&bin).arg("man").arg("--dir").arg(&man))?;
    let ndjson = fs::read_to_string(root().join("docs/ndjson.md"))?;
    fs::write(
        man.join("ipcwatch-ndjson.5"),
        manpage::ndjson_page(&ndjson, version()),
    )?;
    let completions = out.join("completions");
    fs::create_dir_all(&completions)?;
    for (shell, file) in [
        ("bash", "ipcwatch.bash"),
        ("zsh", "_ipcwatch"),
        ("fish", "ipcwatch.fish"),
    ] {
        let script = output(
            Command::new(&bin)
                .args(["completions", shell, "--completer"])
                .arg(Path::new("/").join(BIN)),
        )?;
        fs::write(completions.join(file), script)?;
    }
    let deb = build_deb(&out, &bin, &man, &completions)?;
    println!("target/dist:");
    for path in [
        bin.clone(),
        out.join("ipcwatch.debug"),
        deb,
        man.clone(),
        completions.clone(),
    ] {
        println!(
            "  {:<40} {:>10}",
            path.strip_prefix(&out).unwrap_or(&path).display(),
            human(size(&path)?)
        );
    }
    Ok(())
}

/// Bytes of a file, or of every file under a directory.
fn size(path: &Path) -> Result<u64> {
    let meta = fs::metadata(path)?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for e in fs::read_dir(path)? {
        total += size(&e?.path())?;
    }
    Ok(total)
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// The musl release build, stripped into `out/ipcwatch`, its debug info
/// into `out/ipcwatch.debug`.
fn build_static(out: &Path, profile: Profile) -> Result<PathBuf> {
    let rustflags = format!("-C link-arg=-Wl,--export-dynamic-symbol={EXPORTED}");
    run(cargo()
        // Only for the musl target: not for build scripts, nor for the
        // eBPF crate that ipcwatch's build script builds.
        .env(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS",
            rustflags,
        )
        .args([
            "build",
            "--profile",
            profile.name(),
            "--package",
            "ipcwatch",
            "--bin",
            "ipcwatch",
            "--target",
            TARGET,
        ]))?;
    let built = root()
        .join("target")
        .join(TARGET)
        .join(profile.name())
        .join("ipcwatch");
    let bin = out.join("ipcwatch");
    let debug = out.join("ipcwatch.debug");
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&built)
        .arg(&debug))?;
    run(Command::new("strip")
        .args(["--strip-all", "--remove-section=.comment", "-o"])
        .arg(&bin)
        .arg(&built))?;
    // The link (the file's name and checksum) is looked up next to the
    // binary, or under /usr/lib/debug.
    run(Command::new("objcopy")
        .arg(format!("--add-gnu-debuglink={}", debug.display()))
        .arg(&bin))?;
    fs::set_permissions(&debug, fs::Permissions::from_mode(0o644))?;
    Ok(bin)
}

/// Copies `from` to `tree/to` with `mode`, making the directories.
fn install(from: &Path, tree: &Path, to: &str, mode: u32) -> Result<()> {
    let dest = tree.join(to);
    fs::create_dir_all(dest.parent().context("a file has a directory")?)?;
    fs::copy(from, &dest).with_context(|| format!("copying {}", from.display()))?;
    fs::set_permissions(&dest, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Writes `bytes` to `tree/to`, gzipped as Debian wants it (-9n: no name
/// or time stamp, so the package is reproducible).
fn install_gz(bytes: &[u8], tree: &Path, to: &str) -> Result<()> {
    let dest = tree.join(to);
    fs::create_dir_all(dest.parent().context("a file has a directory")?)?;
    let mut gzip = Command::new("gzip")
        .arg("-9n")
        .stdin(Stdio::piped())
        .stdout(fs::File::create(&dest)?)
        .spawn()
        .context("cannot start gzip")?;
    std::io::Write::write_all(gzip.stdin.as_mut().context("gzip's stdin")?, bytes)?;
    drop(gzip.stdin.take());
    if !gzip.wait()?.success() {
        bail!("gzip failed on {}", dest.display());
    }
    fs::set_permissions(&dest, fs::Permissions::from_mode(0o644))?;
    Ok(())
}

/// The date of HEAD's commit, RFC 2822 (the changelog's date).
fn commit_date() -> String {
    Command::new("git")
        .args(["log", "-1", "--format=%aD"])
        .current_dir(root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "Wed, 02 Dec 2026 00:00:00 +0000".into())
}

const MAINTAINER: &str = "ipcwatch developers <ipcwatch@users.noreply.github.com>";

fn control(installed_kib: u64) -> String {
    format!(
        "Package: ipcwatch
Version: {}-{REVISION}
Architecture: amd64
Maintainer: {MAINTAINER}
Installed-Size: {installed_kib}
Section: admin
Priority: optional
Description: see how processes talk, and catch them corrupting shared memory
 ipcwatch traces the IPC of a Linux machine with eBPF: pipes, FIFOs, unix,
 TCP and UDP sockets, POSIX and SysV message queues, shared memory and the
 locks processes use on it. It flags unsynchronized concurrent writers to
 shared regions across processes, with both writers' code locations.
 .
 It shows all of it live in a terminal UI, writes an NDJSON trace that can
 be replayed and analyzed offline, and draws who talks to whom. This is a
 static binary with its eBPF programs inside; it needs Linux 5.8 or newer
 with BTF, and root.
",
        version()
    )
}

fn copyright() -> String {
    let mit = "Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the \"Software\"), to deal
 in the Software without restriction, including without limitation the rights
 to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in
 all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN
 THE SOFTWARE.";
    format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ipcwatch
Upstream-Contact: {MAINTAINER}

Files: *
Copyright: 2026 the ipcwatch developers
License: MIT or Apache-2.0

License: MIT
 {mit}

License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 can be
 found in /usr/share/common-licenses/Apache-2.0.
"
    )
}

fn changelog() -> String {
    format!(
        "ipcwatch ({}-{REVISION}) unstable; urgency=medium

  * Release {} (built by cargo xtask dist).

 -- {MAINTAINER}  {}
",
        version(),
        version(),
        commit_date()
    )
}

/// Lays out the package's tree and builds it with dpkg-deb.
fn build_deb(out: &Path, bin: &Path, man: &Path, completions: &Path) -> Result<PathBuf> {
    let tree = out.join("deb-root");
    install(bin, &tree, BIN, 0o755)?;
    for e in fs::read_dir(man)? {
        let page = e?.path();
        let name = page
            .file_name()
            .and_then(|n| n.to_str())
            .context("a man page's name")?;
        let section = name.rsplit('.').next().context("a man page's section")?;
        install_gz(
            &fs::read(&page)?,
            &tree,
            &format!("usr/share/man/man{section}/{name}.gz"),
        )?;
    }
    for (file, to) in [
        (
            "ipcwatch.bash",
            "usr/share/bash-completion/completions/ipcwatch",
        ),
        ("_ipcwatch", "usr/share/zsh/vendor-completions/_ipcwatch"),
        (
            "ipcwatch.fish",
            "usr/share/fish/vendor_completions.d/ipcwatch.fish",
        ),
    ] {
        install(&completions.join(file), &tree, to, 0o644)?;
    }
    if let Some(unit) = SYSTEMD_UNIT {
        install(
            &root().join(unit),
            &tree,
            "usr/lib/systemd/system/ipcwatch.service",
            0o644,
        )?;
    }
    let doc = "usr/share/doc/ipcwatch";
    for file in ["docs/ndjson.md", "docs/ndjson.schema.json"] {
        let name = Path::new(file).file_name().context("a doc's name")?;
        install(
            &root().join(file),
            &tree,
            &format!("{doc}/{}", name.to_string_lossy()),
            0o644,
        )?;
    }
    fs::write(tree.join(doc).join("copyright"), copyright())?;
    install_gz(
        changelog().as_bytes(),
        &tree,
        &format!("{doc}/changelog.Debian.gz"),
    )?;
    // lintian reads a static-pie executable as a shared library (its ELF
    // type is DYN) and asks for a libc dependency it does not have.
    fs::create_dir_all(tree.join("usr/share/lintian/overrides"))?;
    fs::write(
        tree.join("usr/share/lintian/overrides/ipcwatch"),
        "# A static-pie executable: ELF type DYN, no libc to depend on.\n\
         ipcwatch: shared-library-lacks-prerequisites [usr/sbin/ipcwatch]\n\
         # Built outside Debian's archive: no ITP bug to close.\n\
         ipcwatch: initial-upload-closes-no-bugs [usr/share/doc/ipcwatch/changelog.Debian.gz:1]\n",
    )?;
    let installed_kib = size(&tree)?.div_ceil(1024);
    let debian = tree.join("DEBIAN");
    fs::create_dir_all(&debian)?;
    fs::write(debian.join("control"), control(installed_kib))?;
    let files = output(
        Command::new("find")
            .args(["usr", "-type", "f", "-exec", "md5sum", "{}", "+"])
            .current_dir(&tree),
    )?;
    let mut lines: Vec<&str> = files.lines().collect();
    lines.sort_by_key(|l| l.split_once("  ").map(|(_, p)| p.to_owned()));
    fs::write(debian.join("md5sums"), lines.join("\n") + "\n")?;
    for dir in walk_dirs(&tree)? {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
    }
    for f in ["control", "md5sums"] {
        fs::set_permissions(debian.join(f), fs::Permissions::from_mode(0o644))?;
    }
    fs::set_permissions(
        tree.join(doc).join("copyright"),
        fs::Permissions::from_mode(0o644),
    )?;
    let deb = out.join(format!("ipcwatch_{}-{REVISION}_amd64.deb", version()));
    run(Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group", "-Zxz"])
        .arg(&tree)
        .arg(&deb))?;
    fs::remove_dir_all(&tree)?;
    Ok(deb)
}

/// Every directory under `dir`, `dir` included.
fn walk_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = vec![dir.to_path_buf()];
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            dirs.extend(walk_dirs(&p)?);
        }
    }
    Ok(dirs)
}
