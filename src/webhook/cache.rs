//! Watch caches of Secrets, ConfigMaps and Namespace labels that keep only derived facts:
//! each Secret or ConfigMap is classified as it arrives ([`detect::classify_data`]) and the
//! object, with its values, is dropped at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

use crate::crd::StaticKeyExemption;
use crate::detect::{
    self, FactsIndex, Lookup, MODE_LABEL, Mode, ObjectFacts, RefKind, ReferenceView,
};
use crate::exemption::{self, Exemption};

/// Secrets and ConfigMaps listed per request when the caches fill (docs/webhook.md, "Slow and
/// hostile clients": memory at startup).
pub const OBJECT_PAGE_SIZE: u32 = 10;

/// The cluster as the webhook sees it: facts of Secrets and ConfigMaps, namespace modes.
#[derive(Debug, Default)]
pub struct WatchCache {
    objects: RwLock<FactsIndex>,
    modes: RwLock<HashMap<String, Mode>>,
    /// StaticKeyExemptions by name (a handful; their watch does not gate readiness, so a
    /// cluster without the CRD still admits).
    exemptions: RwLock<HashMap<String, Exemption>>,
    secrets_synced: AtomicBool,
    configmaps_synced: AtomicBool,
    namespaces_synced: AtomicBool,
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
    let value = ns.metadata.labels.as_ref()?.get(MODE_LABEL)?;
    match value.parse::<Mode>() {
        Ok(mode) => Some(mode),
        Err(e) => {
            tracing::warn!(namespace = ns.metadata.name.as_deref().unwrap_or(""), error = %e,
                "ignoring the namespace's {MODE_LABEL} label; the global mode applies");
            None
        }
    }
}

