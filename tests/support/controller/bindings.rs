//! IAMRoleBindings, their ServiceAccounts and Events on the API server: made, changed,
//! deleted, read, and waited for.

use std::time::Duration;

use hatrack::crd::IAMRoleBinding;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::wait_for;

pub fn binding_manifest(ns: &str, name: &str, spec: Value) -> IAMRoleBinding {
    serde_json::from_value(json!({
        "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec
    }))
    .expect("valid binding manifest")
}

pub async fn create_binding(
    client: &kube::Client,
    ns: &str,
    name: &str,
    spec: Value,
) -> IAMRoleBinding {
    let api: Api<IAMRoleBinding> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &binding_manifest(ns, name, spec))
        .await
        .expect("create binding")
}

pub async fn patch_spec(client: &kube::Client, ns: &str, name: &str, spec: Value) {
    let api: Api<IAMRoleBinding> = Api::namespaced(client.clone(), ns);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": spec})),
    )
    .await
    .expect("patch binding");
}

pub async fn delete_binding(client: &kube::Client, ns: &str, name: &str) {
    let api: Api<IAMRoleBinding> = Api::namespaced(client.clone(), ns);
    api.delete(name, &DeleteParams::default())
        .await
        .expect("delete binding");
}

pub async fn create_service_account(client: &kube::Client, ns: &str, name: &str) {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns}})).unwrap();
    api.create(&PostParams::default(), &sa)
        .await
        .expect("create service account");
}

pub async fn get_binding(client: &kube::Client, ns: &str, name: &str) -> Option<IAMRoleBinding> {
    let api: Api<IAMRoleBinding> = Api::namespaced(client.clone(), ns);
    api.get_opt(name).await.expect("get binding")
}

pub async fn role_arn_annotation(client: &kube::Client, ns: &str, name: &str) -> Option<String> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    api.get_opt(name)
        .await
        .expect("get service account")
        .and_then(|sa| {
            sa.metadata
                .annotations
                .and_then(|a| a.get(hatrack::controller::ROLE_ARN_ANNOTATION).cloned())
        })
}

/// (status, reason, message) of the Ready condition, if the binding has one for its current
/// generation.
pub fn ready(b: &IAMRoleBinding) -> Option<(String, String, String)> {
    let status = b.status.as_ref()?;
    if status.observed_generation != b.metadata.generation {
        return None;
    }
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until the binding's Ready condition has `reason` for its current generation.
pub async fn wait_ready_reason(
    client: &kube::Client,
    ns: &str,
    name: &str,
    reason: &str,
    secs: u64,
) -> IAMRoleBinding {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let b = get_binding(client, ns, name).await;
        if let Some(b) = &b
            && ready(b).is_some_and(|(_, r, _)| r == reason)
        {
            return b.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs} s waiting for {ns}/{name} Ready reason {reason}; last seen: generation {:?}, status {:?}",
            b.as_ref().and_then(|b| b.metadata.generation),
            b.as_ref().and_then(|b| b.status.as_ref()),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (status, reason, message) of the binding's condition of `type_`, whatever its generation.
pub fn condition(b: &IAMRoleBinding, type_: &str) -> Option<(String, String, String)> {
    b.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until binding `ns/name` is gone (its finalizer done).
pub async fn wait_binding_gone(client: &kube::Client, ns: &str, name: &str, secs: u64) {
    wait_for(secs, &format!("binding {ns}/{name} gone"), || async {
        get_binding(client, ns, name).await.is_none().then_some(())
    })
    .await;
}

/// Waits until ServiceAccount `ns/name` carries the role ARN annotation `arn`.
pub async fn wait_role_arn_annotation(
    client: &kube::Client,
    ns: &str,
    name: &str,
    arn: &str,
    secs: u64,
) {
    wait_for(
        secs,
        &format!("{ns}/{name} annotated with {arn}"),
        || async {
            (role_arn_annotation(client, ns, name).await.as_deref() == Some(arn)).then_some(())
        },
    )
    .await;
}

/// The events.k8s.io Events about IAMRoleBinding `ns/name`, oldest first.
pub async fn events_about(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    api.list(&Default::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("IAMRoleBinding")
        })
        .collect()
}

/// Waits until an Event with `reason` about IAMRoleBinding `ns/name` exists; returns it.
pub async fn wait_event(
    client: &kube::Client,
    ns: &str,
    name: &str,
    reason: &str,
    secs: u64,
) -> k8s_openapi::api::events::v1::Event {
    wait_for(
        secs,
        &format!("an Event {reason} about {ns}/{name}"),
        || async {
            events_about(client, ns, name)
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some(reason))
        },
    )
    .await
}

/// Deletes a binding the way a forced cleanup does: its finalizer removed, so hatrack never
/// sees the delete and the role stays. Only while no controller watches the namespace: a
/// running one puts its finalizer back before the delete arrives (a binding without it is a
/// binding to reconcile), and then cleans the role up, which is what a lost binding must not get.
pub async fn delete_by_force(client: &kube::Client, ns: &str, name: &str) {
    let api: Api<IAMRoleBinding> = Api::namespaced(client.clone(), ns);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("remove finalizer");
    delete_binding(client, ns, name).await;
}
