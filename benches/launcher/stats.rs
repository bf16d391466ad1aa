//! Small statistics: percentiles within a run, median and spread across runs.

use std::time::Duration;

/// The `p`-th percentile (0..=100) of `values` by the nearest-rank method; 0 for no values.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// The median of `values` (the mean of the two middle ones for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 }
}

pub fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

pub fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Pairs `(i, j)`, `i` started before `j`, where `i` has the lower priority: how far an order is
/// from "highest priority first".
pub fn priority_inversions(priorities: &[i32]) -> usize {
    let mut count = 0;
    for (i, a) in priorities.iter().enumerate() {
        count += priorities[i + 1..].iter().filter(|b| a < b).count();
    }
    count
}

/// A quick check of the helpers, run when the bench binary is started by `cargo test`.
pub fn self_check() {
    let v = [5.0, 1.0, 3.0, 2.0, 4.0];
    assert_eq!(median(&v), 3.0);
    assert_eq!(median(&[1.0, 2.0, 3.0, 4.0]), 2.5);
    assert_eq!(percentile(&v, 50.0), 3.0);
    assert_eq!(percentile(&v, 99.0), 5.0);
    assert_eq!(percentile(&v, 1.0), 1.0);
    assert_eq!((min(&v), max(&v)), (1.0, 5.0));
    assert_eq!(priority_inversions(&[10, 5, 5, 0]), 0);
    assert_eq!(priority_inversions(&[0, 5, 10]), 3);
}
