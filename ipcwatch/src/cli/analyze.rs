//! `ipcwatch analyze`: a recorded trace's channels, regions and races.

use std::process::ExitCode;

use ipcwatch::text::Clean;

use super::args::Format;

pub fn analyze(file: &str, format: Format, fail_on_race: bool) -> ExitCode {
    use std::io::BufReader;
    let input: Box<dyn std::io::BufRead> = if file == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        match std::fs::File::open(file) {
            Ok(f) if f.metadata().is_ok_and(|m| m.is_dir()) => {
                eprintln!(
                    "ipcwatch: error: {} is a directory, not a trace",
                    Clean(file)
                );
                return ExitCode::FAILURE;
            }
            Ok(f) => Box::new(BufReader::new(f)),
            Err(e) => {
                eprintln!("ipcwatch: error: cannot read {}: {e}", Clean(file));
                return ExitCode::FAILURE;
            }
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
