//! The launcher's one backoff: backon's exponential delays (doubling, capped, jittered where many
//! clients may retry at once), with a named schedule per use.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Doubling from `min` to `max`, without end; with `jitter`, each delay grows by a random part of
/// itself, so clients that failed together do not retry together.
pub fn delays(min: Duration, max: Duration, jitter: bool) -> ExponentialBackoff {
    let builder =
        ExponentialBuilder::new().with_min_delay(min).with_max_delay(max).with_factor(2.0).without_max_times();
    if jitter { builder.with_jitter().build() } else { builder.build() }
}

/// A launch's API calls: 50 ms doubling to 2 s, jittered, within the launch's deadline.
pub fn launch_calls() -> ExponentialBackoff {
    delays(Duration::from_millis(50), Duration::from_secs(2), true)
}

/// An SQS message whose launch fails transiently, held meanwhile: 200 ms doubling to 5 s.
pub fn held_message() -> ExponentialBackoff {
    delays(Duration::from_millis(200), Duration::from_secs(5), true)
}

/// A failed SQS receive: 1 s doubling to a minute.
pub fn receive_failures() -> ExponentialBackoff {
    delays(Duration::from_secs(1), Duration::from_secs(60), true)
}

/// A completion notice the receiver did not take yet: 1 s doubling to 5 minutes.
pub fn notices() -> ExponentialBackoff {
    delays(Duration::from_secs(1), Duration::from_secs(300), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_to_their_cap_and_never_run_out() {
        let secs: Vec<u64> = notices().take(12).map(|d| d.as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }

    #[test]
    fn jitter_stays_within_twice_the_delay() {
        for (n, delay) in receive_failures().take(10).enumerate() {
            let base = Duration::from_secs(1u64 << n.min(6)).min(Duration::from_secs(60));
            assert!(delay >= base && delay <= base * 2, "{n}: {delay:?}");
        }
    }
}
