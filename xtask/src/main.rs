//! `cargo xtask`: set-up, build, run, test and benchmark ipcwatch.
//!
//! Every command first makes sure the eBPF toolchain is there (nightly
//! rust-src and bpf-linker built against nightly's own LLVM) and the tools
//! the checks use (tmux, stress-ng, cargo-modules), installing what is missing. When
//! everything is present that check takes seconds.

// Modules reach each other through `use`, where `cargo xtask cycles` sees
// them, not through `crate::module::item` paths in function bodies, where
// it does not (the crates allowed absolute paths are in xtask/clippy.toml).
#![warn(clippy::absolute_paths)]

mod accuracy;
mod bench;
mod bench_collector;
mod bench_load;
mod bench_stages;
mod build;
mod cmd;
mod compare;
mod cycles;
mod dist;
mod fuzz;
mod kernels;
mod nginx;
mod realsw;
mod setup;
mod soak;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::build::{
    build_release, build_release_with_workload, build_workload_release, given_or_built,
};
use crate::cmd::{cargo, run};

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
    /// What people install, into target/dist: a static binary (musl) with
    /// its debug info apart, man pages, shell completions and a .deb.
    Dist {
        /// Compile with the `dist-check` profile (opt-level 1), as `test`
        /// does: the same package, built faster, not for shipping.
        #[arg(long)]
        check: bool,
    },
    /// Build, then run ipcwatch with ARGS (as root).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Every check: fmt, clippy (userspace and eBPF), module cycles, unit
    /// tests, and the root integration tests (serially).
    Test,
    /// Fail when a crate's modules import each other in a loop, naming
    /// every loop (cargo-modules' graph of each crate of the workspace).
    Cycles,
    /// Benchmarks: traced vs untraced, side by side in one run.
    Bench(bench::BenchArgs),
    /// The TUI section of `bench` alone: the pipe ping-pong untraced,
    /// under `tui --headless --per-event` and under `tui --headless`
    /// (kernel totals), rounds in turn; prints the table.
    BenchTui {
        /// Rounds (each runs all three; medians are reported).
        #[arg(long, default_value_t = bench::TUI_ROUNDS)]
        rounds: usize,
        /// Round trips per run.
        #[arg(long, default_value_t = 200_000)]
        iters: u64,
    },
    /// Where a traced event's cost goes in the kernel (a section of
    /// `bench`): the 1-byte pipe and unix socket ping-pongs untraced,
    /// under the empty hooks, and under ipcwatch turned away by its
    /// filter, classifying without sending, and sending.
    BenchStages {
        /// Rounds (the order rotating; medians are reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Round trips per run.
        #[arg(long, default_value_t = 50_000)]
        iters: u64,
    },
    /// The collector's throughput on one core: synthetic events through
    /// the decoder, the model and the NDJSON writer (no kernel, no root).
    BenchCollector {
        /// Events per run (3 runs; the median is reported).
        #[arg(long, default_value_t = 3_000_000)]
        events: u64,
        /// Also run an earlier build, alternating with this tree's: an
        /// ipcwatch-workload, or an ipcwatch from before the workloads
        /// left it (`ipcwatch workload collector-throughput`).
        #[arg(long, value_name = "BIN")]
        baseline: Option<PathBuf>,
    },
    /// ipcwatch's own CPU on real load, the row `cargo xtask bench`
    /// measures: whole-system `record` next to pgbench (Debian's
    /// PostgreSQL), untraced and traced alternating.
    BenchOwnCpu {
        /// Another ipcwatch (an earlier build), alternating with this one.
        #[arg(long, value_name = "BIN")]
        baseline: Option<PathBuf>,
        /// Alternating rounds (medians are reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds of each pgbench run.
        #[arg(long, default_value_t = 15)]
        secs: u64,
        /// Use this ipcwatch instead of a release build of this tree.
        #[arg(long, value_name = "BIN")]
        bin: Option<PathBuf>,
    },
    /// The real-server row `cargo xtask bench` measures: nginx (4
    /// workers) under `ab -k -c 16`, untraced and under a whole-system
    /// `record`, alternating.
    BenchNginx {
        /// Another ipcwatch (an earlier build), alternating with this one.
        #[arg(long, value_name = "BIN")]
        baseline: Option<PathBuf>,
        /// Alternating rounds (medians are reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Requests per ab run.
        #[arg(long, default_value_t = 200_000)]
        requests: u64,
        /// Use this ipcwatch instead of a release build of this tree.
        #[arg(long, value_name = "BIN")]
        bin: Option<PathBuf>,
    },
    /// Precision and recall of the race detector over its acceptance
    /// workloads (docs/races.md).
    Accuracy(accuracy::AccuracyArgs),
    /// PostgreSQL (Debian's, installed when missing) under pgbench,
    /// untraced and traced in one run: tps ratio, ipcwatch's peak RSS and
    /// CPU, findings (must be 0) and the words armed (docs/races.md).
    Postgres(realsw::PostgresArgs),
    /// ipcwatch doctor and the root integration tests (pipes, sockets,
    /// shm, races, faults) on each of Debian's kernels under QEMU (TCG);
    /// one table out, copied into docs/kernels.md.
    Kernels(kernels::KernelsArgs),
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

