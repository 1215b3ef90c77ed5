//! What the comparisons of `bench`, `bench-own-cpu` and `bench-nginx`
//! share: the order of each round, and the median of the runs. A leaf:
//! those modules use it, it uses none of them.

/// The median of `v` (sorted in place); NaN-safe ordering.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The order of one round of an alternating comparison: `None` untraced,
/// `Some(i)` traced by build `i`; reversed every other round, so that no
/// build always runs right after the same one.
pub fn alternation(round: usize, builds: usize) -> Vec<Option<usize>> {
    let mut order: Vec<Option<usize>> =
        std::iter::once(None).chain((0..builds).map(Some)).collect();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// The ping-pong's `round-trips/s` line in a workload's output.
pub fn rate_of(output: &str) -> Option<f64> {
    output
        .lines()
        .find_map(|l| l.strip_prefix("round-trips/s "))
        .and_then(|v| v.trim().parse().ok())
}
