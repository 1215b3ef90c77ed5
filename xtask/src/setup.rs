//! Installing the eBPF toolchain: nightly's rust-src, and bpf-linker built
//! against the nightly toolchain's own LLVM; and the tools the checks use
//! (tmux, stress-ng, sqlite3, graphviz, strace, prometheus, podman and runc with podman's
//! `default_ulimits = []`, the musl target and lintian, cargo-modules,
//! Perfetto's Python package and kubernetes-validate in a venv, setpriv and
//! systemd-analyze), and
//! PostgreSQL for `cargo xtask postgres`. Idempotent: when all are present this runs a few
//! quick commands and nothing else.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::cmd::{output, path_with_cargo_bin, root, run};
use crate::dist::TARGET;

const TOOLCHAIN: &str = "nightly";
/// The cargo-modules release `cargo xtask cycles` runs.
const CARGO_MODULES: &str = "0.27.0";

fn nightly_sysroot() -> Result<PathBuf> {
    let s = output(Command::new("rustc").args([&format!("+{TOOLCHAIN}"), "--print", "sysroot"]))?;
    Ok(PathBuf::from(s.trim()))
}

fn llvm_major() -> Result<u32> {
    let v = output(Command::new("rustc").args([&format!("+{TOOLCHAIN}"), "-vV"]))?;
    let line = v
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("`rustc +nightly -vV` names no LLVM version")?;
    line.split('.')
        .next()
        .and_then(|m| m.trim().parse().ok())
        .with_context(|| format!("cannot read the LLVM major from {line:?}"))
}

fn ensure_toolchain() -> Result<()> {
    let list = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !list.lines().any(|l| l.starts_with(TOOLCHAIN)) {
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            TOOLCHAIN,
            "--profile",
            "minimal",
            "--component",
            "rust-src,clippy",
        ]))
        .context("the eBPF crate needs a nightly toolchain")?;
    }
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        TOOLCHAIN,
    ]))?;
    for component in ["rust-src", "clippy"] {
        if !installed.lines().any(|l| l.starts_with(component)) {
            run(Command::new("rustup").args([
                "component",
                "add",
                component,
                "--toolchain",
                TOOLCHAIN,
            ]))?;
        }
    }
    Ok(())
}

/// bpf-linker answers `--version` when run the way aya-build runs it.
fn bpf_linker_works() -> bool {
    Command::new("rustup")
        .args(["run", TOOLCHAIN, "bpf-linker", "--version"])
        .env("PATH", path_with_cargo_bin())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ensure_bpf_linker() -> Result<()> {
    if bpf_linker_works() {
        return Ok(());
    }
    let major = llvm_major()?;
    let lib = nightly_sysroot()?.join("lib");
    let so = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("libLLVM.so.{major}")))
        })
        .with_context(|| format!("no libLLVM.so.{major}* in {}", lib.display()))?;
    // A prefix whose lib/libLLVM.so is nightly's own LLVM.
    let prefix = root().join("target/llvm-prefix");
    std::fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib/libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&so, &link)
        .with_context(|| format!("linking {} to {}", link.display(), so.display()))?;
    eprintln!(
        "xtask: building bpf-linker against LLVM {major} from {} (about a minute)",
        so.display()
    );
    run(Command::new("cargo")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env("LLVM_PREFIX", &prefix)
        // Find nightly's libLLVM at run time without LD_LIBRARY_PATH.
        .env(
            "RUSTFLAGS",
            format!("-C link-arg=-Wl,-rpath,{}", lib.display()),
        )
        .args([
            "install",
            "bpf-linker",
            "--version",
            "^0.13",
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
            "--force",
        ]))?;
    if !bpf_linker_works() {
        bail!("bpf-linker was installed but does not run");
    }
    Ok(())
}

/// `apt-get install` of Debian `packages`, after an `apt-get update` when
/// the first try fails (a fresh machine has no package lists).
fn apt_install(packages: &[&str]) -> bool {
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    install()
        || (Command::new("apt-get")
            .args(["update", "-q"])
            .status()
            .is_ok_and(|s| s.success())
            && install())
}

