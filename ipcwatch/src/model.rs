//! The collector's live model: processes with their IPC descriptors, and
//! channels with who holds them and how much went through them.
//!
//! The model is fed records only (live or replayed), so the same code
//! answers for a running system and for a trace file.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::HashMap;

use crate::ids::region_kind;

use crate::record::{
    ChannelEvent, ChannelKind, ChannelLine, ChannelSummary, Container, End, EndpointSummary,
    FaultLine, Io, MappingEvent, MappingLine, Op, Origin, ProcessEvent, ProcessLine, RaceLine,
    Record, RegionEvent, RegionKind, RegionLine, SyncEvent, SyncLine, Text,
};

/// Page size used for per-page write heat.
pub const PAGE: u64 = 4096;

/// Latest write faults kept per region.
pub const RECENT_FAULTS: usize = 32;

/// Pages of one region whose write faults are kept one by one.
pub const MAX_PAGE_HEAT: usize = 16384;

/// Where one process maps (part of) a region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub pid: u32,
    pub start: u64,
    pub end: u64,
    pub offset: u64,
    pub prot: Text,
}

/// What was seen of one lock.
#[derive(Debug, Clone, Default)]
pub struct LockStats {
    pub primitive: Text,
    pub region: Option<Text>,
    pub offset: Option<u64>,
    pub acquires: u64,
    pub releases: u64,
    pub waits: u64,
    pub wakes: u64,
    pub pids: BTreeSet<u32>,
    pub last_ts: u64,
}

/// Write activity on one page of a region.
#[derive(Debug, Clone, Default)]
pub struct PageHeat {
    pub writes: u64,
    pub pids: BTreeSet<u32>,
    pub last_ts: u64,
}

#[derive(Debug, Clone)]
pub struct Region {
    pub id: Text,
    pub kind: RegionKind,
    pub size: u64,
    pub name: Option<String>,
    pub removed: bool,
    pub mappings: Vec<Mapping>,
    /// Lock ids seen on this region (details in `Model::locks`).
    pub locks: BTreeSet<Text>,
    /// Page index -> write activity, for at most [`MAX_PAGE_HEAT`] pages.
    pub pages: BTreeMap<u64, PageHeat>,
    /// Write faults on pages past the first [`MAX_PAGE_HEAT`] (a region
    /// written all over would otherwise cost memory per page).
    pub untracked_faults: u64,
    /// The latest write faults, (ts, page index), oldest first (at most
    /// [`RECENT_FAULTS`]): where the race detector looks first.
    pub recent_faults: std::collections::VecDeque<(u64, u64)>,
    pub first_ts: u64,
    pub last_ts: u64,
}

impl Region {
    /// Distinct processes mapping the region now.
    pub fn mappers(&self) -> BTreeSet<u32> {
        self.mappings.iter().map(|m| m.pid).collect()
    }
}

/// A deduplicated race finding.
#[derive(Debug, Clone)]
pub struct Finding {
    pub race: RaceLine,
    /// How many times it was reported.
    pub count: u64,
    pub first_ts: u64,
    pub last_ts: u64,
}

/// Findings are the same when kind, place and both code locations match.
fn finding_key(r: &RaceLine) -> String {
    let mut sites: Vec<String> = r
        .accesses
        .iter()
        .map(|a| match (&a.function, &a.file, a.line) {
            (Some(f), Some(file), Some(line)) => format!("{f}@{file}:{line}"),
            (Some(f), _, _) => f.clone(),
            _ => format!("{:#x}", a.ip),
        })
        .collect();
    sites.sort();
    format!(
        "{}|{}|{}|{}",
        r.kind,
        r.region.as_deref().or(r.channel.as_deref()).unwrap_or(""),
        r.offset.unwrap_or(0),
        sites.join(",")
    )
}

/// One IPC descriptor of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdRef {
    pub channel: Text,
    pub end: End,
    pub cloexec: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Process {
    pub pid: u32,
    pub ppid: Option<u32>,
    pub comm: Text,
    pub alive: bool,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// IPC descriptors only.
    pub fds: BTreeMap<i32, FdRef>,
    pub bytes_written: u64,
    pub bytes_read: u64,
    pub last_ts: u64,
    /// Cgroup, container or unit, and pid inside the container.
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub struct Channel {
    pub id: Text,
    pub kind: ChannelKind,
    pub path: Option<String>,
    /// (pid, fd) -> end, for every descriptor open on it now.
    pub holders: BTreeMap<(u32, i32), End>,
    pub bytes_written: u64,
    pub bytes_read: u64,
    pub writes: u64,
    pub reads: u64,
    /// Processes seen writing / reading it.
    pub wrote: BTreeSet<u32>,
    pub read: BTreeSet<u32>,
    pub first_ts: u64,
    pub last_ts: u64,
    /// Per process: what it sent and received on this channel.
    pub endpoints: BTreeMap<u32, Flow>,
}

/// One process's traffic on one channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flow {
    pub comm: Text,
    pub bytes_written: u64,
    pub bytes_read: u64,
    pub writes: u64,
    pub reads: u64,
    pub last_ts: u64,
}

