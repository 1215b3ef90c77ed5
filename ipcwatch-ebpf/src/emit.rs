//! Writing events: the header every event starts with (per-CPU sequence
//! number, time, task), the ring buffer and its wakeups, the loss counter,
//! and the payload bytes of `--capture-bytes`.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_get_current_comm, bpf_get_current_task_btf, bpf_get_smp_processor_id},
    },
};
use ipcwatch_common::{COMM_LEN, DataEvent, EventHeader, MAX_CAPTURE, SpanEvent, kind, stat};

use crate::maps::{CALL_START, EVENTS, SEQ, STATS, conf};

/// Add one to the per-CPU counter `index` (a `stat::*`).
#[inline(always)]
pub(crate) fn bump(index: u32) {
    if let Some(counter) = STATS.get_ptr_mut(index) {
        // SAFETY: a valid, aligned per-CPU slot. Atomic: tracing programs
        // can be preempted (migrate_disable only), so two on one CPU may
        // interleave here.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, 1) };
    }
}

/// Count one event of `kind` lost because the ring buffer was full: in
/// all, and by kind. Only on the loss path: nothing per event.
#[inline(always)]
pub(crate) fn dropped(kind: u32) {
    bump(stat::DROPPED);
    bump(stat::dropped_kind(kind));
}

/// An event struct: its [`EventHeader`] comes first, and says its kind.
pub(crate) trait Event {
    fn kind(&self) -> u32;
}

macro_rules! events {
    ($($t:ty),* $(,)?) => {
        $(impl Event for $t {
            #[inline(always)]
            fn kind(&self) -> u32 {
                self.hdr.kind
            }
        })*
    };
}

events!(
    SpanEvent,
    ipcwatch_common::FdEvent,
    ipcwatch_common::ForkEvent,
    ipcwatch_common::ExitEvent,
    ipcwatch_common::WaitEvent,
    ipcwatch_common::MsgEvent,
    ipcwatch_common::IoEvent,
    ipcwatch_common::shm::LockEvent,
    ipcwatch_common::shm::UprobeEvent,
    ipcwatch_common::shm::FaultEvent,
    ipcwatch_common::race::CollisionEvent,
);

/// [`header`] in a tp_btf program: the name is loaded from the task
/// directly instead of through bpf_get_current_comm.
#[inline(always)]
fn header_btf(kind: u32, pid_tgid: u64) -> EventHeader {
    // SAFETY: plain helper call.
    let task = unsafe { bpf_get_current_task_btf() } as u64;
    let at = task + conf!(off.task_comm) as u64;
    // SAFETY: `task` is a BTF-typed pointer in a tp_btf program; the
    // verifier checks both loads against task_struct.comm.
    let (lo, hi) = unsafe {
        (
            core::ptr::read_volatile(at as *const u64),
            core::ptr::read_volatile((at + 8) as *const u64),
        )
    };
    let mut hdr = header_no_comm(kind, pid_tgid);
    // Two word stores (a byte loop took a stack copy of each word).
    let comm = (&raw mut hdr.comm).cast::<u64>();
    // SAFETY: `comm` is the 16 bytes of `hdr.comm`; unaligned writes.
    unsafe {
        comm.write_unaligned(lo);
        comm.add(1).write_unaligned(hi);
    }
    hdr
}

/// The header of an event of `kind` from the current task.
pub(crate) fn header(kind: u32, pid_tgid: u64) -> EventHeader {
    let mut hdr = header_no_comm(kind, pid_tgid);
    // Written in place (the helper zeroes it on failure): a copy of its
    // own took 32 more bytes of the caller's frame, which Linux 5.10's
    // and 6.1's rule (512 bytes for a chain of calls) could not spare.
    // SAFETY: the helper writes at most COMM_LEN bytes into `hdr.comm`.
    unsafe { bpf_get_current_comm((&raw mut hdr.comm).cast(), COMM_LEN as u32) };
    hdr
}

#[inline(always)]
fn header_no_comm(kind: u32, pid_tgid: u64) -> EventHeader {
    let seq = match SEQ.get_ptr_mut(0) {
        // SAFETY: a valid, aligned per-CPU slot; atomic, see `bump`.
        // SeqCst, not Relaxed: LLVM 22 compiles a relaxed add whose result
        // is used into BPF's plain locked add, which returns nothing (every
        // sequence number was 1); SeqCst gets atomic_fetch_add (ISA v3).
        Some(p) if !crate::COMPAT => unsafe {
            atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(p, 1)
        },
        // The compat object (`compat.rs`): the kernels it is for run these
        // programs with preemption disabled, so nothing else on this CPU
        // takes a number between the load and the store.
        // SAFETY: a valid, aligned per-CPU slot.
        Some(p) => unsafe {
            let seq = p.read_volatile();
            p.write_volatile(seq.wrapping_add(1));
            seq
        },
        None => 0,
    };
    EventHeader {
        kind,
        // SAFETY: plain helper call.
        cpu: unsafe { bpf_get_smp_processor_id() },
        seq,
        // SAFETY: plain helper call.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        comm: [0; COMM_LEN],
    }
}

