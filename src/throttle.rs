//! What hatrack does when IAM throttles a call even after the SDK's retries: it pauses *all*
//! IAM calls briefly, growing the pause while throttling continues. Throttling is an
//! account-wide rate problem, so everyone slows down, instead of one binding waiting minutes.
//! Pure: the caller passes the time and the jitter.

use std::time::{Duration, Instant};

use crate::backoff::jittered_doubling;

/// The first pause after a throttled call.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// The longest pause, however long throttling lasts.
const MAX_PAUSE: Duration = Duration::from_secs(8);

/// A pause shared by every IAM call.
#[derive(Debug, Default, Clone)]
pub struct ThrottlePause {
    /// Calls that ended throttled since the last call that succeeded.
    throttled_in_a_row: u32,
    until: Option<Instant>,
}

impl ThrottlePause {
    /// Records a call that ended throttled; returns the pause it starts. `jitter` in [0, 1)
    /// spreads the pause over [½, 1½) of its nominal length, so waiters do not restart
    /// together.
    pub fn throttled(&mut self, now: Instant, jitter: f64) -> Duration {
        self.throttled_in_a_row = self.throttled_in_a_row.saturating_add(1);
        let pause = jittered_doubling(FIRST_PAUSE, MAX_PAUSE, self.throttled_in_a_row, jitter);
        let until = now + pause;
        // A pause already running longer is kept.
        if self.until.is_none_or(|u| u < until) {
            self.until = Some(until);
        }
        pause
    }

    /// Records a call that IAM answered: throttling has let up.
    pub fn succeeded(&mut self) {
        self.throttled_in_a_row = 0;
    }

    /// How long a call starting at `now` must still wait.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        self.until
            .and_then(|u| u.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_pause_until_throttled() {
        let p = ThrottlePause::default();
        assert_eq!(p.remaining(Instant::now()), None);
    }

    #[test]
    fn pauses_grow_while_throttling_lasts_and_are_capped() {
        let mut p = ThrottlePause::default();
        let now = Instant::now();
        let pauses: Vec<Duration> = (0..12).map(|_| p.throttled(now, 0.5)).collect();
        assert_eq!(pauses[0], Duration::from_millis(250));
        assert_eq!(pauses[1], Duration::from_millis(500));
        assert_eq!(pauses[2], Duration::from_secs(1));
        assert_eq!(*pauses.last().unwrap(), MAX_PAUSE);
        assert_eq!(p.remaining(now), Some(MAX_PAUSE));
        assert_eq!(p.remaining(now + MAX_PAUSE), None);
    }

    #[test]
    fn a_success_starts_over_from_the_first_pause() {
        let mut p = ThrottlePause::default();
        let now = Instant::now();
        p.throttled(now, 0.5);
        p.throttled(now, 0.5);
        p.succeeded();
        assert_eq!(p.throttled(now, 0.5), FIRST_PAUSE);
    }

    #[test]
    fn jitter_spreads_the_pause_and_a_longer_one_is_kept() {
        let mut p = ThrottlePause::default();
        let now = Instant::now();
        assert_eq!(p.throttled(now, 0.0), FIRST_PAUSE / 2);
        p.succeeded();
        let long = p.throttled(now, 0.99);
        p.succeeded();
        let short = p.throttled(now, 0.0);
        assert!(short < long);
        assert_eq!(p.remaining(now), Some(long));
    }
}
