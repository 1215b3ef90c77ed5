//! `ipcwatch man --dir DIR` (hidden): the manual pages, generated from the
//! clap definitions (clap_mangen): ipcwatch(8) and ipcwatch-SUBCOMMAND(8),
//! each with EXIT STATUS, ENVIRONMENT, FILES, EXAMPLES and SEE ALSO.
//! `cargo xtask dist` runs it and adds ipcwatch-ndjson(5).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};

#[derive(clap::Args, Debug)]
pub struct ManCli {
    /// Where to write the pages (created when missing).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

const SECTION: &str = "8";

/// EXIT STATUS of every page (the README's).
const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "Success."),
    (
        "1",
        "A runtime or environment error: missing privileges or kernel features, an output file \
         that cannot be written, an unreadable or invalid trace (the message names the line), a \
         command that cannot be started; for doctor, a kernel on which ipcwatch cannot trace.",
    ),
    ("2", "Bad usage: an unknown option or an invalid value."),
    (
        "3",
        "Races were found and --fail-on-race was given (record, analyze).",
    ),
];

const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "IPCWATCH_NO_TP_BTF",
        "When set, the syscall hooks attach as raw tracepoints even where BTF-typed tracepoints \
         (tp_btf) load; the trace is the same, a warning says so.",
    ),
    (
        "IPCWATCH_EBPF_OBJECT",
        "compat or normal: load that eBPF object instead of the one chosen by probing the \
         kernel for atomic fetch-and-add (kernels before 5.12 get the compat object; for tests).",
    ),
    (
        "IPCWATCH_VERIFIER_LOG",
        "A file: when the kernel refuses to load a program, its whole verifier log is appended \
         there (the warning or error line shows only its last lines).",
    ),
    (
        "NO_COLOR",
        "When set to a non-empty value, the TUI draws without colours (https://no-color.org).",
    ),
    (
        "IPCWATCH_COMPLETE",
        "Set by the completion scripts (ipcwatch completions) to ask ipcwatch for completions; \
         not for use by hand.",
    ),
];

const FILES: &[(&str, &str)] = &[
    (
        "/sys/kernel/btf/vmlinux",
        "The running kernel's BTF: struct offsets for the eBPF programs.",
    ),
    (
        "/sys/kernel/tracing",
        "tracefs, for tracepoints; ipcwatch mounts it when it is missing.",
    ),
    (
        "/proc",
        "Processes, descriptors, mappings and SysV IPC that existed before the start.",
    ),
    (
        "/usr/share/doc/ipcwatch/ndjson.md",
        "The trace format (also ipcwatch-ndjson(5)).",
    ),
    (
        "/usr/share/doc/ipcwatch/ndjson.schema.json",
        "The JSON Schema of a trace line.",
    ),
];

/// (subcommand, examples as (command line, what it does)).
const EXAMPLES: &[(&str, &[(&str, &str)])] = &[
    (
        "",
        &[
            (
                "ipcwatch",
                "Watch the whole system in the terminal UI (q quits).",
            ),
            (
                "ipcwatch record -o t.ndjson -- sh -c 'head -c 100000 /dev/zero | wc -c'",
                "Trace a pipeline: 100000 bytes through one pipe.",
            ),
            (
                "ipcwatch analyze t.ndjson",
                "Report the channels, regions and races of a trace.",
            ),
            (
                "ipcwatch doctor",
                "Which kernel features ipcwatch can use here.",
            ),
        ],
    ),
    (
        "record",
        &[
            (
                "ipcwatch record -o t.ndjson -- sh -c 'head -c 100000 /dev/zero | wc -c'",
                "Trace a command and its descendants; the trace ends with a summary line.",
            ),
            (
                "ipcwatch record -o race.ndjson --fail-on-race -- ./server",
                "Exit 3 when the command's processes race on shared memory.",
            ),
            (
                "ipcwatch record --duration 30s --comm postgres -o pg.ndjson",
                "Trace every process named postgres for 30 seconds.",
            ),
        ],
    ),
    (
        "agent",
        &[
            (
                "ipcwatch agent -o /var/log/ipcwatch/trace.ndjson --metrics 127.0.0.1:9464",
                "Run as a node daemon until SIGTERM: findings, lifecycle lines and each channel's totals once a minute, in files rotated at 100 MiB.",
            ),
            (
                "ipcwatch agent --config /etc/ipcwatch/agent.toml --interval 10s",
                "Options from a TOML file; the command line's win.",
            ),
        ],
    ),
    (
        "analyze",
        &[
            (
                "ipcwatch analyze race.ndjson",
                "Channels, regions, locks and findings, as text.",
            ),
            (
                "ipcwatch analyze --format json --fail-on-race race.ndjson",
                "The same as JSON; exit 3 when the trace holds a race.",
            ),
        ],
    ),
    (
        "export",
        &[(
            "ipcwatch export --format perfetto race.ndjson -o race.perfetto-trace",
            "A trace for ui.perfetto.dev: the processes' calls on a timeline, writes linked to their reads, races marked.",
        )],
    ),
    (
        "graph",
        &[
            (
                "ipcwatch graph -- make test | dot -Tsvg > ipc.svg",
                "Draw who talks to whom while a command runs.",
            ),
            (
                "ipcwatch graph --input t.ndjson --format json",
                "The graph of a recorded trace, as JSON.",
            ),
        ],
    ),
    (
        "tui",
        &[
            ("ipcwatch tui --pid 1234", "Watch one process live."),
            (
                "ipcwatch tui --replay t.ndjson --speed 10",
                "Replay a trace ten times faster than it was recorded.",
            ),
        ],
    ),
    (
        "demo",
        &[(
            "ipcwatch demo",
            "Built-in workloads in the TUI; a race shows up in view 4 within seconds.",
        )],
    ),
    (
        "doctor",
        &[(
            "ipcwatch doctor --format json",
            "Every kernel feature, tried, as JSON.",
        )],
    ),
    (
        "completions",
        &[
            (
                "source <(ipcwatch completions bash)",
                "Completions in the current bash (the package installs them for bash, zsh and fish).",
            ),
            (
                "ipcwatch completions fish > ~/.config/fish/completions/ipcwatch.fish",
                "Install them for fish, for one user.",
            ),
        ],
    ),
];