impl WatchCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts watching with `client`. The returned future runs the watches (forever, with
    /// backoff on errors); spawn it. Needs list/watch on Secrets, ConfigMaps and Namespaces.
    pub fn start(client: Client) -> (Arc<Self>, impl Future<Output = ()> + Send + 'static) {
        let cache = Arc::new(Self::new());
        let config = watcher::Config::default().page_size(100);
        // A page of Secrets or ConfigMaps is held whole while its objects are classified (the
        // response body, then the decoded objects): at up to 1 MiB each, a page of 100 would
        // take ~250 MiB and kill a restarting pod; 10 keep the peak near 25 MiB.
        let objects = watcher::Config::default().page_size(OBJECT_PAGE_SIZE);
        let secrets = {
            let cache = cache.clone();
            let stream = watcher(Api::<Secret>::all(client.clone()), objects.clone());
            async move {
                cache
                    .run_objects(stream, RefKind::Secret, secret_facts)
                    .await
            }
        };
        let configmaps = {
            let cache = cache.clone();
            let stream = watcher(Api::<ConfigMap>::all(client.clone()), objects);
            async move {
                cache
                    .run_objects(stream, RefKind::ConfigMap, configmap_facts)
                    .await
            }
        };
        let namespaces = {
            let cache = cache.clone();
            let stream = watcher(Api::<Namespace>::all(client.clone()), config.clone());
            async move { cache.run_namespaces(stream).await }
        };
        let exemptions = {
            let cache = cache.clone();
            let stream = watcher(Api::<StaticKeyExemption>::all(client), config);
            async move { cache.run_exemptions(stream).await }
        };
        let run = async move {
            futures::join!(secrets, configmaps, namespaces, exemptions);
        };
        (cache, run)
    }

    fn synced_flag(&self, kind: RefKind) -> &AtomicBool {
        match kind {
            RefKind::Secret => &self.secrets_synced,
            RefKind::ConfigMap => &self.configmaps_synced,
        }
    }

    /// Applies one watch event of Secrets or ConfigMaps. `buffer` collects a re-list.
    pub fn apply_object_event<K: kube::Resource>(
        &self,
        kind: RefKind,
        event: Event<K>,
        facts: fn(&K) -> ObjectFacts,
        buffer: &mut FactsIndex,
    ) {
        let key = |o: &K| {
            (
                o.meta().namespace.clone().unwrap_or_default(),
                o.meta().name.clone().unwrap_or_default(),
            )
        };
        match event {
            Event::Init => *buffer = FactsIndex::default(),
            Event::InitApply(o) => {
                let (ns, name) = key(&o);
                buffer.insert(kind, &ns, &name, Arc::new(facts(&o)));
            }
            Event::InitDone => {
                let fresh = std::mem::take(buffer);
                if let Ok(mut index) = self.objects.write() {
                    index.replace_kind(kind, fresh);
                    tracing::info!(
                        kind = kind.as_str(),
                        objects = index.len(kind),
                        "cache synced"
                    );
                }
                self.synced_flag(kind).store(true, Ordering::Release);
            }
            Event::Apply(o) => {
                let (ns, name) = key(&o);
                let f = Arc::new(facts(&o));
                if let Ok(mut index) = self.objects.write() {
                    index.insert(kind, &ns, &name, f);
                }
            }
            Event::Delete(o) => {
                let (ns, name) = key(&o);
                if let Ok(mut index) = self.objects.write() {
                    index.remove(kind, &ns, &name);
                }
            }
        }
    }

    /// Applies one watch event of Namespaces.
    pub fn apply_namespace_event(
        &self,
        event: Event<Namespace>,
        buffer: &mut HashMap<String, Mode>,
    ) {
        let name = |n: &Namespace| n.metadata.name.clone().unwrap_or_default();
        match event {
            Event::Init => buffer.clear(),
            Event::InitApply(n) => {
                if let Some(mode) = namespace_mode(&n) {
                    buffer.insert(name(&n), mode);
                }
            }
            Event::InitDone => {
                if let Ok(mut modes) = self.modes.write() {
                    *modes = std::mem::take(buffer);
                }
                self.namespaces_synced.store(true, Ordering::Release);
            }
            Event::Apply(n) => {
                if let Ok(mut modes) = self.modes.write() {
                    match namespace_mode(&n) {
                        Some(mode) => modes.insert(name(&n), mode),
                        None => modes.remove(&name(&n)),
                    };
                }
            }
            Event::Delete(n) => {
                if let Ok(mut modes) = self.modes.write() {
                    modes.remove(&name(&n));
                }
            }
        }
    }

    /// Applies one watch event of StaticKeyExemptions. `buffer` collects a re-list.
    pub fn apply_exemption_event(
        &self,
        event: Event<StaticKeyExemption>,
        buffer: &mut HashMap<String, Exemption>,
    ) {
        let write = |f: &mut dyn FnMut(&mut HashMap<String, Exemption>)| {
            if let Ok(mut map) = self.exemptions.write() {
                f(&mut map);
            }
        };
        match event {
            Event::Init => buffer.clear(),
            Event::InitApply(e) => {
                let e = Exemption::from_resource(&e);
                buffer.insert(e.name.clone(), e);
            }
            Event::InitDone => {
                let fresh = std::mem::take(buffer);
                tracing::info!(exemptions = fresh.len(), "exemption cache synced");
                write(&mut |map| *map = fresh.clone());
            }
            Event::Apply(e) => {
                let e = Exemption::from_resource(&e);
                write(&mut |map| {
                    map.insert(e.name.clone(), e.clone());
                });
            }
            Event::Delete(e) => {
                let name = e.metadata.name.clone().unwrap_or_default();
                write(&mut |map| {
                    map.remove(&name);
                });
            }
        }
    }

    async fn run_exemptions<S>(&self, stream: S)
    where
        S: futures::Stream<Item = Result<Event<StaticKeyExemption>, watcher::Error>>,
    {
        let mut buffer = HashMap::new();
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => self.apply_exemption_event(event, &mut buffer),
                Err(e) => tracing::warn!(error = %e, "StaticKeyExemption watch error; retrying"),
            }
        }
    }

    async fn run_objects<K, S>(&self, stream: S, kind: RefKind, facts: fn(&K) -> ObjectFacts)
    where
        K: kube::Resource,
        S: futures::Stream<Item = Result<Event<K>, watcher::Error>>,
    {
        let mut buffer = FactsIndex::default();
        let mut stream = std::pin::pin!(stream);
        loop {
            match stream.try_next().await {
                Ok(Some(event)) => self.apply_object_event(kind, event, facts, &mut buffer),
                Ok(None) => return,
                Err(e) => tracing::warn!(kind = kind.as_str(), error = %e, "watch error; retrying"),
            }
        }
    }

    async fn run_namespaces<S>(&self, stream: S)
    where
        S: futures::Stream<Item = Result<Event<Namespace>, watcher::Error>>,
    {
        let mut buffer = HashMap::new();
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => self.apply_namespace_event(event, &mut buffer),
                Err(e) => tracing::warn!(error = %e, "namespace watch error; retrying"),
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
        self.modes.read().ok()?.get(namespace).copied()
    }

    fn ready(&self) -> bool {
        self.secrets_synced.load(Ordering::Acquire)
            && self.configmaps_synced.load(Ordering::Acquire)
            && self.namespaces_synced.load(Ordering::Acquire)
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
        let mut buf = FactsIndex::default();
        let apply = |e, buf: &mut FactsIndex| {
            cache.apply_object_event(RefKind::Secret, e, secret_facts, buf)
        };
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
        let cache = WatchCache::new();
        let ns = |name: &str, label: &str| Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([(MODE_LABEL.to_string(), label.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut buf = HashMap::new();
        cache.apply_namespace_event(Event::Init, &mut buf);
        cache.apply_namespace_event(Event::InitApply(ns("a", "warn")), &mut buf);
        cache.apply_namespace_event(Event::InitApply(ns("b", "nonsense")), &mut buf);
        cache.apply_namespace_event(Event::InitDone, &mut buf);
        assert_eq!(cache.namespace_mode("a"), Some(Mode::Warn));
        assert_eq!(cache.namespace_mode("b"), None);
        cache.apply_namespace_event(Event::Apply(ns("a", "audit")), &mut buf);
        assert_eq!(cache.namespace_mode("a"), Some(Mode::Audit));
    }
}