/// `tool ARG` runs and succeeds.
fn answers(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A Debian package the tests run, found by a command that answers.
struct Tool {
    command: &'static str,
    arg: &'static str,
    package: &'static str,
    why: &'static str,
    /// Install the package's recommends too (apt's default).
    recommends: bool,
}

const TOOLS: [Tool; 10] = [
    Tool {
        command: "tmux",
        arg: "-V",
        package: "tmux",
        why: "the TUI's end-to-end test drives the real binary in tmux",
        recommends: true,
    },
    Tool {
        command: "stress-ng",
        arg: "--version",
        package: "stress-ng",
        why: "the race tests under CPU load (tests/scale.rs, cargo xtask accuracy --load)",
        recommends: true,
    },
    Tool {
        command: "sqlite3",
        arg: "-version",
        package: "sqlite3",
        why: "the real-software test runs Debian's sqlite3",
        recommends: true,
    },
    Tool {
        command: "dot",
        arg: "-V",
        package: "graphviz",
        why: "the hostile-names and pictures tests render ipcwatch graph's DOT",
        recommends: true,
    },
    Tool {
        command: "strace",
        arg: "-V",
        package: "strace",
        why: "the least-privilege test lists the files ipcwatch opens; the bench compares with strace",
        recommends: true,
    },
    // Its service, where the package starts one (systemd hosts: :9090),
    // is left alone: the test runs its own server on free ports.
    Tool {
        command: "prometheus",
        arg: "--version",
        package: "prometheus",
        why: "the metrics test has a real Prometheus server scrape `record --metrics`",
        // Not the node exporter and its collectors (30 more packages).
        recommends: false,
    },
    Tool {
        command: "podman",
        arg: "--version",
        package: "podman",
        why: "the container tests (tests/containers.rs) run two podman containers",
        recommends: true,
    },
    Tool {
        command: "runc",
        arg: "--version",
        package: "runc",
        why: "the container tests run podman with --runtime runc (crun refuses a hybrid cgroup layout)",
        recommends: true,
    },
    Tool {
        command: "setpriv",
        arg: "--version",
        package: "util-linux",
        why: "the deploy test runs the agent as another user with the systemd unit's capabilities",
        recommends: false,
    },
    Tool {
        command: "systemd-analyze",
        arg: "--version",
        package: "systemd",
        why: "the deploy test checks deploy/ipcwatch-agent.service with systemd-analyze verify",
        recommends: false,
    },
];

/// Podman's configuration, where `default_ulimits = []` must be set.
const CONTAINERS_CONF: &str = "/etc/containers/containers.conf";

/// `default_ulimits = []` under `[containers]`: without it podman raises
/// RLIMIT_NOFILE for each container, which a sandbox without
/// CAP_SYS_RESOURCE refuses. `text` is the file as it is (empty when
/// missing); `None` when it says so already.
fn with_default_ulimits(text: &str) -> Option<String> {
    if text
        .lines()
        .any(|l| l.trim_start().starts_with("default_ulimits"))
    {
        return None;
    }
    let mut out = String::new();
    let mut done = false;
    for l in text.lines() {
        out.push_str(l);
        out.push('\n');
        if !done && l.trim() == "[containers]" {
            out.push_str("default_ulimits = []\n");
            done = true;
        }
    }
    if !done {
        out.push_str("\n[containers]\ndefault_ulimits = []\n");
    }
    Some(out)
}

fn ensure_podman_conf() -> Result<()> {
    let text = match std::fs::read_to_string(CONTAINERS_CONF) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {CONTAINERS_CONF}")),
    };
    if let Some(new) = with_default_ulimits(&text) {
        eprintln!(
            "xtask: setting default_ulimits = [] in {CONTAINERS_CONF} (for the container tests)"
        );
        std::fs::create_dir_all("/etc/containers").context("creating /etc/containers")?;
        std::fs::write(CONTAINERS_CONF, new)
            .with_context(|| format!("writing {CONTAINERS_CONF}"))?;
    }
    Ok(())
}

/// Install each of [`TOOLS`] that does not answer.
fn ensure_tools() -> Result<()> {
    for t in &TOOLS {
        if answers(t.command, t.arg) {
            continue;
        }
        eprintln!("xtask: installing {} ({})", t.package, t.why);
        let packages: &[&str] = if t.recommends {
            &[t.package]
        } else {
            &["--no-install-recommends", t.package]
        };
        if !apt_install(packages) || !answers(t.command, t.arg) {
            bail!(
                "{} is missing and could not be installed: install it (apt-get install {})",
                t.command,
                t.package
            );
        }
    }
    Ok(())
}

