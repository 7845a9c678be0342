//! The cluster-wide objects tests make (IAMAccounts, IAMGuardrails) and the namespace labels
//! that select them, from the few values a test cares about.
#![allow(dead_code)]

use hatrack::crd::{IAMAccount, IAMGuardrail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// An IAMAccount `name` for `account_id`, reached through its `hatrack-operator` role (with
/// `external_id`, if any), for the namespaces `namespace_selector` selects (`{}`: all).
pub fn account(
    name: &str,
    account_id: &str,
    external_id: Option<&str>,
    namespace_selector: Value,
) -> IAMAccount {
    let mut assume_role =
        json!({"roleArn": format!("arn:aws:iam::{account_id}:role/hatrack-operator")});
    if let Some(id) = external_id {
        assume_role["externalId"] = json!(id);
    }
    serde_json::from_value(json!({
        "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMAccount",
        "metadata": {"name": name},
        "spec": {"accountId": account_id, "assumeRole": assume_role,
                 "namespaceSelector": namespace_selector}
    }))
    .expect("valid IAMAccount")
}

/// Creates [`account`]`(name, account_id, external_id, namespace_selector)`.
pub async fn create_account(
    client: &kube::Client,
    name: &str,
    account_id: &str,
    external_id: Option<&str>,
    namespace_selector: Value,
) -> IAMAccount {
    let api: Api<IAMAccount> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &account(name, account_id, external_id, namespace_selector),
    )
    .await
    .expect("create IAMAccount")
}

pub fn guardrail(name: &str, spec: Value) -> IAMGuardrail {
    serde_json::from_value(json!({
        "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMGuardrail",
        "metadata": {"name": name}, "spec": spec
    }))
    .expect("valid IAMGuardrail")
}

/// Creates IAMGuardrail `name` with `spec` as given (its own namespaceSelector, if any).
pub async fn create_guardrail(client: &kube::Client, name: &str, spec: Value) -> IAMGuardrail {
    let api: Api<IAMGuardrail> = Api::all(client.clone());
    api.create(&PostParams::default(), &guardrail(name, spec))
        .await
        .expect("create guardrail")
}

/// A guardrail named `<ns>-<name>` that selects only namespace `ns` (and those of its
/// namespaceSelector's `matchLabels`, if `spec` has any): guardrails are cluster-wide and
/// the tests share the API server.
pub async fn create_guardrail_for(
    client: &kube::Client,
    ns: &str,
    name: &str,
    mut spec: Value,
) -> IAMGuardrail {
    let mut labels = spec["namespaceSelector"]["matchLabels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    labels.insert("kubernetes.io/metadata.name".into(), json!(ns));
    spec["namespaceSelector"] = json!({"matchLabels": labels});
    create_guardrail(client, &format!("{ns}-{name}"), spec).await
}

/// Adds `labels` (a JSON object) to namespace `ns`.
pub async fn label_namespace(client: &kube::Client, ns: &str, labels: Value) {
    let api: Api<Namespace> = Api::all(client.clone());
    api.patch(
        ns,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": labels}})),
    )
    .await
    .expect("label namespace");
}

/// Deletes the guardrail [`create_guardrail_for`] made.
pub async fn delete_guardrail_for(client: &kube::Client, ns: &str, name: &str) {
    let api: Api<IAMGuardrail> = Api::all(client.clone());
    api.delete(&format!("{ns}-{name}"), &Default::default())
        .await
        .expect("delete guardrail");
}
