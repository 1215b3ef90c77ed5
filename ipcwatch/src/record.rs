//! The records ipcwatch produces: one NDJSON line each.
//!
//! This is the contract documented in `docs/ndjson.md` and checked against
//! `docs/ndjson.schema.json`. Live tracing turns kernel events into these
//! records (see [`crate::collect`]), and replay reads them back from a file; the
//! model and every sink only ever see records.

use std::collections::BTreeMap;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// Current trace format version, in the header line.
pub const FORMAT_VERSION: u32 = 1;
/// Value of the header's `format` field.
pub const FORMAT_NAME: &str = "ipcwatch-ndjson";

/// Short text without a heap allocation for the common sizes (a comm is at
/// most 15 bytes; "pipe:[1234567]" fits too).
pub type Text = CompactString;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Header(Header),
    Io(Io),
    Channel(ChannelLine),
    Process(ProcessLine),
    Lost(Lost),
    Warning(Warning),
    Summary(Summary),
    Region(RegionLine),
    Mapping(MappingLine),
    Sync(SyncLine),
    Fault(FaultLine),
    Race(RaceLine),
    WriteSample(WriteSampleLine),
    Heat(HeatLine),
    Container(ContainerLine),
    /// `ipcwatch agent`: one channel's, region's or lock's totals over an
    /// interval, in place of its per-event lines.
    Aggregate(AggregateLine),
    /// A line type this version does not know (from a newer ipcwatch):
    /// skipped when reading.
    #[serde(other)]
    Unknown,
}

impl Record {
    pub fn ts_ns(&self) -> Option<u64> {
        Some(match self {
            Record::Header(r) => r.ts_ns,
            Record::Io(r) => r.ts_ns,
            Record::Channel(r) => r.ts_ns,
            Record::Process(r) => r.ts_ns,
            Record::Lost(r) => r.ts_ns,
            Record::Warning(r) => r.ts_ns,
            Record::Summary(r) => r.ts_ns,
            Record::Region(r) => r.ts_ns,
            Record::Mapping(r) => r.ts_ns,
            Record::Sync(r) => r.ts_ns,
            Record::Fault(r) => r.ts_ns,
            Record::Race(r) => r.ts_ns,
            Record::WriteSample(r) => r.ts_ns,
            Record::Heat(r) => r.ts_ns,
            Record::Container(r) => r.ts_ns,
            Record::Aggregate(r) => r.ts_ns,
            Record::Unknown => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub ts_ns: u64,
    /// Always "ipcwatch-ndjson".
    pub format: Text,
    /// [`FORMAT_VERSION`] of the writer.
    pub version: u32,
    pub tool_version: Text,
    /// The git commit ipcwatch was built from (absent in traces written
    /// before it was recorded).
    #[serde(default, skip_serializing_if = "Text::is_empty")]
    pub tool_commit: Text,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    pub hostname: String,
    /// Wall-clock start, RFC 3339 UTC.
    pub start_time: String,
    /// Wall-clock start, nanoseconds since the Unix epoch. Together with
    /// `ts_ns` (CLOCK_MONOTONIC) it converts any line's time to wall time.
    pub start_unix_ns: u64,
    /// The command traced with `-- CMD`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Process ids given with `--pid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pids: Vec<u32>,
    /// Names given with `--comm`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comms: Vec<String>,
}

/// Also the values of `--kind`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Pipe,
    Fifo,
    Unix,
    Tcp,
    Udp,
    Mq,
    Msgq,
}

impl ChannelKind {
    /// Every kind, in this order.
    pub const ALL: [ChannelKind; 7] = [
        ChannelKind::Pipe,
        ChannelKind::Fifo,
        ChannelKind::Unix,
        ChannelKind::Tcp,
        ChannelKind::Udp,
        ChannelKind::Mq,
        ChannelKind::Msgq,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Pipe => "pipe",
            ChannelKind::Fifo => "fifo",
            ChannelKind::Unix => "unix",
            ChannelKind::Tcp => "tcp",
            ChannelKind::Udp => "udp",
            ChannelKind::Mq => "mq",
            ChannelKind::Msgq => "msgq",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Read,
    Write,
}

/// Bytes moved through a channel by one syscall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Io {
    pub ts_ns: u64,
    pub kind: ChannelKind,
    pub op: Op,
    /// Stable channel id, e.g. "pipe:[12345]".
    pub channel: Text,
    pub pid: u32,
    pub tid: u32,
    pub comm: Text,
    pub bytes: u64,
    pub fd: i32,
    /// The syscall that moved the bytes ("write", "splice"...).
    pub syscall: Text,
    /// When the syscall started (writes larger than PIPE_BUF to a pipe or
    /// FIFO only: those may interleave with other writers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ns: Option<u64>,
    /// Socket and queue details (absent for pipes).
    #[serde(flatten)]
    pub ext: IoExt,
}

/// Credentials passed with SCM_CREDENTIALS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The optional parts of an `io` line for sockets and message queues.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IoExt {
    /// Messages moved, when more than one (sendmmsg/recvmmsg).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msgs: Option<u32>,
    /// POSIX queue: the message priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// SysV queue: the message type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtype: Option<i64>,
    /// SysV queue: its key, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<i64>,
    /// Unconnected socket: the destination (write) or source (read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// SCM_RIGHTS: the descriptors passed, as numbered in the sender
    /// (write) or in the receiver (read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scm_rights: Option<Vec<i32>>,
    /// SCM_CREDENTIALS sent or received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scm_credentials: Option<Credentials>,
    /// With `--capture-bytes N`: the first N bytes moved, in hex. Never
    /// present otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The live TUI's in-kernel totals (docs/tui.md): this line sums this
    /// many calls of one process on one descriptor, since the last line
    /// for it (`ts_ns` is the last call's, `tid` the pid and `syscall`
    /// empty). Absent: one call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<u64>,
}

impl Io {
    /// The calls this line stands for (one, unless it sums
    /// [`IoExt::calls`]).
    pub fn calls(&self) -> u64 {
        self.ext.calls.unwrap_or(1)
    }
}

/// Which way a descriptor faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum End {
    Read,
    Write,
    Both,
}

