//! Containers' names and images, asked of their runtime's API socket
//! (docker's, podman's docker-compatible service, CRI-O's info socket) on
//! a thread of its own: events never wait for an answer. A container is
//! asked about once; what the runtime answers is sent back and merged into
//! the records written from then on, and the collector writes it as a
//! `container` line (see `Collector::containers_named`).
//!
//! A runtime's answer is JSON chosen partly by whoever created the
//! container (its name, its image's name, labels): it is kept as text,
//! bounded, and sanitized where shown, like every other name.

use std::collections::HashSet;
use std::io::{self, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use foldhash::HashMap;
use serde_json::Value;

use crate::record::{Container, Text};

/// Containers waiting to be asked about, at most (more are asked about
/// when their next process starts).
const QUEUE: usize = 256;
/// How long one runtime may take to answer.
const TIMEOUT: Duration = Duration::from_secs(2);
/// The largest answer read (a container's inspect JSON is a few KiB).
const MAX_ANSWER: u64 = 1 << 20;
/// The longest name, image, pod or namespace kept.
const MAX_FIELD: usize = 256;
/// A container no runtime answered for is asked again after this long (a
/// runtime's service may start later).
const RETRY: Duration = Duration::from_secs(30);
/// Containers remembered, at most, before the memory starts over.
const MAX_KNOWN: usize = 16_384;

/// What a runtime says of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    pub name: Option<String>,
    pub image: Option<String>,
    /// Kubernetes: the pod and its namespace (the runtime's
    /// `io.kubernetes.pod.*` labels).
    pub pod: Option<String>,
    pub namespace: Option<String>,
}

/// API sockets asked, by runtime, in order. podman answers docker's API
/// on its own socket (`podman system service`) and, with podman-docker,
/// on docker's.
fn sockets(runtime: &str) -> &'static [&'static str] {
    match runtime {
        "docker" => &["/run/docker.sock", "/var/run/docker.sock"],
        "podman" => &[
            "/run/podman/podman.sock",
            "/run/docker.sock",
            "/var/run/docker.sock",
        ],
        // containerd's API is gRPC (not asked); a Kubernetes node's
        // "cri" layout may be CRI-O's.
        "crio" | "cri" => &["/run/crio/crio.sock", "/var/run/crio/crio.sock"],
        _ => &[],
    }
}

/// Names and images of containers, asked of their runtimes in the
/// background.
#[derive(Debug, Default)]
pub struct Names {
    worker: Option<Worker>,
    /// Answers received: container id -> what the runtime said.
    known: HashMap<Text, Meta>,
    /// Ids asked about (or being asked about), and when.
    asked: HashMap<Text, Instant>,
}

#[derive(Debug)]
struct Worker {
    tx: SyncSender<Container>,
    rx: Receiver<(Container, Option<Meta>)>,
}

impl Names {
    /// Ask about `c` unless it was asked about recently. Never blocks.
    pub fn request(&mut self, c: &Container) {
        if self.known.contains_key(&c.id) || sockets(&c.runtime).is_empty() {
            return;
        }
        if self.asked.get(&c.id).is_some_and(|at| at.elapsed() < RETRY) {
            return;
        }
        let Some(worker) = self.worker() else {
            return;
        };
        match worker.tx.try_send(c.clone()) {
            Ok(()) => {
                if self.asked.len() >= MAX_KNOWN {
                    self.asked.clear();
                }
                self.asked.insert(c.id.clone(), Instant::now());
            }
            // Not marked as asked: the container's next process asks again.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {}
        }
    }

    /// `c` with what its runtime said of it, if it answered already.
    pub fn fill(&self, c: &mut Container) {
        if let Some(m) = self.known.get(&c.id) {
            apply(c, m);
        }
    }

    /// The containers whose runtime answered since the last call, named.
    pub fn answered(&mut self) -> Vec<Container> {
        let Some(worker) = &self.worker else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while let Ok((mut c, meta)) = worker.rx.try_recv() {
            let Some(meta) = meta else { continue };
            if self.known.len() >= MAX_KNOWN {
                self.known.clear();
            }
            apply(&mut c, &meta);
            self.known.insert(c.id.clone(), meta);
            out.push(c);
        }
        out
    }

