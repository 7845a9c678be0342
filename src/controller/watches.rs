//! What the controller's watches keep of each object, which binding changes need a
//! reconcile, and which bindings a ServiceAccount, guardrail or Namespace event re-queues.

use std::sync::RwLock;

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Predicate, predicates, watcher};

use super::cache::CachedBinding;
use super::{CachedServiceAccount, ROLE_ARN_ANNOTATION};
use crate::claims::ClaimIndex;
use crate::crd::{IAMGuardrail, IAMRoleBinding};
use crate::watch::WatchIndex;

/// The bindings in `sa`'s namespace that name it.
pub(super) fn bindings_naming(
    claims: &RwLock<ClaimIndex>,
    sa: &CachedServiceAccount,
) -> Vec<ObjectRef<CachedBinding>> {
    let ns = sa.namespace().unwrap_or_default();
    claims
        .read()
        .map(|c| c.claimants(&ns, &sa.name_any()))
        .unwrap_or_default()
        .into_iter()
        .map(|name| ObjectRef::new(&name).within(&ns))
        .collect()
}

/// The claim index follows the bindings' watch through [`Relist`].
impl WatchIndex<IAMRoleBinding> for ClaimIndex {
    fn upsert(&mut self, b: &IAMRoleBinding) {
        ClaimIndex::upsert(self, b);
    }
    fn remove(&mut self, b: &IAMRoleBinding) {
        ClaimIndex::remove(self, b);
    }
}

/// What of a binding decides whether a watch event needs a reconcile: the spec (generation;
/// deletion bumps it too), finalizers and deletion. Status-only updates (our own status
/// writes among them) are filtered out: they would re-read the role from IAM for nothing.
/// kube's `predicate_filter` remembers each binding's last value (an hour; a binding not seen
/// for that long counts as new).
pub(super) fn reconcile_inputs(b: &CachedBinding) -> Option<u64> {
    let deleting = |b: &CachedBinding| Some(u64::from(b.metadata.deletion_timestamp.is_some()));
    predicates::generation
        .combine(predicates::finalizers)
        .combine(deleting)
        .hash_property(b)
}

/// The binding events as the cache and the controller take them: compacted.
pub(super) fn compact_event(
    event: watcher::Event<IAMRoleBinding>,
) -> watcher::Event<CachedBinding> {
    use watcher::Event;
    match event {
        Event::Apply(b) => Event::Apply(b.into()),
        Event::Delete(b) => Event::Delete(b.into()),
        Event::Init => Event::Init,
        Event::InitApply(b) => Event::InitApply(b.into()),
        Event::InitDone => Event::InitDone,
    }
}

/// Drops what the controller never reads from a cached binding: managedFields and
/// annotations (kubectl's last-applied-configuration is a second copy of the spec).
pub(super) fn strip_binding(b: &mut IAMRoleBinding) {
    b.metadata.managed_fields = None;
    b.metadata.annotations = None;
}

/// Keeps of a ServiceAccount only its identity and the role ARN annotation.
pub(super) fn strip_service_account(sa: &mut CachedServiceAccount) {
    sa.metadata.managed_fields = None;
    sa.metadata.labels = None;
    sa.metadata.owner_references = None;
    if let Some(annotations) = sa.metadata.annotations.as_mut() {
        annotations.retain(|k, _| k == ROLE_ARN_ANNOTATION);
        if annotations.is_empty() {
            sa.metadata.annotations = None;
        }
    }
}

/// The bindings in namespaces that a guardrail selects.
pub(super) fn bindings_selected_by(
    bindings: &Store<CachedBinding>,
    namespaces: &Store<Namespace>,
    g: &IAMGuardrail,
) -> Vec<ObjectRef<CachedBinding>> {
    let selected: std::collections::HashSet<String> = namespaces
        .state()
        .iter()
        .filter(|ns| {
            crate::guardrail::selector_matches(g.spec.namespace_selector.as_ref(), ns.labels())
        })
        .map(|ns| ns.name_any())
        .collect();
    bindings
        .state()
        .iter()
        .filter(|b| b.namespace().is_some_and(|ns| selected.contains(&ns)))
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
}

pub(super) fn bindings_in_namespace(
    bindings: &Store<CachedBinding>,
    ns: &str,
) -> Vec<ObjectRef<CachedBinding>> {
    bindings
        .state()
        .iter()
        .filter(|b| b.namespace().as_deref() == Some(ns))
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests;
