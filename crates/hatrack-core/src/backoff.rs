//! Jittered exponential backoff, shared by the IAM client's throttling pause and the
//! controller's requeue delays. Pure: the caller passes the jitter.

use std::time::Duration;

/// The delay after `consecutive` (≥ 1) failures in a row: `first`, doubling per further
/// failure, at most `longest`. `jitter` in [0, 1) spreads it over [½, 1½) of that nominal
/// delay (out-of-range jitter is clamped), so callers that failed together do not come back
/// together.
pub fn jittered_doubling(
    first: Duration,
    longest: Duration,
    consecutive: u32,
    jitter: f64,
) -> Duration {
    let doublings = consecutive.saturating_sub(1).min(16);
    first
        .saturating_mul(1u32 << doublings)
        .min(longest)
        .mul_f64(0.5 + jitter.clamp(0.0, 1.0))
}