impl End {
    /// From `file->f_mode & (FMODE_READ | FMODE_WRITE)`.
    pub fn from_access(access: u16) -> Option<End> {
        match access & 3 {
            1 => Some(End::Read),
            2 => Some(End::Write),
            3 => Some(End::Both),
            _ => None,
        }
    }

    /// From open(2) flags.
    pub fn from_open_flags(flags: u32) -> End {
        match flags as i32 & libc::O_ACCMODE {
            libc::O_RDONLY => End::Read,
            libc::O_WRONLY => End::Write,
            _ => End::Both,
        }
    }

    pub fn reads(self) -> bool {
        self != End::Write
    }

    pub fn writes(self) -> bool {
        self != End::Read
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelEvent {
    /// pipe()/pipe2() made this end.
    Create,
    /// A FIFO was opened by path.
    Open,
    /// A descriptor was duplicated onto `fd` from `old_fd`.
    Dup,
    /// The descriptor was closed (close, close_range).
    Close,
    /// fcntl(F_SETFD) or close_range(CLOSE_RANGE_CLOEXEC) changed `cloexec`.
    Setfd,
    /// mknod made a FIFO at `path`.
    Mkfifo,
    /// The descriptor existed when ipcwatch started (found in /proc).
    Existing,
    /// socket() (or one end of socketpair, with `peer_*`).
    Socket,
    /// bind(): `local` is the address.
    Bind,
    /// listen().
    Listen,
    /// connect(): `remote` is the address, `peer_*` the other end.
    Connect,
    /// accept(): `fd` is the new socket, `peer_*` the connecting end.
    Accept,
    /// mq_unlink, or msgctl(IPC_RMID).
    Unlink,
    /// mq_notify: `notify` says whether a notification was registered.
    Notify,
    /// mq_getsetattr, msgctl (other than IPC_RMID).
    Control,
}

/// A change to who holds an end of a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelLine {
    pub ts_ns: u64,
    pub event: ChannelEvent,
    pub kind: ChannelKind,
    pub channel: Text,
    pub pid: u32,
    pub tid: u32,
    pub comm: Text,
    /// The descriptor (absent for `mkfifo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<End>,
    /// `dup`: the descriptor it was duplicated from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_fd: Option<i32>,
    /// Close-on-exec flag of `fd` after this event.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cloexec: bool,
    /// Path of a FIFO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscall: Option<Text>,
    /// Socket and queue details (absent for pipes). Boxed: most channel
    /// lines are about pipes and leave it empty.
    #[serde(flatten)]
    pub ext: Box<ChannelExt>,
}

/// `struct mq_attr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MqAttr {
    pub flags: i64,
    pub maxmsg: i64,
    pub msgsize: i64,
    pub curmsgs: i64,
}

