//! Watch streams shared by the controller and the webhook: what each keeps of an object, so
//! the caches hold only what hatrack reads.

use futures::Stream;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::runtime::reflector::store::Writer;
use kube::runtime::{WatchStreamExt, watcher};

use crate::crd::IAMGuardrail;

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

/// IAMGuardrails, cached in `writer`; yields every guardrail added, changed or deleted.
pub fn guardrails(
    client: kube::Client,
    writer: Writer<IAMGuardrail>,
) -> impl Stream<Item = Result<IAMGuardrail, watcher::Error>> + Send {
    watcher(
        Api::<IAMGuardrail>::all(client),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(|g: &mut IAMGuardrail| g.metadata.managed_fields = None)
    // Shared so that a writer from `reflector::store_shared` hands each change to its
    // subscribers too (the guardrail status controller); a plain writer has none.
    .reflect_shared(writer)
    .touched_objects()
}
