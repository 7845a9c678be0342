use super::*;
use crate::controller::FINALIZER;
use crate::watch::Relist;
use serde_json::json;

fn binding(name: &str, sas: &[&str]) -> IAMRoleBinding {
    serde_json::from_value(json!({
        "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
        "metadata": {"name": name, "namespace": "ns", "generation": 1,
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"serviceAccounts": sas}
    }))
    .unwrap()
}

#[test]
fn a_relist_replaces_the_claim_index_when_complete() {
    let index = RwLock::new(ClaimIndex::default());
    let mut writer = Relist::default();
    writer.apply(&index, &watcher::Event::Apply(binding("gone", &["api"])));
    writer.apply(&index, &watcher::Event::Init);
    writer.apply(
        &index,
        &watcher::Event::InitApply(binding("kept", &["web"])),
    );
    // Until the relist is done, the old index answers.
    assert_eq!(index.read().unwrap().claimants("ns", "api"), vec!["gone"]);
    writer.apply(&index, &watcher::Event::InitDone);
    let live = index.read().unwrap();
    assert!(live.claimants("ns", "api").is_empty());
    assert_eq!(live.claimants("ns", "web"), vec!["kept"]);
}

#[test]
fn deletion_removes_claims() {
    let index = RwLock::new(ClaimIndex::default());
    let mut writer = Relist::default();
    writer.apply(&index, &watcher::Event::Apply(binding("a", &["api"])));
    writer.apply(&index, &watcher::Event::Delete(binding("a", &["api"])));
    assert_eq!(index.read().unwrap().live_in_namespace("ns"), 0);
}

#[test]
fn status_only_updates_do_not_trigger_a_reconcile() {
    let b = binding("a", &["api"]);
    let mut with_status = b.clone();
    with_status.status = Some(Default::default());
    assert_eq!(
        reconcile_inputs(&b.clone().into()),
        reconcile_inputs(&with_status.into())
    );
    let mut finalized = b.clone();
    finalized.metadata.finalizers = Some(vec![FINALIZER.into()]);
    assert_ne!(
        reconcile_inputs(&b.clone().into()),
        reconcile_inputs(&finalized.into())
    );
    let mut edited = b.clone();
    edited.metadata.generation = Some(2);
    assert_ne!(
        reconcile_inputs(&b.clone().into()),
        reconcile_inputs(&edited.into())
    );
    let mut deleting = b.clone();
    deleting.metadata.deletion_timestamp = b.metadata.creation_timestamp.clone();
    assert_ne!(
        reconcile_inputs(&b.clone().into()),
        reconcile_inputs(&deleting.into())
    );
}