/// The Python package that carries Perfetto's official trace proto
/// (perfetto/protos/perfetto/trace/perfetto_trace_pb2.py, with the protobuf
/// runtime it needs).
const PERFETTO_PY: &str = "perfetto==0.59.1";

/// The venv ipcwatch/tests/pictures.rs decodes `ipcwatch export --format
/// perfetto` with: $HOME/.cache/ipcwatch/perfetto-venv (the test names the
/// same path).
fn perfetto_venv() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cache/ipcwatch/perfetto-venv"))
}

/// The Kubernetes schema validator the deploy test checks
/// deploy/daemonset.yaml with (its schemas are in the package: no network
/// when it runs).
const KUBERNETES_VALIDATE_PY: &str = "kubernetes-validate==1.37.0";

/// kubernetes-validate, in the same venv as Perfetto's package (made by
/// [`ensure_perfetto_python`], which runs first).
fn ensure_kubernetes_validate() -> Result<()> {
    let venv = perfetto_venv()?;
    let bin = venv.join("bin/kubernetes-validate");
    let works = || {
        Command::new(&bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing {KUBERNETES_VALIDATE_PY} in {} (for the deploy test)",
        venv.display()
    );
    run(Command::new(venv.join("bin/python3")).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        KUBERNETES_VALIDATE_PY,
    ]))
    .with_context(|| {
        format!(
            "pip install {KUBERNETES_VALIDATE_PY} into {}",
            venv.display()
        )
    })?;
    if !works() {
        bail!("{} does not run after installing it", bin.display());
    }
    Ok(())
}

/// Perfetto's trace proto in Python, for the export test; never its trace
/// processor (which downloads a binary).
fn ensure_perfetto_python() -> Result<()> {
    let venv = perfetto_venv()?;
    let python = venv.join("bin/python3");
    let decodes = || {
        Command::new(&python)
            .args([
                "-c",
                "from perfetto.protos.perfetto.trace import perfetto_trace_pb2",
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if decodes() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing {PERFETTO_PY} in {} (for the Perfetto export test)",
        venv.display()
    );
    if !python.exists() {
        let make = || {
            Command::new("python3")
                .arg("-m")
                .arg("venv")
                .arg(&venv)
                .status()
                .is_ok_and(|s| s.success())
        };
        let made = make() || (apt_install(&["python3-venv"]) && make());
        if !made {
            bail!(
                "cannot make a Python venv at {}: install python3 and python3-venv",
                venv.display()
            );
        }
    }
    run(Command::new(&python).args(["-m", "pip", "install", "--quiet", PERFETTO_PY, "protobuf"]))
        .with_context(|| format!("pip install {PERFETTO_PY} into {}", venv.display()))?;
    if !decodes() {
        bail!(
            "{} cannot import perfetto_trace_pb2 after installing {PERFETTO_PY}",
            python.display()
        );
    }
    Ok(())
}

/// `cargo xtask dist` builds for musl and its tests run lintian on the
/// package (dpkg-deb, objcopy and strip come with dpkg and binutils).
fn ensure_dist() -> Result<()> {
    let targets = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if !targets.lines().any(|l| l.trim() == TARGET) {
        run(Command::new("rustup").args(["target", "add", TARGET]))?;
    }
    if answers("lintian", "--version") {
        return Ok(());
    }
    eprintln!("xtask: installing lintian (for the package's tests)");
    if !apt_install(&["lintian"]) || !answers("lintian", "--version") {
        bail!(
            "lintian is missing and could not be installed: install it (apt-get install lintian)"
        );
    }
    Ok(())
}

/// The newest /usr/lib/postgresql/VERSION/bin holding `tools`.
fn postgres_bin_dir(tools: &[&str]) -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, bin)| tools.iter().all(|t| bin.join(t).is_file()))
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, bin)| bin)
}

