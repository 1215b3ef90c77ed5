//! The JSON Schema accepts every line type ipcwatch writes (synthetic
//! records, no root needed) and rejects malformed ones.

mod common;

use ipcwatch::record::*;

const CID: &str = "04d6d93bf4dfcb60cc9f0b2c6ac5bcdf11588d1ebdc5b8573a799a100c8b6382";

fn line(r: &Record) -> serde_json::Value {
    serde_json::to_value(r).unwrap()
}

#[test]
fn the_schema_accepts_every_record_type() {
    let access = Access {
        pid: 1,
        tid: 1,
        comm: "a".into(),
        ip: 0x401000,
        function: Some("bump".into()),
        file: Some("bump.c".into()),
        line: Some(12),
        stack: vec!["bump".into(), "main".into()],
        locks: vec![],
        ts_ns: 5,
        origin: Origin {
            cgroup: Some(format!("/libpod_parent/libpod-{CID}")),
            container: Some(Container {
                id: CID.into(),
                runtime: "podman".into(),
                name: Some("web".into()),
                image: Some("localhost/web:latest".into()),
                pod: Some("web-5d8".into()),
                namespace: Some("prod".into()),
            }),
            unit: None,
            nspid: Some(1),
        },
    };
    let lines = vec![
        line(&Record::Container(ContainerLine {
            ts_ns: 2,
            container: access.origin.container.clone().unwrap(),
        })),
        line(&Record::Process(ProcessLine {
            ts_ns: 1,
            event: ProcessEvent::Exec,
            pid: 4242,
            tid: 4242,
            comm: "w".into(),
            ppid: None,
            filename: Some("/bin/w".into()),
            child: None,
            exit_code: None,
            signal: None,
            origin: access.origin.clone(),
        })),
        line(&Record::Process(ProcessLine {
            ts_ns: 1,
            event: ProcessEvent::Existing,
            pid: 1,
            tid: 1,
            comm: "sshd".into(),
            ppid: Some(0),
            filename: None,
            child: None,
            exit_code: None,
            signal: None,
            origin: Origin {
                cgroup: Some("/system.slice/ssh.service".into()),
                unit: Some("ssh.service".into()),
                ..Origin::default()
            },
        })),
        line(&Record::Region(RegionLine {
            ts_ns: 1,
            event: RegionEvent::Created,
            region: "sysv:3".into(),
            kind: RegionKind::Sysv,
            size: 4096,
            name: None,
            pid: Some(1),
            comm: Some("a".into()),
        })),
        line(&Record::Mapping(MappingLine {
            ts_ns: 1,
            event: MappingEvent::Mapped,
            region: "sysv:3".into(),
            pid: 1,
            comm: "a".into(),
            start: 0x7f00_0000_0000,
            end: 0x7f00_0000_1000,
            offset: 0,
            prot: "rw".into(),
        })),
        line(&Record::Sync(SyncLine {
            ts_ns: 1,
            event: SyncEvent::Wait,
            lock: "sysv:3+0".into(),
            pid: 1,
            tid: 1,
            comm: "a".into(),
            primitive: "futex".into(),
            ok: true,
            region: Some("sysv:3".into()),
            offset: Some(0),
            detail: Some("FUTEX_WAIT".into()),
            start_ns: Some(0),
        })),
        line(&Record::Heat(HeatLine {
            ts_ns: 1,
            words: vec![HotWordLine {
                region: "sysv:3".into(),
                offset: 8,
                changes: 4,
                score: 2.5,
                windows: 1,
                traps: 3,
                writers: vec![1, 2],
                armed: true,
                sync: false,
            }],
            pages: vec![HotPageLine {
                region: "sysv:3".into(),
                page: 0,
                changes: 4,
                score: 2.5,
            }],
        })),
        line(&Record::Fault(FaultLine {
            ts_ns: 1,
            region: "anon:0:5".into(),
            offset: 8,
            pid: 1,
            tid: 1,
            comm: "a".into(),
            ip: 1,
        })),
        line(&Record::Race(RaceLine {
            ts_ns: 1,
            kind: "shm-write-write".into(),
            region: Some("sysv:3".into()),
            channel: None,
            offset: Some(0),
            len: 8,
            accesses: vec![access.clone(), access],
            evidence: "collision".into(),
            confidence: 0.95,
            explanation: "two writers".into(),
        })),
        line(&Record::Lost(Lost {
            ts_ns: 1,
            count: 3,
            total: 3,
        })),
        line(&Record::Warning(Warning {
            ts_ns: 1,
            message: "m".into(),
            probe: Some("p".into()),
        })),
    ];
    let aggregate = |totals| {
        line(&Record::Aggregate(AggregateLine {
            ts_ns: 2,
            start_ns: 1,
            totals,
        }))
    };
    let lines = [
        lines,
        vec![
            aggregate(Totals::Channel(ChannelTotals {
                channel: "pipe:[7]".into(),
                kind: ChannelKind::Pipe,
                bytes_written: 3000,
                bytes_read: 3000,
                writes: 3,
                reads: 1,
                writers: vec![4],
                readers: vec![5],
            })),
            aggregate(Totals::Region(RegionTotals {
                region: "sysv:1".into(),
                faults: 2,
                samples: 1,
                writers: vec![4, 5],
            })),
            aggregate(Totals::Lock(LockTotals {
                lock: "sysv:1+0".into(),
                primitive: "futex".into(),
                acquires: 0,
                releases: 0,
                waits: 2,
                wakes: 1,
                failed: 1,
                pids: vec![4],
            })),
            aggregate(Totals::Unwritten(Unwritten {
                private_lock_inits: 3,
                repeated_warnings: 0,
            })),
        ],
    ]
    .concat();
    common::assert_schema(&lines);
}

#[test]
fn the_schema_rejects_malformed_lines() {
    let schema = common::schema();
    let v = jsonschema::validator_for(&schema).unwrap();
    for bad in [
        r#"{"type":"io","ts_ns":1}"#,
        r#"{"type":"io","ts_ns":1,"kind":"pipe","op":"peek","channel":"pipe:[1]","pid":1,"tid":1,"comm":"a","bytes":1,"fd":0,"syscall":"read"}"#,
        r#"{"type":"header","ts_ns":1,"format":"other","version":1,"tool_version":"0","kernel":"6","hostname":"h","start_time":"x","start_unix_ns":0}"#,
        r#"{"type":"nonsense","ts_ns":1}"#,
        r#"{"type":"aggregate","ts_ns":2,"start_ns":1,"channel":"pipe:[1]","kind":"pipe","bytes_written":1}"#,
    ] {
        let value: serde_json::Value = serde_json::from_str(bad).unwrap();
        assert!(!v.is_valid(&value), "accepted {bad}");
    }
}
