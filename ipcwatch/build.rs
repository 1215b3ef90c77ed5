//! Builds the eBPF objects (crate `ipcwatch-ebpf`, for bpfel-unknown-none,
//! with BTF; one cargo invocation builds both of its bins: `ipcwatch` and
//! `ipcwatch-compat`, for kernels without atomic fetch-and-add) into
//! OUT_DIR, where `src/kernel/object.rs` embeds them; and names the build
//! for `ipcwatch --version` and the trace header: `IPCWATCH_COMMIT` (the
//! git commit, or the variable of that name when building outside a git
//! checkout) and `IPCWATCH_EBPF_HASH` (xxh3 of both embedded objects, the
//! normal one then the compat one).
//!
//! This needs the nightly toolchain with rust-src and bpf-linker:
//! `cargo xtask setup` installs both.

use std::path::Path;
use std::process::Command;

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives in the workspace");
    let ebpf = root.join("ipcwatch-ebpf");
    let common = root.join("ipcwatch-common");
    println!("cargo:rerun-if-changed={}", common.display());
    let ebpf = ebpf.to_str().expect("the workspace path is UTF-8");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "ipcwatch-ebpf",
            root_dir: ebpf,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )?;
    let out = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR");
    let mut objects = std::fs::read(Path::new(&out).join("ipcwatch"))?;
    objects.extend(std::fs::read(Path::new(&out).join("ipcwatch-compat"))?);
    println!(
        "cargo:rustc-env=IPCWATCH_EBPF_HASH={:016x}",
        xxhash_rust::xxh3::xxh3_64(&objects)
    );
    println!("cargo:rustc-env=IPCWATCH_COMMIT={}", commit(root));
    Ok(())
}

/// The checkout's commit (12 hex digits), rebuilt when HEAD moves; or
/// `IPCWATCH_COMMIT` from the environment (a source tarball has no .git);
/// or "unknown".
fn commit(root: &Path) -> String {
    println!("cargo:rerun-if-env-changed=IPCWATCH_COMMIT");
    if let Ok(c) = std::env::var("IPCWATCH_COMMIT") {
        return c;
    }
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        // Without a rerun-if-changed on a file, cargo would keep
        // "unknown" for good once the env directive is printed: watch
        // .git (a missing path reruns this script on every build).
        println!("cargo:warning=no git commit found: the version says \"commit unknown\"");
        println!("cargo:rerun-if-changed={}", root.join(".git").display());
        return "unknown".into();
    };
    // HEAD names a branch whose ref file (or packed-refs) moves with each
    // commit; a worktree has a HEAD of its own.
    for path in [
        git(&["rev-parse", "--git-path", "HEAD"]),
        git(&["rev-parse", "--symbolic-full-name", "HEAD"])
            .and_then(|r| git(&["rev-parse", "--git-path", &r])),
        git(&["rev-parse", "--git-path", "packed-refs"]),
    ]
    .into_iter()
    .flatten()
    {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    commit
}
