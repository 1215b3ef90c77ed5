//! The `ipcwatch` command: parse the arguments, run the subcommand.

// See lib.rs: modules reach each other through `use` (ipcwatch/clippy.toml).
#![warn(clippy::absolute_paths)]

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use clap_complete::CompleteEnv;
use ipcwatch::kernel::doctor;

use cli::agent::{AgentCli, agent};
use cli::analyze::analyze;
use cli::args::Format;
use cli::complete::{self, CompletionsCli, completions};
use cli::demo::{self, DemoCli};
use cli::export::{ExportCli, export};
use cli::graph::{GraphCli, graph};
use cli::man::{ManCli, man};
use cli::record::{RecordCli, record};
use cli::tui::{TuiCli, tui};

/// `ipcwatch --version`: the version, the git commit and the hash of the
/// embedded eBPF objects, normal and compat (ipcwatch/build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("IPCWATCH_COMMIT"),
    ", eBPF object ",
    env!("IPCWATCH_EBPF_HASH"),
    ")"
);

/// See how processes talk, and catch them corrupting shared memory.
///
/// Without a command, ipcwatch opens the terminal UI on the whole system.
#[derive(Parser, Debug)]
#[command(name = "ipcwatch", version = VERSION, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// More diagnostics on standard error: -v info, -vv debug, -vvv trace
    /// (what ipcwatch does besides the trace: probes armed, scans, notes).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// The diagnostics level by name: error, warn (the default), info,
    /// debug, trace. Overrides -v.
    #[arg(long, value_name = "LEVEL", global = true)]
    log_level: Option<tracing::Level>,
}

/// Diagnostics go to standard error (the TUI keeps them for after it
/// closes), warnings and worse by default. -v and -vv (or --log-level)
/// raise ipcwatch's own level, and the eBPF side's (aya-log, whose
/// messages come under ipcwatch's name); other crates (aya's loader...)
/// stay at warn until -vvv.
fn init_logging(cli: &Cli) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let level = cli.log_level.unwrap_or(match cli.verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        2 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    });
    let ours = LevelFilter::from_level(level);
    let others = if level == tracing::Level::TRACE {
        LevelFilter::TRACE
    } else {
        ours.min(LevelFilter::WARN)
    };
    let filter = Targets::new()
        .with_default(others)
        .with_target("ipcwatch", ours);
    // Messages may carry what traced processes named: escaped, uncoloured.
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(|| ipcwatch::text::CleanWriter(std::io::stderr()))
        .with_ansi(false)
        .with_target(false)
        .without_time();
    // A second init (none happens) would only keep the first.
    let _ = tracing_subscriber::registry()
        .with(layer)
        .with(filter)
        .try_init();
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Trace IPC and write NDJSON (one record per line, see docs/ndjson.md).
    ///
    /// Without `-- CMD` it traces the whole system (or what --pid/--comm
    /// name) until --duration ends or SIGINT/SIGTERM arrives. With `-- CMD`
    /// it starts CMD, traces only CMD and its descendants, and stops when
    /// CMD exits. The trace always ends with a "summary" line.
    Record(RecordCli),
    /// Run as a node daemon: whole-system tracing with race detection until
    /// SIGTERM or SIGINT, with output sized for weeks (docs/deploy.md).
    ///
    /// Writes findings, and process, channel, region, mapping and lock
    /// lifecycle lines as they come, and each channel's, region's and
    /// lock's totals every --interval ("aggregate" lines) instead of a line
    /// per read or write (--events adds those). -o FILE rotates at 100M by
    /// default. Options can come from a TOML file (--config); flags win.
    Agent(AgentCli),
    /// Live terminal UI: channels, shared regions, races and processes.
    ///
    /// Without `-- CMD` it watches the whole system (or what --pid/--comm
    /// name). With `--replay FILE` it plays a recorded trace instead. Keys:
    /// Tab/1-5 views, arrows/j/k move, Enter drills down, Esc back, /
    /// filter, s sort, p pause, + and - replay speed, ? help, q quit.
    Tui(TuiCli),
    /// Start built-in workloads (pipes, a socket pair, a message queue, a
    /// racy and a locked shared counter) and open the TUI on them.
    Demo(DemoCli),
    /// Draw who talks to whom (Graphviz DOT or JSON).
    ///
    /// Traces like `record` (the whole system for --duration, or `-- CMD`),
    /// or reads a trace written by `record` with --input.
    Graph(GraphCli),
    /// Show which kernel features ipcwatch can use here, by trying each.
    Doctor {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Read a recorded trace and report its channels, regions and races.
    ///
    /// Exit codes: 0 success, 1 unreadable or invalid trace (the message
    /// names the line), 3 races found with --fail-on-race.
    Analyze {
        /// The NDJSON trace; `-` reads standard input.
        #[arg(add = complete::trace_file())]
        file: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Exit with status 3 when the trace holds any race finding.
        #[arg(long)]
        fail_on_race: bool,
    },
    /// Write a recorded trace in another tool's format: Perfetto's.
    ///
    /// `ipcwatch export --format perfetto TRACE -o FILE` writes a file that
    /// ui.perfetto.dev opens: a track per process and thread, slices for
    /// reads, writes and lock waits, flows from writes to reads, instants
    /// for write faults and races (the two writes linked by a flow).
    Export(ExportCli),
    /// Internal: the unprivileged process that symbolizes stacks from the
    /// binaries ipcwatch hands it (docs/security.md).
    #[command(hide = true)]
    SymbolizeWorker,
    /// Print a shell completion script (bash, zsh or fish).
    ///
    /// The script asks ipcwatch what to complete: --pid completes running
    /// processes, --comm their names, --kind its values, trace files the
    /// paths of files. Example: `source <(ipcwatch completions bash)`.
    Completions(CompletionsCli),
    /// Write the man pages into a directory (for packaging).
    #[command(hide = true)]
    Man(ManCli),
}

fn main() -> ExitCode {
    // A completion query (IPCWATCH_COMPLETE set by the scripts of
    // `ipcwatch completions`) is answered here, and ipcwatch exits.
    CompleteEnv::with_factory(Cli::command)
        .var(complete::VAR)
        .complete();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_logging(&cli);
    match cli.command {
        Some(Command::Record(r)) => record(r),
        Some(Command::Agent(a)) => agent(a, matches.subcommand_matches("agent"), Cli::command()),
        Some(Command::Graph(g)) => graph(g),
        Some(Command::Doctor { format }) => {
            let report = doctor::run();
            match format {
                Format::Text => print!("{}", report.text()),
                Format::Json => match serde_json::to_string_pretty(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("ipcwatch: error: {e}");
                        return ExitCode::FAILURE;
                    }
                },
            }
            if report.usable() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Some(Command::Analyze {
            file,
            format,
            fail_on_race,
        }) => analyze(&file, format, fail_on_race),
        Some(Command::Export(e)) => export(e),
        Some(Command::Tui(t)) => tui(t),
        Some(Command::Demo(d)) => demo::run(d),
        Some(Command::SymbolizeWorker) => {
            ExitCode::from(ipcwatch::race::symbols::worker_main() as u8)
        }
        Some(Command::Completions(c)) => completions(c),
        Some(Command::Man(m)) => man(m, Cli::command()),
        // Live monitoring of the whole system in the TUI.
        None => tui(TuiCli::whole_system()),
    }
}
