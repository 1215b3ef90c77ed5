//! `ipcwatch tui` and `ipcwatch demo`: the terminal UI, live or on a
//! replay.

use std::net::SocketAddr;
use std::process::ExitCode;

use ipcwatch::kernel::loader::{DEFAULT_RING_BYTES, Filter, Options};
use ipcwatch::metrics::serve::parse_addr;
use ipcwatch::session::RecordArgs;

use super::args::{
    filter_with_command, parse_otlp, parse_ring, parse_secs, select_cgroups, start_metrics,
    start_otlp,
};
use super::complete;
use ipcwatch::text::Clean;

#[derive(clap::Args, Debug, Default)]
pub struct TuiCli {
    /// Play this recorded NDJSON trace instead of tracing live.
    #[arg(long, value_name = "FILE", add = complete::trace_file())]
    replay: Option<String>,
    /// Replay speed: 1 is real time, 10 ten times faster, 0 as fast as
    /// possible. Change it with + and - while playing.
    #[arg(long, value_name = "X", default_value_t = 1.0, value_parser = parse_speed)]
    speed: f64,
    /// Watch only this process (repeatable). Filtered in the kernel.
    #[arg(long = "pid", value_name = "PID", add = complete::pids())]
    pids: Vec<u32>,
    /// Watch only processes with this name (repeatable).
    #[arg(long = "comm", value_name = "NAME", add = complete::comms())]
    comms: Vec<String>,
    /// Watch only the processes of this container (repeatable): an id or a
    /// prefix of one (4 hex digits at least), or a name podman or docker
    /// knows. It must be running. Filtered in the kernel (its cgroup).
    #[arg(long = "container", value_name = "ID|NAME")]
    containers: Vec<String>,
    /// Watch only the processes in this cgroup or below it (repeatable): a
    /// path of the unified hierarchy ("/system.slice/nginx.service"), or
    /// one under its mount point. Filtered in the kernel.
    #[arg(long = "cgroup", value_name = "PATH")]
    cgroups: Vec<String>,
    /// Size of the kernel ring buffer in bytes (a power of two).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_RING_BYTES, value_parser = parse_ring)]
    ring_size: u32,
    /// Draw on an off-screen 100x30 buffer, stop when CMD exits, and print
    /// what was measured as JSON (for `cargo xtask bench`).
    #[arg(long, hide = true)]
    headless: bool,
    /// One event per read and write through the ring buffer, as `record`
    /// gets them, instead of per-descriptor totals summed in the kernel
    /// and read every 100 ms (the default of the live TUI without
    /// --metrics or --otlp; docs/tui.md). Also IPCWATCH_PER_EVENT=1.
    #[arg(long, conflicts_with = "replay")]
    per_event: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics while watching live
    /// (ADDR is IP:PORT, for example 127.0.0.1:9464; docs/metrics.md).
    #[arg(long, value_name = "ADDR", value_parser = parse_addr, conflicts_with = "replay")]
    metrics: Option<SocketAddr>,
    /// Send every finding, and the counters, to this OTLP/HTTP endpoint
    /// while watching live (http://HOST[:PORT][/PATH]; docs/otlp.md).
    #[arg(long, value_name = "URL", value_parser = parse_otlp, conflicts_with = "replay")]
    otlp: Option<ipcwatch::otlp::Endpoint>,
    /// With --otlp: how long the exit may wait for the last findings and
    /// metrics to be sent (seconds or a duration).
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "5", requires = "otlp")]
    otlp_flush: std::time::Duration,
    /// The command to start and watch, after `--`.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

fn parse_speed(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !v.is_finite() || !(0.0..=1024.0).contains(&v) {
        return Err(format!("`{s}`: the speed must be between 0 and 1024"));
    }
    Ok(v)
}

impl TuiCli {
    /// `ipcwatch` alone: the whole system, live.
    pub fn whole_system() -> Self {
        TuiCli {
            speed: 1.0,
            ring_size: DEFAULT_RING_BYTES,
            ..TuiCli::default()
        }
    }
}

pub fn tui(cli: TuiCli) -> ExitCode {
    use ipcwatch::tui;
    let filtered = !cli.pids.is_empty()
        || !cli.comms.is_empty()
        || !cli.containers.is_empty()
        || !cli.cgroups.is_empty();
    let live_flags = !cli.command.is_empty() || filtered;
    if cli.replay.is_some() && (live_flags || cli.headless) {
        eprintln!(
            "ipcwatch: error: --replay cannot be combined with --pid, --comm, --container, --cgroup, --headless or `-- CMD`"
        );
        return ExitCode::from(2);
    }
    if filter_with_command(filtered, &cli.command) {
        return ExitCode::from(2);
    }
    let Some(cgroups) = select_cgroups(&cli.containers, &cli.cgroups) else {
        return ExitCode::from(2);
    };
    let Some(metrics) = start_metrics(cli.metrics) else {
        return ExitCode::FAILURE;
    };
    let Some((metrics, otlp)) = start_otlp(cli.otlp, metrics) else {
        return ExitCode::FAILURE;
    };
    // Per-descriptor totals from the kernel, unless something downstream
    // counts events one by one (the metrics' and OTLP's event counters).
    let per_event = cli.per_event
        || std::env::var_os("IPCWATCH_PER_EVENT").is_some_and(|v| v == "1")
        || metrics.is_some()
        || otlp.is_some();
    let args = RecordArgs {
        // "-": a traced command's standard output goes to standard error,
        // which the TUI captures while it runs.
        output: "-".into(),
        command: cli.command,
        kernel: Options {
            filter: Filter {
                pids: cli.pids,
                comms: cli.comms,
                cgroups,
            },
            ring_bytes: cli.ring_size,
            aggregate: !per_event,
            ..Options::default()
        },
        metrics,
        otlp,
        otlp_flush: cli.otlp_flush,
        ..RecordArgs::default()
    };
    let r = match (&cli.replay, cli.headless) {
        (Some(path), _) => tui::run_replay(path, cli.speed),
        (None, true) => tui::run_headless(args).and_then(|report| {
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }),
        (None, false) => {
            let label = if args.command.is_empty() {
                "system".to_string()
            } else {
                args.command.join(" ")
            };
            tui::run_live(args, &label)
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipcwatch: error: {}", Clean(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}
