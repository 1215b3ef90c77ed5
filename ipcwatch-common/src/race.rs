//! Collision sampling (the race detector's default mode): hardware write
//! watchpoints on hot words of shared regions, one perf event per thread.

use crate::header::{COMM_LEN, EventHeader};

/// [`EventHeader::kind`] of a [`CollisionEvent`].
pub const KIND_COLLISION: u32 = 100;
/// Deep mode: one trapped write, as a [`CollisionEvent`] whose `other`
/// is empty.
pub const KIND_WRITE_SAMPLE: u32 = 101;

/// Most words watched at once (a thread has four debug registers).
pub const MAX_SLOTS: u32 = 16;

/// `WATCH` map key: a watched address in one process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WatchKey {
    pub tgid: u32,
    pub _pad: u32,
    pub addr: u64,
}

/// `SLOTS` map value: the write in flight on one watched word.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    /// Thread whose write is in flight (being held), 0 when none.
    pub tid: u32,
    pub pid: u32,
    pub start_ns: u64,
    /// Instruction pointer after the write (the trap address).
    pub ip: u64,
    /// User stack id in the `STACKS` map, or negative.
    pub stack: i64,
    pub comm: [u8; COMM_LEN],
}

/// Distinct writing instructions remembered per slot.
pub const MAX_SEEN: usize = 8;

/// `SEEN` map value: the distinct instructions (trap addresses) that wrote
/// one watched word while it was armed, so that userspace can tell a
/// synchronization word (written by an atomic instruction somewhere) from
/// a plain data word. Cleared by userspace when the slot is armed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub n: u32,
    pub _pad: u32,
    pub ips: [u64; MAX_SEEN],
    pub pids: [u32; MAX_SEEN],
}

/// Two writes to one watched word were in flight at the same time.
/// The header names the second writer (the one that trapped while the
/// first was held); `other` is the first.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CollisionEvent {
    pub hdr: EventHeader,
    pub slot: u32,
    pub _pad: u32,
    /// The watched address in the second writer's address space.
    pub addr: u64,
    pub ip: u64,
    pub stack: i64,
    pub other: Slot,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: repr(C), Copy, integers only, no padding.
    unsafe impl aya::Pod for super::WatchKey {}
    // SAFETY: repr(C), Copy, integers and bytes only, no padding.
    unsafe impl aya::Pod for super::Slot {}
    // SAFETY: repr(C), Copy, integers only, explicit padding.
    unsafe impl aya::Pod for super::Seen {}
}
