//! Watch caches of Secrets, ConfigMaps and Namespace labels that keep only derived facts:
//! each Secret or ConfigMap is classified as it arrives ([`detect::classify_data`]) and the
//! object, with its values, is dropped at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

use crate::crd::StaticKeyExemption;
use crate::detect::{
    self, FactsIndex, Lookup, MODE_LABEL, Mode, ObjectFacts, RefKind, ReferenceView,
};
use crate::exemption::{self, Exemption};
use crate::watch::{Relist, WatchIndex};

/// Secrets and ConfigMaps listed per request when the caches fill (docs/webhook.md, "Slow and
/// hostile clients": memory at startup).
pub const OBJECT_PAGE_SIZE: u32 = 10;

/// The cluster as the webhook sees it: facts of Secrets and ConfigMaps, namespace modes.
#[derive(Debug)]
pub struct WatchCache {
    objects: RwLock<FactsIndex>,
    /// Namespace names and labels (the mode label), shared with the binding cache.
    namespaces: Store<Namespace>,
    /// StaticKeyExemptions by name (a handful; their watch does not gate readiness, so a
    /// cluster without the CRD still admits).
    exemptions: RwLock<HashMap<String, Exemption>>,
    secrets_synced: AtomicBool,
    configmaps_synced: AtomicBool,
}

impl Default for WatchCache {
    /// A cache that no watch fills: namespace modes stay unknown.
    fn default() -> Self {
        Self::with_namespaces(reflector::store().0)
    }
}

/// A Secret or ConfigMap, as the cache keeps it: its facts.
pub trait FactsSource: kube::Resource {
    const KIND: RefKind;
    fn facts(&self) -> ObjectFacts;
}

impl FactsSource for Secret {
    const KIND: RefKind = RefKind::Secret;
    fn facts(&self) -> ObjectFacts {
        secret_facts(self)
    }
}

impl FactsSource for ConfigMap {
    const KIND: RefKind = RefKind::ConfigMap;
    fn facts(&self) -> ObjectFacts {
        configmap_facts(self)
    }
}

fn key<K: kube::Resource>(o: &K) -> (&str, &str) {
    (
        o.meta().namespace.as_deref().unwrap_or_default(),
        o.meta().name.as_deref().unwrap_or_default(),
    )
}

/// A watch of one kind fills its part of the index; a re-list replaces that part only.
impl<K: FactsSource> WatchIndex<K> for FactsIndex {
    fn upsert(&mut self, o: &K) {
        let (ns, name) = key(o);
        self.insert(K::KIND, ns, name, Arc::new(o.facts()));
    }
    fn remove(&mut self, o: &K) {
        let (ns, name) = key(o);
        FactsIndex::remove(self, K::KIND, ns, name);
    }
    fn replace(&mut self, fresh: Self) {
        self.replace_kind(K::KIND, fresh);
    }
}

impl WatchIndex<StaticKeyExemption> for HashMap<String, Exemption> {
    fn upsert(&mut self, e: &StaticKeyExemption) {
        let e = Exemption::from_resource(e);
        self.insert(e.name.clone(), e);
    }
    fn remove(&mut self, e: &StaticKeyExemption) {
        HashMap::remove(self, e.metadata.name.as_deref().unwrap_or_default());
    }
}

/// Facts of a Secret (values are already decoded by k8s-openapi).
pub fn secret_facts(secret: &Secret) -> ObjectFacts {
    let data = secret.data.iter().flatten();
    detect::classify_data(data.map(|(k, v)| (k.as_str(), v.0.as_slice())))
}

/// Facts of a ConfigMap (`data` and `binaryData`).
pub fn configmap_facts(cm: &ConfigMap) -> ObjectFacts {
    let data = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_bytes()));
    let binary = cm
        .binary_data
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.0.as_slice()));
    detect::classify_data(data.chain(binary))
}

/// The mode a Namespace's label asks for (an unknown value is logged and ignored).
pub fn namespace_mode(ns: &Namespace) -> Option<Mode> {
    match label_mode(ns)? {
        Ok(mode) => Some(mode),
        Err(e) => {
            tracing::warn!(namespace = ns.metadata.name.as_deref().unwrap_or(""), error = %e,
                "ignoring the namespace's {MODE_LABEL} label; the global mode applies");
            None
        }
    }
}

fn label_mode(ns: &Namespace) -> Option<Result<Mode, String>> {
    let value = ns.metadata.labels.as_ref()?.get(MODE_LABEL)?;
    Some(value.parse::<Mode>().map_err(|e| e.to_string()))
}

