//! Watch plumbing shared by the controller and the webhook: what each watch keeps of an
//! object (so the caches hold only what hatrack reads), and [`Relist`], which keeps an index
//! of our own in step with a watch.

use std::sync::RwLock;

use futures::Stream;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::runtime::reflector::store::Writer;
use kube::runtime::{WatchStreamExt, watcher};

use crate::crd::IAMGuardrail;

mod changes;
pub use changes::{SpecChanges, spec_changes};

/// Namespaces, cached in `writer` with their name and labels only (labels decide which
/// guardrails apply); yields every namespace added or changed.
pub fn namespace_labels(
    client: kube::Client,
    writer: Writer<Namespace>,
) -> impl Stream<Item = Result<Namespace, watcher::Error>> + Send {
    watcher(
        Api::<Namespace>::all(client),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(|ns: &mut Namespace| {
        ns.metadata.managed_fields = None;
        ns.metadata.annotations = None;
        ns.spec = None;
        ns.status = None;
    })
    .reflect(writer)
    .applied_objects()
}

/// IAMGuardrails, cached in `writer`; yields the watch's events (the webhook only caches
/// them; the controller takes their spec changes: [`spec_changes`]).
pub fn guardrails(
    client: kube::Client,
    writer: Writer<IAMGuardrail>,
) -> impl Stream<Item = Result<watcher::Event<IAMGuardrail>, watcher::Error>> + Send {
    watcher(
        Api::<IAMGuardrail>::all(client),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(|g: &mut IAMGuardrail| g.metadata.managed_fields = None)
    // Shared so that a writer from `reflector::store_shared` hands each change to its
    // subscribers too (the guardrail status controller); a plain writer has none.
    .reflect_shared(writer)
}

/// An index kept from a watch of `K`: objects go in and out one at a time.
pub trait WatchIndex<K>: Default {
    fn upsert(&mut self, obj: &K);
    fn remove(&mut self, obj: &K);
    /// Takes `fresh`, the index a complete re-list built, in place of what it holds.
    fn replace(&mut self, fresh: Self) {
        *self = fresh;
    }
}

/// Follows a watch into a live index: single changes go straight in; a (re-)list is built
/// apart and swapped in whole when complete (as kube's reflector does with its store), so a
/// reader never sees a half-listed index, nor objects deleted while the watch was away.
#[derive(Debug)]
pub struct Relist<I> {
    fresh: Option<I>,
}

impl<I> Default for Relist<I> {
    fn default() -> Self {
        Relist { fresh: None }
    }
}

impl<I> Relist<I> {
    /// Applies one event to `live`; `true` when a list was just swapped in.
    pub fn apply<K>(&mut self, live: &RwLock<I>, event: &watcher::Event<K>) -> bool
    where
        I: WatchIndex<K>,
    {
        use watcher::Event;
        // A poisoned lock (a writer panicked) leaves the index as it was; the next list mends it.
        match event {
            Event::Init => self.fresh = Some(I::default()),
            Event::InitApply(o) => self.fresh.get_or_insert_with(I::default).upsert(o),
            Event::InitDone => {
                let fresh = self.fresh.take().unwrap_or_default();
                if let Ok(mut live) = live.write() {
                    live.replace(fresh);
                    return true;
                }
            }
            Event::Apply(o) => {
                if let Ok(mut live) = live.write() {
                    live.upsert(o);
                }
            }
            Event::Delete(o) => {
                if let Ok(mut live) = live.write() {
                    live.remove(o);
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use watcher::Event;

    impl WatchIndex<&'static str> for BTreeSet<&'static str> {
        fn upsert(&mut self, o: &&'static str) {
            self.insert(o);
        }
        fn remove(&mut self, o: &&'static str) {
            BTreeSet::remove(self, o);
        }
    }

    #[test]
    fn a_relist_is_swapped_in_whole_when_complete() {
        let live = RwLock::new(BTreeSet::new());
        let mut relist = Relist::default();
        assert!(!relist.apply(&live, &Event::Apply("gone")));
        assert!(!relist.apply(&live, &Event::Apply("kept")));
        relist.apply(&live, &Event::Delete("kept"));
        relist.apply(&live, &Event::Init);
        relist.apply(&live, &Event::InitApply("kept"));
        relist.apply(&live, &Event::InitApply("new"));
        // Until the list is complete, the old index answers.
        assert_eq!(*live.read().unwrap(), BTreeSet::from(["gone"]));
        assert!(relist.apply(&live, &Event::InitDone));
        assert_eq!(*live.read().unwrap(), BTreeSet::from(["kept", "new"]));
    }
}
