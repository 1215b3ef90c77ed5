//! The endpoint: an `http://` URL, and one blocking HTTP/1.1 POST per
//! export request (a new connection each time, `Connection: close`),
//! every step bounded by a timeout. Exports are at most a few a second,
//! so a connection kept alive would save nothing worth its states.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// A URL `--otlp` cannot send to.
#[derive(Debug, thiserror::Error)]
#[error("--otlp {0}")]
pub struct UrlError(String);

/// The longest answer read (a collector answers with a few bytes).
const MAX_ANSWER: u64 = 64 * 1024;

/// Where logs and metrics go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port`, as given (resolved at each connection).
    pub authority: String,
    /// Request paths.
    pub logs_path: String,
    pub metrics_path: String,
}

impl Endpoint {
    /// `http://HOST[:PORT][/PATH]`. Without a path (or `/`), the OTLP
    /// paths `/v1/logs` and `/v1/metrics` are used (as for
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`); with one, they go under it
    /// (`http://gw/otlp` sends to `/otlp/v1/logs`). The port defaults to
    /// 4318. No TLS: send to a Collector on the host or the node.
    pub fn parse(url: &str) -> Result<Endpoint, UrlError> {
        let bad = |why: &str| UrlError(format!("`{url}`: {why}"));
        let rest = if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if url.starts_with("https://") {
            return Err(bad(
                "https is not supported: send to an OpenTelemetry Collector over http (docs/otlp.md)",
            ));
        } else {
            return Err(bad("not an http:// URL"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        if authority.contains('@') || path.contains(['?', '#']) {
            return Err(bad("user names, queries and fragments are not supported"));
        }
        if !authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:[]".contains(c))
        {
            return Err(bad("the host has characters a host name does not"));
        }
        // A port, unless the authority ends with one (IPv6 literals have
        // colons inside their brackets).
        let has_port = match authority.rfind(':') {
            Some(i) => !authority[i..].contains(']'),
            None => false,
        };
        let authority = if has_port {
            let port = &authority[authority.rfind(':').unwrap_or(0) + 1..];
            if port.parse::<u16>().is_err() {
                return Err(bad("the port is not a number from 0 to 65535"));
            }
            authority.to_string()
        } else {
            format!("{authority}:4318")
        };
        if !path.is_ascii() || path.contains(char::is_whitespace) {
            return Err(bad("the path must be ASCII without spaces"));
        }
        let base = path.trim_end_matches('/');
        Ok(Endpoint {
            authority,
            logs_path: format!("{base}/v1/logs"),
            metrics_path: format!("{base}/v1/metrics"),
        })
    }
}

/// How a POST ended, when it did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// Worth retrying: no connection, a timeout, 408, 429, 5xx.
    Retry(String),
    /// The endpoint refused the request for good (another 4xx).
    Refused(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Retry(s) | Failure::Refused(s) => f.write_str(s),
        }
    }
}

/// POST `body` (protobuf) to `path`, and wait for the status line, all
/// within `limit`.
pub fn post(endpoint: &Endpoint, path: &str, body: &[u8], limit: Duration) -> Result<(), Failure> {
    let until = Instant::now() + limit;
    let left = || {
        until
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let retry = |what: &str, e: io::Error| Failure::Retry(format!("{what}: {e}"));
    let addrs: Vec<SocketAddr> = endpoint
        .authority
        .to_socket_addrs()
        .map_err(|e| retry("cannot resolve the host", e))?
        .collect();
    let mut stream = None;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, left()) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut stream = stream.ok_or_else(|| retry("cannot connect", last))?;
    let _ = stream.set_nodelay(true);
    stream
        .set_write_timeout(Some(left()))
        .map_err(|e| retry("socket", e))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ipcwatch/{}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        endpoint.authority,
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .and_then(|()| stream.flush())
        .map_err(|e| retry("sending", e))?;
    // The answer: its status line is all that matters; the rest is read
    // (bounded) so that the server sees its answer taken.
    let mut answer = Vec::new();
    let mut reader = (&stream).take(MAX_ANSWER);
    loop {
        stream
            .set_read_timeout(Some(left()))
            .map_err(|e| retry("socket", e))?;
        let mut buf = [0u8; 4096];
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if complete(&answer) {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if answer.is_empty() => return Err(retry("no answer", e)),
            Err(_) => break,
        }
    }
    status(&answer)
}

/// The head and a body of the length it states (or none) are in.
fn complete(answer: &[u8]) -> bool {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(n) => answer.len() >= end + 4 + n,
        // Chunked or until close: read on.
        None => false,
    }
}

/// The verdict of an answer's status line.
fn status(answer: &[u8]) -> Result<(), Failure> {
    let line = answer.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok());
    let Some(code) = code.filter(|_| line.starts_with("HTTP/")) else {
        return Err(Failure::Retry("the answer is not HTTP".into()));
    };
    let clean: String = line
        .trim_end()
        .chars()
        .filter(|c| !c.is_control())
        .take(80)
        .collect();
    match code {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(Failure::Retry(format!("answered {clean}"))),
        _ => Err(Failure::Refused(format!("answered {clean}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_otlp_paths() {
        let e = Endpoint::parse("http://127.0.0.1:4318").unwrap();
        assert_eq!(e.authority, "127.0.0.1:4318");
        assert_eq!(e.logs_path, "/v1/logs");
        assert_eq!(e.metrics_path, "/v1/metrics");
        let e = Endpoint::parse("http://collector/").unwrap();
        assert_eq!(e.authority, "collector:4318");
        assert_eq!(e.logs_path, "/v1/logs");
        let e = Endpoint::parse("http://[::1]/otlp/").unwrap();
        assert_eq!(e.authority, "[::1]:4318");
        assert_eq!(e.metrics_path, "/otlp/v1/metrics");
        let e = Endpoint::parse("http://[::1]:9000").unwrap();
        assert_eq!(e.authority, "[::1]:9000");
        for bad in [
            "https://x",
            "x:4318",
            "http://",
            "http://a:b",
            "http://a:99999",
            "http://u@h",
            "http://h/p?q",
            "http://h h",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn statuses_say_whether_to_retry() {
        assert!(status(b"HTTP/1.1 200 OK\r\n\r\n").is_ok());
        assert!(status(b"HTTP/1.1 204 No Content\r\n\r\n").is_ok());
        assert!(matches!(
            status(b"HTTP/1.1 503 Unavailable\r\n"),
            Err(Failure::Retry(_))
        ));
        assert!(matches!(
            status(b"HTTP/1.1 429 Slow down\r\n"),
            Err(Failure::Retry(_))
        ));
        assert!(matches!(
            status(b"HTTP/1.1 400 Bad\r\n"),
            Err(Failure::Refused(_))
        ));
        assert!(matches!(status(b"SSH-2.0"), Err(Failure::Retry(_))));
        assert!(complete(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab"));
    }
}
