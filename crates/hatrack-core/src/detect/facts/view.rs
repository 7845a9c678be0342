//! What hatrack can see of the cluster when it judges a workload: the facts of the Secrets and
//! ConfigMaps it references, looked up by namespace and name, and the namespaces' mode labels.

use std::collections::HashMap;
use std::sync::Arc;

use super::super::policy::Mode;
use super::{ObjectFacts, RefKind};

/// What is known of a referenced object.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Lookups are off: the reference is judged by env names only, silently.
    Disabled,
    /// Lookups are on but the object is not known (does not exist yet, or was not in the
    /// input): judged by names, with a warning.
    Missing,
    /// The object's facts.
    Found(Arc<ObjectFacts>),
}

/// What hatrack can see of the cluster: referenced Secrets and ConfigMaps, and the mode
/// label of namespaces. Implemented by the webhook's watch caches, by an in-memory view of
/// manifests (`hatrack check`, tests), and by [`NoLookups`].
pub trait ReferenceView: Send + Sync {
    fn lookup(&self, kind: RefKind, namespace: &str, name: &str) -> Lookup;

    /// The mode set by the namespace's `hatrack.dev/static-keys` label, if any.
    fn namespace_mode(&self, _namespace: &str) -> Option<Mode> {
        None
    }

    /// Whether the view has what it needs to answer (a watch cache has listed everything).
    fn ready(&self) -> bool {
        true
    }

    /// Whether an object missing from the view may still exist: `check` sees only its input,
    /// the webhook's synced watch caches see the whole cluster. An optional reference to a
    /// missing object sets nothing in the cluster, but is only known to set nothing when the
    /// view is not partial; otherwise it gets a warning.
    fn partial(&self) -> bool {
        false
    }

    /// The StaticKeyExemption covering the workload at `now`, and whether it is still active
    /// (the webhook's watch cache; `check` applies the exemptions of its input itself).
    fn exemption(
        &self,
        _kind: &str,
        _namespace: &str,
        _name: &str,
        _now: jiff::Timestamp,
    ) -> Option<(crate::exemption::Exemption, crate::exemption::State)> {
        None
    }

    /// How many StaticKeyExemptions the view holds that are active and expired at `now`
    /// (`None` when it does not watch them).
    fn exemption_counts(&self, _now: jiff::Timestamp) -> Option<(usize, usize)> {
        None
    }
}

/// A view that answers as an inner one except where it says otherwise (the webhook's system
/// namespaces change the mode, the audit records what is looked up). Implement `inner` and
/// the answers that change; [`ReferenceView`] comes with every other method forwarded, so a
/// method added to it later cannot be left to its default and hide the inner view's answer
/// (exemptions were lost this way once).
pub trait Overlay: Send + Sync {
    fn inner(&self) -> &dyn ReferenceView;

    fn lookup(&self, kind: RefKind, namespace: &str, name: &str) -> Lookup {
        self.inner().lookup(kind, namespace, name)
    }

    fn namespace_mode(&self, namespace: &str) -> Option<Mode> {
        self.inner().namespace_mode(namespace)
    }
}

/// One lookup a [`Recording`] saw: what was asked and what the inner view answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub kind: RefKind,
    pub namespace: String,
    pub name: String,
    pub answer: Lookup,
}

/// A view that answers as an inner one and remembers every lookup and its answer: what a
/// judgement depended on (the audit), or what the inner view lacked (the webhook's live
/// lookups).
pub struct Recording<'a> {
    inner: &'a dyn ReferenceView,
    seen: std::sync::Mutex<Vec<Recorded>>,
}

impl<'a> Recording<'a> {
    pub fn new(inner: &'a dyn ReferenceView) -> Self {
        Recording {
            inner,
            seen: Default::default(),
        }
    }

    /// Every lookup, in the order made (repeats included).
    pub fn into_records(self) -> Vec<Recorded> {
        self.seen.into_inner().unwrap_or_default()
    }
}

impl Overlay for Recording<'_> {
    fn inner(&self) -> &dyn ReferenceView {
        self.inner
    }

    fn lookup(&self, kind: RefKind, namespace: &str, name: &str) -> Lookup {
        let answer = self.inner.lookup(kind, namespace, name);
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(Recorded {
                kind,
                namespace: namespace.to_string(),
                name: name.to_string(),
                answer: answer.clone(),
            });
        }
        answer
    }
}

impl<T: Overlay> ReferenceView for T {
    fn lookup(&self, kind: RefKind, namespace: &str, name: &str) -> Lookup {
        Overlay::lookup(self, kind, namespace, name)
    }

    fn namespace_mode(&self, namespace: &str) -> Option<Mode> {
        Overlay::namespace_mode(self, namespace)
    }

    fn ready(&self) -> bool {
        self.inner().ready()
    }

    fn partial(&self) -> bool {
        self.inner().partial()
    }

    fn exemption(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        now: jiff::Timestamp,
    ) -> Option<(crate::exemption::Exemption, crate::exemption::State)> {
        self.inner().exemption(kind, namespace, name, now)
    }

    fn exemption_counts(&self, now: jiff::Timestamp) -> Option<(usize, usize)> {
        self.inner().exemption_counts(now)
    }
}

/// No Kubernetes API access at all (`--lookups off`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLookups;

impl ReferenceView for NoLookups {
    fn lookup(&self, _kind: RefKind, _namespace: &str, _name: &str) -> Lookup {
        Lookup::Disabled
    }
}

