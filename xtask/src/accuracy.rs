//! `cargo xtask accuracy`: run every race-detector acceptance workload a
//! number of times under `ipcwatch record --fail-on-race` and tabulate
//! precision and recall in docs/races.md.

use std::fmt::Write as _;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::build::Bins;
use crate::cmd::root;

#[derive(clap::Args)]
pub struct AccuracyArgs {
    /// Runs per workload.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Seconds each workload runs.
    #[arg(long, default_value_t = 5)]
    secs: u64,
}

struct Variant {
    name: &'static str,
    racy: bool,
    args: Vec<String>,
}

/// The variants, run by the workload binary `bin`.
fn variants(bin: &str, secs: u64) -> Vec<Variant> {
    let s = secs.to_string();
    let counter = |memory: &str, sync: &str| -> Vec<String> {
        [
            bin, "counter", "--memory", memory, "--sync", sync, "--secs", &s,
        ]
        .iter()
        .map(|x| x.to_string())
        .collect()
    };
    let posix = format!(
        "n=/ipcwatch-acc-$$; {bin} posix-counter --name $n --secs {s} & {bin} posix-counter --name $n --secs {s}; wait; rm -f /dev/shm/${{n#/}}"
    );
    let pipes = |size: &str, records: &str| -> Vec<String> {
        [
            bin,
            "pipe-writers",
            "--writers",
            "3",
            "--size",
            size,
            "--records",
            records,
        ]
        .iter()
        .map(|x| x.to_string())
        .collect()
    };
    vec![
        Variant {
            name: "racy counter, shared anonymous memory",
            racy: true,
            args: counter("anon", "none"),
        },
        Variant {
            name: "racy counter, memfd",
            racy: true,
            args: counter("memfd", "none"),
        },
        Variant {
            name: "racy counter, SysV shm",
            racy: true,
            args: counter("sysv", "none"),
        },
        Variant {
            name: "racy counter, POSIX shm, unrelated processes",
            racy: true,
            args: vec!["sh".into(), "-c".into(), posix],
        },
        Variant {
            name: "pipe writers, 64 KiB records",
            racy: true,
            args: pipes("65536", "32"),
        },
        Variant {
            name: "process-shared mutex",
            racy: false,
            args: counter("anon", "mutex"),
        },
        Variant {
            name: "process-shared rwlock",
            racy: false,
            args: counter("anon", "rwlock"),
        },
        Variant {
            name: "atomic increments",
            racy: false,
            args: counter("anon", "atomic"),
        },
        Variant {
            name: "named semaphore",
            racy: false,
            args: counter("anon", "semaphore"),
        },
        Variant {
            name: "token over two pipes",
            racy: false,
            args: counter("anon", "token"),
        },
        Variant {
            name: "pipe writers, 512 B records",
            racy: false,
            args: pipes("512", "2000"),
        },
    ]
}

pub fn run(bins: &Bins, args: &AccuracyArgs) -> Result<()> {
    let workload = bins.workload.display().to_string();
    let mut table = String::from("| workload | racy | flagged | runs |\n|---|---|---|---|\n");
    let (mut tp, mut fn_, mut fp, mut tn) = (0, 0, 0, 0);
    for v in variants(&workload, args.secs) {
        let mut flagged = 0;
        for _ in 0..args.runs {
            let status = Command::new(&bins.ipcwatch)
                .args(["record", "-o", "/dev/null", "--fail-on-race", "--"])
                .args(&v.args)
                .output()
                .context("running ipcwatch record")?
                .status;
            match status.code() {
                Some(3) => flagged += 1,
                Some(0) => {}
                other => bail!("{}: ipcwatch exited with {other:?}", v.name),
            }
        }
        if v.racy {
            tp += flagged;
            fn_ += args.runs - flagged;
        } else {
            fp += flagged;
            tn += args.runs - flagged;
        }
        eprintln!("accuracy: {}: flagged {flagged}/{}", v.name, args.runs);
        let _ = writeln!(
            table,
            "| {} | {} | {flagged} | {} |",
            v.name,
            if v.racy { "yes" } else { "no" },
            args.runs
        );
    }
    let precision = if tp + fp > 0 {
        tp as f64 / (tp + fp) as f64
    } else {
        1.0
    };
    let recall = if tp + fn_ > 0 {
        tp as f64 / (tp + fn_) as f64
    } else {
        1.0
    };
    let _ = write!(
        table,
        "\nPrecision {precision:.2} ({tp} true / {} flagged), recall {recall:.2} ({tp} of {} racy runs flagged); {tn} clean runs left alone.\n",
        tp + fp,
        tp + fn_
    );
    println!("{table}");
    let path = root().join("docs/races.md");
    let old = std::fs::read_to_string(&path)?;
    let (begin, end) = ("<!-- accuracy:begin -->", "<!-- accuracy:end -->");
    let body = format!(
        "{begin}\nMeasured by `cargo xtask accuracy --runs {} --secs {}` (default mode, each run a fresh `ipcwatch record --fail-on-race`):\n\n{table}{end}",
        args.runs, args.secs
    );
    let new = match (old.find(begin), old.find(end)) {
        (Some(a), Some(b)) if b > a => format!("{}{body}{}", &old[..a], &old[b + end.len()..]),
        _ => format!("{old}\n## Precision and recall\n\n{body}\n"),
    };
    std::fs::write(&path, new)?;
    eprintln!("accuracy: updated {}", path.display());
    Ok(())
}