    fn worker(&mut self) -> Option<&Worker> {
        if self.worker.is_none() {
            let (tx, requests) = mpsc::sync_channel::<Container>(QUEUE);
            let (answers, rx) = mpsc::channel();
            // Its own thread, so that a slow runtime never holds up the
            // collector; it only connects to sockets and parses JSON.
            let spawned = std::thread::Builder::new()
                .name("ipcwatch-names".into())
                .spawn(move || {
                    let mut unanswered = HashSet::new();
                    for c in requests {
                        let meta = ask(&c, &mut unanswered);
                        if answers.send((c, meta)).is_err() {
                            return;
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::debug!("no container-name thread: {e}");
                return None;
            }
            self.worker = Some(Worker { tx, rx });
        }
        self.worker.as_ref()
    }
}

fn apply(c: &mut Container, m: &Meta) {
    c.name = m.name.clone().or(c.name.take());
    c.image = m.image.clone().or(c.image.take());
    c.pod = m.pod.clone().or(c.pod.take());
    c.namespace = m.namespace.clone().or(c.namespace.take());
}

/// Ask `c`'s runtime's sockets in turn; the first that knows it answers.
/// `unanswered` keeps the sockets found absent, so that a machine without
/// a runtime's service is not asked again for each container.
fn ask(c: &Container, unanswered: &mut HashSet<&'static str>) -> Option<Meta> {
    for &socket in sockets(&c.runtime) {
        if unanswered.contains(socket) {
            continue;
        }
        let crio = socket.contains("crio");
        let path = if crio {
            format!("/containers/{}", c.id)
        } else {
            format!("/containers/{}/json", c.id)
        };
        match get(Path::new(socket), &path) {
            Ok(Some(body)) => {
                let parsed = serde_json::from_slice::<Value>(&body).ok();
                if let Some(m) = parsed
                    .as_ref()
                    .and_then(|v| if crio { meta_crio(v) } else { meta_docker(v) })
                {
                    return Some(m);
                }
            }
            // The service answered without knowing it: another may.
            Ok(None) => {}
            Err(e) => {
                tracing::debug!("{socket}: {e}");
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) {
                    unanswered.insert(socket);
                }
            }
        }
    }
    None
}

/// `GET path` over the Unix socket `socket`: the body of a 200 answer, or
/// None for another status.
fn get(socket: &Path, path: &str) -> io::Result<Option<Vec<u8>>> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    // HTTP/1.0: the answer is not chunked and ends when the server closes.
    // One write: a server may answer (and close) on a partial request.
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())?;
    let mut answer = Vec::new();
    s.take(MAX_ANSWER).read_to_end(&mut answer)?;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut head = httparse::Response::new(&mut headers);
    let body_at = match head.parse(&answer) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the answer ends in its head",
            ));
        }
        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    };
    if head.code != Some(200) {
        return Ok(None);
    }
    Ok(Some(answer.split_off(body_at)))
}

/// A bounded copy of a JSON string field.
fn field(v: &Value) -> Option<String> {
    let s = v.as_str()?.trim();
    if s.is_empty() {
        return None;
    }
    let mut end = s.len().min(MAX_FIELD);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Some(s[..end].to_owned())
}

/// Docker's (and podman's compatible) `GET /containers/ID/json`.
fn meta_docker(v: &Value) -> Option<Meta> {
    let labels = &v["Config"]["Labels"];
    let m = Meta {
        // Docker's names start with '/'.
        name: field(&v["Name"]).map(|n| n.trim_start_matches('/').to_owned()),
        image: field(&v["Config"]["Image"]).or_else(|| field(&v["ImageName"])),
        pod: field(&labels["io.kubernetes.pod.name"]),
        namespace: field(&labels["io.kubernetes.pod.namespace"]),
    };
    (m != Meta::default()).then_some(m)
}

/// CRI-O's info socket, `GET /containers/ID`.
fn meta_crio(v: &Value) -> Option<Meta> {
    let labels = &v["labels"];
    let m = Meta {
        name: field(&labels["io.kubernetes.container.name"]).or_else(|| field(&v["name"])),
        image: field(&v["image"]).or_else(|| field(&v["image_ref"])),
        pod: field(&labels["io.kubernetes.pod.name"]),
        namespace: field(&labels["io.kubernetes.pod.namespace"]),
    };
    (m != Meta::default()).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn docker_and_podman_answers_give_name_image_and_pod() {
        let v: Value = serde_json::from_str(
            r#"{"Id":"ab","Name":"/web-1","Config":{"Image":"nginx:1.27",
            "Labels":{"io.kubernetes.pod.name":"web-5d8","io.kubernetes.pod.namespace":"prod"}}}"#,
        )
        .unwrap();
        assert_eq!(
            meta_docker(&v),
            Some(Meta {
                name: Some("web-1".into()),
                image: Some("nginx:1.27".into()),
                pod: Some("web-5d8".into()),
                namespace: Some("prod".into()),
            })
        );
        // Nothing useful: no answer rather than an empty one.
        assert_eq!(meta_docker(&serde_json::json!({"Name": ""})), None);
        let crio = serde_json::json!({"name": "k8s_app_x", "image": "quay.io/a/b:1",
            "labels": {"io.kubernetes.container.name": "app", "io.kubernetes.pod.name": "p"}});
        let m = meta_crio(&crio).unwrap();
        assert_eq!(m.name.as_deref(), Some("app"));
        assert_eq!(m.image.as_deref(), Some("quay.io/a/b:1"));
        assert_eq!(m.pod.as_deref(), Some("p"));
    }

    #[test]
    fn fields_are_bounded_on_a_char_boundary() {
        let long = "é".repeat(1000);
        let f = field(&Value::String(long)).unwrap();
        assert!(f.len() <= MAX_FIELD && f.chars().all(|c| c == 'é'));
    }

    /// A server on a Unix socket that answers each connection with `reply`
    /// and keeps the request lines it got.
    fn serve(reply: &'static [u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { return };
                // The whole request head, then the reply.
                let mut req = Vec::new();
                let mut buf = [0u8; 512];
                while !req.ends_with(b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(reply);
            }
        });
        (dir, path)
    }

    #[test]
    fn get_reads_a_200_body_and_refuses_other_statuses_and_garbage() {
        let (_d, ok) =
            serve(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"Name\":\"/x\"}");
        assert_eq!(
            get(&ok, "/containers/1/json").unwrap().as_deref(),
            Some(&b"{\"Name\":\"/x\"}"[..])
        );
        let (_d, missing) = serve(b"HTTP/1.1 404 Not Found\r\n\r\nno such container");
        assert_eq!(get(&missing, "/containers/1/json").unwrap(), None);
        let (_d, garbage) = serve(b"\x00\x01garbage");
        assert!(get(&garbage, "/").is_err());
        let (_d, cut) = serve(b"HTTP/1.0 200 OK\r\nContent-");
        assert!(get(&cut, "/").is_err());
    }
}