/// The optional parts of a `channel` line for sockets and queues.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelExt {
    /// "stream", "dgram" or "seqpacket".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_type: Option<Text>,
    /// This end's address: "/path", "@abstract", "ip:port", "[ip6]:port".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    /// The other end's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// This socket's inode ("socket:[INODE]" in /proc/PID/fd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
    /// The other end: its socket inode and, when known, who holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_inode: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_comm: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_fd: Option<i32>,
    /// Queues: the name (POSIX) or key (SysV).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<i64>,
    /// SysV queue id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// mq_open oflag / msgget msgflg / msgctl cmd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<u32>,
    /// mq_open mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// mq_open attributes, mq_getsetattr new attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attr: Option<MqAttr>,
    /// mq_getsetattr previous attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_attr: Option<MqAttr>,
    /// mq_notify: true when registering, false when removing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessEvent {
    Fork,
    Exec,
    Exit,
    /// The process was running when ipcwatch started.
    Existing,
    /// wait4/waitid returned `child`, which had exited (or was killed).
    Wait,
}

/// A container, named from its cgroup path (and, where the runtime's
/// socket answered, its name and image).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// The id as the runtime reports it (64 hex digits for docker,
    /// podman, containerd and CRI-O).
    pub id: Text,
    /// "docker", "podman", "containerd" or "crio".
    pub runtime: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Kubernetes: the pod, and its namespace (the runtime's
    /// `io.kubernetes.pod.*` labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// What a container's runtime said of it (name, image, pod), once it
/// answered: processes' lines from then on carry it too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerLine {
    pub ts_ns: u64,
    #[serde(flatten)]
    pub container: Container,
}

impl Container {
    /// How a terminal shows it: the name, else the id's first 12 digits.
    pub fn short(&self) -> &str {
        match &self.name {
            Some(n) => n,
            None => self.id.get(..12).unwrap_or(&self.id),
        }
    }
}

/// Where a process runs: its cgroup (unified hierarchy), the container or
/// systemd unit that cgroup belongs to, and its pid inside the container's
/// pid namespace. Every field is absent when unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    /// The systemd unit (".service" or ".scope"), outside containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Text>,
    /// The pid in the process's own pid namespace, when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nspid: Option<u32>,
}

impl Origin {
    pub fn is_empty(&self) -> bool {
        self == &Origin::default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessLine {
    pub ts_ns: u64,
    pub event: ProcessEvent,
    /// The process: for `fork`, the new child.
    pub pid: u32,
    pub tid: u32,
    pub comm: Text,
    /// Parent (fork, existing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ppid: Option<u32>,
    /// exec: the program's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// wait: the child it reaped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<u32>,
    /// exit (wait: the child's): exit status when it exited normally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// exit: the signal that killed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// fork (the child's), exec, existing: cgroup, container or unit.
    #[serde(flatten)]
    pub origin: Origin,
}

/// Events the kernel could not deliver (the ring buffer was full).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lost {
    pub ts_ns: u64,
    /// Events lost since the previous `lost` line.
    pub count: u64,
    /// Events lost since the start.
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    pub ts_ns: u64,
    pub message: String,
    /// The probe or feature concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
}

/// Totals of one channel, in the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelSummary {
    pub channel: Text,
    pub kind: ChannelKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub bytes_written: u64,
    pub bytes_read: u64,
    pub writes: u64,
    pub reads: u64,
    /// Processes that wrote to it or hold a write end.
    pub writers: Vec<u32>,
    /// Processes that read from it or hold a read end.
    pub readers: Vec<u32>,
    /// Per process: what it sent and received (sockets and queues).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointSummary>,
}

