//! `ipcwatch graph`: who talks to whom, as Graphviz DOT or JSON.

use std::process::ExitCode;
use std::time::Duration;

use clap::ValueEnum;
use ipcwatch::kernel::loader::Options;
use ipcwatch::model::Model;
use ipcwatch::record::{ChannelKind, Record};
use ipcwatch::report::mappers::MapHistory;
use ipcwatch::session::{self, RecordArgs};
use ipcwatch::sink::Sink;
use ipcwatch::sink::ndjson::{open_output, output_error};

use super::args::{kinds_mask, parse_secs};
use super::complete;
use ipcwatch::text::{Clean, clean_path};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GraphFormat {
    Dot,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct GraphCli {
    /// Where to write the graph; `-` is standard output. A file is created
    /// with mode 0600 and never through a symbolic link, before tracing
    /// starts.
    #[arg(short, long, value_name = "FILE", default_value = "-")]
    pub output: String,
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    format: GraphFormat,
    /// Stop tracing after this many seconds (fractions allowed), or a
    /// duration with units: 10s, 1m30s, 500ms.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    duration: Option<Duration>,
    /// Draw from this trace (written by `record`) instead of tracing.
    #[arg(long, value_name = "TRACE", add = complete::trace_file(), conflicts_with_all = ["duration", "command"])]
    input: Option<std::path::PathBuf>,
    /// Only these channel kinds (repeatable). Filtered in the kernel.
    #[arg(long = "kind", value_enum, value_name = "KIND")]
    kinds: Vec<ChannelKind>,
    /// The command to start and trace, after `--`.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

/// What a live graph keeps: the model, and who mapped what.
#[derive(Default)]
struct GraphSink {
    model: Model,
    history: MapHistory,
}

impl Sink for GraphSink {
    fn record(&mut self, record: &Record) -> std::io::Result<()> {
        self.model.apply(record);
        self.history.apply(record);
        Ok(())
    }
}

pub fn graph(cli: GraphCli) -> ExitCode {
    if cli.input.is_none() && cli.command.is_empty() && cli.duration.is_none() {
        eprintln!(
            "ipcwatch: error: graph needs `-- CMD`, --duration SECS or --input TRACE (it draws what it saw)"
        );
        return ExitCode::from(2);
    }
    // Opened first: once tracing has started, ipcwatch has dropped the
    // capabilities that would let it write where its user cannot.
    let mut out = match open_output(&cli.output) {
        Ok(out) => out,
        Err(e) => {
            eprintln!(
                "ipcwatch: error: cannot write {}: {}",
                Clean(&cli.output),
                output_error(&e)
            );
            return ExitCode::FAILURE;
        }
    };
    let result = (|| -> anyhow::Result<String> {
        let (model, history) = match &cli.input {
            Some(path) => ipcwatch::report::graph::model_from_trace(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", clean_path(path)))?,
            None => {
                let args = RecordArgs {
                    // No trace file: the model is the sink.
                    output: String::new(),
                    duration: cli.duration,
                    command: cli.command.clone(),
                    kernel: Options {
                        kinds: kinds_mask(&cli.kinds),
                        ..Options::default()
                    },
                    command_stdout_to_stderr: cli.output == "-",
                    // The detector runs as for `record`: races are edges.
                    ..RecordArgs::default()
                };
                let mut sink = GraphSink::default();
                session::run_with(args, |_| Ok(&mut sink), None)?;
                (sink.model, sink.history)
            }
        };
        let g = ipcwatch::report::graph::Graph::from_model(&model, &history);
        Ok(match cli.format {
            GraphFormat::Dot => g.dot(),
            GraphFormat::Json => serde_json::to_string_pretty(&g)? + "\n",
        })
    })();
    let text = match result {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ipcwatch: error: {}", Clean(&format!("{e:#}")));
            return ExitCode::FAILURE;
        }
    };
    let written = {
        use std::io::Write;
        out.write_all(text.as_bytes()).and_then(|()| out.flush())
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipcwatch: error: cannot write {}: {e}", Clean(&cli.output));
            ExitCode::FAILURE
        }
    }
}
