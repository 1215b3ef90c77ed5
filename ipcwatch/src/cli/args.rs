//! Argument types and parsers that several subcommands share.

use std::time::Duration;

use clap::ValueEnum;
use ipcwatch::kernel::loader::ALL_KINDS;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Seconds (`2.5`) or a duration with units (`10s`, `1m30s`, `500ms`).
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = match s.parse() {
        Ok(v) => v,
        Err(_) => humantime::parse_duration(s)
            .map_err(|_| {
                format!("`{s}` is neither a number of seconds nor a duration like 10s or 1m30s")
            })?
            .as_secs_f64(),
    };
    if !v.is_finite() || v <= 0.0 || v > 1e9 {
        return Err(format!(
            "`{s}`: the duration must be a positive number of seconds"
        ));
    }
    Ok(Duration::from_secs_f64(v))
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
