//! The race detector's precision workloads: processes that write shared
//! words concurrently but correctly, which must never be flagged. A
//! lock-free stack changed by compare-and-swap only, a seqlock with one
//! writer, and per-process slots side by side in one page. (The glibc
//! spinlock and the contended mutex and rwlock are `counter --sync spin`
//! and `counter --threads 4`, in race.rs.)
//!
//! Each checks its own result (no lost update, no torn read, no foreign
//! write) and fails if the check fails: a detector that stays quiet on a
//! workload that is itself broken would prove nothing.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::race::{Memory, bump_counter_unsynchronized, shared_page};
use crate::sys::{child_run, fork, pipe, wait};

/// The word at byte `off` of the shared page, as an atomic.
///
/// # Safety
/// `page` is a live 4096-byte shared mapping and `off` an 8-byte aligned
/// offset inside it.
unsafe fn word<'a>(page: *mut u8, off: usize) -> &'a AtomicU64 {
    debug_assert!(off.is_multiple_of(8) && off + 8 <= crate::race::SIZE);
    // SAFETY: the caller's promise.
    unsafe { AtomicU64::from_ptr(page.add(off) as *mut u64) }
}

/// Fork `n` children, each running `f(i)` (i = 1..=n) and sending the u64s
/// it returns back through a pipe; the parent runs `f(0)`. Returns every
/// process's pid and results, the parent's first.
fn fork_each(n: usize, f: impl Fn(usize) -> Result<Vec<u64>>) -> Result<Vec<(i32, Vec<u64>)>> {
    let mut kids = Vec::new();
    for i in 1..=n {
        let (mut r, mut w) = pipe()?;
        let pid = fork()?;
        if pid == 0 {
            drop(r);
            child_run(|| {
                let out = f(i)?;
                let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
                w.write_all(&bytes)?;
                Ok(())
            });
        }
        drop(w);
        let mut bytes = Vec::new();
        // Read after the parent's own turn: keep the handle.
        kids.push((pid, move || -> Result<Vec<u64>> {
            r.read_to_end(&mut bytes)?;
            Ok(bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect())
        }));
    }
    let mine = f(0)?;
    let mut all = vec![(std::process::id() as i32, mine)];
    for (pid, mut read) in kids {
        let out = read()?;
        let status = wait(pid)?;
        if status != 0 {
            bail!("child {pid} failed (status {status})");
        }
        all.push((pid, out));
    }
    Ok(all)
}