impl Channel {
    /// Bytes per second through the channel (written, read) between its
    /// first and last activity.
    pub fn rates(&self) -> (f64, f64) {
        let secs = (self.last_ts.saturating_sub(self.first_ts)) as f64 / 1e9;
        if secs <= 0.0 {
            return (0.0, 0.0);
        }
        (
            self.bytes_written as f64 / secs,
            self.bytes_read as f64 / secs,
        )
    }

    fn new(id: Text, kind: ChannelKind, ts: u64) -> Self {
        Channel {
            id,
            kind,
            path: None,
            holders: BTreeMap::new(),
            bytes_written: 0,
            bytes_read: 0,
            writes: 0,
            reads: 0,
            wrote: BTreeSet::new(),
            read: BTreeSet::new(),
            first_ts: ts,
            last_ts: ts,
            endpoints: BTreeMap::new(),
        }
    }

    /// Processes that wrote it or hold a write end now.
    pub fn writers(&self) -> BTreeSet<u32> {
        let mut s = self.wrote.clone();
        s.extend(
            self.holders
                .iter()
                .filter(|(_, e)| e.writes())
                .map(|((pid, _), _)| *pid),
        );
        s
    }

    /// Processes that read it or hold a read end now.
    pub fn readers(&self) -> BTreeSet<u32> {
        let mut s = self.read.clone();
        s.extend(
            self.holders
                .iter()
                .filter(|(_, e)| e.reads())
                .map(|((pid, _), _)| *pid),
        );
        s
    }

    pub fn summary(&self) -> ChannelSummary {
        ChannelSummary {
            channel: self.id.clone(),
            kind: self.kind,
            path: self.path.clone(),
            bytes_written: self.bytes_written,
            bytes_read: self.bytes_read,
            writes: self.writes,
            reads: self.reads,
            writers: self.writers().into_iter().collect(),
            readers: self.readers().into_iter().collect(),
            endpoints: if matches!(self.kind, ChannelKind::Pipe | ChannelKind::Fifo) {
                Vec::new()
            } else {
                self.endpoints
                    .iter()
                    .map(|(pid, f)| EndpointSummary {
                        pid: *pid,
                        comm: f.comm.clone(),
                        bytes_written: f.bytes_written,
                        bytes_read: f.bytes_read,
                        writes: f.writes,
                        reads: f.reads,
                        origin: Origin::default(),
                    })
                    .collect()
            },
        }
    }
}

#[derive(Debug, Default)]
pub struct Model {
    pub processes: HashMap<u32, Process>,
    pub channels: HashMap<Text, Channel>,
    pub regions: HashMap<Text, Region>,
    /// Every lock seen, by identity.
    pub locks: HashMap<Text, LockStats>,
    /// Race findings, deduplicated, in the order first seen.
    pub findings: Vec<Finding>,
    finding_index: HashMap<String, usize>,
    /// Records applied.
    pub records: u64,
    /// Kernel events lost, from `lost` lines.
    pub lost: u64,
    pub warnings: Vec<String>,
    /// Containers their runtime named (`container` lines), by id.
    pub containers: HashMap<Text, Container>,
    /// What [`Model::forget`] dropped, so that counts since the start
    /// stay whole.
    pub forgotten: Forgotten,
}

/// Counts of what [`Model::forget`] dropped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Forgotten {
    /// Exited processes.
    pub processes: u64,
    /// Channels closed everywhere, by kind.
    pub channels: BTreeMap<&'static str, u64>,
    /// Findings, by kind: the sum of their counts.
    pub findings: BTreeMap<String, u64>,
    /// Distinct findings.
    pub distinct_findings: u64,
}

impl Forgotten {
    /// Channels forgotten, of every kind.
    pub fn channels_total(&self) -> u64 {
        self.channels.values().sum()
    }
}

/// Distinct findings a long-running model keeps ([`Model::forget`]); past
/// it, the least recently seen go, down to three quarters.
pub const MAX_FINDINGS: usize = 1024;

impl Model {
    pub fn new() -> Self {
        Self::default()
    }