/// Submit flags: wake the reader only when enough data waits. A wakeup
/// per event costs an inter-processor interrupt, which dominates the cost
/// of tracing in a virtual machine; the reader polls on a short timer too.
///
/// The wakeup is sent when the waiting data crosses a multiple of
/// `wake_bytes` (within the last `WAKE_WINDOW` bytes, a bound on one
/// event's size), not for every event once it is above the mark: a reader
/// that fell behind would otherwise cost the traced program an interrupt
/// per event, slowing it several times, right when the reader most needs
/// the CPU. A reader that missed a wakeup gets the next one 1/16 of the
/// buffer later, or its poll timer first. Past half the buffer, though,
/// events are about to be lost: then every submission wakes the reader,
/// which slows the traced program down before it loses its events.
#[inline(always)]
pub(crate) fn wake_flags() -> u64 {
    const WAKE_WINDOW: u64 = 512;
    let avail = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let mark = conf!(wake_bytes) as u64;
    if mark != 0
        && avail >= mark
        && (avail >= 8 * mark || avail / mark != avail.saturating_sub(WAKE_WINDOW) / mark)
    {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Write `event` to the ring buffer, counting a drop when it is full.
pub(crate) fn emit<T: Event + 'static>(event: T) {
    match EVENTS.reserve::<T>(0) {
        Some(mut entry) => {
            entry.write(event);
            entry.submit(wake_flags());
        }
        None => dropped(event.kind()),
    }
}

/// [`header`], or [`header_btf`] in a tp_btf program (not in the compat
/// object: 5.10 has no `bpf_get_current_task_btf`).
#[inline(always)]
pub(crate) fn header_any<const BTF: bool>(kind: u32, pid_tgid: u64) -> EventHeader {
    if BTF && !crate::COMPAT {
        header_btf(kind, pid_tgid)
    } else {
        header(kind, pid_tgid)
    }
}

/// Whether `--durations` asks when each timed call started.
#[inline(always)]
pub(crate) fn timing() -> bool {
    conf!(durations) != 0
}

/// At entry: the thread's call starts now (see [`span`]).
#[inline(always)]
pub(crate) fn call_starts(pid_tgid: u64) {
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let _ = CALL_START.insert(pid_tgid as u32, now, 0);
}

/// Just before the event of a call whose start was kept: a SPAN event
/// with that start (the collector pairs it with the event that follows by
/// CPU and sequence number: call it only when that event follows).
#[inline(never)]
pub(crate) fn span(pid_tgid: u64) {
    let tid = pid_tgid as u32;
    // SAFETY: the value is copied out at once.
    if let Some(&start_ns) = unsafe { CALL_START.get(tid) } {
        let _ = CALL_START.remove(tid);
        emit(SpanEvent {
            hdr: header(kind::SPAN, pid_tgid),
            start_ns,
        });
    }
}

/// With `--durations`: [`span`].
#[inline(always)]
pub(crate) fn timed_span(pid_tgid: u64) {
    if timing() {
        span(pid_tgid);
    }
}

/// Whether `--capture-bytes` asks for payloads.
#[inline(always)]
pub(crate) fn capturing() -> bool {
    conf!(capture_bytes) != 0
}

/// With `--capture-bytes`: the first of `len` bytes at user address `buf`,
/// sent just before the IO event they belong to (the collector pairs them
/// by CPU and sequence number: call it only when that event follows).
#[inline(never)]
pub(crate) fn capture_user(pid_tgid: u64, buf: u64, len: i64) {
    let cap = conf!(capture_bytes) as i64;
    if cap == 0 || len <= 0 || buf == 0 {
        return;
    }
    let n = if len < cap { len } else { cap } as u32;
    let hdr = header(kind::DATA, pid_tgid);
    let Some(mut entry) = EVENTS.reserve::<DataEvent>(0) else {
        dropped(kind::DATA);
        return;
    };
    let e = entry.as_mut_ptr();
    // Bounded for the verifier: 1..=MAX_CAPTURE.
    let len = if n as usize > MAX_CAPTURE {
        MAX_CAPTURE as u32
    } else {
        n
    };
    // SAFETY: `e` is reserved ring-buffer memory of DataEvent's size; the
    // read is at most MAX_CAPTURE bytes into `data`, from a user pointer.
    unsafe {
        (*e).hdr = hdr;
        (*e).len = len;
        (*e)._pad = 0;
        let rc = aya_ebpf::helpers::generated::bpf_probe_read_user(
            (*e).data.as_mut_ptr().cast(),
            len,
            buf as *const core::ffi::c_void,
        );
        if rc != 0 {
            (*e).len = 0;
        }
    }
    entry.submit(wake_flags());
}
