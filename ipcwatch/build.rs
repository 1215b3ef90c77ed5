//! Builds the eBPF object (crate `ipcwatch-ebpf`, for bpfel-unknown-none,
//! with BTF) into OUT_DIR, where `src/kernel/loader.rs` embeds it.
//!
//! This needs the nightly toolchain with rust-src and bpf-linker:
//! `cargo xtask setup` installs both.

fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
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
    )
}