    /// For long runs (`agent`): drop what can no longer change, so that
    /// memory follows what is alive rather than everything ever seen.
    /// Processes that exited and channels that no descriptor holds are
    /// dropped once their last event is `keep_ns` older than `now_ns`;
    /// findings beyond [`MAX_FINDINGS`], least recently seen first.
    /// Returns the channels dropped (for the trackers that key by them).
    /// A channel used again later starts over, like a new one.
    pub fn forget(&mut self, now_ns: u64, keep_ns: u64) -> Vec<Text> {
        let old = |ts: u64| ts.saturating_add(keep_ns) < now_ns;
        let before = self.processes.len();
        self.processes.retain(|_, p| p.alive || !old(p.last_ts));
        self.forgotten.processes += (before - self.processes.len()) as u64;
        let mut gone = Vec::new();
        let forgotten = &mut self.forgotten;
        self.channels.retain(|id, c| {
            let keep = !c.holders.is_empty() || !old(c.last_ts);
            if !keep {
                *forgotten.channels.entry(c.kind.as_str()).or_default() += 1;
                gone.push(id.clone());
            }
            keep
        });
        if self.findings.len() > MAX_FINDINGS {
            let mut by_age: Vec<u64> = self.findings.iter().map(|f| f.last_ts).collect();
            by_age.sort_unstable();
            // Keep the newest three quarters of the bound (ties at the
            // cut go too): `cut` is the newest of those that go.
            let cut = by_age[self.findings.len() - MAX_FINDINGS * 3 / 4 - 1];
            let forgotten = &mut self.forgotten;
            self.findings.retain(|f| {
                let keep = f.last_ts > cut;
                if !keep {
                    *forgotten
                        .findings
                        .entry(f.race.kind.to_string())
                        .or_default() += f.count;
                    forgotten.distinct_findings += 1;
                }
                keep
            });
            self.finding_index = self
                .findings
                .iter()
                .enumerate()
                .map(|(i, f)| (finding_key(&f.race), i))
                .collect();
        }
        self.processes.shrink_to(self.processes.len() * 2);
        self.channels.shrink_to(self.channels.len() * 2);
        gone
    }

    fn process(&mut self, pid: u32, comm: &Text, ts: u64) -> &mut Process {
        let p = self.processes.entry(pid).or_insert_with(|| Process {
            pid,
            comm: comm.clone(),
            alive: true,
            ..Process::default()
        });
        if p.comm.is_empty() {
            p.comm = comm.clone();
        }
        p.last_ts = p.last_ts.max(ts);
        p
    }

    fn channel(&mut self, id: &Text, kind: ChannelKind, ts: u64) -> &mut Channel {
        let c = self
            .channels
            .entry(id.clone())
            .or_insert_with(|| Channel::new(id.clone(), kind, ts));
        c.last_ts = c.last_ts.max(ts);
        c
    }

    /// The descriptor `fd` of `pid`, if it is an IPC descriptor we know.
    pub fn fd(&self, pid: u32, fd: i32) -> Option<&FdRef> {
        self.processes.get(&pid)?.fds.get(&fd)
    }

    /// IPC descriptors of `pid` in `first..=last`.
    pub fn fds_in_range(&self, pid: u32, first: u32, last: u32) -> Vec<(i32, FdRef)> {
        let Some(p) = self.processes.get(&pid) else {
            return Vec::new();
        };
        p.fds
            .iter()
            .filter(|(fd, _)| (first..=last).contains(&(**fd as u32)))
            .map(|(fd, r)| (*fd, r.clone()))
            .collect()
    }

    /// Point `pid`'s `fd` at a channel end, replacing whatever it held.
    fn install(&mut self, pid: u32, fd: i32, fdref: FdRef) {
        self.remove_fd(pid, fd);
        if let Some(c) = self.channels.get_mut(&fdref.channel) {
            c.holders.insert((pid, fd), fdref.end);
        }
        if let Some(p) = self.processes.get_mut(&pid) {
            p.fds.insert(fd, fdref);
        }
    }

    fn remove_fd(&mut self, pid: u32, fd: i32) -> Option<FdRef> {
        let old = self.processes.get_mut(&pid)?.fds.remove(&fd)?;
        if let Some(c) = self.channels.get_mut(&old.channel) {
            c.holders.remove(&(pid, fd));
        }
        Some(old)
    }

    fn close_all(&mut self, pid: u32, only_cloexec: bool) {
        let fds: Vec<i32> = match self.processes.get(&pid) {
            Some(p) => p
                .fds
                .iter()
                .filter(|(_, r)| !only_cloexec || r.cloexec)
                .map(|(fd, _)| *fd)
                .collect(),
            None => return,
        };
        for fd in fds {
            self.remove_fd(pid, fd);
        }
    }

    pub fn apply(&mut self, record: &Record) {
        self.records = self.records.saturating_add(1);
        match record {
            Record::Io(io) => self.apply_io(io),
            Record::Channel(line) => self.apply_channel(line),
            Record::Process(line) => self.apply_process(line),
            Record::Lost(l) => self.lost = self.lost.max(l.total),
            Record::Warning(w) => self.warnings.push(w.message.clone()),
            Record::Region(r) => self.apply_region(r),
            Record::Mapping(m) => self.apply_mapping(m),
            Record::Sync(s) => self.apply_sync(s),
            Record::Fault(f) => self.apply_fault(f),
            Record::Race(r) => self.apply_race(r),
            Record::Container(c) => self.apply_container(&c.container),
            Record::WriteSample(_) | Record::Heat(_) | Record::Aggregate(_) => {}
            Record::Header(_) | Record::Summary(_) | Record::Unknown => {}
        }
    }

