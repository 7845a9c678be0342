//! When a binding whose reconcile failed is tried again. Pure: the caller passes the count of
//! consecutive failures and the jitter.

use std::time::Duration;

use crate::backoff::jittered_doubling;

/// What kind of failure a reconcile ended with, for how soon to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// IAM throttled a call past the SDK's retries: a rate problem of the whole account that
    /// the IAM client's shared pause already answers, so the binding comes back soon.
    Throttled,
    /// IAM or Kubernetes failed in a way that usually passes (5xx, network, conflicts).
    Transient,
    /// Retrying alone is unlikely to help (refused by IAM, a role held by something else).
    Persistent,
}

impl FailureClass {
    /// (first delay, longest delay); the delay doubles per consecutive failure in between.
    fn bounds(self) -> (Duration, Duration) {
        match self {
            FailureClass::Throttled => (Duration::from_secs(1), Duration::from_secs(20)),
            FailureClass::Transient => (Duration::from_secs(2), Duration::from_secs(60)),
            FailureClass::Persistent => (Duration::from_secs(5), Duration::from_secs(300)),
        }
    }
}

/// The delay before the next try after `consecutive_failures` (≥ 1) failures in a row, the
/// last of `class`. `jitter` in [0, 1) spreads it over [½, 1½) of the nominal delay, so
/// bindings that failed together do not come back together.
pub fn retry_delay(class: FailureClass, consecutive_failures: u32, jitter: f64) -> Duration {
    let (first, longest) = class.bounds();
    jittered_doubling(first, longest, consecutive_failures, jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_bindings_come_back_within_seconds_however_often_throttled() {
        assert_eq!(
            retry_delay(FailureClass::Throttled, 1, 0.5),
            Duration::from_secs(1)
        );
        assert_eq!(
            retry_delay(FailureClass::Throttled, 3, 0.5),
            Duration::from_secs(4)
        );
        for n in [6, 10, 100, u32::MAX] {
            assert_eq!(
                retry_delay(FailureClass::Throttled, n, 0.5),
                Duration::from_secs(20)
            );
            assert!(retry_delay(FailureClass::Throttled, n, 0.999) < Duration::from_secs(30));
        }
    }

    #[test]
    fn persistent_failures_back_off_to_minutes() {
        assert_eq!(
            retry_delay(FailureClass::Persistent, 1, 0.5),
            Duration::from_secs(5)
        );
        assert_eq!(
            retry_delay(FailureClass::Persistent, 20, 0.5),
            Duration::from_secs(300)
        );
        assert!(
            retry_delay(FailureClass::Transient, 20, 0.5)
                < retry_delay(FailureClass::Persistent, 20, 0.5)
        );
    }

    #[test]
    fn jitter_spreads_half_to_one_and_a_half() {
        assert_eq!(
            retry_delay(FailureClass::Transient, 1, 0.0),
            Duration::from_secs(1)
        );
        assert!(retry_delay(FailureClass::Transient, 1, 0.99) > Duration::from_millis(2900));
        // Out-of-range jitter is clamped, never a zero or huge delay.
        assert_eq!(
            retry_delay(FailureClass::Transient, 1, -3.0),
            Duration::from_secs(1)
        );
        assert_eq!(
            retry_delay(FailureClass::Transient, 1, 7.0),
            Duration::from_secs(3)
        );
    }
}
