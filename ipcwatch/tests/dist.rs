//! What `cargo xtask dist` made, in target/dist: the static binary, the
//! .deb and lintian's verdict. Ignored by a plain `cargo test` (they need
//! the release build that dist makes); `cargo xtask test` runs dist, then
//! these with --ignored.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn dist() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dist");
    assert!(
        dir.join("ipcwatch").is_file(),
        "{} has no ipcwatch: run cargo xtask dist first",
        dir.display()
    );
    dir
}

fn static_bin() -> String {
    dist().join("ipcwatch").display().to_string()
}

fn deb() -> PathBuf {
    dist().join(format!(
        "ipcwatch_{}-1_amd64.deb",
        env!("CARGO_PKG_VERSION")
    ))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{cmd:?} cannot start: {e}"))
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs cargo xtask dist; cargo xtask test runs it"]
fn the_static_binary_is_static_and_runs_where_there_is_no_libc() {
    let bin = static_bin();
    let file = ok(Command::new("file").arg(&bin));
    assert!(file.contains("static-pie linked"), "{file}");
    assert!(file.contains("stripped"), "{file}");
    let ldd = run(Command::new("ldd").arg(&bin));
    let said = String::from_utf8_lossy(&ldd.stdout) + String::from_utf8_lossy(&ldd.stderr);
    assert!(
        said.contains("statically linked") || said.contains("not a dynamic executable"),
        "{said}"
    );
    // A root with the binary and nothing else (no libc, no loader): the
    // binary starts, and with the kernel's /proc and /sys it tries every
    // feature (a private mount namespace drops the mounts with it).
    let root = temp_dir();
    std::fs::copy(&bin, root.path().join("ipcwatch")).unwrap();
    for d in ["proc", "sys"] {
        std::fs::create_dir(root.path().join(d)).unwrap();
    }
    // The same version and commit as this tree's debug build. (Their eBPF
    // objects are built apart, and are not always the same bytes: a build
    // script run under clippy builds the one the debug build embeds.)
    let version = ok(Command::new("chroot")
        .arg(root.path())
        .args(["/ipcwatch", "--version"]));
    let without_object = |v: &str| v.split(", eBPF object").next().unwrap_or(v).to_owned();
    assert_eq!(
        without_object(&version),
        without_object(&ok(Command::new(ipcwatch()).arg("--version")))
    );
    assert!(version.contains(", eBPF object "), "{version}");
    let r = root.path().display();
    let doctor = ok(Command::new("unshare").args([
        "--mount",
        "sh",
        "-c",
        &format!(
            "mount --rbind /proc {r}/proc && mount --rbind /sys {r}/sys && chroot {r} /ipcwatch doctor"
        ),
    ]));
    assert!(
        doctor.contains("ipcwatch can trace on this kernel."),
        "{doctor}"
    );
    // Feature by feature, what the normal build finds (the details may
    // name addresses and numbers that differ).
    let verdicts = |text: &str| -> Vec<(String, String)> {
        text.lines()
            .skip_while(|l| !l.starts_with("FEATURE"))
            .skip(1)
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((w.next()?.to_owned(), w.next()?.to_owned()))
            })
            .filter(|(_, v)| v == "yes" || v == "NO")
            .collect()
    };
    let normal = ok(Command::new(ipcwatch()).arg("doctor"));
    // There is no C library in that root to put a uprobe on: uprobes are
    // the one feature it cannot show.
    let without_uprobe = |text: &str| -> Vec<(String, String)> {
        verdicts(text)
            .into_iter()
            .filter(|(f, _)| f != "uprobe")
            .collect()
    };
    assert_eq!(
        without_uprobe(&doctor),
        without_uprobe(&normal),
        "{doctor}\n{normal}"
    );
    assert!(doctor.contains("no C library found"), "{doctor}");
    // Outside it, the static build finds the machine's C library (it runs
    // with none of its own) and every verdict is the normal build's.
    let outside = ok(Command::new(&bin).arg("doctor"));
    assert_eq!(verdicts(&outside), verdicts(&normal), "{outside}\n{normal}");
}