    fn region(&mut self, id: &Text, kind: RegionKind, ts: u64) -> &mut Region {
        let r = self.regions.entry(id.clone()).or_insert_with(|| Region {
            id: id.clone(),
            kind,
            size: 0,
            name: None,
            removed: false,
            mappings: Vec::new(),
            locks: BTreeSet::new(),
            pages: BTreeMap::new(),
            untracked_faults: 0,
            recent_faults: std::collections::VecDeque::new(),
            first_ts: ts,
            last_ts: ts,
        });
        r.last_ts = r.last_ts.max(ts);
        r
    }

    fn apply_region(&mut self, line: &RegionLine) {
        let r = self.region(&line.region, line.kind, line.ts_ns);
        if line.size > 0 {
            r.size = line.size;
        }
        if line.name.is_some() {
            r.name.clone_from(&line.name);
        }
        r.removed = line.event == RegionEvent::Removed;
    }

    fn apply_mapping(&mut self, line: &MappingLine) {
        self.process(line.pid, &line.comm, line.ts_ns);
        let r = self.region(&line.region, region_kind(&line.region), line.ts_ns);
        r.mappings
            .retain(|m| !(m.pid == line.pid && m.start == line.start));
        if line.event != MappingEvent::Unmapped {
            r.mappings.push(Mapping {
                pid: line.pid,
                start: line.start,
                end: line.end,
                offset: line.offset,
                prot: line.prot.clone(),
            });
        }
    }

    fn apply_sync(&mut self, line: &SyncLine) {
        self.process(line.pid, &line.comm, line.ts_ns);
        if let Some(region) = &line.region {
            let r = self.region(region, region_kind(region), line.ts_ns);
            r.locks.insert(line.lock.clone());
        }
        let l = self.locks.entry(line.lock.clone()).or_default();
        if l.primitive.is_empty() || line.event == SyncEvent::Init {
            l.primitive = line.primitive.clone();
        }
        l.region = line.region.clone().or(l.region.take());
        l.offset = line.offset.or(l.offset);
        l.pids.insert(line.pid);
        l.last_ts = l.last_ts.max(line.ts_ns);
        match line.event {
            SyncEvent::Acquire if line.ok => l.acquires = l.acquires.saturating_add(1),
            SyncEvent::Release => l.releases = l.releases.saturating_add(1),
            SyncEvent::Wait => l.waits = l.waits.saturating_add(1),
            SyncEvent::Wake => l.wakes = l.wakes.saturating_add(1),
            _ => {}
        }
    }

    fn apply_fault(&mut self, line: &FaultLine) {
        self.process(line.pid, &line.comm, line.ts_ns);
        let r = self.region(&line.region, region_kind(&line.region), line.ts_ns);
        let index = line.offset / PAGE;
        if r.recent_faults.len() >= RECENT_FAULTS {
            r.recent_faults.pop_front();
        }
        r.recent_faults.push_back((line.ts_ns, index));
        if r.pages.len() >= MAX_PAGE_HEAT && !r.pages.contains_key(&index) {
            r.untracked_faults = r.untracked_faults.saturating_add(1);
            return;
        }
        let page = r.pages.entry(index).or_default();
        page.writes = page.writes.saturating_add(1);
        page.pids.insert(line.pid);
        page.last_ts = page.last_ts.max(line.ts_ns);
    }

    fn apply_race(&mut self, race: &RaceLine) {
        let key = finding_key(race);
        match self.finding_index.get(&key) {
            Some(&i) => {
                let f = &mut self.findings[i];
                f.count = f.count.saturating_add(1);
                f.last_ts = f.last_ts.max(race.ts_ns);
            }
            None => {
                self.finding_index.insert(key, self.findings.len());
                self.findings.push(Finding {
                    race: race.clone(),
                    count: 1,
                    first_ts: race.ts_ns,
                    last_ts: race.ts_ns,
                });
            }
        }
    }

