//! Starting a recording: checks, probes loaded, the header record, and what
//! existed before the start (the command blocked before exec, or a /proc
//! and sock_diag scan).

use std::os::fd::OwnedFd;
use std::time::{SystemTime, UNIX_EPOCH};

use super::args::RecordArgs;
use super::notes::warn;
use super::spawn;
use crate::collect::Collector;
use crate::host::{hostname, monotonic_ns, release};
use crate::kernel::loader::{Options, Probes};
use crate::kernel::preflight;
use crate::race::hb::HappensBefore;
use crate::record::{FORMAT_NAME, FORMAT_VERSION, Header, Record};
use crate::scan::{maps, procs};
use crate::sink::Sink;
use crate::text::Clean;

/// A recording whose probes are attached and whose header is written.
pub struct Started {
    pub probes: Probes,
    pub collector: Collector,
    /// CLOCK_MONOTONIC at the start, ns.
    pub start_ns: u64,
}

/// What must hold before the sink is made: privileges, tracefs, memlock.
pub fn preflight() -> anyhow::Result<()> {
    preflight::check_privileges()?;
    if let Some(note) = preflight::ensure_tracefs()? {
        eprintln!("ipcwatch: {}", Clean(&note));
    }
    if let Some(note) = preflight::raise_memlock() {
        tracing::info!("{note}");
    }
    Ok(())
}

/// Load and attach the probes, write the header, warn about every probe
/// that could not be attached.
pub fn start(args: &RecordArgs, sink: &mut dyn Sink) -> anyhow::Result<Started> {
    let opts = Options {
        listed_only: !args.command.is_empty(),
        ..args.kernel.clone()
    };
    let mut probes = Probes::load(&opts)?;
    let start = SystemTime::now();
    let start_ns = monotonic_ns();
    let mut collector = Collector::new();
    if args.kernel.deep {
        collector.analyses.hb = Some(HappensBefore::new());
    }
    let header = Record::Header(Header {
        ts_ns: start_ns,
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        tool_commit: env!("IPCWATCH_COMMIT").into(),
        kernel: release(),
        hostname: hostname(),
        start_time: humantime::format_rfc3339_nanos(start).to_string(),
        start_unix_ns: start
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        command: (!args.command.is_empty()).then(|| args.command.clone()),
        pids: args.kernel.filter.pids.clone(),
        comms: args.kernel.filter.comms.clone(),
    });
    collector.push(header, sink)?;
    for s in std::mem::take(&mut probes.skipped) {
        let msg = s.to_string();
        warn(&mut collector, sink, Some(s.probe), msg)?;
    }
    Ok(Started {
        probes,
        collector,
        start_ns,
    })
}

/// Start `-- CMD` blocked before exec, let the kernel follow it, scan what
/// it inherited, then release it. Returns its pid and a pidfd.
pub fn spawn_command(
    args: &RecordArgs,
    s: &mut Started,
    sink: &mut dyn Sink,
) -> anyhow::Result<(u32, OwnedFd)> {
    let blocked = spawn::spawn_blocked(
        &args.command,
        args.output == "-" || args.command_stdout_to_stderr,
    )?;
    let pid = blocked.pid;
    s.probes.trace_pid(pid, true)?;
    let pidfd = spawn::pidfd(pid)?;
    let mut recs = Vec::new();
    procs::scan_process(pid, monotonic_ns(), true, &mut recs);
    for r in recs {
        s.collector.push(r, sink)?;
    }
    blocked.release(&args.command[0])?;
    Ok((pid, pidfd))
}

/// What the processes the filter accepts had before the start: their
/// channels and shared mappings (/proc), the SysV segments, and the
/// sockets connected before the start, with both ends (sock_diag).
pub fn scan_existing(
    args: &RecordArgs,
    s: &mut Started,
    sink: &mut dyn Sink,
) -> anyhow::Result<()> {
    let want = |pid: u32, comm: &str| args.kernel.filter.accepts(pid, comm);
    let found = procs::scan(monotonic_ns(), &want);
    let regions = maps::scan_existing(&found, monotonic_ns());
    for r in found.into_iter().chain(regions) {
        if let Record::Mapping(m) = &r
            && m.prot.contains('w')
        {
            s.probes.mark_shared(m.pid)?;
            s.collector.regions.note_mapper(m.pid);
        }
        s.collector.push(r, sink)?;
    }
    for r in s.collector.sockets.existing(monotonic_ns(), &want) {
        s.collector.push(r, sink)?;
    }
    Ok(())
}
