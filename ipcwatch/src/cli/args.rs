//! Argument types and parsers that several subcommands share.

use clap::ValueEnum;
use ipcwatch::kernel::loader::ALL_KINDS;
/// `--duration` and the like: seconds (`2.5`) or a duration with units.
pub use ipcwatch::session::parse_duration as parse_secs;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn parse_ring(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of bytes"))?;
    let page = 4096;
    if v < page || !v.is_power_of_two() || v > 1 << 30 {
        return Err(format!(
            "`{s}`: the ring buffer size must be a power of two between 4096 and 1073741824 bytes"
        ));
    }
    Ok(v)
}

/// A channel kind for --kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Pipe,
    Fifo,
    Unix,
    Tcp,
    Udp,
    Mq,
    Msgq,
}

pub fn kinds_mask(kinds: &[KindArg]) -> u32 {
    use ipcwatch_common::file_kind as fk;
    if kinds.is_empty() {
        return ALL_KINDS;
    }
    kinds
        .iter()
        .map(|k| {
            fk::bit(match k {
                KindArg::Pipe => fk::PIPE,
                KindArg::Fifo => fk::FIFO,
                KindArg::Unix => fk::UNIX,
                KindArg::Tcp => fk::TCP,
                KindArg::Udp => fk::UDP,
                KindArg::Mq => fk::MQ,
                KindArg::Msgq => fk::MSGQ,
            })
        })
        .fold(0, |a, b| a | b)
}