/// One process's traffic on a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointSummary {
    pub pid: u32,
    pub comm: Text,
    pub bytes_written: u64,
    pub bytes_read: u64,
    pub writes: u64,
    pub reads: u64,
    #[serde(flatten)]
    pub origin: Origin,
}

/// Last line of every trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub ts_ns: u64,
    pub duration_ns: u64,
    /// Kernel events received.
    pub events: u64,
    /// Kernel events lost (ring buffer full), as counted in the kernel.
    pub dropped: u64,
    /// `dropped` by kernel event kind ("io", "sock_io", "mem"...), the
    /// kinds that lost any.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dropped_by_kind: BTreeMap<String, u64>,
    /// Losses seen as gaps in the per-CPU sequence numbers; equal to
    /// `dropped` unless the counters themselves were lost.
    pub seq_gaps: u64,
    /// Why recording stopped: "command-exited", "duration", "signal",
    /// "output-closed" or "end-of-input" (replay).
    pub reason: Text,
    /// Exit status of the traced command, with `-- CMD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_status: Option<i32>,
    pub channels: Vec<ChannelSummary>,
    /// The race detector's default mode, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<DetectorSummary>,
    /// `--otlp`: what the exporter sent and lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<ExportCounts>,
}

/// What the OTLP exporter (`--otlp`) did with the findings and metrics it
/// was given (docs/otlp.md). Every finding offered ends in exactly one of
/// `sent`, `queued` (not yet sent), `dropped_queue_full`, `rejected` or
/// `undelivered`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportCounts {
    /// Findings (log records) the endpoint accepted.
    pub sent: u64,
    /// Findings waiting in the exporter's queue or batch now.
    pub queued: u64,
    /// Findings not queued because the queue was full (a slow or dead
    /// endpoint).
    pub dropped_queue_full: u64,
    /// Findings the endpoint refused for good (a 4xx answer other than
    /// 408 and 429).
    pub rejected: u64,
    /// Findings still unsent when the exit's flush ran out of time.
    pub undelivered: u64,
    /// Export requests (logs or metrics) that failed: no connection, a
    /// timeout, an error status. Each retry that fails counts.
    pub failed_requests: u64,
    /// Metric exports the endpoint accepted.
    pub metric_exports: u64,
}

impl ExportCounts {
    /// Findings lost: dropped, rejected or undelivered.
    pub fn lost(&self) -> u64 {
        self.dropped_queue_full + self.rejected + self.undelivered
    }
}

/// What the race detector sampled and watched, in the summary: a detector
/// that found nothing says here what it looked at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorSummary {
    /// Shared regions sampled at once, at most (writable by >= 2 processes).
    pub regions: u64,
    /// Bytes the hot-word sampler read.
    pub bytes_sampled: u64,
    /// CPU time ipcwatch spent sampling.
    pub sampler_cpu_ns: u64,
    /// Watch windows opened.
    pub windows: u64,
    /// Two writes in flight at once on a watched word.
    pub collisions: u64,
    /// Collisions on synchronization words (not races).
    pub atomic: u64,
    /// Collisions whose instruction could not be read (not reported).
    pub undecoded: u64,
    pub findings: u64,
    /// Regions, processes or threads that could not be sampled or watched
    /// (each also said in a `warning` line).
    pub skipped: u64,
    /// Words armed during the recording, most windows first (at most 64).
    pub words: Vec<ArmedWord>,
}

/// One word the race detector armed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmedWord {
    pub region: Text,
    pub offset: u64,
    pub windows: u64,
    /// Writes trapped while it was armed.
    pub traps: u64,
    /// Processes seen writing it.
    pub writers: Vec<u32>,
    /// Written by an atomic instruction: a synchronization word.
    pub sync: bool,
}

// ---------------------------------------------------------------------
// Shared memory, synchronization and races. The shapes below are the
// contract between the producers (the shared-memory probes, the race
// detector) and the consumers (model, TUI, analyze); see docs/ndjson.md.
// ---------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegionKind {
    /// SysV shared memory segment: id "sysv:<shmid>".
    Sysv,
    /// POSIX shm object under /dev/shm: id "posix:/<name>".
    Posix,
    /// memfd_create: id "memfd:<name>:<inode>".
    Memfd,
    /// MAP_SHARED mapping of a file: id "file:<path>".
    File,
    /// MAP_SHARED|MAP_ANONYMOUS shared through fork: id "anon:<dev>:<inode>".
    Anon,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionEvent {
    Created,
    Removed,
    /// Existed when ipcwatch started.
    Existing,
}

