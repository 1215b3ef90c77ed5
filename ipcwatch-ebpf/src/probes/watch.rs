//! Collision sampling, in the manner of DataCollider: a hardware write
//! watchpoint on a hot word traps after each write to it; the handler
//! holds the writer for a bounded delay with the write "in flight". If
//! another thread writes the same word meanwhile, the two writes were
//! concurrent: a race caught in the act. A writer that holds a lock (or a
//! semaphore, or a token) keeps the other side from writing during the
//! delay, so synchronized code never collides, whatever it synchronizes
//! with.

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_F_USER_STACK, bpf_perf_event_data},
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::perf_event,
    programs::{PerfEventContext, tracing::StackIdContext as _},
};
use ipcwatch_common::{
    COMM_LEN,
    race::{CollisionEvent, KIND_COLLISION, KIND_WRITE_SAMPLE, MAX_SEEN, Slot, WatchKey},
    stat,
};

use crate::{
    emit::{bump, emit, header},
    log,
    maps::{SEEN, SLOTS, STACKS, WATCH, conf},
};

/// Upper bound on the hold loop (each turn reads the clock once).
const MAX_SPIN: u32 = 1 << 14;

#[perf_event]
pub fn ipcwatch_watch(ctx: PerfEventContext) -> u32 {
    watch(&ctx);
    0
}

fn watch(ctx: &PerfEventContext) {
    let data = ctx.as_ptr() as *const bpf_perf_event_data;
    // SAFETY: a perf_event program's context is a bpf_perf_event_data.
    let (addr, ip) = unsafe { ((*data).addr, (*data).regs.rip) };
    let pid_tgid = bpf_get_current_pid_tgid();
    let (pid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    let key = WatchKey {
        tgid: pid,
        _pad: 0,
        addr,
    };
    // SAFETY: plain map lookup; the value is copied out at once.
    let Some(&slot) = (unsafe { WATCH.get(key) }) else {
        log::trap_outside_armed_words(pid, addr);
        return;
    };
    let Some(st) = SLOTS.get_ptr_mut(slot) else {
        return;
    };
    bump(stat::WATCH_TRAPS);
    remember(slot, ip, pid);
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let delay = conf!(watch_delay_ns) as u64;
    let stack = ctx
        .get_stackid(&STACKS, BPF_F_USER_STACK as u64)
        .unwrap_or(-1);
    // SAFETY: `st` points into the SLOTS array; concurrent writers may
    // interleave here, which can only make a collision go unseen.
    let held = unsafe { *st };
    if conf!(deep) != 0 {
        emit(CollisionEvent {
            hdr: header(KIND_WRITE_SAMPLE, pid_tgid),
            slot,
            _pad: 0,
            addr,
            ip,
            stack,
            other: Slot::default(),
        });
    }
    // Races between processes: two threads of one process colliding is
    // ThreadSanitizer's business, and the second one may not take over
    // the slot either.
    if held.tid != 0 && held.pid != pid && now.wrapping_sub(held.start_ns) < 2 * delay {
        bump(stat::COLLISIONS);
        emit(CollisionEvent {
            hdr: header(KIND_COLLISION, pid_tgid),
            slot,
            _pad: 0,
            addr,
            ip,
            stack,
            other: held,
        });
        return;
    }
    if held.tid != 0 && now.wrapping_sub(held.start_ns) < 2 * delay {
        return;
    }
    // SAFETY: see above.
    unsafe {
        *st = Slot {
            tid,
            pid,
            start_ns: now,
            ip,
            stack,
            comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
        };
    }
    // Hold the writer with its write in flight.
    for _ in 0..MAX_SPIN {
        // SAFETY: plain helper call.
        if unsafe { bpf_ktime_get_ns() }.wrapping_sub(now) >= delay {
            break;
        }
    }
    // SAFETY: see above.
    unsafe {
        if (*st).tid == tid {
            (*st).tid = 0;
        }
    }
}

/// Add the writing instruction to the slot's `SEEN` set (unless it is
/// there, or the set is full). Two CPUs adding at once can lose one: the
/// next write from it adds it again.
fn remember(slot: u32, ip: u64, pid: u32) {
    let Some(seen) = SEEN.get_ptr_mut(slot) else {
        return;
    };
    // SAFETY: `seen` points into the SEEN array; every index is bounded.
    unsafe {
        let n = (*seen).n as usize;
        for i in 0..MAX_SEEN {
            if i < n && (*seen).ips[i] == ip {
                return;
            }
        }
        if n < MAX_SEEN {
            (*seen).ips[n] = ip;
            (*seen).pids[n] = pid;
            (*seen).n = n as u32 + 1;
        }
    }
}