/// Facts of Secrets and ConfigMaps by namespace and name. Lookups borrow `&str` keys (no
/// allocation per lookup). Used by [`InMemoryView`] and the webhook's watch cache.
#[derive(Debug, Clone, Default)]
pub struct FactsIndex {
    secrets: HashMap<String, HashMap<String, Arc<ObjectFacts>>>,
    configmaps: HashMap<String, HashMap<String, Arc<ObjectFacts>>>,
}

impl FactsIndex {
    fn map(&self, kind: RefKind) -> &HashMap<String, HashMap<String, Arc<ObjectFacts>>> {
        match kind {
            RefKind::Secret => &self.secrets,
            RefKind::ConfigMap => &self.configmaps,
        }
    }

    fn map_mut(
        &mut self,
        kind: RefKind,
    ) -> &mut HashMap<String, HashMap<String, Arc<ObjectFacts>>> {
        match kind {
            RefKind::Secret => &mut self.secrets,
            RefKind::ConfigMap => &mut self.configmaps,
        }
    }

    pub fn get(&self, kind: RefKind, namespace: &str, name: &str) -> Option<&Arc<ObjectFacts>> {
        self.map(kind).get(namespace)?.get(name)
    }

    pub fn insert(&mut self, kind: RefKind, namespace: &str, name: &str, facts: Arc<ObjectFacts>) {
        self.map_mut(kind)
            .entry(namespace.to_string())
            .or_default()
            .insert(name.to_string(), facts);
    }

    pub fn remove(&mut self, kind: RefKind, namespace: &str, name: &str) {
        let map = self.map_mut(kind);
        if let Some(names) = map.get_mut(namespace) {
            names.remove(name);
            if names.is_empty() {
                map.remove(namespace);
            }
        }
    }

    /// Replaces every object of `kind` with those of `other` (after a watch re-list).
    pub fn replace_kind(&mut self, kind: RefKind, other: FactsIndex) {
        let mut other = other;
        *self.map_mut(kind) = std::mem::take(other.map_mut(kind));
    }

    pub fn len(&self, kind: RefKind) -> usize {
        self.map(kind).values().map(HashMap::len).sum()
    }
}

/// An in-memory view, filled from manifests or by tests.
#[derive(Debug, Clone, Default)]
pub struct InMemoryView {
    objects: FactsIndex,
    modes: HashMap<String, Mode>,
    partial: bool,
}

impl InMemoryView {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, kind: RefKind, namespace: &str, name: &str, facts: ObjectFacts) {
        self.objects.insert(kind, namespace, name, Arc::new(facts));
    }

    /// Marks the view as partial (manifests given to `check`: what is not in them may exist)
    /// or as the whole cluster (the default).
    pub fn set_partial(&mut self, partial: bool) {
        self.partial = partial;
    }

    pub fn set_namespace_mode(&mut self, namespace: &str, mode: Mode) {
        self.modes.insert(namespace.into(), mode);
    }

    /// Number of Secrets and ConfigMaps known.
    pub fn len(&self) -> usize {
        self.objects.len(RefKind::Secret) + self.objects.len(RefKind::ConfigMap)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ReferenceView for InMemoryView {
    fn lookup(&self, kind: RefKind, namespace: &str, name: &str) -> Lookup {
        match self.objects.get(kind, namespace, name) {
            Some(facts) => Lookup::Found(facts.clone()),
            None => Lookup::Missing,
        }
    }

    fn namespace_mode(&self, namespace: &str) -> Option<Mode> {
        self.modes.get(namespace).copied()
    }

    fn partial(&self) -> bool {
        self.partial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_view_reports_missing_objects() {
        let mut view = InMemoryView::new();
        view.insert(RefKind::Secret, "ns", "a", ObjectFacts::default());
        assert!(matches!(
            view.lookup(RefKind::Secret, "ns", "a"),
            Lookup::Found(_)
        ));
        assert!(matches!(
            view.lookup(RefKind::ConfigMap, "ns", "a"),
            Lookup::Missing
        ));
        assert!(matches!(
            NoLookups.lookup(RefKind::Secret, "ns", "a"),
            Lookup::Disabled
        ));
    }

    /// A view whose every answer differs from the trait's defaults.
    struct Unusual;
    impl ReferenceView for Unusual {
        fn lookup(&self, _: RefKind, _: &str, _: &str) -> Lookup {
            Lookup::Missing
        }
        fn namespace_mode(&self, _: &str) -> Option<Mode> {
            Some(Mode::Audit)
        }
        fn ready(&self) -> bool {
            false
        }
        fn partial(&self) -> bool {
            true
        }
        fn exemption_counts(&self, _: jiff::Timestamp) -> Option<(usize, usize)> {
            Some((2, 1))
        }
    }

    /// Changes the namespaces' mode only.
    struct Enforcing(Unusual);
    impl Overlay for Enforcing {
        fn inner(&self) -> &dyn ReferenceView {
            &self.0
        }
        fn namespace_mode(&self, _: &str) -> Option<Mode> {
            Some(Mode::Enforce)
        }
    }

    #[test]
    fn an_overlay_forwards_every_answer_it_does_not_change() {
        let view: &dyn ReferenceView = &Enforcing(Unusual);
        assert_eq!(view.namespace_mode("ns"), Some(Mode::Enforce));
        assert!(matches!(
            view.lookup(RefKind::Secret, "ns", "a"),
            Lookup::Missing
        ));
        assert!(!view.ready());
        assert!(view.partial());
        assert_eq!(
            view.exemption_counts(jiff::Timestamp::UNIX_EPOCH),
            Some((2, 1))
        );
    }
}
