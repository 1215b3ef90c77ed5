//! `ipcwatch analyze`: a recorded trace's channels, regions and races.

use std::process::ExitCode;

use ipcwatch::text::Clean;

use super::args::{Format, open_trace_input};

pub fn analyze(file: &str, format: Format, fail_on_race: bool) -> ExitCode {
    let input = match open_trace_input(file) {
        Ok(i) => i,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let (analysis, error) = ipcwatch::report::analyze::replay(input);
    let show = error.is_none() || analysis.model.records > 0;
    if show {
        match format {
            Format::Text => print!("{}", analysis.text()),
            Format::Json => println!("{}", analysis.json()),
        }
    }
    if let Some(e) = error {
        eprintln!(
            "ipcwatch: error: {}: {}",
            Clean(file),
            Clean(&e.to_string())
        );
        return ExitCode::FAILURE;
    }
    if fail_on_race && !analysis.races().is_empty() {
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
}
