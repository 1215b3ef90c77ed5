//! `ipcwatch agent`: the node daemon. Whole-system tracing with race
//! detection until SIGTERM or SIGINT, like `record` (same options, same
//! session), with output sized for weeks: findings and lifecycle lines as
//! they come, per-event lines folded into `aggregate` lines each
//! `--interval` (sink/aggregate.rs), a rotating file by default. Options
//! come from flags or a TOML file (`--config`); flags win.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, FromArgMatches};
use ipcwatch::session;
use ipcwatch::sink::aggregate::{AggregateOptions, Aggregating};
use ipcwatch::sink::ndjson::Rotate;
use ipcwatch::text::Clean;
use toml::de::Error as TomlError;

use super::args::parse_secs;
use super::record::{OutputCli, TraceCli, report, session_args};

/// `-o FILE` without `--rotate-size`: the agent rotates at this size.
pub const DEFAULT_ROTATE_SIZE: u64 = 100 << 20;

#[derive(clap::Args, Debug)]
pub struct AgentCli {
    /// Read options from this TOML file. Its keys are the long names of the
    /// options below, without the dashes (`rotate-size = "100M"`,
    /// `pid = [1, 2]`, `deep = true`); an option given on the command line
    /// wins over the file's.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutputCli,
    /// How often each channel's, shared region's and lock's totals are
    /// written (`aggregate` lines): seconds or a duration (1m, 30s).
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    pub interval: Duration,
    /// Also write a line per read, write, fault and lock operation, as
    /// `record` does (hundreds of MB an hour on a busy host).
    #[arg(long)]
    pub events: bool,
    /// Forget processes that exited, channels that no descriptor holds
    /// and sockets whose holder is gone once their last event is this old,
    /// so that memory follows what is alive on the host, not everything
    /// it ever ran (counts since the start stay whole). A channel used
    /// again later starts its totals over.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    pub forget_after: Duration,
    /// Stop after this long (for trials: the agent otherwise runs until
    /// SIGTERM or SIGINT).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,
    #[command(flatten)]
    pub trace: TraceCli,
}

/// Run the agent. `matches` are the agent's own (to tell which options the
/// command line gave), `root` the whole command (to parse again with the
/// file's options).
pub fn agent(cli: AgentCli, matches: Option<&ArgMatches>, root: clap::Command) -> ExitCode {
    let cli = match (&cli.config, matches) {
        (Some(path), Some(matches)) => match with_config(path, matches, root) {
            Ok(cli) => cli,
            Err(msg) => {
                eprintln!("ipcwatch: error: {}", Clean(&msg));
                return ExitCode::from(2);
            }
        },
        _ => cli,
    };
    let default_rotate = Rotate {
        size: DEFAULT_ROTATE_SIZE,
        keep: cli.out.rotate_keep,
    };
    let args = match session_args(
        &cli.out,
        cli.trace,
        cli.duration,
        Vec::new(),
        Some(default_rotate),
    ) {
        Ok(args) => session::RecordArgs {
            forget_after: Some(cli.forget_after),
            ..args
        },
        Err(code) => return code,
    };
    let metrics = args.metrics.clone();
    let opts = AggregateOptions {
        interval: cli.interval,
        events: cli.events,
    };
    // Exporters that `OutputCli` gains (`--otlp`) wrap the sink here, as
    // in `record`.
    let result = session::run_with(
        args,
        |args| Ok(Aggregating::new(session::ndjson_sink(args)?, opts)),
        None,
    );
    report(result, metrics.as_ref(), cli.out.metrics_linger, false)
}

/// The options of `path` that the command line did not give, parsed with
/// the command line's: a file that cannot be read or parsed, an unknown
/// key, or a value an option refuses is the error message.
fn with_config(path: &Path, matches: &ArgMatches, root: clap::Command) -> Result<AgentCli, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the config file {shown}: {e}"))?;
    let table: toml::Table = text.parse().map_err(|e: TomlError| {
        // "TOML parse error at line L, column C", a picture, the reason.
        let msg = e.to_string();
        let mut lines = msg.lines().filter(|l| !l.trim().is_empty());
        let at = lines.next().unwrap_or_default().to_string();
        let why = lines.next_back().unwrap_or_default();
        format!("config file {shown} is not valid TOML: {at}: {why}")
    })?;
    let Some(cmd) = root.find_subcommand("agent").cloned() else {
        return Err("no agent subcommand".into());
    };
    let mut tokens: Vec<OsString> = Vec::new();
    for (key, value) in &table {
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && key != "config")
            .ok_or_else(|| {
                format!(
                    "config file {shown}: unknown key `{key}` (the keys are the long names of \
                     `ipcwatch agent`'s options: output, rotate-size, interval, metrics...)"
                )
            })?;
        if matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            continue;
        }
        let takes_value = arg.get_action().takes_values();
        let scalars = match value {
            toml::Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        for v in scalars {
            let text = match v {
                toml::Value::Boolean(b) if !takes_value => {
                    if *b {
                        tokens.push(format!("--{key}").into());
                    }
                    continue;
                }
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => {
                    return Err(format!(
                        "config file {shown}: `{key}` must be a string, a number, a boolean \
                         or an array of them"
                    ));
                }
            };
            tokens.push(format!("--{key}={text}").into());
        }
    }
    // The file's options alone first, so that a bad value is said to come
    // from the file.
    let alone = std::iter::once(OsString::from("ipcwatch"))
        .chain(std::iter::once(OsString::from("agent")))
        .chain(tokens.iter().cloned());
    if let Err(e) = root.clone().try_get_matches_from(alone) {
        use clap::error::ErrorKind;
        if !matches!(
            e.kind(),
            ErrorKind::MissingRequiredArgument | ErrorKind::DisplayHelp
        ) {
            return Err(format!(
                "config file {shown}: {}",
                clap_message(&e.to_string())
            ));
        }
    }
    // Then with the command line's, which come after the file's.
    let mut argv: Vec<OsString> = std::env::args_os().collect();
    let at = argv
        .iter()
        .skip(1)
        .position(|a| a == "agent")
        .map_or(argv.len(), |i| i + 2);
    argv.splice(at..at, tokens);
    let all = root.try_get_matches_from(argv).map_err(|e| {
        format!(
            "with the config file {shown}: {}",
            clap_message(&e.to_string())
        )
    })?;
    let sub = all
        .subcommand_matches("agent")
        .ok_or_else(|| "no agent subcommand".to_string())?;
    AgentCli::from_arg_matches(sub).map_err(|e| e.to_string())
}

/// clap's error on one line: what it says before the usage, without
/// "error: ".
fn clap_message(text: &str) -> String {
    text.lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_string()
}
