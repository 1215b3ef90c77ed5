//! `cargo xtask fuzz`: run every cargo-fuzz target for a while, keep the
//! corpus (minimized) in the repo, and record the result in docs/fuzzing.md.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cmd::{path_with_cargo_bin, root, run};

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Minutes per target.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// Only this target (default: all).
    #[arg(long)]
    target: Option<String>,
}

const TARGETS: [&str; 3] = ["decode", "trace_reader", "symbolize"];

fn ensure_cargo_fuzz() -> Result<()> {
    let ok = Command::new("cargo")
        .args(["fuzz", "--version"])
        .env("PATH", path_with_cargo_bin())
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

pub fn run_all(args: &FuzzArgs) -> Result<()> {
    ensure_cargo_fuzz()?;
    let targets: Vec<&str> = match &args.target {
        Some(t) if TARGETS.contains(&t.as_str()) => vec![t.as_str()],
        Some(t) => bail!("unknown fuzz target {t}; targets: {TARGETS:?}"),
        None => TARGETS.to_vec(),
    };
    let mut report = String::new();
    for t in targets {
        let corpus = format!("fuzz/corpus/{t}");
        let secs = args.minutes * 60;
        run(Command::new("rustup").args(["run", "nightly", "cargo", "fuzz", "build", t]))?;
        let start = Instant::now();
        let out = Command::new("rustup")
            .args(["run", "nightly", "cargo", "fuzz", "run", t, &corpus, "--"])
            .arg(format!("-max_total_time={secs}"))
            .arg("-rss_limit_mb=4096")
            .arg("-print_final_stats=1")
            .current_dir(root())
            .env("PATH", path_with_cargo_bin())
            .output()
            .with_context(|| format!("running fuzz target {t}"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        let stat = |name: &str| -> String {
            log.lines()
                .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| "?".into())
        };
        let execs = stat("number_of_executed_units");
        let crashed = !out.status.success();
        let _ = writeln!(
            report,
            "| {t} | {:.0} s | {execs} | {} | {} |",
            start.elapsed().as_secs_f64(),
            stat("peak_rss_mb"),
            if crashed {
                "CRASH (see fuzz/artifacts)"
            } else {
                "0"
            }
        );
        eprintln!("fuzz {t}: {execs} runs, crashed: {crashed}");
        if crashed {
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("{}", lines[lines.len().saturating_sub(60)..].join("\n"));
            bail!("fuzz target {t} found a crash; the input is in fuzz/artifacts/{t}");
        }
        // Keep the corpus small enough for the repo.
        run(Command::new("rustup").args(["run", "nightly", "cargo", "fuzz", "cmin", t, &corpus]))?;
    }
    let path = root().join("docs/fuzzing.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let (begin, end) = ("<!-- fuzz:begin -->", "<!-- fuzz:end -->");
    // With --target, the other targets keep the rows of their last run.
    if args.target.is_some() {
        let ran: Vec<String> = report.lines().map(|l| l.to_string()).collect();
        let kept: String = old
            .lines()
            .filter(|l| {
                TARGETS.iter().any(|t| l.starts_with(&format!("| {t} |")))
                    && !ran
                        .iter()
                        .any(|r| r.split('|').nth(1) == l.split('|').nth(1))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        report = kept + &report;
    }
    let body = format!(
        "{begin}\nLast run: `cargo xtask fuzz --minutes {}{}` on {}{}.\n\n| target | time | runs | peak RSS (MB) | crashes |\n|---|---|---|---|---|\n{report}{end}",
        args.minutes,
        args.target
            .as_ref()
            .map(|t| format!(" --target {t}"))
            .unwrap_or_default(),
        humantime_now(),
        if args.target.is_some() {
            " (the other rows are from their own last run)"
        } else {
            ""
        }
    );
    let new = match (old.find(begin), old.find(end)) {
        (Some(a), Some(b)) if b > a => format!("{}{body}{}", &old[..a], &old[b + end.len()..]),
        _ => format!("{old}\n{body}\n"),
    };
    std::fs::write(&path, new)?;
    eprintln!("fuzz: updated {}", path.display());
    Ok(())
}

fn humantime_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
