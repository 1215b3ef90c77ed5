//! Shell completion: `ipcwatch completions bash|zsh|fish` prints a script
//! that asks ipcwatch itself what to complete (clap_complete's dynamic
//! engine, through the `IPCWATCH_COMPLETE` variable), so `--pid` and
//! `--comm` complete the processes running now, `--kind` its values, and
//! trace files the paths of files.

use std::io::Write;
use std::process::ExitCode;

use clap::ValueEnum;
use clap_complete::env::{Bash, EnvCompleter, Fish, Zsh};
use clap_complete::{ArgValueCandidates, ArgValueCompleter, CompletionCandidate, PathCompleter};

/// The variable that switches ipcwatch into answering a completion query.
pub const VAR: &str = "IPCWATCH_COMPLETE";

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(clap::Args, Debug)]
pub struct CompletionsCli {
    shell: Shell,
    /// The program the script runs to ask for completions (default: this
    /// binary's own path; the package's scripts run /usr/sbin/ipcwatch).
    #[arg(long, value_name = "PROGRAM")]
    completer: Option<String>,
}

/// Prints the registration script for `cli.shell` on standard output.
pub fn completions(cli: CompletionsCli) -> ExitCode {
    let completer = cli.completer.unwrap_or_else(|| {
        std::env::current_exe()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "ipcwatch".into())
    });
    let shell: &dyn EnvCompleter = match cli.shell {
        Shell::Bash => &Bash,
        Shell::Zsh => &Zsh,
        Shell::Fish => &Fish,
    };
    let mut out = std::io::stdout().lock();
    match shell
        .write_registration(VAR, "ipcwatch", "ipcwatch", &completer, &mut out)
        .and_then(|()| out.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipcwatch: error: writing the completion script: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The running processes, as (pid, comm). A process name is chosen by the
/// process: names with control characters are left out (a completion is
/// typed into the user's command line).
fn processes() -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        let comm = comm.strip_suffix('\n').unwrap_or(&comm);
        (pid != me && !comm.chars().any(char::is_control)).then(|| (pid, comm.to_owned()))
    })
    .collect()
}

fn pid_candidates() -> Vec<CompletionCandidate> {
    let mut procs = processes();
    procs.sort();
    procs
        .into_iter()
        .map(|(pid, comm)| CompletionCandidate::new(pid.to_string()).help(Some(comm.into())))
        .collect()
}

fn comm_candidates() -> Vec<CompletionCandidate> {
    let mut names: Vec<String> = processes().into_iter().map(|(_, c)| c).collect();
    names.sort();
    names.dedup();
    names.into_iter().map(CompletionCandidate::new).collect()
}

/// `--pid`: the running processes, each with its name as help.
pub fn pids() -> ArgValueCandidates {
    ArgValueCandidates::new(pid_candidates)
}

/// `--comm`: the names of the running processes.
pub fn comms() -> ArgValueCandidates {
    ArgValueCandidates::new(comm_candidates)
}

/// A trace file: directories and files.
pub fn trace_file() -> ArgValueCompleter {
    ArgValueCompleter::new(PathCompleter::file())
}
