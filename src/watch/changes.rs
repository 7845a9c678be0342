//! [`SpecChanges`]: from a watch's events, the objects whose spec changed, for watches whose
//! objects concern others (the bindings a guardrail selects or that name an account) — not
//! every write. A status write (the controller's own among them) changes no spec; passed on,
//! it would re-queue every binding the object concerns, and each of those reads IAM.

use std::collections::{HashMap, HashSet};

use futures::{Stream, TryStreamExt};
use kube::ResourceExt;
use kube::runtime::watcher::{self, Event};

type Key = (Option<String>, String);

/// Tells the objects of a watch whose spec changed from those merely written: by uid (an
/// object deleted and made again under its name is new) and generation (the API server bumps
/// it on every spec change).
pub struct SpecChanges<K> {
    /// The last object seen under each (namespace, name): what a deletion that only a relist
    /// shows passes on.
    seen: HashMap<Key, K>,
    /// The keys a relist in progress has shown so far.
    relisted: Option<HashSet<Key>>,
}

impl<K> Default for SpecChanges<K> {
    fn default() -> Self {
        SpecChanges {
            seen: HashMap::new(),
            relisted: None,
        }
    }
}

impl<K: ResourceExt + Clone> SpecChanges<K> {
    /// The objects of one watch event that are new, whose spec changed, or that are gone:
    /// deleted, or missing from a relist (deleted while the watch was down).
    pub fn objects(&mut self, event: Event<K>) -> Vec<K> {
        match event {
            Event::Init => {
                self.relisted = Some(HashSet::new());
                Vec::new()
            }
            Event::InitApply(k) => {
                if let Some(relisted) = &mut self.relisted {
                    relisted.insert(key(&k));
                }
                self.applied(k)
            }
            Event::InitDone => match self.relisted.take() {
                Some(relisted) => {
                    let gone: Vec<_> = (self.seen.keys())
                        .filter(|k| !relisted.contains(*k))
                        .cloned()
                        .collect();
                    gone.iter().filter_map(|k| self.seen.remove(k)).collect()
                }
                None => Vec::new(),
            },
            Event::Apply(k) => self.applied(k),
            Event::Delete(k) => {
                self.seen.remove(&key(&k));
                vec![k]
            }
        }
    }

    fn applied(&mut self, k: K) -> Vec<K> {
        let same_spec = self.seen.get(&key(&k)).is_some_and(|before| {
            before.meta().uid == k.meta().uid && before.meta().generation == k.meta().generation
        });
        self.seen.insert(key(&k), k.clone());
        if same_spec { Vec::new() } else { vec![k] }
    }
}

fn key<K: ResourceExt>(k: &K) -> Key {
    (k.namespace(), k.name_any())
}

/// A watch's events (after the reflector) as the objects [`SpecChanges`] passes on.
pub fn spec_changes<K, S>(events: S) -> impl Stream<Item = Result<K, watcher::Error>> + Send
where
    K: ResourceExt + Clone + Send + 'static,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send,
{
    let mut changes = SpecChanges::default();
    events
        .map_ok(move |event| futures::stream::iter(changes.objects(event).into_iter().map(Ok)))
        .try_flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::IAMAccount;
    use serde_json::json;

    fn account(name: &str, uid: &str, generation: i64, ready: &str) -> IAMAccount {
        serde_json::from_value(json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMAccount",
            "metadata": {"name": name, "uid": uid, "generation": generation},
            "spec": {"accountId": "222222222222",
                     "assumeRole": {"roleArn": "arn:aws:iam::222222222222:role/hatrack"},
                     "namespaceSelector": {}},
            "status": {"observedGeneration": generation, "conditions": [
                {"type": "Ready", "status": ready, "reason": "r", "message": "m",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        }))
        .unwrap()
    }

    fn names<K: ResourceExt>(objects: Vec<K>) -> Vec<String> {
        objects.iter().map(|k| k.name_any()).collect()
    }

    #[test]
    fn status_writes_pass_nothing_spec_changes_and_deletions_pass() {
        let mut changes = SpecChanges::<IAMAccount>::default();
        // The first list: every object is new.
        assert!(names(changes.objects(Event::Init)).is_empty());
        let a = account("a", "u-a", 1, "False");
        assert_eq!(names(changes.objects(Event::InitApply(a))), ["a"]);
        assert!(names(changes.objects(Event::InitDone)).is_empty());
        // Its status written (the controller's own write): nothing.
        let written = account("a", "u-a", 1, "True");
        assert!(changes.objects(Event::Apply(written)).is_empty());
        // Its spec changed: passed.
        let edited = account("a", "u-a", 2, "True");
        assert_eq!(names(changes.objects(Event::Apply(edited))), ["a"]);
        // Deleted: passed; made again under the same name: new.
        let gone = account("a", "u-a", 2, "True");
        assert_eq!(names(changes.objects(Event::Delete(gone))), ["a"]);
        let again = account("a", "u-a2", 1, "False");
        assert_eq!(names(changes.objects(Event::Apply(again))), ["a"]);
        // Deleted and made again while the watch was down: new too (another uid).
        let mut down = SpecChanges::<IAMAccount>::default();
        down.objects(Event::Apply(account("b", "u-b", 1, "True")));
        let remade = account("b", "u-b2", 1, "False");
        assert_eq!(names(down.objects(Event::Apply(remade))), ["b"]);
    }

    #[test]
    fn a_relist_passes_only_what_changed_or_went_while_the_watch_was_down() {
        let mut changes = SpecChanges::<IAMAccount>::default();
        for name in ["kept", "edited", "deleted"] {
            changes.objects(Event::Apply(account(name, name, 1, "True")));
        }
        assert!(changes.objects(Event::Init).is_empty());
        let kept = account("kept", "kept", 1, "False");
        assert!(changes.objects(Event::InitApply(kept)).is_empty());
        let edited = account("edited", "edited", 2, "True");
        assert_eq!(names(changes.objects(Event::InitApply(edited))), ["edited"]);
        assert_eq!(names(changes.objects(Event::InitDone)), ["deleted"]);
        // Gone for good: a later object of that name is new.
        let back = account("deleted", "deleted", 1, "True");
        assert_eq!(names(changes.objects(Event::Apply(back))), ["deleted"]);
    }
}
