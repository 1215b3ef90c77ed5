//! Reports on a replayed trace: `ipcwatch analyze`, `ipcwatch graph` and
//! `ipcwatch export`.

pub mod analyze;
pub mod graph;
pub mod mappers;
pub mod perfetto;
