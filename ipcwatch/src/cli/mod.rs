//! The command line: one file per subcommand, each with its clap
//! arguments and the function that runs it.

pub mod agent;
pub mod analyze;
pub mod args;
pub mod complete;
pub mod demo;
pub mod export;
pub mod graph;
pub mod man;
pub mod record;
pub mod tui;