/// A shared region appears or goes away.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionLine {
    pub ts_ns: u64,
    pub event: RegionEvent,
    /// Stable id, the same in every process (see [`RegionKind`]).
    pub region: Text,
    pub kind: RegionKind,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Who created or removed it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<Text>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MappingEvent {
    Mapped,
    Unmapped,
    Existing,
}

/// A process maps (part of) a region into its address space, or unmaps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MappingLine {
    pub ts_ns: u64,
    pub event: MappingEvent,
    pub region: Text,
    pub pid: u32,
    pub comm: Text,
    /// Virtual address range [start, end) in that process.
    pub start: u64,
    pub end: u64,
    /// Offset into the region of `start`.
    pub offset: u64,
    /// "rw", "r" ... (read, write, exec letters).
    pub prot: Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncEvent {
    Acquire,
    Release,
    Wait,
    Wake,
    /// A lock object was initialized (inventory).
    Init,
}

/// One synchronization operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncLine {
    pub ts_ns: u64,
    pub event: SyncEvent,
    /// The lock's identity, the same value in every process: "<region>+<offset>"
    /// for an object in shared memory, "flock:<dev>:<ino>" for file locks,
    /// "futex:<pid>:<addr>" for a private futex.
    pub lock: Text,
    pub pid: u32,
    pub tid: u32,
    pub comm: Text,
    /// "futex", "mutex", "rwlock", "spin", "sem", "cond", "flock", "fcntl", "ofd".
    pub primitive: Text,
    /// The operation succeeded (acquired, woke...).
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Primitive-specific detail (futex op, rdlock/wrlock...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Text>,
    /// When the call started (`record --durations`; futex, flock and
    /// fcntl only): `ts_ns - start_ns` is the time it waited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ns: Option<u64>,
}

/// A write page fault on a shared region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultLine {
    pub ts_ns: u64,
    pub region: Text,
    pub offset: u64,
    pub pid: u32,
    pub tid: u32,
    pub comm: Text,
    /// Instruction pointer of the faulting write.
    pub ip: u64,
}

/// One side of a race.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Access {
    pub pid: u32,
    pub tid: u32,
    pub comm: Text,
    pub ip: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// User stack, innermost first, symbolized where possible.
    #[serde(default)]
    pub stack: Vec<String>,
    /// Locks known to be held (deep mode).
    #[serde(default)]
    pub locks: Vec<Text>,
    pub ts_ns: u64,
    #[serde(flatten)]
    pub origin: Origin,
}

/// A finding of the race detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaceLine {
    pub ts_ns: u64,
    /// "shm-write-write" or "pipe-interleave".
    pub kind: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    pub len: u64,
    pub accesses: Vec<Access>,
    /// "collision" or "happens-before".
    pub evidence: Text,
    /// 0.0 to 1.0.
    pub confidence: f64,
    pub explanation: String,
}

/// Deep mode: one sampled (trapped) write to a watched word of a shared
/// region, the input of the happens-before analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteSampleLine {
    pub ts_ns: u64,
    pub region: Text,
    pub offset: u64,
    pub pid: u32,
    pub tid: u32,
    pub comm: Text,
    /// Trap address (just after the writing instruction).
    pub ip: u64,
}

/// What the race detector's sampler saw changing in shared regions, every
/// 2 s while it runs: the hottest words and pages (at most
/// [`HEAT_ITEMS`] each), so that a live view or a replay shows where the
/// writes go before the recording ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeatLine {
    pub ts_ns: u64,
    pub words: Vec<HotWordLine>,
    pub pages: Vec<HotPageLine>,
}

