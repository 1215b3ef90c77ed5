//! A live recording, from start to summary: [`start`] (checks, probes,
//! header, what existed before), [`run`] (the event loop), [`finish`]
//! (the summary). `ipcwatch record` writes it as NDJSON; the TUI and
//! `graph` run it with sinks of their own.

mod args;
mod finish;
mod metrics;
mod notes;
mod run;
pub mod spawn;
mod start;

pub use args::{Outcome, RecordArgs, StopReason, parse_duration};

use crate::kernel::privileges::{drop_privileges, status_hex};
use crate::otlp::Tee;
use crate::sink::Sink;
use crate::sink::ndjson::{NdjsonWriter, output_error};
use crate::text::Clean;

/// Everything before the event loop; then the loop; then the summary.
pub fn run(args: RecordArgs) -> anyhow::Result<Outcome> {
    run_with(args, ndjson_sink, None)
}

/// The NDJSON writer `args` ask for: standard output, a file, or a file
/// that rotates.
pub fn ndjson_sink(args: &RecordArgs) -> anyhow::Result<NdjsonWriter> {
    match &args.rotate {
        Some(rule) => NdjsonWriter::create_rotating(&args.output, rule.clone()),
        None => NdjsonWriter::create(&args.output),
    }
    .map_err(|e| {
        anyhow::anyhow!(
            "cannot write the trace to {}: {}",
            Clean(&args.output),
            output_error(&e)
        )
    })
}

/// [`run`] with another sink (the TUI's) and a way to ask it to stop.
/// With `-- CMD` and `output` "-", the command's standard output goes to
/// standard error, as for `record`. A stop request sends SIGTERM to the
/// command.
pub fn run_with<S: Sink>(
    args: RecordArgs,
    make_sink: impl FnOnce(&RecordArgs) -> anyhow::Result<S>,
    stop: Option<tokio::sync::oneshot::Receiver<()>>,
) -> anyhow::Result<Outcome> {
    start::preflight()?;
    // --otlp: every finding is handed to the exporter on its way.
    let mut sink = Tee::new(make_sink(&args)?, args.otlp.clone());
    let mut s = start::start(&args, &mut sink)?;
    // From here on SIGINT/SIGTERM must end in a summary (and must not kill
    // ipcwatch while its command waits for it), so take them over now.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stop_on = {
        let _in_runtime = runtime.enter();
        run::StopOn::new(args.duration, stop)?
    };
    let child = if args.command.is_empty() {
        start::scan_existing(&args, &mut s, &mut sink)?;
        None
    } else {
        Some(start::spawn_command(&args, &mut s, &mut sink)?)
    };
    sink.flush()?;
    // Everything that needed more privilege is done: probes attached,
    // tracefs mounted, the trace open, the command forked.
    let dropped = drop_privileges(args.kernel.lock_probes).map_err(|e| {
        anyhow::anyhow!("cannot drop the capabilities ipcwatch no longer needs: {e}")
    })?;
    tracing::info!(
        "capabilities kept: {} (bounding set cut: {})",
        status_hex(dropped.kept),
        dropped.bounding
    );
    let end = runtime.block_on(run::event_loop(
        &mut s.probes,
        &mut s.collector,
        &mut sink,
        child,
        &args,
        stop_on,
    ))?;
    finish::finish(s, &mut sink, end, &args)
}
