//! Live lookups: the Secrets and ConfigMaps a review references that the watch caches do not
//! hold, read from the API server before the review is answered.
//!
//! Why: one `kubectl apply` or Helm release creates a Secret and, milliseconds later, the
//! Deployment that reads it. The webhook may be asked about the Deployment before the
//! Secret's watch event reaches its cache; judged as missing, the Secret's keys would pass
//! with a warning. Only what the cache lacks is read, at most [`MAX_LIVE_LOOKUPS`] objects
//! per review, within one time budget; what cannot be read in it stays missing (judged by
//! names, with a warning, as before).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;

use super::cache::{configmap_facts, secret_facts};
use super::metrics::Metrics;
use crate::detect::{Lookup, ObjectFacts, Overlay, Recording, RefKind, ReferenceView};

/// A referenced object: kind, namespace, name.
pub type RefKey = (RefKind, String, String);

/// How many missing objects one review may read live: a pod spec naming hundreds of absent
/// Secrets costs the API server no more than this.
pub const MAX_LIVE_LOOKUPS: usize = 16;

/// Reads referenced objects from the API server.
pub struct LiveLookups {
    client: kube::Client,
    /// For all of one review's lookups together.
    budget: Duration,
    metrics: Arc<Metrics>,
}

impl LiveLookups {
    pub fn new(client: kube::Client, budget: Duration, metrics: Arc<Metrics>) -> Self {
        LiveLookups {
            client,
            budget,
            metrics,
        }
    }

    /// The facts of those of `wanted` that exist. One that does not (404), that cannot be
    /// read, or that the budget did not reach is left out: it stays missing.
    pub async fn fetch(&self, wanted: &[RefKey]) -> HashMap<RefKey, Arc<ObjectFacts>> {
        let lookups = wanted.iter().take(MAX_LIVE_LOOKUPS).map(|key| async move {
            let (kind, namespace, name) = key;
            let facts = match kind {
                RefKind::Secret => Api::<Secret>::namespaced(self.client.clone(), namespace)
                    .get_opt(name)
                    .await
                    .map(|o| o.as_ref().map(secret_facts)),
                RefKind::ConfigMap => {
                    Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
                        .get_opt(name)
                        .await
                        .map(|o| o.as_ref().map(configmap_facts))
                }
            };
            let result = match &facts {
                Ok(Some(_)) => "found",
                Ok(None) => "absent",
                Err(e) => {
                    tracing::warn!(kind = kind.as_str(), %namespace, %name, error = %e, "live lookup failed; judged as missing");
                    "failed"
                }
            };
            self.metrics.live_lookup(result);
            (key.clone(), facts.ok().flatten())
        });
        let all = futures::future::join_all(lookups);
        match tokio::time::timeout(self.budget, all).await {
            Ok(done) => (done.into_iter())
                .filter_map(|(key, facts)| Some((key, Arc::new(facts?))))
                .collect(),
            Err(_) => {
                self.metrics.live_lookup("timeout");
                tracing::warn!(budget = ?self.budget, "live lookups took longer than their budget; judged as missing");
                HashMap::new()
            }
        }
    }
}

/// The references the view of `recording` did not hold, each once.
pub fn missing(recording: Recording<'_>) -> Vec<RefKey> {
    let mut missing: Vec<RefKey> = (recording.into_records().into_iter())
        .filter(|r| matches!(r.answer, Lookup::Missing))
        .map(|r| (r.kind, r.namespace, r.name))
        .collect();
    missing.sort_by(|a, b| (a.0 as u8, &a.1, &a.2).cmp(&(b.0 as u8, &b.1, &b.2)));
    missing.dedup();
    missing
}

/// The inner view, with what live lookups found.
pub struct WithFetched<'a> {
    pub inner: &'a dyn ReferenceView,
    pub fetched: HashMap<RefKey, Arc<ObjectFacts>>,
}

impl Overlay for WithFetched<'_> {
    fn inner(&self) -> &dyn ReferenceView {
        self.inner
    }

    fn lookup(&self, kind: RefKind, namespace: &str, name: &str) -> Lookup {
        let key = (kind, namespace.to_string(), name.to_string());
        match self.fetched.get(&key) {
            Some(facts) => Lookup::Found(facts.clone()),
            None => self.inner.lookup(kind, namespace, name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{InMemoryView, classify_data};

    #[test]
    fn only_what_the_view_lacks_is_noted_and_fetched_facts_answer_first() {
        let mut view = InMemoryView::new();
        let clean = classify_data([("password", b"hunter2".as_slice())]);
        view.insert(RefKind::Secret, "team", "db", clean);
        let recording = Recording::new(&view);
        assert!(matches!(
            ReferenceView::lookup(&recording, RefKind::Secret, "team", "db"),
            Lookup::Found(_)
        ));
        for _ in 0..2 {
            ReferenceView::lookup(&recording, RefKind::Secret, "team", "aws");
        }
        ReferenceView::lookup(&recording, RefKind::ConfigMap, "team", "aws");
        let missing = missing(recording);
        assert_eq!(
            missing,
            [
                (RefKind::Secret, "team".to_string(), "aws".to_string()),
                (RefKind::ConfigMap, "team".to_string(), "aws".to_string()),
            ]
        );

        let keys = classify_data([("AWS_ACCESS_KEY_ID", b"AKIAZ7Q3EXAMPLEK3Y4N".as_slice())]);
        let with = WithFetched {
            inner: &view,
            fetched: HashMap::from([(missing[0].clone(), Arc::new(keys))]),
        };
        match ReferenceView::lookup(&with, RefKind::Secret, "team", "aws") {
            Lookup::Found(f) => assert!(f.key("AWS_ACCESS_KEY_ID").is_some()),
            other => panic!("expected the fetched facts, got {other:?}"),
        }
        assert!(matches!(
            ReferenceView::lookup(&with, RefKind::ConfigMap, "team", "aws"),
            Lookup::Missing
        ));
        assert!(matches!(
            ReferenceView::lookup(&with, RefKind::Secret, "team", "db"),
            Lookup::Found(_)
        ));
    }
}
