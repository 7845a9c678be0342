//! ServiceAccount names by namespace, kept in step with the ServiceAccounts' watch, so that a
//! reconcile looks at its own namespace's ServiceAccounts instead of every cached one in the
//! cluster.

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

use kube::ResourceExt;
use kube::runtime::watcher;

/// Object names by namespace.
#[derive(Debug, Default)]
pub struct NamespaceIndex {
    by_namespace: HashMap<String, BTreeSet<String>>,
}

impl NamespaceIndex {
    fn insert(&mut self, namespace: String, name: String) {
        self.by_namespace.entry(namespace).or_default().insert(name);
    }

    fn remove(&mut self, namespace: &str, name: &str) {
        if let Some(names) = self.by_namespace.get_mut(namespace) {
            names.remove(name);
            if names.is_empty() {
                self.by_namespace.remove(namespace);
            }
        }
    }

    /// The names known in `namespace`.
    pub fn names(&self, namespace: &str) -> Vec<String> {
        self.by_namespace
            .get(namespace)
            .map(|n| n.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Applies watch events to a [`NamespaceIndex`]; a re-list builds a fresh index and swaps it in
/// when complete, as the reflector does with its store.
#[derive(Debug, Default)]
pub struct NamespaceIndexWriter {
    relisting: Option<NamespaceIndex>,
}

impl NamespaceIndexWriter {
    pub fn apply<K: kube::Resource>(
        &mut self,
        index: &RwLock<NamespaceIndex>,
        event: &watcher::Event<K>,
    ) {
        use watcher::Event;
        let key = |o: &K| (o.namespace().unwrap_or_default(), o.name_any());
        match event {
            Event::Init => self.relisting = Some(NamespaceIndex::default()),
            Event::InitApply(o) => {
                if let Some(fresh) = self.relisting.as_mut() {
                    let (ns, name) = key(o);
                    fresh.insert(ns, name);
                }
            }
            Event::InitDone => {
                if let (Some(fresh), Ok(mut live)) = (self.relisting.take(), index.write()) {
                    *live = fresh;
                }
            }
            Event::Apply(o) => {
                if let Ok(mut live) = index.write() {
                    let (ns, name) = key(o);
                    live.insert(ns, name);
                }
            }
            Event::Delete(o) => {
                if let Ok(mut live) = index.write() {
                    let (ns, name) = key(o);
                    live.remove(&ns, &name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use kube::api::ObjectMeta;

    fn sa(ns: &str, name: &str) -> ServiceAccount {
        ServiceAccount {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn follows_applies_deletes_and_swaps_in_a_relist_when_complete() {
        use watcher::Event;
        let index = RwLock::new(NamespaceIndex::default());
        let mut w = NamespaceIndexWriter::default();
        w.apply(&index, &Event::Apply(sa("a", "api")));
        w.apply(&index, &Event::Apply(sa("a", "web")));
        w.apply(&index, &Event::Apply(sa("b", "api")));
        w.apply(&index, &Event::Delete(sa("a", "web")));
        assert_eq!(index.read().unwrap().names("a"), ["api"]);
        assert_eq!(index.read().unwrap().names("b"), ["api"]);
        w.apply(&index, &Event::<ServiceAccount>::Init);
        w.apply(&index, &Event::InitApply(sa("a", "db")));
        // Until the relist is complete, the old index answers.
        assert_eq!(index.read().unwrap().names("a"), ["api"]);
        w.apply(&index, &Event::<ServiceAccount>::InitDone);
        assert_eq!(index.read().unwrap().names("a"), ["db"]);
        assert!(index.read().unwrap().names("b").is_empty());
    }
}
