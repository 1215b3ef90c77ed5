//! The `/metrics` endpoint: a small HTTP/1.1 responder on its own thread
//! (with no capability, its own single-threaded tokio runtime), so that a
//! scrape never runs on the event loop and a slow or hostile client never
//! holds it.
//!
//! It answers `GET` and `HEAD` of `/metrics` with the OpenMetrics text,
//! anything else with 404, 405 or 400, and closes each connection after
//! one answer. A request head is read for 5 s at most and may be 8 KiB at
//! most; at most 16 connections are served at once (more are closed at
//! once).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::{CONTENT_TYPE, Metrics};
use crate::kernel::privileges::spawn_unprivileged;

/// The longest request head read.
const MAX_HEAD: usize = 8192;
/// How long a client may take to send its request and read the answer.
const CLIENT_TIME: Duration = Duration::from_secs(5);
/// Connections served at once.
const MAX_CLIENTS: usize = 16;

/// `--metrics ADDR`: an IP address and a port (`127.0.0.1:9464`,
/// `[::1]:9464`, `0.0.0.0:9464`).
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("`{s}` is not IP:PORT (for example 127.0.0.1:9464 or [::1]:9464)"))
}

/// A bound listener, not yet serving.
#[derive(Debug)]
pub struct MetricsServer {
    listener: std::net::TcpListener,
}

impl MetricsServer {
    /// Bind `addr` now (before tracing starts, so that a port in use is
    /// said at once).
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(MetricsServer { listener })
    }

    /// The address bound (the port chosen, for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve `metrics` on a thread of its own until the process exits.
    pub fn start(self, metrics: Arc<Metrics>) -> io::Result<()> {
        let listener = self.listener;
        spawn_unprivileged("metrics", move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("metrics: cannot start the server: {e}");
                    return;
                }
            };
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(l) => accept_loop(l, metrics).await,
                    Err(e) => tracing::error!("metrics: cannot serve: {e}"),
                }
            });
        })?;
        Ok(())
    }
}

async fn accept_loop(listener: TcpListener, metrics: Arc<Metrics>) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, or a connection reset before it was
                // accepted: wait a little instead of spinning.
                tracing::debug!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            match tokio::time::timeout(CLIENT_TIME, serve_one(stream, &metrics)).await {
                Ok(Err(e)) => tracing::debug!("metrics: client: {e}"),
                Err(_) => tracing::debug!("metrics: client too slow, closed"),
                Ok(Ok(())) => {}
            }
            drop(slot);
        });
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Metrics { head_only: bool },
    NotFound,
    MethodNotAllowed,
    Bad,
}

/// Parse a request head (the bytes before the blank line).
fn parse_request(head: &[u8]) -> Request {
    let Ok(head) = std::str::from_utf8(head) else {
        return Request::Bad;
    };
    let line = head.split("\r\n").next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::Bad;
    };
    if !version.starts_with("HTTP/1.") || target.is_empty() {
        return Request::Bad;
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Request::MethodNotAllowed,
    };
    let path = target.split('?').next().unwrap_or("");
    if path == "/metrics" {
        Request::Metrics { head_only }
    } else {
        Request::NotFound
    }
}

/// Read one request head, answer it, close.
async fn serve_one(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let request = loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break parse_request(&head[..end]);
        }
        if head.len() > MAX_HEAD {
            break Request::Bad;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            // Closed before a whole head: nothing to answer.
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    };
    let (status, content_type, body, finished) = match request {
        Request::Metrics { head_only } => {
            let (text, finished) = metrics.render();
            let body = if head_only { String::new() } else { text };
            ("200 OK", CONTENT_TYPE, body, finished)
        }
        Request::NotFound => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: ipcwatch serves /metrics\n".to_string(),
            false,
        ),
        Request::MethodNotAllowed => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET and HEAD\n".to_string(),
            false,
        ),
        Request::Bad => (
            "400 Bad Request",
            "text/plain; charset=utf-8",
            "bad request\n".to_string(),
            false,
        ),
    };
    let allow = if status.starts_with("405") {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await?;
    if finished {
        metrics.served_final();
    }
    Ok(())
}

/// After the summary: serve until one scrape has returned the final
/// values, or `linger` has passed. Returns whether one did.
pub fn linger(metrics: &Metrics, linger: Duration) -> bool {
    let until = Instant::now() + linger;
    loop {
        if metrics.final_scrapes() > 0 {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn request_heads_are_parsed_strictly() {
        let m = |head_only| Request::Metrics { head_only };
        for (head, want) in [
            (&b"GET /metrics HTTP/1.1\r\nHost: x"[..], m(false)),
            (b"GET /metrics?x=1 HTTP/1.0", m(false)),
            (b"HEAD /metrics HTTP/1.1", m(true)),
            (b"GET / HTTP/1.1", Request::NotFound),
            (b"GET /metricsx HTTP/1.1", Request::NotFound),
            (b"POST /metrics HTTP/1.1", Request::MethodNotAllowed),
            (b"GET /metrics", Request::Bad),
            (b"GET /metrics HTTP/2.0", Request::Bad),
            (b"GET  /metrics HTTP/1.1", Request::Bad),
            (b"GET /metrics HTTP/1.1 x", Request::Bad),
            (b"\xff\xfe /metrics HTTP/1.1", Request::Bad),
            (b"", Request::Bad),
        ] {
            assert_eq!(
                parse_request(head),
                want,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    fn ask(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// The real server on a free port: good and bad requests each get an
    /// answer, and the final-scrape count moves only for a finished
    /// snapshot, once answered.
    #[test]
    fn the_server_answers_good_and_bad_requests() {
        let server = MetricsServer::bind(parse_addr("127.0.0.1:0").unwrap()).unwrap();
        let addr = server.local_addr().unwrap();
        let metrics = Metrics::new();
        server.start(Arc::clone(&metrics)).unwrap();
        let ok = ask(addr, b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains(CONTENT_TYPE), "{ok}");
        assert!(ok.contains("ipcwatch_recording_finished 0"), "{ok}");
        assert!(ok.ends_with("# EOF\n"), "{ok}");
        assert_eq!(metrics.final_scrapes(), 0);
        let head = ask(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
        for (req, status) in [
            (&b"GET /nope HTTP/1.1\r\n\r\n"[..], "404"),
            (b"DELETE /metrics HTTP/1.1\r\n\r\n", "405"),
            (b"garbage\r\n\r\n", "400"),
        ] {
            let r = ask(addr, req);
            assert!(r.starts_with(&format!("HTTP/1.1 {status} ")), "{r}");
        }
        // A head longer than 8 KiB with no end.
        let long = vec![b'a'; 20_000];
        assert!(ask(addr, &long).starts_with("HTTP/1.1 400 "));
        // A client that sends half a head and goes away.
        drop(
            std::net::TcpStream::connect(addr)
                .unwrap()
                .write_all(b"GET /met"),
        );
        metrics.publish(super::super::Snapshot {
            finished: true,
            ..Default::default()
        });
        assert!(!linger(&metrics, Duration::from_millis(50)));
        let fin = ask(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(fin.contains("ipcwatch_recording_finished 1"), "{fin}");
        assert!(linger(&metrics, Duration::from_secs(5)));
    }

    #[test]
    fn a_port_in_use_and_a_bad_address_are_errors() {
        let first = MetricsServer::bind(parse_addr("127.0.0.1:0").unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let e = MetricsServer::bind(addr).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(parse_addr("localhost").is_err());
        assert!(parse_addr("9464").is_err());
        assert!(parse_addr("1.2.3.4:99999").is_err());
    }
}
