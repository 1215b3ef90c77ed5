//! Argument types and parsers that several subcommands share.

use clap::ValueEnum;
use ipcwatch::kernel::loader::ALL_KINDS;
use ipcwatch::metrics::Metrics;
use ipcwatch::record::ChannelKind;
use ipcwatch::scan::cgroup::{Selected, select_cgroup, select_container};
/// `--duration` and the like: seconds (`2.5`) or a duration with units.
pub use ipcwatch::session::parse_duration as parse_secs;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// `--metrics ADDR`: bound before anything is traced, so that a bad or
/// busy address is an error at once (said here; the caller exits 1), and
/// served on a thread of its own.
pub fn start_metrics(
    addr: Option<std::net::SocketAddr>,
) -> Option<Option<std::sync::Arc<Metrics>>> {
    use ipcwatch::metrics::serve::MetricsServer;
    let Some(addr) = addr else {
        return Some(None);
    };
    let metrics = Metrics::new();
    match MetricsServer::bind(addr).and_then(|server| server.start(std::sync::Arc::clone(&metrics)))
    {
        Ok(()) => Some(Some(metrics)),
        Err(e) => {
            let msg = format!("ipcwatch: error: cannot serve metrics on {addr}: {e}");
            eprintln!("{}", ipcwatch::text::Clean(&msg));
            None
        }
    }
}

/// `--otlp URL`: the exporter started, with a snapshot holder of its own
/// when `--metrics` made none. `None` after saying why it cannot start.
#[allow(clippy::type_complexity)]
pub fn start_otlp(
    endpoint: Option<ipcwatch::otlp::Endpoint>,
    metrics: Option<std::sync::Arc<Metrics>>,
) -> Option<(
    Option<std::sync::Arc<Metrics>>,
    Option<std::sync::Arc<ipcwatch::otlp::Otlp>>,
)> {
    let Some(endpoint) = endpoint else {
        return Some((metrics, None));
    };
    let metrics = metrics.unwrap_or_default();
    match ipcwatch::otlp::Otlp::start(endpoint, std::sync::Arc::clone(&metrics)) {
        Ok(o) => Some((Some(metrics), Some(o))),
        Err(e) => {
            eprintln!(
                "{}",
                ipcwatch::text::Clean(&format!("ipcwatch: error: {e}"))
            );
            None
        }
    }
}

/// `--otlp URL`.
pub fn parse_otlp(s: &str) -> Result<ipcwatch::otlp::Endpoint, String> {
    ipcwatch::otlp::Endpoint::parse(s).map_err(|e| {
        let e = e.to_string();
        e.strip_prefix("--otlp ").unwrap_or(&e).to_string()
    })
}

/// `--rotate-size`: bytes, or with a binary suffix: K/KiB, M/MiB, G/GiB
/// (1024-based), at least 4 KiB.
pub fn parse_size(s: &str) -> Result<u64, String> {
    use ipcwatch::sink::ndjson::MIN_ROTATE_SIZE;
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    let unit: u64 = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "`{s}`: a size is bytes, or a number with K, M or G (KiB, MiB, GiB)"
            ));
        }
    };
    let n = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("`{s}` is not a size (for example 100M)"))?;
    if n < MIN_ROTATE_SIZE {
        return Err(format!(
            "`{s}`: the size must be at least {MIN_ROTATE_SIZE} bytes"
        ));
    }
    Ok(n)
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

/// The kernel's kind filter for `--kind` (every kind when none is given).
pub fn kinds_mask(kinds: &[ChannelKind]) -> u32 {
    use ipcwatch_common::file_kind as fk;
    if kinds.is_empty() {
        return ALL_KINDS;
    }
    kinds
        .iter()
        .map(|k| {
            fk::bit(match k {
                ChannelKind::Pipe => fk::PIPE,
                ChannelKind::Fifo => fk::FIFO,
                ChannelKind::Unix => fk::UNIX,
                ChannelKind::Tcp => fk::TCP,
                ChannelKind::Udp => fk::UDP,
                ChannelKind::Mq => fk::MQ,
                ChannelKind::Msgq => fk::MSGQ,
            })
        })
        .fold(0, |a, b| a | b)
}

/// `--pid`, `--comm`, `--container` or `--cgroup` given with `-- CMD`:
/// said on standard error (the command and its descendants are what is
/// traced).
pub fn filter_with_command(filtered: bool, command: &[String]) -> bool {
    let both = !command.is_empty() && filtered;
    if both {
        eprintln!(
            "ipcwatch: error: --pid/--comm/--container/--cgroup cannot be combined with `-- CMD` (the command and its descendants are traced)"
        );
    }
    both
}

/// `--container` and `--cgroup` arguments -> the cgroups to trace. An
/// argument that names nothing is said on standard error (`None`).
pub fn select_cgroups(containers: &[String], cgroups: &[String]) -> Option<Vec<Selected>> {
    let mut out = Vec::new();
    for c in containers {
        match select_container(c) {
            Ok(s) => out.extend(s),
            Err(e) => {
                eprintln!("ipcwatch: error: {e}");
                return None;
            }
        }
    }
    for c in cgroups {
        match select_cgroup(c) {
            Ok(s) => out.push(s),
            Err(e) => {
                eprintln!("ipcwatch: error: {e}");
                return None;
            }
        }
    }
    if out.len() > 64 {
        eprintln!(
            "ipcwatch: error: {} cgroups selected; at most 64 can be filtered",
            out.len()
        );
        return None;
    }
    Some(out)
}

/// A trace to read: `-` is standard input. A directory or a file that
/// cannot be opened is the error message to print.
pub fn open_trace_input(file: &str) -> Result<Box<dyn std::io::BufRead>, String> {
    use ipcwatch::text::Clean;
    use std::io::BufReader;
    if file == "-" {
        return Ok(Box::new(BufReader::new(std::io::stdin())));
    }
    match std::fs::File::open(file) {
        Ok(f) if f.metadata().is_ok_and(|m| m.is_dir()) => Err(format!(
            "ipcwatch: error: {} is a directory, not a trace",
            Clean(file)
        )),
        Ok(f) => Ok(Box::new(BufReader::new(f))),
        Err(e) => Err(format!("ipcwatch: error: cannot read {}: {e}", Clean(file))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes_and_a_floor() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("100m"), Ok(100 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        for bad in [
            "",
            "K",
            "1K",
            "4095",
            "1.5M",
            "-1M",
            "10X",
            "99999999999999G",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