    fn apply_io(&mut self, io: &Io) {
        let p = self.process(io.pid, &io.comm, io.ts_ns);
        match io.op {
            Op::Write => p.bytes_written = p.bytes_written.saturating_add(io.bytes),
            Op::Read => p.bytes_read = p.bytes_read.saturating_add(io.bytes),
        }
        // A summed line (the live TUI's totals) may come after the close
        // of its descriptor: it does not make the descriptor known.
        let known = p.fds.contains_key(&io.fd) || io.ext.calls.is_some();
        let calls = io.calls();
        let c = self.channel(&io.channel, io.kind, io.ts_ns);
        let flow = c.endpoints.entry(io.pid).or_default();
        flow.comm.clone_from(&io.comm);
        flow.last_ts = flow.last_ts.max(io.ts_ns);
        match io.op {
            Op::Write => {
                flow.bytes_written = flow.bytes_written.saturating_add(io.bytes);
                flow.writes = flow.writes.saturating_add(calls);
                c.bytes_written = c.bytes_written.saturating_add(io.bytes);
                c.writes = c.writes.saturating_add(calls);
                c.wrote.insert(io.pid);
            }
            Op::Read => {
                flow.bytes_read = flow.bytes_read.saturating_add(io.bytes);
                flow.reads = flow.reads.saturating_add(calls);
                c.bytes_read = c.bytes_read.saturating_add(io.bytes);
                c.reads = c.reads.saturating_add(calls);
                c.read.insert(io.pid);
            }
        }
        if !known {
            // A descriptor we never saw open (missed or pre-existing).
            let end = match io.op {
                Op::Write => End::Write,
                Op::Read => End::Read,
            };
            let fdref = FdRef {
                channel: io.channel.clone(),
                end,
                cloexec: false,
            };
            self.install(io.pid, io.fd, fdref);
        }
    }

    fn apply_channel(&mut self, line: &ChannelLine) {
        self.process(line.pid, &line.comm, line.ts_ns);
        let c = self.channel(&line.channel, line.kind, line.ts_ns);
        if line.path.is_some() {
            c.path.clone_from(&line.path);
        }
        let Some(fd) = line.fd else { return };
        match line.event {
            ChannelEvent::Create
            | ChannelEvent::Open
            | ChannelEvent::Existing
            | ChannelEvent::Socket
            | ChannelEvent::Bind
            | ChannelEvent::Listen
            | ChannelEvent::Connect
            | ChannelEvent::Accept => {
                let end = line.end.unwrap_or(End::Both);
                let fdref = FdRef {
                    channel: line.channel.clone(),
                    end,
                    cloexec: line.cloexec,
                };
                self.install(line.pid, fd, fdref);
            }
            ChannelEvent::Dup => {
                let end = line
                    .end
                    .or_else(|| {
                        line.old_fd
                            .and_then(|old| self.fd(line.pid, old).map(|r| r.end))
                    })
                    .unwrap_or(End::Both);
                let fdref = FdRef {
                    channel: line.channel.clone(),
                    end,
                    cloexec: line.cloexec,
                };
                self.install(line.pid, fd, fdref);
            }
            ChannelEvent::Close => {
                self.remove_fd(line.pid, fd);
            }
            ChannelEvent::Setfd => {
                if let Some(p) = self.processes.get_mut(&line.pid)
                    && let Some(r) = p.fds.get_mut(&fd)
                {
                    r.cloexec = line.cloexec;
                }
            }
            ChannelEvent::Mkfifo
            | ChannelEvent::Unlink
            | ChannelEvent::Notify
            | ChannelEvent::Control => {}
        }
    }

    fn apply_process(&mut self, line: &ProcessLine) {
        match line.event {
            ProcessEvent::Fork => {
                let inherited = line
                    .ppid
                    .and_then(|pp| self.processes.get(&pp))
                    .map(|p| p.fds.clone())
                    .unwrap_or_default();
                // A reused pid starts over: nothing of the old process stays.
                self.close_all(line.pid, false);
                let parent_origin = line
                    .ppid
                    .and_then(|pp| self.processes.get(&pp))
                    .map(|p| p.origin.clone());
                let child = self.process(line.pid, &line.comm, line.ts_ns);
                child.origin = if line.origin.is_empty() {
                    parent_origin.unwrap_or_default()
                } else {
                    line.origin.clone()
                };
                child.ppid = line.ppid;
                child.alive = true;
                child.comm = line.comm.clone();
                child.exit_code = None;
                child.signal = None;
                for (fd, r) in inherited {
                    self.install(line.pid, fd, r);
                }
            }
            ProcessEvent::Existing => {
                let p = self.process(line.pid, &line.comm, line.ts_ns);
                p.ppid = line.ppid.or(p.ppid);
                if !line.origin.is_empty() {
                    p.origin = line.origin.clone();
                }
            }
            ProcessEvent::Exec => {
                self.close_all(line.pid, true);
                for r in self.regions.values_mut() {
                    r.mappings.retain(|m| m.pid != line.pid);
                }
                let p = self.process(line.pid, &line.comm, line.ts_ns);
                p.comm = line.comm.clone();
                if !line.origin.is_empty() {
                    p.origin = line.origin.clone();
                }
            }
            ProcessEvent::Exit => {
                self.close_all(line.pid, false);
                for r in self.regions.values_mut() {
                    r.mappings.retain(|m| m.pid != line.pid);
                }
                let p = self.process(line.pid, &line.comm, line.ts_ns);
                p.alive = false;
                p.exit_code = line.exit_code;
                p.signal = line.signal;
            }
            // An edge for the happens-before analysis; the exit said it all.
            ProcessEvent::Wait => {}
        }
    }

