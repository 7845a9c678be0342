//! Keeps periodic resyncs from starving changes. A resync (the timer-driven re-check of a
//! binding already reconciled, with nothing changed since) may hold at most `cap` of the
//! reconcile workers; past that it is deferred, so a new or changed binding always finds a
//! free worker however many resyncs are due. Without it, 1,000 bindings on a 20 s resync kept
//! all 16 workers busy and new bindings waited behind them for minutes (BENCHMARKS.md).
//!
//! Pure: no clock, no randomness, no I/O; the caller passes the jitter.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a reconcile that is about to start should do.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Something about the binding changed (or it was never reconciled): go, uncapped.
    Change,
    /// A resync within the cap: go, holding one resync slot until the reconcile ends.
    Resync,
    /// A resync over the cap: come back after this long, doing nothing now.
    Defer(Duration),
}

#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    /// Bumped by every event that may change what the binding's reconcile does.
    epoch: u64,
    /// The epoch the last finished reconcile started at: the next reconcile is a resync iff
    /// the epoch is still that.
    done_at: Option<u64>,
}

/// Which bindings' next reconcile is a plain resync, and how many resyncs run.
#[derive(Debug)]
pub struct ResyncGate<K> {
    cap: usize,
    running: usize,
    /// The deferral delay's centre (jitter spreads it over ½–1½ of it).
    defer: Duration,
    entries: HashMap<K, Entry>,
}

impl<K: Hash + Eq + Clone> ResyncGate<K> {
    /// A gate for `concurrency` workers and resync period `resync`: resyncs may hold half the
    /// workers (at least one), and a deferred one comes back after about a twentieth of the
    /// period (at least a second), so deferrals cost little and resyncs still happen.
    pub fn new(concurrency: usize, resync: Duration) -> Self {
        ResyncGate {
            cap: (concurrency / 2).max(1),
            running: 0,
            defer: (resync / 20).max(Duration::from_secs(1)),
            entries: HashMap::new(),
        }
    }

    /// How many resyncs may run at once.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// How many resyncs run now.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Something that may change the binding's reconcile happened (its own watch event, or a
    /// ServiceAccount, guardrail, namespace or IAMAccount it depends on).
    pub fn changed(&mut self, key: &K) {
        let e = self.entries.entry(key.clone()).or_default();
        e.epoch = e.epoch.wrapping_add(1);
    }

    /// A reconcile of `key` is about to start; `jitter` in [0, 1). On [`Admission::Resync`]
    /// the caller must call [`end`](Self::end) with `resync: true` when it ends.
    /// Returns the admission and the epoch to pass to `end`.
    pub fn begin(&mut self, key: &K, jitter: f64) -> (Admission, u64) {
        let e = self.entries.entry(key.clone()).or_default();
        let epoch = e.epoch;
        if e.done_at != Some(epoch) {
            return (Admission::Change, epoch);
        }
        if self.running < self.cap {
            self.running += 1;
            return (Admission::Resync, epoch);
        }
        let spread = 0.5 + jitter.clamp(0.0, 1.0);
        (Admission::Defer(self.defer.mul_f64(spread)), epoch)
    }

    /// The reconcile begun at `epoch` ended. `succeeded`: the binding is as the reconcile left
    /// it, so its next timer-driven reconcile is a resync (a failed one's retry is not: it is
    /// not capped). `resync`: it held a resync slot. `gone`: the binding is deleted, forget it.
    pub fn end(&mut self, key: &K, epoch: u64, succeeded: bool, resync: bool, gone: bool) {
        if resync {
            self.running = self.running.saturating_sub(1);
        }
        if gone {
            self.entries.remove(key);
            return;
        }
        let e = self.entries.entry(key.clone()).or_default();
        e.done_at = succeeded.then_some(epoch);
    }
}

/// A gate shared by the reconciles and the watch mappers.
pub type SharedGate<K> = Arc<Mutex<ResyncGate<K>>>;

/// Marks `keys` as changed; returns them (for use inside a watch mapper).
pub fn mark_changed<K: Hash + Eq + Clone>(gate: &SharedGate<K>, keys: Vec<K>) -> Vec<K> {
    if let Ok(mut g) = gate.lock() {
        for k in &keys {
            g.changed(k);
        }
    }
    keys
}

/// Frees a resync slot when the reconcile holding it ends, however it ends (cancelled at
/// shutdown included).
pub struct ResyncSlot<K: Hash + Eq + Clone> {
    gate: SharedGate<K>,
    key: K,
    epoch: u64,
    resync: bool,
    succeeded: bool,
    gone: bool,
}

impl<K: Hash + Eq + Clone> ResyncSlot<K> {
    pub fn new(gate: SharedGate<K>, key: K, epoch: u64, resync: bool) -> Self {
        ResyncSlot {
            gate,
            key,
            epoch,
            resync,
            succeeded: false,
            gone: false,
        }
    }

    /// How the reconcile ended (without this, as a failure: the next one is not capped).
    pub fn finish(&mut self, succeeded: bool, gone: bool) {
        self.succeeded = succeeded;
        self.gone = gone;
    }
}

