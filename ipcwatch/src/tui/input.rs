//! Everything the UI reacts to, as one enum: keys, mouse, resizes, ticks,
//! record batches and the status of the source (the live collector or a
//! replay), signals. Plain data, so the sources and the app both depend
//! on this file and not on each other.

use std::time::Instant;

use crossterm::event::{KeyEvent, MouseEvent};

use crate::record::Record;

/// Everything the UI reacts to, from every input, as one stream.
#[derive(Debug)]
pub enum Input {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Resize(u16, u16),
    /// Time to draw (and, live, to let rates decay).
    Tick,
    /// A batch of records from the collector or the replay.
    Records(Vec<Record>),
    Source(SourceStatus),
    /// SIGINT, SIGTERM or SIGHUP.
    Signal,
    /// The bench's stand-in for a key press, stamped when it was sent:
    /// the loop measures how long it took to reach the screen. It also
    /// moves to the next view, so every view is drawn under load.
    Probe(Instant),
}

/// What the source (live collector or replay) says about itself.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceStatus {
    /// Probes loaded (live) or file opened (replay).
    Started,
    /// Kernel events received and lost so far (live).
    Stats { events: u64, dropped: u64 },
    /// The source stopped: command exited, end of the trace...
    Ended(String),
    /// The source could not start or failed: the app quits with it.
    Failed(String),
    /// Replay: trace time now (advances between records too).
    Clock(u64),
}
