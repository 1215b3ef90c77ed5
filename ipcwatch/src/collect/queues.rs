//! Message queues, POSIX (`mq:/NAME`) and SysV (`msgq:ID`): kernel events
//! to records.

use foldhash::HashMap;

use compact_str::format_compact;
use ipcwatch_common::{MqEvent, MsgEvent, sc};

use super::lines::{channel_line, io_line, syscall_name};
use crate::decode::c_str;
use crate::record::{ChannelEvent, ChannelKind, End, Io, IoExt, MqAttr, Op, Record};
use crate::scan::procs::fd_link;

const IPC_RMID: u32 = 0;

#[derive(Debug, Default)]
pub struct QueueTracker {
    /// mqueue inode -> "/name".
    mq_names: HashMap<u64, String>,
    /// SysV queue id -> key.
    msg_keys: HashMap<i32, i64>,
}

impl QueueTracker {
    /// For long runs (`agent`): the names of POSIX queues whose channel
    /// the model forgot (`known` says no), and the keys of SysV queues
    /// likewise.
    pub fn forget(&mut self, known: impl Fn(&str) -> bool) {
        self.mq_names.retain(|_, n| known(&format!("mq:{n}")));
        self.msg_keys.retain(|id, _| known(&format!("msgq:{id}")));
        self.mq_names.shrink_to(self.mq_names.len() * 2);
        self.msg_keys.shrink_to(self.msg_keys.len() * 2);
    }

    /// Name of the queue behind an mqueue inode.
    fn mq_name(&mut self, ino: u64, pid: u32, fd: i32) -> Option<String> {
        if let Some(n) = self.mq_names.get(&ino) {
            return Some(n.clone());
        }
        // /proc/PID/fd/N of a queue reads "/NAME" (mqueue fs need not be
        // mounted for this).
        let name = fd_link(pid, fd)?;
        if !name.starts_with('/') {
            return None;
        }
        self.mq_names.insert(ino, name.clone());
        Some(name)
    }

    pub fn mq(&mut self, e: &MqEvent, out: &mut Vec<Record>) {
        if e.syscall == sc::CLOSE {
            // Only queues whose name is known: the descriptor is gone.
            if let Some(name) = self.mq_names.get(&e.ino) {
                let mut l = channel_line(
                    &e.hdr,
                    ChannelEvent::Close,
                    ChannelKind::Mq,
                    format_compact!("mq:{name}"),
                );
                l.fd = Some(e.fd);
                l.syscall = Some(syscall_name(e.syscall));
                out.push(Record::Channel(l));
            }
            return;
        }
        let raw_name = String::from_utf8_lossy(c_str(&e.name)).into_owned();
        let name = match e.syscall {
            sc::MQ_OPEN | sc::MQ_UNLINK => {
                let n = if raw_name.starts_with('/') {
                    raw_name
                } else {
                    format!("/{raw_name}")
                };
                if e.ino != 0 {
                    self.mq_names.insert(e.ino, n.clone());
                }
                Some(n)
            }
            _ => self.mq_name(e.ino, e.hdr.pid, e.fd),
        };
        let channel = match &name {
            Some(n) => format_compact!("mq:{n}"),
            None => format_compact!("mq:[{}]", e.ino),
        };
        let attr = |a: &[i64; 4]| MqAttr {
            flags: a[0],
            maxmsg: a[1],
            msgsize: a[2],
            curmsgs: a[3],
        };
        let io = |op: Op| {
            Record::Io(Io {
                ext: IoExt {
                    priority: Some(e.prio),
                    ..IoExt::default()
                },
                ..io_line(
                    &e.hdr,
                    ChannelKind::Mq,
                    op,
                    channel.clone(),
                    e.bytes,
                    e.fd,
                    e.syscall,
                )
            })
        };
        match e.syscall {
            sc::MQ_TIMEDSEND => out.push(io(Op::Write)),
            sc::MQ_TIMEDRECEIVE => out.push(io(Op::Read)),
            code => {
                let event = match code {
                    sc::MQ_OPEN => ChannelEvent::Open,
                    sc::MQ_UNLINK => ChannelEvent::Unlink,
                    sc::MQ_NOTIFY => ChannelEvent::Notify,
                    _ => ChannelEvent::Control,
                };
                let mut l = channel_line(&e.hdr, event, ChannelKind::Mq, channel);
                l.syscall = Some(syscall_name(code));
                l.ext.name = name;
                if code != sc::MQ_UNLINK {
                    l.fd = Some(e.fd);
                }
                if code == sc::MQ_OPEN {
                    l.end = Some(End::from_open_flags(e.flags));
                    l.cloexec = e.flags & libc::O_CLOEXEC as u32 != 0;
                    l.ext.flags = Some(e.flags);
                    l.ext.mode = Some(e.mode);
                }
                if code == sc::MQ_NOTIFY {
                    l.ext.notify = Some(e.flags != 0);
                }
                if e.has_attr & 1 != 0 {
                    l.ext.attr = Some(attr(&e.attr));
                }
                if e.has_attr & 2 != 0 {
                    l.ext.old_attr = Some(attr(&e.oldattr));
                }
                out.push(Record::Channel(l));
            }
        }
    }

    /// Key of a SysV queue, from msgget or /proc/sysvipc/msg (read by hand:
    /// procfs 0.18 has no API for /proc/sysvipc/msg).
    fn msg_key(&mut self, id: i32) -> Option<i64> {
        if let Some(k) = self.msg_keys.get(&id) {
            return Some(*k);
        }
        let text = std::fs::read_to_string("/proc/sysvipc/msg").ok()?;
        for line in text.lines().skip(1) {
            let mut w = line.split_whitespace();
            let key: i64 = w.next()?.parse().ok()?;
            let qid: i32 = w.next()?.parse().ok()?;
            self.msg_keys.insert(qid, key);
        }
        self.msg_keys.get(&id).copied()
    }

    pub fn msgq(&mut self, e: &MsgEvent, out: &mut Vec<Record>) {
        if e.syscall == sc::MSGGET {
            self.msg_keys.insert(e.id, e.key as i64);
        }
        let key = self.msg_key(e.id);
        let channel = format_compact!("msgq:{}", e.id);
        let io = |op: Op| {
            Record::Io(Io {
                ext: IoExt {
                    mtype: Some(e.mtype),
                    key,
                    ..IoExt::default()
                },
                ..io_line(
                    &e.hdr,
                    ChannelKind::Msgq,
                    op,
                    channel.clone(),
                    e.bytes,
                    -1,
                    e.syscall,
                )
            })
        };
        match e.syscall {
            sc::MSGSND => out.push(io(Op::Write)),
            sc::MSGRCV => out.push(io(Op::Read)),
            code => {
                let event = match code {
                    sc::MSGGET => ChannelEvent::Open,
                    _ if e.flags & 0xff == IPC_RMID => ChannelEvent::Unlink,
                    _ => ChannelEvent::Control,
                };
                let mut l = channel_line(&e.hdr, event, ChannelKind::Msgq, channel.clone());
                l.syscall = Some(syscall_name(code));
                l.ext.key = key;
                l.ext.id = Some(e.id as i64);
                l.ext.flags = Some(e.flags);
                out.push(Record::Channel(l));
            }
        }
    }
}