fn pids(all: &[(i32, Vec<u64>)]) -> String {
    all.iter()
        .map(|(p, _)| p.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

// --- cas-queue: a Treiber stack of nodes, changed by CAS only ---------

/// The stack's head: (tag << 32) | (node index + 1), 0 when empty. The
/// tag counts successful swaps, so a head popped and pushed back in
/// between (ABA) fails the swap.
const HEAD_OFF: usize = 0;
/// Node i: `next` (index + 1 of the node below it, 0 for none) at
/// NODES_OFF + 16 i, its `value` 8 bytes after.
const NODES_OFF: usize = 64;
const NODES: usize = 16;

fn next_off(i: usize) -> usize {
    NODES_OFF + 16 * i
}

fn value_off(i: usize) -> usize {
    NODES_OFF + 16 * i + 8
}

/// Pop a node (its index), spinning while the stack is empty.
///
/// # Safety
/// `page` holds a stack set up by [`cas_queue`].
unsafe fn pop(page: *mut u8) -> usize {
    // SAFETY: the caller's promise; offsets inside the page.
    let head = unsafe { word(page, HEAD_OFF) };
    loop {
        let h = head.load(Ordering::Acquire);
        let top = (h & 0xffff_ffff) as usize;
        if top == 0 {
            std::hint::spin_loop();
            continue;
        }
        // Possibly stale if another process popped it meanwhile: then the
        // tag has moved on and the swap below fails.
        // SAFETY: as above.
        let next = unsafe { word(page, next_off(top - 1)) }.load(Ordering::Acquire);
        let new = (((h >> 32) + 1) << 32) | (next & 0xffff_ffff);
        if head
            .compare_exchange(h, new, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return top - 1;
        }
    }
}

/// Push node `i` (ours since we popped it).
///
/// # Safety
/// As [`pop`]; `i` was popped by this thread and not pushed since.
unsafe fn push(page: *mut u8, i: usize) {
    // SAFETY: the caller's promise; offsets inside the page.
    let (head, next) = unsafe { (word(page, HEAD_OFF), word(page, next_off(i))) };
    loop {
        let h = head.load(Ordering::Acquire);
        // The node is ours: this swap cannot fail, but it is a swap, as
        // every write to the shared words here is.
        let old = next.load(Ordering::Relaxed);
        let _ = next.compare_exchange(old, h & 0xffff_ffff, Ordering::AcqRel, Ordering::Relaxed);
        let new = (((h >> 32) + 1) << 32) | (i as u64 + 1);
        if head
            .compare_exchange(h, new, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return;
        }
    }
}

/// `procs` processes pop a node off a lock-free stack in shared memory,
/// add one to its value and push it back, for `secs`; every write to the
/// shared page is a compare-and-swap (`lock cmpxchg`). The values must add
/// up to the operations done. Prints "cas-queue <pids> <operations>".
pub fn cas_queue(procs: usize, secs: f64) -> Result<()> {
    if !(2..=NODES).contains(&procs) {
        bail!("--procs must be 2 to {NODES}");
    }
    let page = shared_page(Memory::Anon)?;
    // SAFETY: offsets inside the fresh page; no other process yet.
    unsafe {
        for i in 0..NODES {
            let below = if i + 1 < NODES { i as u64 + 2 } else { 0 };
            word(page, next_off(i)).store(below, Ordering::Relaxed);
        }
        word(page, HEAD_OFF).store(1, Ordering::Release);
    }
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let all = fork_each(procs - 1, |_| {
        let mut ops = 0u64;
        while Instant::now() < deadline {
            for _ in 0..1000 {
                // SAFETY: the stack set up above, in the page all map.
                unsafe {
                    let i = pop(page);
                    let value = word(page, value_off(i));
                    let v = value.load(Ordering::Relaxed);
                    if value
                        .compare_exchange(v, v + 1, Ordering::AcqRel, Ordering::Relaxed)
                        .is_err()
                    {
                        bail!("node {i} changed while this process held it");
                    }
                    push(page, i);
                }
                ops += 1;
            }
        }
        Ok(vec![ops])
    })?;
    let ops: u64 = all.iter().map(|(_, v)| v[0]).sum();
    // SAFETY: offsets inside the page; the children have exited.
    let values: u64 = (0..NODES)
        .map(|i| unsafe { word(page, value_off(i)) }.load(Ordering::Acquire))
        .sum();
    if values != ops {
        bail!("the stack lost updates: values add up to {values}, {ops} operations");
    }
    println!("cas-queue {} {ops}", pids(&all));
    Ok(())
}

// --- seqlock: one writer, readers retry ------------------------------

const SEQ_OFF: usize = 0;
const DATA_OFF: usize = 64;
const DATA_WORDS: usize = 8;

/// One writer (the parent) publishes DATA_WORDS copies of a generation
/// number under a sequence counter at offset 0 (plain stores: it is the
/// only writer); `readers` processes read them and retry while the
/// counter is odd or moved. A consistent read with unequal words fails the
/// run. Prints "seqlock <pids> <generations> <consistent reads>".
pub fn seqlock(readers: usize, secs: f64) -> Result<()> {
    if readers == 0 {
        bail!("--readers must be at least 1");
    }
    let page = shared_page(Memory::Anon)?;
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let all = fork_each(readers, |i| {
        // SAFETY: offsets inside the shared page.
        let (seq, data) = unsafe {
            let data: Vec<&AtomicU64> = (0..DATA_WORDS)
                .map(|w| word(page, DATA_OFF + 8 * w))
                .collect();
            (word(page, SEQ_OFF), data)
        };
        if i == 0 {
            // The writer.
            let mut generation = 0u64;
            while Instant::now() < deadline {
                for _ in 0..1000 {
                    generation += 1;
                    let s = seq.load(Ordering::Relaxed);
                    seq.store(s + 1, Ordering::Relaxed);
                    fence(Ordering::Release);
                    for d in &data {
                        d.store(generation, Ordering::Relaxed);
                    }
                    seq.store(s + 2, Ordering::Release);
                }
            }
            return Ok(vec![generation]);
        }
        let (mut consistent, mut torn) = (0u64, 0u64);
        while Instant::now() < deadline {
            for _ in 0..1000 {
                let s1 = seq.load(Ordering::Acquire);
                if s1 % 2 == 1 {
                    std::hint::spin_loop();
                    continue;
                }
                let first = data[0].load(Ordering::Relaxed);
                let same = data[1..].iter().all(|d| d.load(Ordering::Relaxed) == first);
                fence(Ordering::Acquire);
                if seq.load(Ordering::Relaxed) == s1 {
                    consistent += 1;
                    torn += u64::from(!same);
                }
            }
        }
        if torn > 0 {
            bail!("{torn} of {consistent} consistent reads were torn");
        }
        Ok(vec![consistent])
    })?;
    let reads: u64 = all[1..].iter().map(|(_, v)| v[0]).sum();
    println!("seqlock {} {} {reads}", pids(&all), all[0].1[0]);
    Ok(())
}

// --- slots: each process owns one word -------------------------------

/// `procs` processes each bump their own 8-byte slot (process i at offset
/// 8 i, all on one cache line) with a plain load and store, the racy
/// counter's own code, for `secs`. Each slot must end equal to its
/// owner's increments. Prints "slots <pids> <increments per process>".
pub fn slots(procs: usize, secs: f64) -> Result<()> {
    if !(2..=64).contains(&procs) {
        bail!("--procs must be 2 to 64");
    }
    let page = shared_page(Memory::Anon)?;
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let all = fork_each(procs - 1, |i| {
        // SAFETY: slot i lies inside the shared page (i < 64).
        let slot = unsafe { page.add(8 * i) } as *mut u64;
        let mut n = 0u64;
        while Instant::now() < deadline {
            for _ in 0..1000 {
                bump_counter_unsynchronized(slot);
                n += 1;
            }
        }
        // SAFETY: as above.
        let value = unsafe { std::ptr::read_volatile(slot) };
        if value != n {
            bail!("slot {i} holds {value} after {n} increments by its owner alone");
        }
        Ok(vec![n])
    })?;
    let counts: Vec<String> = all.iter().map(|(_, v)| v[0].to_string()).collect();
    println!("slots {} {}", pids(&all), counts.join(","));
    Ok(())
}
