//! Per-second activity counters over trace time (the records' `ts_ns`),
//! so that rates mean the same live and in a replay at any speed.

use std::collections::VecDeque;

const NS: u64 = 1_000_000_000;

/// Seconds of history kept for the sparklines.
pub const HISTORY: usize = 60;
/// Window of the "per second" rates, in seconds.
pub const WINDOW: u64 = 5;

/// Counts per second for the last [`HISTORY`] seconds.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Second (ts_ns / 1e9) of `counts[0]`.
    start: u64,
    counts: VecDeque<u64>,
    pub total: u64,
}

impl Series {
    pub fn add(&mut self, ts_ns: u64, n: u64) {
        self.total = self.total.saturating_add(n);
        let sec = ts_ns / NS;
        if self.counts.is_empty() {
            self.start = sec;
            self.counts.push_back(0);
        }
        if sec < self.start {
            // Older than what we keep (records slightly out of order).
            if let Some(first) = self.counts.front_mut() {
                *first = first.saturating_add(n);
            }
            return;
        }
        let last = self.start + self.counts.len() as u64 - 1;
        if sec > last {
            if sec - last > HISTORY as u64 {
                self.counts.clear();
                self.start = sec;
                self.counts.push_back(0);
            } else {
                for _ in last..sec {
                    self.counts.push_back(0);
                }
            }
            while self.counts.len() > HISTORY {
                self.counts.pop_front();
                self.start += 1;
            }
        }
        let i = (sec - self.start) as usize;
        self.counts[i] = self.counts[i].saturating_add(n);
    }

    /// The last `n` seconds ending at `now_ns`, oldest first (zeros where
    /// nothing happened).
    pub fn last(&self, now_ns: u64, n: usize) -> Vec<u64> {
        let now = now_ns / NS;
        (0..n as u64)
            .rev()
            .map(|back| {
                now.checked_sub(back)
                    .filter(|s| *s >= self.start)
                    .and_then(|s| self.counts.get((s - self.start) as usize))
                    .copied()
                    .unwrap_or(0)
            })
            .collect()
    }

    /// Average per second over the [`WINDOW`] seconds ending at `now_ns`
    /// (or since `since_ns`, when that is shorter, at least one second).
    pub fn rate(&self, now_ns: u64, since_ns: u64) -> f64 {
        let sum = self
            .last(now_ns, WINDOW as usize)
            .iter()
            .fold(0u64, |a, b| a.saturating_add(*b));
        let span = now_ns
            .saturating_sub(since_ns)
            .div_ceil(NS)
            .clamp(1, WINDOW);
        sum as f64 / span as f64
    }
}

/// Bytes and messages through one channel or one process.
#[derive(Debug, Clone, Default)]
pub struct Flow {
    pub bytes: Series,
    pub msgs: Series,
}

impl Flow {
    pub fn add(&mut self, ts_ns: u64, bytes: u64) {
        self.bytes.add(ts_ns, bytes);
        self.msgs.add(ts_ns, 1);
    }
}

/// "1.2K", "34M": short human numbers for narrow columns.
pub fn human(v: f64) -> String {
    let units = ["", "K", "M", "G", "T"];
    let mut v = v;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0}")
    } else if v < 10.0 {
        format!("{v:.1}{}", units[i])
    } else {
        format!("{v:.0}{}", units[i])
    }
}

/// Bytes in binary units: "4.0KiB".
pub fn bytes(v: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut f = v as f64;
    let mut i = 0;
    while f >= 1024.0 && i + 1 < units.len() {
        f /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v}B")
    } else {
        format!("{f:.1}{}", units[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_keeps_a_sliding_history() {
        let mut s = Series::default();
        s.add(10 * NS, 3);
        s.add(10 * NS + 5, 2);
        s.add(12 * NS, 1);
        assert_eq!(s.last(12 * NS, 4), vec![0, 5, 0, 1]);
        assert_eq!(s.total, 6);
        // Five seconds ending at 12s, but only 2s of history: 6 / 2.
        assert_eq!(s.rate(12 * NS, 10 * NS), 3.0);
        s.add(500 * NS, 7);
        assert_eq!(s.last(500 * NS, 2), vec![0, 7]);
        assert_eq!(s.last(600 * NS, 2), vec![0, 0]);
    }

    #[test]
    fn huge_counts_saturate_instead_of_overflowing() {
        let mut s = Series::default();
        s.add(u64::MAX, u64::MAX);
        s.add(u64::MAX, u64::MAX);
        assert_eq!(s.total, u64::MAX);
        assert_eq!(s.last(u64::MAX, 1), vec![u64::MAX]);
        assert!(s.rate(u64::MAX, 0) > 0.0);
    }

    #[test]
    fn human_numbers() {
        assert_eq!(human(999.0), "999");
        assert_eq!(human(1500.0), "1.5K");
        assert_eq!(human(25_000_000.0), "25M");
        assert_eq!(bytes(4096), "4.0KiB");
        assert_eq!(bytes(12), "12B");
    }
}