    /// A container's runtime answered: every process in it is named so
    /// (those seen before the answer too).
    fn apply_container(&mut self, named: &Container) {
        for p in self.processes.values_mut() {
            if let Some(c) = &mut p.origin.container
                && c.id == named.id
            {
                *c = named.clone();
            }
        }
        self.containers.insert(named.id.clone(), named.clone());
    }

    /// Where process `pid` runs, as far as known.
    pub fn origin(&self, pid: u32) -> Origin {
        self.processes
            .get(&pid)
            .map(|p| p.origin.clone())
            .unwrap_or_default()
    }

    /// The container of process `pid`, if it runs in one.
    pub fn container(&self, pid: u32) -> Option<&Container> {
        self.processes.get(&pid)?.origin.container.as_ref()
    }

    /// Name where each access of a finding ran (the detectors know pids).
    pub fn attribute(&self, race: &mut RaceLine) {
        for a in &mut race.accesses {
            if a.origin.is_empty() {
                a.origin = self.origin(a.pid);
            }
        }
    }

    /// Channel totals, sorted by id, for the summary line.
    pub fn channel_summaries(&self) -> Vec<ChannelSummary> {
        let mut v: Vec<_> = self.channels.values().map(Channel::summary).collect();
        for e in v.iter_mut().flat_map(|c| c.endpoints.iter_mut()) {
            e.origin = self.origin(e.pid);
        }
        v.sort_by(|a, b| a.channel.cmp(&b.channel));
        v
    }
}

/// The region and offset of address `addr` in process `pid`, from the
/// mappings the model knows. The race detector and the lock code use this.
pub fn locate(model: &Model, pid: u32, addr: u64) -> Option<(Text, u64)> {
    model.regions.values().find_map(|r| {
        r.mappings
            .iter()
            .find(|m| m.pid == pid && (m.start..m.end).contains(&addr))
            .map(|m| (r.id.clone(), m.offset + (addr - m.start)))
    })
}

