//! `cargo xtask`: set-up, build, run, test and benchmark ipcwatch.
//!
//! Every command first makes sure the eBPF toolchain is there (nightly
//! rust-src and bpf-linker built against nightly's own LLVM), installing
//! what is missing. When everything is present that check takes seconds.

mod accuracy;
mod bench;
mod bench_collector;
mod bench_load;
mod fuzz;
mod setup;
mod soak;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the eBPF build needs (idempotent).
    Setup,
    /// Build ipcwatch (release) with its embedded eBPF object.
    Build,
    /// Build, then run ipcwatch with ARGS (as root).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Every check: fmt, clippy (userspace and eBPF), unit tests, and the
    /// root integration tests (serially).
    Test,
    /// Benchmarks: traced vs untraced, side by side in one run.
    Bench(bench::BenchArgs),
    /// The collector's throughput on one core: synthetic events through
    /// the decoder, the model and the NDJSON writer (no kernel, no root).
    BenchCollector {
        /// Events per run (3 runs; the median is reported).
        #[arg(long, default_value_t = 3_000_000)]
        events: u64,
    },
    /// Precision and recall of the race detector over its acceptance
    /// workloads (docs/races.md).
    Accuracy(accuracy::AccuracyArgs),
    /// Run the fuzz targets (not part of `test`; minutes per target).
    Fuzz(fuzz::FuzzArgs),
    /// Long run at a high event rate, sampling RSS and losses (not in CI).
    Soak(soak::SoakArgs),
    /// Loss under load: the highest event rate recorded with nothing lost,
    /// and every loss checked to be counted (markdown on stdout).
    BenchLoss {
        /// Use this ipcwatch binary instead of building one (the workload
        /// is built from this tree either way).
        #[arg(long)]
        bin: Option<PathBuf>,
    },
    /// ipcwatch's memory with 10,000 live channels held by 1,000 processes
    /// (markdown on stdout).
    BenchMemory {
        #[arg(long, default_value_t = 1000)]
        procs: usize,
        #[arg(long, default_value_t = 10_000)]
        channels: usize,
        /// Seconds the channels are held, sampled every second.
        #[arg(long, default_value_t = 60)]
        hold: u64,
        /// Use this ipcwatch binary instead of building one (the workload
        /// is built from this tree either way).
        #[arg(long)]
        bin: Option<PathBuf>,
    },
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Run a command in the workspace root; fail with its name when it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    cmd.current_dir(root());
    cmd.env("PATH", setup::path_with_cargo_bin());
    eprintln!("+ {}", show(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", show(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", show(cmd));
    }
    Ok(())
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn cargo() -> Command {
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

fn build_release() -> Result<PathBuf> {
    run(cargo().args(["build", "--release", "--package", "ipcwatch"]))?;
    Ok(root().join("target/release/ipcwatch"))
}

/// What a benchmark runs: ipcwatch, the tracer, and ipcwatch-workload,
/// the programs it traces (not shipped with ipcwatch).
pub struct Bins {
    pub ipcwatch: PathBuf,
    pub workload: PathBuf,
}

fn build_workload_release() -> Result<PathBuf> {
    run(cargo().args(["build", "--release", "--package", "ipcwatch-workload"]))?;
    Ok(root().join("target/release/ipcwatch-workload"))
}

/// Release builds of both binaries.
fn build_release_with_workload() -> Result<Bins> {
    Ok(Bins {
        ipcwatch: build_release()?,
        workload: build_workload_release()?,
    })
}

/// `bin` as the tracer when given, or a release build; the workloads
/// always come from a release build of this tree (after the set-up: the
/// workload crate builds the eBPF object through the ipcwatch library).
fn given_or_built(bin: Option<PathBuf>) -> Result<Bins> {
    setup::ensure()?;
    match bin {
        Some(ipcwatch) => Ok(Bins {
            ipcwatch,
            workload: build_workload_release()?,
        }),
        None => build_release_with_workload(),
    }
}

fn test() -> Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The eBPF crate, separately, for its own target.
    run(Command::new("rustup").args([
        "run",
        "nightly",
        "cargo",
        "clippy",
        "--package",
        "ipcwatch-ebpf",
        "--release",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The integration tests run ipcwatch-workload next to ipcwatch (same
    // profile); cargo builds another package's binaries only for that
    // package's own tests, and cannot be called from a test (build lock).
    run(cargo().args(["build", "--package", "ipcwatch-workload"]))?;
    // Unit tests (no root needed) run in parallel...
    run(cargo().args(["test", "--workspace", "--lib", "--bins"]))?;
    // ...the root integration tests share kernel state: one at a time.
    run(cargo().args([
        "test",
        "--package",
        "ipcwatch",
        "--tests",
        "--",
        "--test-threads=1",
    ]))?;
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Setup => setup::ensure(),
        Cmd::Build => {
            setup::ensure()?;
            build_release().map(|_| ())
        }
        Cmd::Run { args } => {
            setup::ensure()?;
            let bin = build_release()?;
            let mut cmd = Command::new(bin);
            cmd.args(args);
            use std::os::unix::process::CommandExt;
            Err(cmd.exec()).context("cannot start ipcwatch")
        }
        Cmd::Test => {
            setup::ensure()?;
            test()
        }
        Cmd::Fuzz(args) => {
            setup::ensure()?;
            fuzz::run_all(&args)
        }
        Cmd::Accuracy(args) => {
            setup::ensure()?;
            let bins = build_release_with_workload()?;
            accuracy::run(&bins, &args)
        }
        Cmd::Soak(args) => {
            setup::ensure()?;
            let bins = build_release_with_workload()?;
            soak::run(&bins, &args)
        }
        Cmd::BenchCollector { events } => {
            setup::ensure()?;
            let workload = build_workload_release()?;
            print!("{}", bench_collector::run(&workload, events)?);
            Ok(())
        }
        Cmd::BenchLoss { bin } => {
            print!("{}", bench_load::loss_sweep(&given_or_built(bin)?)?);
            Ok(())
        }
        Cmd::BenchMemory {
            procs,
            channels,
            hold,
            bin,
        } => {
            let bins = given_or_built(bin)?;
            print!("{}", bench_load::memory_with(&bins, procs, channels, hold)?);
            Ok(())
        }
        Cmd::Bench(args) => {
            setup::ensure()?;
            let bins = build_release_with_workload()?;
            bench::run(&bins, &args)
        }
    }
}