impl<K: Hash + Eq + Clone> Drop for ResyncSlot<K> {
    fn drop(&mut self) {
        if let Ok(mut g) = self.gate.lock() {
            g.end(
                &self.key,
                self.epoch,
                self.succeeded,
                self.resync,
                self.gone,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESYNC: Duration = Duration::from_secs(20);

    /// `n` bindings reconciled once, successfully, and left alone: their next reconciles are
    /// resyncs.
    fn synced(gate: &mut ResyncGate<u32>, n: u32) {
        for k in 0..n {
            let (a, epoch) = gate.begin(&k, 0.5);
            assert_eq!(a, Admission::Change, "first reconcile of {k}");
            gate.end(&k, epoch, true, false, false);
        }
    }

    #[test]
    fn resyncs_hold_at_most_half_the_workers_and_changes_always_go() {
        let mut gate = ResyncGate::new(16, RESYNC);
        assert_eq!(gate.cap(), 8);
        synced(&mut gate, 1000);
        // 1,000 resyncs due at once: 8 run, the rest are deferred.
        let mut admitted = 0;
        let mut deferred = 0;
        for k in 0..1000 {
            match gate.begin(&k, 0.5).0 {
                Admission::Resync => admitted += 1,
                Admission::Defer(d) => {
                    deferred += 1;
                    assert_eq!(d, Duration::from_secs(1));
                }
                Admission::Change => panic!("{k} is a resync"),
            }
        }
        assert_eq!((admitted, deferred), (8, 992));
        assert_eq!(gate.running(), 8);
        // A new binding, and a changed one, are not held back by the resyncs.
        assert_eq!(gate.begin(&5000, 0.5).0, Admission::Change);
        gate.changed(&999);
        assert_eq!(gate.begin(&999, 0.5).0, Admission::Change);
        // A resync that ends frees its slot for the next.
        gate.end(&0, 0, true, true, false);
        assert_eq!(gate.running(), 7);
        assert_eq!(gate.begin(&998, 0.5).0, Admission::Resync);
    }

    #[test]
    fn a_change_during_a_reconcile_makes_the_next_one_a_change() {
        let mut gate = ResyncGate::new(2, RESYNC);
        synced(&mut gate, 2);
        let (a, epoch) = gate.begin(&0, 0.5);
        assert_eq!(a, Admission::Resync);
        gate.changed(&0); // e.g. its ServiceAccount was created mid-reconcile
        gate.end(&0, epoch, true, true, false);
        // 1 holds the only slot, so a resync of 0 would be deferred; a change is not
        assert_eq!(gate.begin(&1, 0.5).0, Admission::Resync);
        assert_eq!(gate.begin(&0, 0.5).0, Admission::Change);
    }

    #[test]
    fn a_failed_reconciles_retry_is_not_capped_and_deleted_bindings_are_forgotten() {
        let mut gate = ResyncGate::new(1, RESYNC);
        synced(&mut gate, 2);
        assert_eq!(gate.begin(&0, 0.5).0, Admission::Resync);
        let (_, epoch) = gate.begin(&1, 0.5);
        gate.end(&1, epoch, false, false, false);
        assert_eq!(gate.begin(&1, 0.5).0, Admission::Change);
        gate.end(&1, epoch, true, false, true);
        assert!(!gate.entries.contains_key(&1));
    }

    #[test]
    fn deferrals_are_jittered_around_a_twentieth_of_the_period() {
        let mut gate = ResyncGate::new(1, Duration::from_secs(600));
        synced(&mut gate, 2);
        assert_eq!(gate.begin(&0, 0.0).0, Admission::Resync);
        assert_eq!(
            gate.begin(&1, 0.0).0,
            Admission::Defer(Duration::from_secs(15))
        );
        assert_eq!(
            gate.begin(&1, 0.999).0,
            Admission::Defer(Duration::from_secs(30).mul_f64(1.499))
        );
        // a single worker still resyncs (cap 1), and short periods defer by at least 1 s
        assert_eq!(ResyncGate::<u32>::new(1, RESYNC).cap(), 1);
        let mut short = ResyncGate::new(1, Duration::from_secs(5));
        synced(&mut short, 2);
        short.begin(&0, 0.5);
        assert_eq!(
            short.begin(&1, 0.5).0,
            Admission::Defer(Duration::from_secs(1))
        );
    }

    #[test]
    fn a_dropped_slot_frees_its_resync() {
        let gate: SharedGate<u32> = Arc::new(Mutex::new(ResyncGate::new(2, RESYNC)));
        synced(&mut gate.lock().unwrap(), 1);
        let (a, epoch) = gate.lock().unwrap().begin(&0, 0.5);
        assert_eq!(a, Admission::Resync);
        let slot = ResyncSlot::new(gate.clone(), 0, epoch, true);
        assert_eq!(gate.lock().unwrap().running(), 1);
        drop(slot); // cancelled, never finished
        assert_eq!(gate.lock().unwrap().running(), 0);
        // unfinished counts as failed: the next reconcile is not capped
        assert_eq!(gate.lock().unwrap().begin(&0, 0.5).0, Admission::Change);
        assert_eq!(mark_changed(&gate, vec![7, 8]), vec![7, 8]);
        assert_eq!(gate.lock().unwrap().entries[&7].epoch, 1);
    }
}
