//! Reports on a replayed trace: `ipcwatch analyze` and `ipcwatch graph`.

pub mod analyze;
pub mod graph;
pub mod mappers;