impl HeatLine {
    /// The same words and pages with the same counts (scores aside, which
    /// decay every sample even when nothing is written).
    pub fn same_counts(&self, other: &HeatLine) -> bool {
        fn counts(l: &HeatLine) -> HeatLine {
            let mut l = l.clone();
            l.ts_ns = 0;
            l.words.iter_mut().for_each(|w| w.score = 0.0);
            l.pages.iter_mut().for_each(|p| p.score = 0.0);
            l
        }
        counts(self) == counts(other)
    }
}

/// Words and pages a `heat` line carries, at most.
pub const HEAT_ITEMS: usize = 32;

/// One word of a `heat` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HotWordLine {
    pub region: Text,
    pub offset: u64,
    /// Samples in which the sampler saw it change, since it was first seen.
    pub changes: u64,
    /// Samples in which it changed, decaying by 10% a sample: its rate now.
    pub score: f64,
    /// Watch windows it was armed in, and writes trapped then.
    #[serde(default)]
    pub windows: u64,
    #[serde(default)]
    pub traps: u64,
    /// Processes the watchpoints saw write it.
    #[serde(default)]
    pub writers: Vec<u32>,
    /// A watchpoint is on it now.
    #[serde(default)]
    pub armed: bool,
    /// Written by an atomic instruction: a synchronization word.
    #[serde(default)]
    pub sync: bool,
}

/// One page of a `heat` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HotPageLine {
    pub region: Text,
    /// Page index in the region (offset / 4096).
    pub page: u64,
    /// Samples in which the page had changed since it became hot.
    pub changes: u64,
    pub score: f64,
}

/// A header line of trace format `version` (the reader and writer tests).
#[cfg(test)]
pub(crate) fn test_header(version: u32) -> String {
    serde_json::to_string(&Record::Header(Header {
        ts_ns: 1,
        format: FORMAT_NAME.into(),
        version,
        tool_version: "0".into(),
        tool_commit: "0123456789ab".into(),
        kernel: "6".into(),
        hostname: "h".into(),
        start_time: "2026-01-01T00:00:00Z".into(),
        start_unix_ns: 0,
        command: None,
        pids: vec![],
        comms: vec![],
    }))
    .unwrap()
}

/// `ipcwatch agent`: what one channel, region or lock did over an
/// interval (`start_ns` to `ts_ns`), written at its end when it did
/// anything. These replace the `io`, `fault`, `write_sample` and `sync`
/// lines of the interval (unless `--events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateLine {
    /// The end of the interval.
    pub ts_ns: u64,
    /// The start of the interval.
    pub start_ns: u64,
    #[serde(flatten)]
    pub totals: Totals,
}

/// The pids an aggregate names, at most this many (lowest first).
pub const AGGREGATE_PIDS: usize = 64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Totals {
    Channel(ChannelTotals),
    Region(RegionTotals),
    Lock(LockTotals),
    Unwritten(Unwritten),
}

/// Lines the agent did not write in an interval besides those the other
/// aggregates count (written only when some were left out).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Unwritten {
    /// `sync` `init` lines of locks outside shared memory and not
    /// process-shared (every thread library makes them).
    pub private_lock_inits: u64,
    /// `warning` lines whose message was already written.
    pub repeated_warnings: u64,
}

/// A channel's `io` over an interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelTotals {
    pub channel: Text,
    pub kind: ChannelKind,
    pub bytes_written: u64,
    pub bytes_read: u64,
    pub writes: u64,
    pub reads: u64,
    /// Processes that wrote in the interval.
    pub writers: Vec<u32>,
    /// Processes that read in the interval.
    pub readers: Vec<u32>,
}

/// A shared region's `fault` and `write_sample` lines over an interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegionTotals {
    pub region: Text,
    /// Write page faults.
    pub faults: u64,
    /// Writes trapped by deep mode's watchpoints (`write_sample` lines).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub samples: u64,
    /// Processes that faulted or were trapped writing.
    pub writers: Vec<u32>,
}

/// A lock's `sync` lines (other than `init`) over an interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LockTotals {
    pub lock: Text,
    pub primitive: Text,
    pub acquires: u64,
    pub releases: u64,
    pub waits: u64,
    pub wakes: u64,
    /// Operations that did not succeed (`ok` false).
    pub failed: u64,
    /// Processes that used it in the interval.
    pub pids: Vec<u32>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