/// Every mapping of `pid`, with its region id.
pub fn mappings_of(model: &Model, pid: u32) -> Vec<(Text, Mapping)> {
    let mut v: Vec<(Text, Mapping)> = model
        .regions
        .values()
        .flat_map(|r| {
            r.mappings
                .iter()
                .filter(|m| m.pid == pid)
                .map(|m| (r.id.clone(), m.clone()))
        })
        .collect();
    v.sort_by_key(|(_, m)| m.start);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chan(event: ChannelEvent, pid: u32, fd: i32, end: Option<End>) -> Record {
        Record::Channel(ChannelLine {
            ts_ns: 1,
            event,
            kind: ChannelKind::Pipe,
            channel: "pipe:[7]".into(),
            pid,
            tid: pid,
            comm: "sh".into(),
            fd: Some(fd),
            end,
            old_fd: None,
            cloexec: false,
            path: None,
            syscall: None,
            ext: Default::default(),
        })
    }

    fn proc_line(event: ProcessEvent, pid: u32, ppid: Option<u32>) -> Record {
        Record::Process(ProcessLine {
            ts_ns: 2,
            event,
            pid,
            tid: pid,
            comm: "sh".into(),
            ppid,
            filename: None,
            child: None,
            exit_code: None,
            signal: None,
            origin: Default::default(),
        })
    }

    fn holders(m: &Model) -> Vec<(u32, i32, End)> {
        m.channels["pipe:[7]"]
            .holders
            .iter()
            .map(|((p, f), e)| (*p, *f, *e))
            .collect()
    }

    #[test]
    fn fd_table_follows_pipe_fork_dup_close_exec_exit() {
        let mut m = Model::new();
        m.apply(&chan(ChannelEvent::Create, 10, 3, Some(End::Read)));
        m.apply(&chan(ChannelEvent::Create, 10, 4, Some(End::Write)));
        m.apply(&proc_line(ProcessEvent::Fork, 11, Some(10)));
        assert_eq!(
            holders(&m),
            vec![
                (10, 3, End::Read),
                (10, 4, End::Write),
                (11, 3, End::Read),
                (11, 4, End::Write)
            ]
        );
        // Child: dup2(4, 1) then close 3 and 4.
        let mut dup = chan(ChannelEvent::Dup, 11, 1, None);
        if let Record::Channel(l) = &mut dup {
            l.old_fd = Some(4);
        }
        m.apply(&dup);
        m.apply(&chan(ChannelEvent::Close, 11, 3, None));
        m.apply(&chan(ChannelEvent::Close, 11, 4, None));
        assert_eq!(m.fd(11, 1).map(|r| r.end), Some(End::Write));
        assert_eq!(m.processes[&11].fds.len(), 1);
        // Parent closes the write end; a cloexec-free fd survives exec.
        m.apply(&chan(ChannelEvent::Close, 10, 4, None));
        m.apply(&proc_line(ProcessEvent::Exec, 11, None));
        assert_eq!(holders(&m), vec![(10, 3, End::Read), (11, 1, End::Write)]);
        let c = &m.channels["pipe:[7]"];
        assert_eq!(c.writers(), BTreeSet::from([11]));
        assert_eq!(c.readers(), BTreeSet::from([10]));
        m.apply(&proc_line(ProcessEvent::Exit, 11, None));
        assert_eq!(holders(&m), vec![(10, 3, End::Read)]);
        assert!(!m.processes[&11].alive);
    }

    #[test]
    fn exec_closes_cloexec_descriptors_only() {
        let mut m = Model::new();
        let mut a = chan(ChannelEvent::Create, 5, 3, Some(End::Read));
        if let Record::Channel(l) = &mut a {
            l.cloexec = true;
        }
        m.apply(&a);
        m.apply(&chan(ChannelEvent::Create, 5, 4, Some(End::Write)));
        m.apply(&proc_line(ProcessEvent::Exec, 5, None));
        assert_eq!(holders(&m), vec![(5, 4, End::Write)]);
        // F_SETFD then exec closes it too.
        let mut s = chan(ChannelEvent::Setfd, 5, 4, None);
        if let Record::Channel(l) = &mut s {
            l.cloexec = true;
        }
        m.apply(&s);
        m.apply(&proc_line(ProcessEvent::Exec, 5, None));
        assert!(holders(&m).is_empty());
    }

    #[test]
    fn dup_onto_an_open_fd_replaces_it() {
        let mut m = Model::new();
        m.apply(&chan(ChannelEvent::Create, 5, 3, Some(End::Read)));
        m.apply(&chan(ChannelEvent::Create, 5, 4, Some(End::Write)));
        let mut dup = chan(ChannelEvent::Dup, 5, 3, None);
        if let Record::Channel(l) = &mut dup {
            l.old_fd = Some(4);
        }
        m.apply(&dup);
        assert_eq!(holders(&m), vec![(5, 3, End::Write), (5, 4, End::Write)]);
    }

    /// A write-write race on sysv:5+64 between `a` (pid 1) and `b` (pid 2).
    fn shm_race(ts: u64, a: &str, b: &str) -> Record {
        use crate::record::Access;
        let access = |pid, f: &str| Access {
            pid,
            tid: pid,
            comm: "w".into(),
            ip: 0x1000,
            function: Some(f.into()),
            file: None,
            line: None,
            stack: vec![],
            locks: vec![],
            ts_ns: 1,
            origin: Default::default(),
        };
        Record::Race(RaceLine {
            ts_ns: ts,
            kind: "shm-write-write".into(),
            region: Some("sysv:5".into()),
            channel: None,
            offset: Some(64),
            len: 8,
            accesses: vec![access(1, a), access(2, b)],
            evidence: "collision".into(),
            confidence: 0.9,
            explanation: "x".into(),
        })
    }

    #[test]
    fn races_are_deduplicated_by_place_and_code() {
        let race = shm_race;
        let mut m = Model::new();
        m.apply(&race(1, "bump", "bump"));
        m.apply(&race(2, "bump", "bump"));
        m.apply(&race(3, "bump", "reset"));
        m.apply(&race(4, "reset", "bump"));
        assert_eq!(m.findings.len(), 2);
        assert_eq!((m.findings[0].count, m.findings[0].last_ts), (2, 2));
        assert_eq!(m.findings[1].count, 2);
    }

    /// The agent's forgetting: exited processes and channels nobody holds
    /// go once old enough, the living stay, and the counts since the
    /// start do not change.
    #[test]
    fn forget_drops_exited_processes_and_unheld_channels_once_old() {
        let mut m = Model::new();
        m.apply(&chan(ChannelEvent::Create, 10, 3, Some(End::Read)));
        m.apply(&chan(ChannelEvent::Create, 10, 4, Some(End::Write)));
        m.apply(&proc_line(ProcessEvent::Fork, 11, Some(10)));
        m.apply(&proc_line(ProcessEvent::Exit, 11, None));
        // Not old yet (last events at 1 and 2, kept 10): nothing goes.
        assert!(m.forget(12, 10).is_empty());
        assert_eq!((m.processes.len(), m.channels.len()), (2, 1));
        assert_eq!(m.forgotten, Forgotten::default());
        // Old: the exited child goes; the pipe is still held by 10.
        assert!(m.forget(13, 10).is_empty());
        assert_eq!(m.processes.keys().collect::<Vec<_>>(), vec![&10]);
        assert_eq!(m.forgotten.processes, 1);
        // 10 closes both ends: nobody holds the pipe, and it goes.
        m.apply(&chan(ChannelEvent::Close, 10, 3, None));
        m.apply(&chan(ChannelEvent::Close, 10, 4, None));
        assert_eq!(m.forget(13, 10), vec![Text::from("pipe:[7]")]);
        assert!(m.channels.is_empty());
        assert_eq!(m.forgotten.channels, BTreeMap::from([("pipe", 1)]));
        // 10 is alive: it stays however old its last event.
        assert!(m.forget(1_000, 10).is_empty());
        assert_eq!(m.processes.len(), 1);
    }

    #[test]
    fn forget_keeps_the_most_recent_findings_and_counts_the_rest() {
        let race = |ts: u64, site: usize| shm_race(ts, &format!("f{site}"), "g");
        let mut m = Model::new();
        let n = MAX_FINDINGS + 100;
        for i in 0..n {
            m.apply(&race(i as u64 + 1, i));
        }
        // The oldest seen twice: its count goes with it.
        m.apply(&race(1, 0));
        m.forget(0, 0);
        let kept = MAX_FINDINGS * 3 / 4;
        assert_eq!(m.findings.len(), kept);
        assert_eq!(m.forgotten.distinct_findings as usize, n - kept);
        assert_eq!(
            m.forgotten.findings["shm-write-write"] as usize,
            n - kept + 1
        );
        // The newest are kept, and still deduplicated.
        assert_eq!(m.findings[0].race.ts_ns as usize, n - kept + 1);
        m.apply(&race(n as u64 + 5, n - 1));
        assert_eq!(m.findings.len(), kept);
        assert_eq!(m.findings.last().unwrap().count, 2);
    }

    #[test]
    fn regions_keep_mappers_locks_and_page_heat() {
        let mut m = Model::new();
        m.apply(&Record::Region(RegionLine {
            ts_ns: 1,
            event: RegionEvent::Created,
            region: "sysv:9".into(),
            kind: RegionKind::Sysv,
            size: 8192,
            name: None,
            pid: Some(1),
            comm: None,
        }));
        for pid in [1, 2] {
            m.apply(&Record::Mapping(MappingLine {
                ts_ns: 2,
                event: MappingEvent::Mapped,
                region: "sysv:9".into(),
                pid,
                comm: "w".into(),
                start: 0x7000_0000 + pid as u64 * 0x10000,
                end: 0x7000_2000 + pid as u64 * 0x10000,
                offset: 0,
                prot: "rw".into(),
            }));
            m.apply(&Record::Sync(SyncLine {
                ts_ns: 3,
                event: SyncEvent::Acquire,
                lock: "sysv:9+0".into(),
                pid,
                tid: pid,
                comm: "w".into(),
                primitive: "futex".into(),
                ok: true,
                region: Some("sysv:9".into()),
                offset: Some(0),
                detail: None,
                start_ns: None,
            }));
            m.apply(&Record::Fault(FaultLine {
                ts_ns: 4,
                region: "sysv:9".into(),
                offset: 4100,
                pid,
                tid: pid,
                comm: "w".into(),
                ip: 0,
            }));
        }
        let r = &m.regions["sysv:9"];
        assert_eq!(r.mappers(), BTreeSet::from([1, 2]));
        assert_eq!(r.locks.len(), 1);
        assert_eq!(m.locks["sysv:9+0"].acquires, 2);
        assert_eq!(r.pages[&1].writes, 2);
        m.apply(&proc_line(ProcessEvent::Exit, 2, None));
        assert_eq!(m.regions["sysv:9"].mappers(), BTreeSet::from([1]));
    }

    #[test]
    fn huge_byte_counts_saturate_instead_of_overflowing() {
        // Found by the decode fuzz target: counters must not panic on a
        // replayed or corrupted trace.
        let mut m = Model::new();
        for _ in 0..2 {
            m.apply(&Record::Io(Io {
                ts_ns: 1,
                kind: ChannelKind::Pipe,
                op: Op::Read,
                channel: "pipe:[1]".into(),
                pid: 1,
                tid: 1,
                comm: "x".into(),
                bytes: u64::MAX,
                fd: 3,
                syscall: "read".into(),
                start_ns: None,
                ext: Default::default(),
            }));
        }
        assert_eq!(m.channels["pipe:[1]"].bytes_read, u64::MAX);
    }

    #[test]
    fn io_counts_bytes_and_learns_unknown_descriptors() {
        let mut m = Model::new();
        for (op, bytes) in [(Op::Write, 1000), (Op::Write, 24), (Op::Read, 1024)] {
            m.apply(&Record::Io(Io {
                ts_ns: 3,
                kind: ChannelKind::Pipe,
                op,
                channel: "pipe:[7]".into(),
                pid: if op == Op::Write { 1 } else { 2 },
                tid: 1,
                comm: "x".into(),
                bytes,
                fd: 9,
                syscall: "write".into(),
                start_ns: None,
                ext: Default::default(),
            }));
        }
        let c = &m.channels["pipe:[7]"];
        assert_eq!(
            (c.bytes_written, c.bytes_read, c.writes, c.reads),
            (1024, 1024, 2, 1)
        );
        assert_eq!(holders(&m), vec![(1, 9, End::Write), (2, 9, End::Read)]);
    }
}