#[test]
#[ignore = "needs cargo xtask dist; cargo xtask test runs it"]
fn the_static_binary_records_the_same_bytes_as_the_normal_build() {
    require_root();
    let cmd = ["--", "sh", "-c", "head -c 100000 /dev/zero | wc -c"];
    let pipe_bytes = |t: &Trace| -> (u64, u64, usize) {
        // One create line per end.
        let pipes: BTreeSet<String> = t
            .of_type("channel")
            .filter(|l| l["event"] == "create" && l["kind"] == "pipe")
            .map(|l| l["channel"].as_str().unwrap().to_owned())
            .collect();
        let pipes: Vec<String> = pipes.into_iter().collect();
        assert_eq!(pipes.len(), 1, "{pipes:?}");
        (
            t.bytes(&pipes[0], "write"),
            t.bytes(&pipes[0], "read"),
            t.summary()["channels"].as_array().map_or(0, Vec::len),
        )
    };
    let normal = record(&cmd);
    let static_ = record_with(&static_bin(), &cmd);
    assert_eq!(static_.stdout().trim(), "100000");
    // The same warnings (it found the machine's C library for the lock
    // inventory, as the normal build does).
    let warnings = |t: &Trace| -> Vec<String> {
        t.stderr()
            .lines()
            .filter(|l| l.starts_with("ipcwatch: warning"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(warnings(&static_), warnings(&normal));
    assert_eq!(
        pipe_bytes(&static_),
        (100_000, 100_000, pipe_bytes(&normal).2)
    );
    assert_eq!(pipe_bytes(&static_), pipe_bytes(&normal));
    assert_schema(&static_.lines);
}

#[test]
#[ignore = "needs cargo xtask dist; cargo xtask test runs it"]
fn the_stripped_binary_still_names_the_demo_race() {
    require_root();
    let bin = static_bin();
    let t = record_with(
        &bin,
        &["--", &bin, "demo", "--workloads-only", "--duration", "15"],
    );
    let races: Vec<_> = t.of_type("race").collect();
    assert!(
        !races.is_empty(),
        "no race in 15 s of the demo: {}",
        t.stderr()
    );
    let text = races[0].to_string();
    assert!(text.contains("ipcwatch_demo_bump_unsynchronized"), "{text}");
}

/// Every file the package installs.
const INSTALLED: [&str; 17] = [
    "/usr/sbin/ipcwatch",
    "/usr/share/man/man8/ipcwatch.8.gz",
    "/usr/share/man/man8/ipcwatch-record.8.gz",
    "/usr/share/man/man8/ipcwatch-agent.8.gz",
    "/usr/share/man/man8/ipcwatch-tui.8.gz",
    "/usr/share/man/man8/ipcwatch-demo.8.gz",
    "/usr/share/man/man8/ipcwatch-graph.8.gz",
    "/usr/share/man/man8/ipcwatch-doctor.8.gz",
    "/usr/share/man/man8/ipcwatch-analyze.8.gz",
    "/usr/share/man/man8/ipcwatch-export.8.gz",
    "/usr/share/man/man8/ipcwatch-completions.8.gz",
    "/usr/share/man/man5/ipcwatch-ndjson.5.gz",
    "/usr/share/bash-completion/completions/ipcwatch",
    "/usr/share/zsh/vendor-completions/_ipcwatch",
    "/usr/share/fish/vendor_completions.d/ipcwatch.fish",
    "/usr/share/doc/ipcwatch/ndjson.md",
    "/usr/share/doc/ipcwatch/ndjson.schema.json",
];

#[test]
#[ignore = "needs cargo xtask dist; cargo xtask test runs it"]
fn the_package_installs_runs_and_removes_cleanly() {
    require_root();
    let deb = deb();
    // A package left by an earlier, interrupted run.
    let _ = run(Command::new("dpkg").args(["--purge", "ipcwatch"]));
    ok(Command::new("dpkg").arg("-i").arg(&deb));
    let listed = ok(Command::new("dpkg").args(["-L", "ipcwatch"]));
    for f in INSTALLED {
        assert!(
            listed.lines().any(|l| l == f),
            "dpkg -L lacks {f}:\n{listed}"
        );
        assert!(Path::new(f).is_file(), "{f} is not installed");
    }
    for f in [
        "/usr/share/doc/ipcwatch/copyright",
        "/usr/share/doc/ipcwatch/changelog.Debian.gz",
    ] {
        assert!(Path::new(f).is_file(), "{f}");
    }
    let doctor = ok(Command::new("/usr/sbin/ipcwatch").arg("doctor"));
    assert!(
        doctor.contains("ipcwatch can trace on this kernel."),
        "{doctor}"
    );
    // man finds the pages where the package put them.
    let page = ok(Command::new("man").args(["-w", "8", "ipcwatch-record"]));
    assert_eq!(page.trim(), "/usr/share/man/man8/ipcwatch-record.8.gz");
    let page = ok(Command::new("man").args(["-w", "5", "ipcwatch-ndjson"]));
    assert_eq!(page.trim(), "/usr/share/man/man5/ipcwatch-ndjson.5.gz");
    let ndjson = ok(Command::new("man")
        .args(["-P", "cat", "5", "ipcwatch-ndjson"])
        .env("MANWIDTH", "100"));
    assert!(ndjson.contains("tool_commit"), "{ndjson}");
    // The installed completion script calls the installed binary.
    let script = Path::new("/usr/share/bash-completion/completions/ipcwatch");
    assert!(
        std::fs::read_to_string(script)
            .unwrap()
            .contains("/usr/sbin/ipcwatch")
    );
    bash::check_completion(script);
    ok(Command::new("dpkg").args(["--purge", "ipcwatch"]));
    for f in INSTALLED {
        assert!(!Path::new(f).exists(), "{f} is left after removal");
    }
    assert!(!Path::new("/usr/share/doc/ipcwatch").exists());
    let status = run(Command::new("dpkg-query").args(["-W", "-f", "${Status}", "ipcwatch"]));
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.is_empty() || status.contains("not-installed"),
        "{status}"
    );
}

#[test]
#[ignore = "needs cargo xtask dist; cargo xtask test runs it"]
fn lintian_finds_nothing_wrong_with_the_package() {
    let out = run(Command::new("lintian")
        .args([
            "--fail-on",
            "error,warning",
            "--display-info",
            "--no-tag-display-limit",
        ])
        .arg(deb()));
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "lintian ({}):\n{said}", out.status);
    assert!(
        !said
            .lines()
            .any(|l| l.starts_with("E:") || l.starts_with("W:")),
        "{said}"
    );
}
