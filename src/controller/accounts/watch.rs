//! The IAMAccount watch as the controller takes it: cached in full, and passing on only the
//! accounts whose spec may have changed. Bindings naming an account and its credentials
//! check depend on its spec; its status writes (the controller's own among them) must not
//! requeue them or check it again.

use std::collections::{HashMap, HashSet};

use futures::{Stream, TryStreamExt};
use kube::ResourceExt;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_api};

use crate::crd::IAMAccount;

/// IAMAccounts, cached in `writer`; yields each account that is new, whose spec changed, or
/// that is gone (deleted, or missing from a relist after the watch was down).
pub fn spec_changes(
    client: kube::Client,
    writer: Writer<IAMAccount>,
) -> impl Stream<Item = Result<IAMAccount, watcher::Error>> + Send {
    let mut changes = SpecChanges::default();
    watch_api(
        kube::Api::<IAMAccount>::all(client),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(|a: &mut IAMAccount| a.metadata.managed_fields = None)
    .reflect(writer)
    .map_ok(move |event| futures::stream::iter(changes.accounts(event).into_iter().map(Ok)))
    .try_flatten()
}

/// What the watch has passed on, to tell a spec change from a status write. Keyed by name,
/// compared by uid and generation (an account deleted and made again is new).
#[derive(Default)]
pub struct SpecChanges {
    seen: HashMap<String, IAMAccount>,
    /// The names a relist in progress has shown so far.
    relisted: Option<HashSet<String>>,
}

impl SpecChanges {
    /// The accounts of one watch event whose spec may have changed.
    pub fn accounts(&mut self, event: Event<IAMAccount>) -> Vec<IAMAccount> {
        match event {
            Event::Init => {
                self.relisted = Some(HashSet::new());
                Vec::new()
            }
            Event::InitApply(a) => {
                if let Some(relisted) = &mut self.relisted {
                    relisted.insert(a.name_any());
                }
                self.applied(a)
            }
            // Accounts a relist no longer shows were deleted while the watch was down.
            Event::InitDone => match self.relisted.take() {
                Some(relisted) => {
                    let gone: Vec<String> = (self.seen.keys())
                        .filter(|name| !relisted.contains(*name))
                        .cloned()
                        .collect();
                    gone.iter().filter_map(|n| self.seen.remove(n)).collect()
                }
                None => Vec::new(),
            },
            Event::Apply(a) => self.applied(a),
            Event::Delete(a) => {
                self.seen.remove(&a.name_any());
                vec![a]
            }
        }
    }

    fn applied(&mut self, a: IAMAccount) -> Vec<IAMAccount> {
        let same_spec = self.seen.get(&a.name_any()).is_some_and(|before| {
            before.metadata.uid == a.metadata.uid
                && before.metadata.generation == a.metadata.generation
        });
        self.seen.insert(a.name_any(), a.clone());
        if same_spec { Vec::new() } else { vec![a] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn names(accounts: Vec<IAMAccount>) -> Vec<String> {
        accounts.iter().map(|a| a.name_any()).collect()
    }

    #[test]
    fn status_writes_pass_nothing_spec_changes_and_deletions_pass() {
        let mut changes = SpecChanges::default();
        // The first list: every account is new.
        assert!(names(changes.accounts(Event::Init)).is_empty());
        let a = account("a", "u-a", 1, "False");
        assert_eq!(names(changes.accounts(Event::InitApply(a))), ["a"]);
        assert!(names(changes.accounts(Event::InitDone)).is_empty());
        // Its status written (the controller's own write): nothing.
        let written = account("a", "u-a", 1, "True");
        assert!(changes.accounts(Event::Apply(written)).is_empty());
        // Its spec changed: passed.
        let edited = account("a", "u-a", 2, "True");
        assert_eq!(names(changes.accounts(Event::Apply(edited))), ["a"]);
        // Deleted: passed; made again under the same name: new.
        let gone = account("a", "u-a", 2, "True");
        assert_eq!(names(changes.accounts(Event::Delete(gone))), ["a"]);
        let again = account("a", "u-a2", 1, "False");
        assert_eq!(names(changes.accounts(Event::Apply(again))), ["a"]);
        // Deleted and made again while the watch was down: new too (another uid).
        let mut down = SpecChanges::default();
        down.accounts(Event::Apply(account("b", "u-b", 1, "True")));
        let remade = account("b", "u-b2", 1, "False");
        assert_eq!(names(down.accounts(Event::Apply(remade))), ["b"]);
    }

    #[test]
    fn a_relist_passes_only_what_changed_or_went_while_the_watch_was_down() {
        let mut changes = SpecChanges::default();
        for name in ["kept", "edited", "deleted"] {
            changes.accounts(Event::Apply(account(name, name, 1, "True")));
        }
        assert!(changes.accounts(Event::Init).is_empty());
        let kept = account("kept", "kept", 1, "False");
        assert!(changes.accounts(Event::InitApply(kept)).is_empty());
        let edited = account("edited", "edited", 2, "True");
        assert_eq!(
            names(changes.accounts(Event::InitApply(edited))),
            ["edited"]
        );
        assert_eq!(names(changes.accounts(Event::InitDone)), ["deleted"]);
        // Gone for good: a later account of that name is new.
        let back = account("deleted", "deleted", 1, "True");
        assert_eq!(names(changes.accounts(Event::Apply(back))), ["deleted"]);
    }
}