/// The webhook's one Namespace watch (names and labels), which both the reference cache and
/// the binding cache read; spawn the future. Bad mode labels are logged as they arrive.
pub fn namespace_watch(client: Client) -> (Store<Namespace>, impl Future<Output = ()> + Send) {
    let (store, writer) = reflector::store();
    let run = crate::watch::namespace_labels(client, writer).for_each(|ns| async move {
        match ns {
            Ok(ns) => {
                namespace_mode(&ns);
            }
            Err(e) => tracing::warn!(error = %e, "namespace watch error; retrying"),
        }
    });
    (store, run)
}

impl WatchCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty cache that reads namespace modes from `namespaces`.
    pub fn with_namespaces(namespaces: Store<Namespace>) -> Self {
        WatchCache {
            objects: RwLock::default(),
            namespaces,
            exemptions: RwLock::default(),
            secrets_synced: AtomicBool::new(false),
            configmaps_synced: AtomicBool::new(false),
        }
    }

    /// Starts watching with `client`, Namespaces included. The returned future runs the
    /// watches (forever, with backoff on errors); spawn it. Needs list/watch on Secrets,
    /// ConfigMaps and Namespaces.
    pub fn start(client: Client) -> (Arc<Self>, impl Future<Output = ()> + Send + 'static) {
        let (namespaces, namespace_watch) = namespace_watch(client.clone());
        let (cache, run) = Self::start_with(client, namespaces);
        (cache, async move {
            futures::join!(run, namespace_watch);
        })
    }

    /// Starts the Secret, ConfigMap and StaticKeyExemption watches; namespace modes come from
    /// `namespaces`, which another watch fills ([`namespace_watch`]).
    pub fn start_with(
        client: Client,
        namespaces: Store<Namespace>,
    ) -> (Arc<Self>, impl Future<Output = ()> + Send + 'static) {
        let cache = Arc::new(Self::with_namespaces(namespaces));
        // A page of Secrets or ConfigMaps is held whole while its objects are classified (the
        // response body, then the decoded objects): at up to 1 MiB each, a page of 100 would
        // be a memory spike that can kill a restarting pod (BENCHMARKS.md, "Secret cache").
        let objects = watcher::Config::default().page_size(OBJECT_PAGE_SIZE);
        let secrets = {
            let cache = cache.clone();
            let stream = watcher(Api::<Secret>::all(client.clone()), objects.clone());
            async move { cache.run_objects(stream).await }
        };
        let configmaps = {
            let cache = cache.clone();
            let stream = watcher(Api::<ConfigMap>::all(client.clone()), objects);
            async move { cache.run_objects(stream).await }
        };
        let exemptions = {
            let cache = cache.clone();
            let stream = watcher(
                Api::<StaticKeyExemption>::all(client),
                watcher::Config::default().page_size(100),
            );
            async move { cache.run_exemptions(stream).await }
        };
        let run = async move {
            futures::join!(secrets, configmaps, exemptions);
        };
        (cache, run)
    }

    fn synced_flag(&self, kind: RefKind) -> &AtomicBool {
        match kind {
            RefKind::Secret => &self.secrets_synced,
            RefKind::ConfigMap => &self.configmaps_synced,
        }
    }

    /// Applies one watch event of Secrets or ConfigMaps; `relist` collects a re-list.
    pub fn apply_object_event<K: FactsSource>(
        &self,
        event: &Event<K>,
        relist: &mut Relist<FactsIndex>,
    ) {
        if relist.apply(&self.objects, event) {
            let objects = self.objects.read().map(|i| i.len(K::KIND)).unwrap_or(0);
            tracing::info!(kind = K::KIND.as_str(), objects, "cache synced");
            self.synced_flag(K::KIND).store(true, Ordering::Release);
        }
    }

    /// Applies one watch event of StaticKeyExemptions; `relist` collects a re-list.
    pub fn apply_exemption_event(
        &self,
        event: &Event<StaticKeyExemption>,
        relist: &mut Relist<HashMap<String, Exemption>>,
    ) {
        if relist.apply(&self.exemptions, event) {
            let exemptions = self.exemptions.read().map(|m| m.len()).unwrap_or(0);
            tracing::info!(exemptions, "exemption cache synced");
        }
    }

    async fn run_exemptions<S>(&self, stream: S)
    where
        S: futures::Stream<Item = Result<Event<StaticKeyExemption>, watcher::Error>>,
    {
        let mut relist = Relist::default();
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => self.apply_exemption_event(&event, &mut relist),
                Err(e) => tracing::warn!(error = %e, "StaticKeyExemption watch error; retrying"),
            }
        }
    }

    async fn run_objects<K, S>(&self, stream: S)
    where
        K: FactsSource,
        S: futures::Stream<Item = Result<Event<K>, watcher::Error>>,
    {
        let mut relist = Relist::default();
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => self.apply_object_event(&event, &mut relist),
                Err(e) => {
                    tracing::warn!(kind = K::KIND.as_str(), error = %e, "watch error; retrying")
                }
            }
        }
    }
}

