//! What a recording has to tell the person running it besides the trace:
//! warnings go to standard error and into the trace; notes go to the log.

use std::io;

use crate::collect::Collector;
use crate::host::monotonic_ns;
use crate::record::{Record, Warning};
use crate::sink::Sink;
use crate::text::Clean;

/// Warn on standard error (escaped: a warning may name a traced process's
/// file) as well as in the trace (exact).
pub fn warn(
    collector: &mut Collector,
    sink: &mut dyn Sink,
    probe: Option<String>,
    message: String,
) -> io::Result<()> {
    eprintln!("ipcwatch: warning: {}", Clean(&message));
    collector.push(
        Record::Warning(Warning {
            ts_ns: monotonic_ns(),
            message,
            probe,
        }),
        sink,
    )
}

/// A write that failed because the reader went away (`ipcwatch record |
/// head`): the recording ends quietly.
pub fn is_broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}