/// Debian's PostgreSQL server and pgbench (both in postgresql-VERSION,
/// which the `postgresql` package pulls in), for `cargo xtask postgres`
/// (not for `cargo xtask test`: about 60 MiB). Returns the directory of
/// its programs (`initdb`, `pg_ctl`, `postgres`, `pgbench`); the package
/// also creates the `postgres` user they run as.
pub fn ensure_postgres() -> Result<PathBuf> {
    const TOOLS: [&str; 4] = ["initdb", "pg_ctl", "postgres", "pgbench"];
    if let Some(bin) = postgres_bin_dir(&TOOLS) {
        return Ok(bin);
    }
    eprintln!("xtask: installing postgresql (for cargo xtask postgres)");
    if !apt_install(&["postgresql"]) {
        bail!(
            "PostgreSQL is missing and could not be installed: install it (apt-get install postgresql)"
        );
    }
    postgres_bin_dir(&TOOLS).with_context(|| {
        format!(
            "postgresql was installed but no /usr/lib/postgresql/*/bin holds {}",
            TOOLS.join(", ")
        )
    })
}

/// `cargo modules --version` names the pinned version.
fn cargo_modules_works() -> bool {
    Command::new("cargo")
        .args(["modules", "--version"])
        .env("PATH", path_with_cargo_bin())
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .any(|w| w == CARGO_MODULES)
        })
}

/// cargo-modules, for `cargo xtask cycles`, at the version its flags and
/// output were checked with; and the rust-src of the toolchain it runs
/// with (without std's sources it cannot see through `Vec<T>` and misses
/// edges).
fn ensure_cargo_modules() -> Result<()> {
    let installed = output(
        Command::new("rustup")
            .args(["component", "list", "--installed"])
            .current_dir(root()),
    )?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        run(Command::new("rustup").args(["component", "add", "rust-src"]))?;
    }
    if cargo_modules_works() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing cargo-modules {CARGO_MODULES} (for the module-cycle check; minutes)"
    );
    run(Command::new("cargo").env_remove("RUSTUP_TOOLCHAIN").args([
        "install",
        "cargo-modules",
        "--version",
        CARGO_MODULES,
        "--locked",
    ]))?;
    if !cargo_modules_works() {
        bail!(
            "cargo-modules {CARGO_MODULES} was installed but `cargo modules --version` does not name it"
        );
    }
    Ok(())
}

/// `cargo xtask kernels` boots Debian's kernels under QEMU from an initramfs holding busybox:
/// qemu-system-x86 and busybox-static (static: the initramfs holds no C
/// library for it; the `busybox` package's binary is dynamic). The
/// kernels themselves are fetched (and cached) by xtask/src/kernels.rs.
pub fn ensure_guest_tools() -> Result<()> {
    let static_busybox = || {
        answers("/bin/busybox", "true")
            && Command::new("ldd")
                .arg("/bin/busybox")
                .output()
                .is_ok_and(|o| !o.status.success())
    };
    if answers("qemu-system-x86_64", "--version") && static_busybox() {
        return Ok(());
    }
    eprintln!("xtask: installing qemu-system-x86 and busybox-static (the kernel matrix)");
    if !apt_install(&["qemu-system-x86", "busybox-static"])
        || !answers("qemu-system-x86_64", "--version")
        || !static_busybox()
    {
        bail!(
            "qemu-system-x86_64 or a static /bin/busybox is missing and could not be installed: \
             install them (apt-get install qemu-system-x86 busybox-static)"
        );
    }
    Ok(())
}

pub fn ensure() -> Result<()> {
    ensure_toolchain()?;
    ensure_bpf_linker()?;
    ensure_tools()?;
    ensure_podman_conf()?;
    ensure_perfetto_python()?;
    ensure_kubernetes_validate()?;
    ensure_dist()?;
    ensure_cargo_modules()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ulimits_is_added_once_under_containers() {
        assert_eq!(
            with_default_ulimits("").as_deref(),
            Some("\n[containers]\ndefault_ulimits = []\n")
        );
        assert_eq!(
            with_default_ulimits("[engine]\nx = 1\n[containers]\nlog_driver = \"k8s-file\"\n")
                .as_deref(),
            Some(
                "[engine]\nx = 1\n[containers]\ndefault_ulimits = []\nlog_driver = \"k8s-file\"\n"
            )
        );
        assert_eq!(
            with_default_ulimits("[containers]\ndefault_ulimits = []\n"),
            None
        );
    }
}