fn watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl futures::Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, config).default_backoff()
}

impl ReferenceView for WatchCache {
    fn lookup(&self, kind: RefKind, namespace: &str, name: &str) -> Lookup {
        match self.objects.read() {
            Ok(index) => match index.get(kind, namespace, name) {
                Some(facts) => Lookup::Found(facts.clone()),
                None => Lookup::Missing,
            },
            // A poisoned lock means a writer panicked; judge by names rather than fail.
            Err(_) => Lookup::Disabled,
        }
    }

    fn namespace_mode(&self, namespace: &str) -> Option<Mode> {
        // Bad labels were logged as they arrived; here they only do not count.
        label_mode(self.namespaces.get(&ObjectRef::new(namespace))?.as_ref())?.ok()
    }

    fn ready(&self) -> bool {
        use futures::FutureExt;
        self.secrets_synced.load(Ordering::Acquire)
            && self.configmaps_synced.load(Ordering::Acquire)
            && matches!(
                self.namespaces.wait_until_ready().now_or_never(),
                Some(Ok(()))
            )
    }

    fn exemption(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        now: jiff::Timestamp,
    ) -> Option<(Exemption, exemption::State)> {
        let map = self.exemptions.read().ok()?;
        exemption::applicable(map.values(), kind, namespace, name, now)
            .map(|a| (a.exemption.clone(), a.state))
    }

    fn exemption_counts(&self, now: jiff::Timestamp) -> Option<(usize, usize)> {
        let map = self.exemptions.read().ok()?;
        let active = map
            .values()
            .filter(|e| e.state_at(now) == exemption::State::Active)
            .count();
        Some((active, map.len() - active))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use kube::api::ObjectMeta;

    fn secret(ns: &str, name: &str, data: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn keeps_facts_not_values_and_follows_relists_and_deletes() {
        let cache = WatchCache::new();
        let mut buf = Relist::default();
        let apply =
            |e: Event<Secret>, buf: &mut Relist<FactsIndex>| cache.apply_object_event(&e, buf);
        assert!(!cache.ready());
        apply(Event::Init, &mut buf);
        apply(
            Event::InitApply(secret("a", "s", &[("id", "AKIAZ7Q3EXAMPLEK3Y4N")])),
            &mut buf,
        );
        assert!(
            matches!(cache.lookup(RefKind::Secret, "a", "s"), Lookup::Missing),
            "not visible before InitDone"
        );
        apply(Event::InitDone, &mut buf);
        let Lookup::Found(f) = cache.lookup(RefKind::Secret, "a", "s") else {
            panic!("found after sync")
        };
        assert_eq!(f.keys[0].class, detect::KeyClass::AwsAccessKeyId);
        assert!(!format!("{:?}", cache.objects.read().unwrap()).contains("AKIAZ7Q3"));

        apply(Event::Apply(secret("a", "t", &[("x", "y")])), &mut buf);
        assert!(matches!(
            cache.lookup(RefKind::Secret, "a", "t"),
            Lookup::Found(_)
        ));
        apply(Event::Delete(secret("a", "s", &[])), &mut buf);
        assert!(matches!(
            cache.lookup(RefKind::Secret, "a", "s"),
            Lookup::Missing
        ));

        // A re-list replaces everything of the kind.
        apply(Event::Init, &mut buf);
        apply(Event::InitApply(secret("b", "u", &[])), &mut buf);
        apply(Event::InitDone, &mut buf);
        assert!(matches!(
            cache.lookup(RefKind::Secret, "a", "t"),
            Lookup::Missing
        ));
        assert!(matches!(
            cache.lookup(RefKind::Secret, "b", "u"),
            Lookup::Found(_)
        ));
    }

    #[test]
    fn namespace_labels_set_modes_and_bad_values_are_ignored() {
        let ns = |name: &str, label: &str| Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([(MODE_LABEL.to_string(), label.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let (store, mut writer) = reflector::store();
        let cache = WatchCache::with_namespaces(store);
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(ns("a", "warn")));
        writer.apply_watcher_event(&Event::InitApply(ns("b", "nonsense")));
        assert!(!cache.ready(), "namespaces not listed yet");
        writer.apply_watcher_event(&Event::InitDone);
        assert_eq!(cache.namespace_mode("a"), Some(Mode::Warn));
        assert_eq!(cache.namespace_mode("b"), None);
        writer.apply_watcher_event(&Event::Apply(ns("a", "audit")));
        assert_eq!(cache.namespace_mode("a"), Some(Mode::Audit));
    }
}
