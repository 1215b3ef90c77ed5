//! Where records go: the [`Sink`] trait, the NDJSON writer, and sinks for
//! tests and benchmarks.

use std::io;

use crate::model::Model;
use crate::record::Record;

pub mod aggregate;
pub mod ndjson;

/// Where records go (NDJSON file, TUI channel, a test's Vec...).
pub trait Sink {
    fn record(&mut self, record: &Record) -> io::Result<()>;

    /// Push out what is buffered (called a few times a second while
    /// recording, and at the end).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink for Vec<Record> {
    fn record(&mut self, record: &Record) -> io::Result<()> {
        self.push(record.clone());
        Ok(())
    }
}

/// A sink that keeps nothing (the model still sees every record).
pub struct Discard;

impl Sink for Discard {
    fn record(&mut self, _: &Record) -> io::Result<()> {
        Ok(())
    }
}

/// The model itself as a sink: a recording kept in memory (`graph` without
/// a trace file).
impl Sink for Model {
    fn record(&mut self, record: &Record) -> io::Result<()> {
        self.apply(record);
        Ok(())
    }
}

impl<S: Sink + ?Sized> Sink for &mut S {
    fn record(&mut self, record: &Record) -> io::Result<()> {
        (**self).record(record)
    }

    fn flush(&mut self) -> io::Result<()> {
        (**self).flush()
    }
}
