//! The background audit's watches: Secrets and ConfigMaps into the webhook's fact cache
//! ([`WatchCache`]), telling the audit loop what changed, and every workload kind.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;

use super::kinds::WorkloadKind;
use crate::detect::RefKind;
use crate::watch::Relist;
use crate::webhook::cache::{FactsSource, WatchCache};

/// A change of the facts cache the audit must look at.
#[derive(Debug)]
pub(super) enum FactChange {
    Object(RefKind, String, String),
    /// A (re-)list of the kind completed: any fact may have changed.
    Relisted(RefKind),
}

/// Runs the watches of one kind of referenced object into `cache`, telling `changes`.
pub(super) async fn run_facts<K>(
    cache: Arc<WatchCache>,
    api: Api<K>,
    changes: mpsc::UnboundedSender<FactChange>,
) where
    K: FactsSource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let kind = K::KIND;
    let stream = watcher::watcher(api, watcher::Config::default().page_size(100)).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut buffer = Relist::default();
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(kind = kind.as_str(), error = %e, "watch error; retrying");
                continue;
            }
        };
        let change = match &event {
            Event::Apply(o) | Event::Delete(o) => Some(FactChange::Object(
                kind,
                o.meta().namespace.clone().unwrap_or_default(),
                o.meta().name.clone().unwrap_or_default(),
            )),
            Event::InitDone => Some(FactChange::Relisted(kind)),
            Event::Init | Event::InitApply(_) => None,
        };
        cache.apply_object_event(&event, &mut buffer);
        if let Some(change) = change
            && changes.send(change).is_err()
        {
            return;
        }
    }
}

pub(super) type WorkloadEvent = (WorkloadKind, Result<Event<DynamicObject>, watcher::Error>);

pub(super) fn workload_streams(
    client: &Client,
) -> impl Stream<Item = WorkloadEvent> + Send + use<> {
    let streams = WorkloadKind::ALL.into_iter().map(|kind| {
        let api = Api::<DynamicObject>::all_with(client.clone(), &kind.api_resource());
        watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .map(move |e| (kind, e))
            .boxed()
    });
    futures::stream::select_all(streams)
}
