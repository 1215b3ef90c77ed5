//! Running commands from the workspace root: the bottom of xtask, which
//! every command module uses and which uses none of them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Directory holding cargo-installed binaries.
fn cargo_bin() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("bin")
}

/// PATH with cargo's bin directory first.
pub fn path_with_cargo_bin() -> std::ffi::OsString {
    let mut paths = vec![cargo_bin()];
    if let Some(p) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(paths).unwrap_or_default()
}

/// Run a command in the workspace root; fail with its name when it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    // In the workspace, unless the caller chose a directory (apt-get
    // download writes where it runs).
    if cmd.get_current_dir().is_none() {
        cmd.current_dir(root());
    }
    cmd.env("PATH", path_with_cargo_bin());
    eprintln!("+ {}", show(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", show(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", show(cmd));
    }
    Ok(())
}

/// A command's standard output; fail when it fails (its standard error
/// goes to ours).
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start {}", show(cmd)))?;
    if !out.status.success() {
        bail!("`{}` failed ({})", show(cmd), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The command line, as it would be typed.
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// `cargo` (the one running xtask), set up to build the workspace.
pub fn cargo() -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut c = Command::new(&cargo);
    // The eBPF object is built by aya-build with the nightly toolchain;
    // make sure a RUSTUP_TOOLCHAIN from the outside does not leak in.
    c.env_remove("RUSTUP_TOOLCHAIN");
    // Without RUSTUP_TOOLCHAIN, the rustc proxy picks its toolchain from
    // the directory it runs in, and some crates ship a rust-toolchain.toml
    // (convert_case, under crossterm, asks for 1.83.0). Use the rustc next
    // to this cargo instead; aya-build removes RUSTC for the eBPF build.
    let rustc = std::path::Path::new(&cargo).with_file_name("rustc");
    if rustc.is_absolute() && rustc.exists() {
        c.env("RUSTC", rustc);
    }
    c
}

/// `tool` is on PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}
