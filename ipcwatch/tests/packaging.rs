//! What the package ships, checked on this build: `--version` and the
//! trace header name the commit, the man pages have their sections, and
//! the bash completion completes in a real bash. (The static binary and
//! the .deb are checked in dist.rs, after `cargo xtask dist`.)

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// `git rev-parse --short=12 HEAD` of this checkout.
fn head_commit() -> String {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git runs");
    assert!(out.status.success(), "not a git checkout");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn version_names_the_commit_and_the_ebpf_object() {
    let v = stdout_of(Command::new(ipcwatch()).arg("--version"));
    let prefix = format!(
        "ipcwatch {} (commit {}, eBPF object ",
        env!("CARGO_PKG_VERSION"),
        head_commit()
    );
    let hash = v
        .trim()
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("--version said {v:?}, not {prefix}HASH)"));
    assert!(
        hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{hash:?}"
    );
    // Subcommands answer the same.
    let sub = stdout_of(Command::new(ipcwatch()).args(["record", "--version"]));
    assert_eq!(sub.trim().replace("ipcwatch-record", "ipcwatch"), v.trim());
}

#[test]
fn the_trace_header_names_the_commit() {
    require_root();
    let t = record(&["--", "true"]);
    let header = &t.lines[0];
    assert_eq!(header["type"], "header");
    assert_eq!(header["tool_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(header["tool_commit"], head_commit().as_str());
    assert_schema(&t.lines);
}

const PAGES: [&str; 10] = [
    "ipcwatch.8",
    "ipcwatch-record.8",
    "ipcwatch-agent.8",
    "ipcwatch-tui.8",
    "ipcwatch-demo.8",
    "ipcwatch-graph.8",
    "ipcwatch-doctor.8",
    "ipcwatch-analyze.8",
    "ipcwatch-export.8",
    "ipcwatch-completions.8",
];

/// `man` renders a page as a user reads it, with groff's warnings on.
fn render(page: &Path) -> String {
    let out = Command::new("man")
        .args(["--warnings", "-E", "UTF-8", "-l", "-Tutf8"])
        .arg(page)
        .env("MANWIDTH", "100")
        .output()
        .expect("man runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{}: {stderr}",
        page.display()
    );
    // Bold and underline are drawn with backspaces: keep the letters.
    let text = String::from_utf8_lossy(&out.stdout);
    let mut plain = String::new();
    for c in text.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    plain
}

#[test]
fn man_pages_are_written_for_every_subcommand_with_their_sections() {
    let dir = temp_dir();
    stdout_of(
        Command::new(ipcwatch())
            .arg("man")
            .arg("--dir")
            .arg(dir.path()),
    );
    let mut written: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    written.sort();
    let mut expected: Vec<String> = PAGES.iter().map(|p| p.to_string()).collect();
    expected.sort();
    assert_eq!(written, expected);
    for page in PAGES {
        let text = render(&dir.path().join(page));
        for section in [
            "NAME",
            "SYNOPSIS",
            "EXIT STATUS",
            "ENVIRONMENT",
            "FILES",
            "EXAMPLES",
            "SEE ALSO",
        ] {
            assert!(
                text.lines().any(|l| l == section),
                "{page} has no {section}:\n{text}"
            );
        }
        for status in ["0", "1", "2", "3"] {
            assert!(
                text.lines()
                    .any(|l| l.split_whitespace().next() == Some(status)),
                "{page}: exit status {status} missing"
            );
        }
        assert!(text.contains("ipcwatch-ndjson(5)"), "{page}");
    }
    let record = render(&dir.path().join("ipcwatch-record.8"));
    for needle in [
        "--pid",
        "--fail-on-race",
        "$ ipcwatch record -o t.ndjson -- sh -c 'head -c 100000 /dev/zero | wc -c'",
        "IPCWATCH_NO_TP_BTF",
        "/sys/kernel/btf/vmlinux",
    ] {
        assert!(
            record.contains(needle),
            "ipcwatch-record.8 lacks {needle:?}:\n{record}"
        );
    }
}

#[test]
fn bash_completes_pids_names_kinds_and_trace_files() {
    let dir = temp_dir();
    let script = dir.path().join("ipcwatch.bash");
    let text = stdout_of(Command::new(ipcwatch()).args(["completions", "bash"]));
    assert!(text.contains(ipcwatch()), "the script calls this binary");
    std::fs::write(&script, text).unwrap();
    bash::check_completion(&script);
    // zsh and fish get their scripts too (no zsh or fish here to run them).
    for shell in ["zsh", "fish"] {
        let text = stdout_of(Command::new(ipcwatch()).args(["completions", shell]));
        assert!(text.contains("IPCWATCH_COMPLETE"), "{shell}: {text}");
    }
}