/// Runs `step` and remembers how long it took, for the table [`test`]
/// prints at the end (and when a step fails).
struct Steps(Vec<(&'static str, std::time::Duration)>);

impl Steps {
    fn run(&mut self, name: &'static str, step: impl FnOnce() -> Result<()>) -> Result<()> {
        let t = std::time::Instant::now();
        let r = step();
        self.0.push((name, t.elapsed()));
        if r.is_err() {
            self.print();
        }
        r
    }

    fn print(&self) {
        eprintln!("xtask test: wall time per step");
        let total: std::time::Duration = self.0.iter().map(|(_, d)| *d).sum();
        for (name, d) in &self.0 {
            eprintln!("  {name:<28} {:>7.1} s", d.as_secs_f64());
        }
        eprintln!("  {:<28} {:>7.1} s", "total", total.as_secs_f64());
    }
}

fn test() -> Result<()> {
    let mut steps = Steps(Vec::new());
    steps.run("setup", setup::ensure)?;
    steps.run("fmt", || {
        run(cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    steps.run("clippy", || {
        run(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    // The eBPF crate, separately, for its own target.
    steps.run("clippy (eBPF)", || {
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
        ]))
    })?;
    steps.run("module cycles", cycles::check)?;
    // The integration tests run ipcwatch-workload next to ipcwatch (same
    // profile); cargo builds another package's binaries only for that
    // package's own tests, and cannot be called from a test (build lock).
    steps.run("build workload", || {
        run(cargo().args(["build", "--package", "ipcwatch-workload"]))
    })?;
    // Unit tests (no root needed) run in parallel...
    steps.run("unit tests", || {
        run(cargo().args(["test", "--workspace", "--lib", "--bins"]))
    })?;
    // ...the root integration tests share kernel state: one at a time.
    steps.run("integration tests", || {
        run(cargo().args([
            "test",
            "--package",
            "ipcwatch",
            "--tests",
            "--",
            "--test-threads=1",
        ]))
    })?;
    // One kernel other than this machine's: Debian 12's 6.1 cloud kernel
    // under QEMU (TCG), the fast subset (doctor, one pipes test, one race
    // test); the whole matrix is `cargo xtask kernels` (docs/kernels.md).
    steps.run("kernel 6.1 (QEMU)", || {
        setup::ensure_guest_tools()?;
        kernels::run_kernels(&kernels::KernelsArgs {
            only: Some("12-cloud".into()),
            fast: true,
            doctor_only: false,
            hook_cost: false,
            group: Vec::new(),
            test: None,
            run: None,
            loglevel: 4,
            no_docs: true,
        })
    })?;
    // The package, built once, and its tests.
    steps.run("dist", || dist::run_dist(dist::Profile::Check))?;
    steps.run("dist tests", || {
        run(cargo().args([
            "test",
            "--package",
            "ipcwatch",
            "--test",
            "dist",
            // The container image of deploy/Containerfile, from target/dist.
            "--test",
            "deploy",
            "--",
            "--ignored",
            "--test-threads=1",
        ]))
    })?;
    steps.print();
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Setup => setup::ensure(),
        Cmd::Kernels(args) => {
            setup::ensure()?;
            setup::ensure_guest_tools()?;
            kernels::run_kernels(&args)
        }
        Cmd::Build => {
            setup::ensure()?;
            build_release().map(|_| ())
        }
        Cmd::Dist { check } => {
            setup::ensure()?;
            dist::run_dist(if check {
                dist::Profile::Check
            } else {
                dist::Profile::Release
            })
        }
        Cmd::Run { args } => {
            setup::ensure()?;
            let bin = build_release()?;
            let mut cmd = Command::new(bin);
            cmd.args(args);
            use std::os::unix::process::CommandExt;
            Err(cmd.exec()).context("cannot start ipcwatch")
        }
        Cmd::Test => test(),
        Cmd::Cycles => {
            setup::ensure()?;
            cycles::check()
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
        Cmd::Postgres(args) => {
            setup::ensure()?;
            let pg = setup::ensure_postgres()?;
            let bin = match &args.bin {
                Some(b) => b.clone(),
                None => build_release()?,
            };
            realsw::run(&bin, pg, &args)
        }
        Cmd::Soak(args) => {
            setup::ensure()?;
            let bins = build_release_with_workload()?;
            soak::run(&bins, &args)
        }
        Cmd::BenchTui { rounds, iters } => {
            let bins = build_release_with_workload()?;
            let load = bench::load_average();
            let table = bench::tui_load(&bins, iters, rounds, bench::pinned())?;
            println!(
                "load average {load} at the start, {} at the end\n\n{table}",
                bench::load_average()
            );
            Ok(())
        }
        Cmd::BenchStages { rounds, iters } => {
            let bins = build_release_with_workload()?;
            let load = bench::load_average();
            let table = bench_stages::run(&bins, iters, rounds, bench::pinned())?;
            println!(
                "load average {load} at the start, {} at the end\n\n{table}",
                bench::load_average()
            );
            Ok(())
        }
        Cmd::BenchCollector { events, baseline } => {
            setup::ensure()?;
            let workload = build_workload_release()?;
            let text = match baseline {
                Some(b) => bench_collector::run_against(&workload, &b, events)?,
                None => bench_collector::run(&workload, events)?,
            };
            print!("{text}");
            Ok(())
        }
        Cmd::BenchOwnCpu {
            baseline,
            rounds,
            secs,
            bin,
        } => {
            let bin = ipcwatch_bin(bin)?;
            let base = baseline.as_deref().map(|b| (b, "before"));
            print!("{}", realsw::own_cpu(&bin, base, rounds, secs)?);
            Ok(())
        }
        Cmd::BenchNginx {
            baseline,
            rounds,
            requests,
            bin,
        } => {
            let bin = ipcwatch_bin(bin)?;
            let base = baseline.as_deref().map(|b| (b, "before"));
            print!("{}", nginx::row(&bin, base, rounds, requests)?);
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

/// The ipcwatch binary given, or a release build of it (after setup).
fn ipcwatch_bin(bin: Option<std::path::PathBuf>) -> Result<std::path::PathBuf> {
    setup::ensure()?;
    match bin {
        Some(b) => Ok(b),
        None => build_release(),
    }
}