fn tagged(roff: &mut Roff, title: &str, items: &[(&str, &str)]) {
    roff.control("SH", [title]);
    for (tag, text) in items {
        roff.control("TP", [])
            .text([bold(*tag)])
            .text([roman(*text)]);
    }
}

/// The sections clap does not know, for the page of `name` ("" is the top).
fn extra(name: &str, pages: &[String]) -> Roff {
    let mut roff = Roff::new();
    tagged(&mut roff, "EXIT STATUS", EXIT_STATUS);
    tagged(&mut roff, "ENVIRONMENT", ENVIRONMENT);
    tagged(&mut roff, "FILES", FILES);
    if let Some((_, examples)) = EXAMPLES.iter().find(|(n, _)| *n == name) {
        roff.control("SH", ["EXAMPLES"]);
        // What it does, then the command line, never broken.
        for (cmd, what) in *examples {
            roff.control("PP", [])
                .text([roman(*what)])
                .control("RS", ["4"])
                .control("nf", [])
                .text([bold(format!("$ {cmd}"))])
                .control("fi", [])
                .control("RE", []);
        }
    }
    roff.control("SH", ["SEE ALSO"]);
    let mut see: Vec<String> = pages
        .iter()
        .filter(|p| p.as_str() != page_name(name))
        .map(|p| format!("{p}({SECTION})"))
        .collect();
    see.push("ipcwatch-ndjson(5)".into());
    roff.text([roman(see.join(", "))]);
    roff
}

fn page_name(sub: &str) -> String {
    if sub.is_empty() {
        "ipcwatch".into()
    } else {
        format!("ipcwatch-{sub}")
    }
}

fn write_page(dir: &Path, cmd: clap::Command, sub: &str, pages: &[String]) -> std::io::Result<()> {
    let name = page_name(sub);
    let man = Man::new(cmd)
        .title(name.to_uppercase())
        .section(SECTION)
        .source(format!("ipcwatch {}", env!("CARGO_PKG_VERSION")))
        .manual("System Administration");
    let mut out = std::io::BufWriter::new(std::fs::File::create(
        dir.join(format!("{name}.{SECTION}")),
    )?);
    man.render(&mut out)?;
    extra(sub, pages).to_writer(&mut out)?;
    out.flush()
}

/// Writes ipcwatch.8 and one page per visible subcommand into `cli.dir`.
pub fn man(cli: ManCli, top: clap::Command) -> ExitCode {
    // `help` is clap's, documented by the top page's SUBCOMMANDS.
    let mut top = top.disable_help_subcommand(true);
    top.build();
    let subs: Vec<clap::Command> = top
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let mut pages = vec![page_name("")];
    pages.extend(subs.iter().map(|s| page_name(s.get_name())));
    let written = std::fs::create_dir_all(&cli.dir).and_then(|()| {
        for sub in subs {
            let name = sub.get_name().to_owned();
            write_page(&cli.dir, sub, &name, &pages)?;
        }
        write_page(&cli.dir, top, "", &pages)
    });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "ipcwatch: error: writing man pages to {}: {e}",
                cli.dir.display()
            );
            ExitCode::FAILURE
        }
    }
}
