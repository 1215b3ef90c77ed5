//! `ipcwatch export`: a recorded trace in another tool's format (Perfetto).

use std::io::Write;
use std::process::ExitCode;

use clap::ValueEnum;
use ipcwatch::sink::ndjson::{open_output, output_error};
use ipcwatch::text::Clean;

use super::args::open_trace_input;
use super::complete;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExportFormat {
    /// Perfetto's protobuf trace (ui.perfetto.dev opens it): a track per
    /// process and thread, slices for reads, writes and lock waits, flows
    /// from each write to its read, instants for write faults and races.
    Perfetto,
}

#[derive(clap::Args, Debug)]
pub struct ExportCli {
    /// The NDJSON trace written by `record`; `-` reads standard input.
    #[arg(value_name = "TRACE", add = complete::trace_file())]
    input: String,
    #[arg(long, value_enum, default_value_t = ExportFormat::Perfetto)]
    format: ExportFormat,
    /// Where to write it. The file is created with mode 0600 and never
    /// through a symbolic link.
    #[arg(short, long, value_name = "FILE")]
    output: String,
}

pub fn export(cli: ExportCli) -> ExitCode {
    let input = match open_trace_input(&cli.input) {
        Ok(i) => i,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let ExportFormat::Perfetto = cli.format;
    // The whole trace is read before the output is touched: a bad trace
    // leaves no half-written file.
    let (bytes, counts) = match ipcwatch::report::perfetto::export(input) {
        Ok(x) => x,
        Err(e) => {
            eprintln!(
                "ipcwatch: error: {}: {}",
                Clean(&cli.input),
                Clean(&e.to_string())
            );
            return ExitCode::FAILURE;
        }
    };
    let written = open_output(&cli.output)
        .map_err(|e| output_error(&e))
        .and_then(|mut out| {
            out.write_all(&bytes)
                .and_then(|()| out.flush())
                .map_err(|e| e.to_string())
        });
    match written {
        Ok(()) => {
            eprintln!(
                "ipcwatch: wrote {} ({} bytes): {} processes, {} threads, {} slices, {} flows, {} instants ({} races)",
                Clean(&cli.output),
                bytes.len(),
                counts.processes,
                counts.threads,
                counts.slices,
                counts.flows,
                counts.instants,
                counts.races
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ipcwatch: error: cannot write {}: {e}", Clean(&cli.output));
            ExitCode::FAILURE
        }
    }
}
