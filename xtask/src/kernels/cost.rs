//! `cargo xtask kernels --hook-cost`: what each kind of hook costs per
//! event, in Debian's kernels, where kprobes and fentry exist (this
//! project's host has neither, so `cargo xtask bench` cannot weigh them).
//!
//! Each guest runs the bench's 1-byte ping-pongs (pipe and unix socket;
//! 4 traced calls per round trip) untraced, under empty programs on each
//! kind of hook (`ipcwatch-workload empty-hooks --hook`), and under
//! `ipcwatch record`, in alternating order, three rounds; the table has
//! the medians. The raw tracepoint and tp_btf pairs sit on `sys_enter`
//! and `sys_exit`, as ipcwatch's own programs do, and run on every
//! syscall of every process; fentry, fexit, kprobe and kretprobe sit on
//! the two kernel functions that do the ping-pong's work (`pipe_read`
//! and `pipe_write`, `unix_stream_sendmsg` and `unix_stream_recvmsg`)
//! and run on those alone. Under TCG the guest runs several times slower
//! than the hardware would: the ratios are what to read, not the rates.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Result, bail};

use super::{Kernel, build, features, initramfs, preamble, table_head};

pub const BEGIN: &str = "<!-- hook cost: begin (cargo xtask kernels --hook-cost writes it) -->";
pub const END: &str = "<!-- hook cost: end -->";

/// The ways, in the table's order.
const WAYS: [&str; 8] = [
    "untraced",
    "raw-tp",
    "tp-btf",
    "fentry",
    "fexit",
    "kprobe",
    "kretprobe",
    "ipcwatch",
];

/// (row name, ipcwatch-workload subcommand, kernel functions hooked).
const WORKLOADS: [(&str, &str, &str); 2] = [
    ("pipe ping-pong 1 B", "pingpong", "pipe_read,pipe_write"),
    (
        "unix socket ping-pong 1 B",
        "unix-pingpong",
        "unix_stream_sendmsg,unix_stream_recvmsg",
    ),
];

const ROUNDS: usize = 3;
const ITERS: u32 = 20_000;
/// Traced calls per round trip: a write and a read on each side.
const EVENTS_PER_TRIP: f64 = 4.0;

fn script(ipcwatch: &str, workload: &str) -> String {
    let mut s = preamble();
    let _ = writeln!(
        s,
        "I={ipcwatch}\nW={workload}\n\
         if command -v taskset >/dev/null 2>&1; then P0='taskset -c 0'; P1='taskset -c 1'; else P0=; P1=; fi\n\
         echo \"@@IPCW start doctor $(up)\"\n$I doctor\necho \"@@IPCW end doctor $? $(up)\"\n\
         measure() {{\n\
           case $1 in\n\
             untraced) out=$($P1 $W $2 --size 1 --iters {ITERS} 2>/tmp/err) ;;\n\
             ipcwatch) out=$($P0 $I record -o /dev/null -- $P1 $W $2 --size 1 --iters {ITERS} 2>/tmp/err) ;;\n\
             *) out=$($P0 $W empty-hooks --hook $1 --functions $3 -- $P1 $W $2 --size 1 --iters {ITERS} 2>/tmp/err) ;;\n\
           esac\n\
           rc=$?\n\
           rate=$(echo \"$out\" | sed -n 's/^round-trips\\/s //p')\n\
           echo \"@@IPCW cost $2 $1 $rc ${{rate:-none}}\"\n\
           [ $rc = 0 ] || echo \"@@IPCW cost-error $2 $1 $(tail -n 3 /tmp/err | tr '\\n' ' ' | cut -c1-300)\"\n\
         }}"
    );
    for round in 0..ROUNDS {
        for (_, sub, functions) in WORKLOADS {
            // Each round starts at another way, so no way always follows
            // the same one.
            for i in 0..WAYS.len() {
                let way = WAYS[(i + round * 3) % WAYS.len()];
                let _ = writeln!(s, "measure {way} {sub} {functions}");
            }
        }
    }
    s.push_str("echo \"@@IPCW done $(up)\"\nsync\npoweroff -f\n");
    s
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// One kernel's medians by (workload subcommand, way), its doctor
/// features and errors.
struct Measured {
    name: String,
    release: String,
    features: String,
    medians: BTreeMap<(String, String), f64>,
    errors: Vec<String>,
}

fn parse(name: &str, release: &str, console: &str) -> Measured {
    let mut rates: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut doctor: Option<Vec<&str>> = None;
    let mut features_line = String::new();
    for line in console.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(rest) = line.strip_prefix("@@IPCW ") {
            let f: Vec<&str> = rest.split_whitespace().collect();
            match f.as_slice() {
                ["start", "doctor", ..] => doctor = Some(Vec::new()),
                ["end", "doctor", ..] => {
                    features_line = features(&doctor.take().unwrap_or_default());
                }
                ["cost", sub, way, "0", rate] => {
                    if let Ok(r) = rate.parse::<f64>() {
                        rates
                            .entry((sub.to_string(), way.to_string()))
                            .or_default()
                            .push(r);
                    }
                }
                ["cost-error", sub, way, why @ ..] => {
                    errors.push(format!("{sub} under {way}: {}", why.join(" ")));
                }
                _ => {}
            }
        } else if let Some(d) = doctor.as_mut() {
            d.push(line);
        }
    }
    errors.dedup();
    Measured {
        name: name.to_string(),
        release: release.to_string(),
        features: features_line,
        medians: rates
            .into_iter()
            .filter_map(|(k, mut v)| median(&mut v).map(|m| (k, m)))
            .collect(),
        errors,
    }
}

fn table(all: &[Measured]) -> String {
    let mut s = format!(
        "(`cargo xtask kernels --hook-cost`; {ROUNDS} rounds of {ITERS} round trips, medians; \
         round trips/s, then the ratio to untraced and the guest's µs per traced call \
         above untraced; — where it failed, with the reason below the table)\n\n"
    );
    s.push_str(&table_head(&["kernel", "workload"], &WAYS));
    for m in all {
        for (row, sub, _) in WORKLOADS {
            let _ = write!(s, "| {} | {row} |", m.name);
            let base = m.medians.get(&(sub.to_string(), "untraced".to_string()));
            for w in WAYS {
                let cell = match (m.medians.get(&(sub.to_string(), w.to_string())), base) {
                    (None, _) => "—".to_string(),
                    (Some(r), _) if w == "untraced" => format!("{r:.0}"),
                    (Some(r), Some(b)) => format!(
                        "{r:.0} ({:.2}×, {:+.2} µs)",
                        r / b,
                        (1.0 / r - 1.0 / b) * 1e6 / EVENTS_PER_TRIP
                    ),
                    (Some(r), None) => format!("{r:.0}"),
                };
                let _ = write!(s, " {cell} |");
            }
            s.push('\n');
        }
    }
    s.push('\n');
    for m in all {
        let _ = writeln!(s, "- {} ({}): {}", m.name, m.release, m.features);
        for e in &m.errors {
            let _ = writeln!(s, "  - failed: {e}");
        }
    }
    s
}

/// Boot each kernel with the cost script; the table.
pub fn run(kernels: &[Kernel], loglevel: u8) -> Result<String> {
    let bins = build(&[])?;
    let workload = bins.ipcwatch.with_file_name("ipcwatch-workload");
    let init = script(
        &bins.ipcwatch.display().to_string(),
        &workload.display().to_string(),
    );
    let initrd = initramfs(&bins, init, "cost")?;
    let mut all = Vec::new();
    for k in kernels {
        let fetched = k.fetch()?;
        match super::boot(
            &fetched,
            &initrd,
            "cost",
            Duration::from_secs(3600),
            loglevel,
        ) {
            Ok((console, _)) => all.push(parse(&fetched.name, &fetched.release, &console)),
            Err(e) => bail!("{}: {e:#}", fetched.name),
        }
        eprintln!(
            "{}",
            table(std::slice::from_ref(
                all.last().unwrap_or_else(|| unreachable!())
            ))
        );
    }
    Ok(table(&all))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_errors_come_from_the_console() {
        let console = "@@IPCW start doctor 1.0\nFEATURE              OK   DETAIL\nkprobe               yes  attached\n\n@@IPCW end doctor 0 2.0\n\
             @@IPCW cost pingpong untraced 0 1000\n@@IPCW cost pingpong untraced 0 3000\n@@IPCW cost pingpong untraced 0 2000\n\
             @@IPCW cost pingpong fexit 0 1000\n@@IPCW cost pingpong kprobe 1 none\n@@IPCW cost-error pingpong kprobe no kprobe PMU\n";
        let m = parse("k", "6.1", console);
        assert_eq!(m.medians[&("pingpong".into(), "untraced".into())], 2000.0);
        assert_eq!(m.features, "kprobe yes");
        assert_eq!(m.errors, ["pingpong under kprobe: no kprobe PMU"]);
        let t = table(&[m]);
        // 1000 against 2000 round trips/s: half the rate, 125 µs more
        // per call (500 µs a round trip of 4 calls).
        assert!(t.contains("| 1000 (0.50×, +125.00 µs) |"), "{t}");
        assert!(t.contains("| — |"), "{t}");
    }

    #[test]
    fn every_round_runs_every_way_once_in_another_order() {
        let s = script("/i", "/w");
        let lines: Vec<&str> = s.lines().filter(|l| l.starts_with("measure ")).collect();
        assert_eq!(lines.len(), ROUNDS * WORKLOADS.len() * WAYS.len());
        let firsts: Vec<&str> = lines
            .chunks(WAYS.len())
            .step_by(WORKLOADS.len())
            .map(|c| c[0])
            .collect();
        assert_eq!(firsts.len(), ROUNDS);
        assert!(
            firsts[0] != firsts[1] && firsts[1] != firsts[2],
            "{firsts:?}"
        );
    }
}
