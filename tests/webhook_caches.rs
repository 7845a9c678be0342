//! The webhook's watch caches against the Kubernetes API stand-in: Secret and ConfigMap facts
//! (never values), namespace modes, and the guardrail/binding caches of binding admission.

mod support;

use std::time::Duration;

use hatrack::detect::{Lookup, Mode, RefKind, ReferenceView};
use hatrack::webhook::WatchCache;
use hatrack::webhook::bindings::{BindingCache, BindingView};
use serde_json::json;
use support::apiserver::ApiServer;
use support::controller::wait_for;

const SECRET_KEY_VALUE: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn secret_facts_arrive_by_watch_and_no_value_survives_in_the_cache() {
    let server = ApiServer::start().await;
    let (cache, watches) = WatchCache::start(server.client());
    let task = tokio::spawn(watches);
    wait_for(10, "caches synced", || async {
        cache.ready().then_some(())
    })
    .await;

    server.put_object("/api/v1/namespaces/team/secrets", json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "aws", "namespace": "team"},
        "data": {
            "credentials": b64(&format!("[default]\naws_access_key_id = {ACCESS_KEY_ID}\naws_secret_access_key = {SECRET_KEY_VALUE}\n")),
            "password": b64("hunter2-not-aws")
        }
    }));
    server.put_object("/api/v1/namespaces", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team", "labels": {"hatrack.dev/static-keys": "warn"}}}));

    let facts = wait_for(10, "secret facts", || async {
        match cache.lookup(RefKind::Secret, "team", "aws") {
            Lookup::Found(f) => Some(f),
            _ => None,
        }
    })
    .await;
    assert!(
        !facts.is_clean(),
        "the credentials file must be classified as holding keys"
    );
    assert!(facts.key("password").is_some());
    wait_for(10, "namespace mode", || async {
        (cache.namespace_mode("team") == Some(Mode::Warn)).then_some(())
    })
    .await;
    assert!(matches!(
        cache.lookup(RefKind::Secret, "team", "missing"),
        Lookup::Missing
    ));

    // Nothing of the values is kept: not the secret key, not the key id, not other values.
    let dump = format!("{cache:?}");
    for value in [
        SECRET_KEY_VALUE,
        ACCESS_KEY_ID,
        "hunter2-not-aws",
        &b64(SECRET_KEY_VALUE),
    ] {
        assert!(
            !dump.contains(value),
            "the cache holds a Secret value: {value}"
        );
    }

    // A deleted Secret is forgotten.
    server.delete_object("/api/v1/namespaces/team/secrets/aws");
    wait_for(10, "secret forgotten", || async {
        matches!(
            cache.lookup(RefKind::Secret, "team", "aws"),
            Lookup::Missing
        )
        .then_some(())
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn binding_cache_sees_guardrails_bindings_and_namespace_labels() {
    let server = ApiServer::start().await;
    server.put_object("/api/v1/namespaces", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sandbox", "labels": {"tier": "sandbox"}}}));
    server.put_object("/apis/hatrack.dev/v1alpha1/iamguardrails", json!({"apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMGuardrail", "metadata": {"name": "g"}, "spec": {"deniedActions": ["iam:*"]}}));
    server.put_object("/apis/hatrack.dev/v1alpha1/namespaces/sandbox/iamrolebindings", json!({"apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding", "metadata": {"name": "first", "namespace": "sandbox"}, "spec": {"serviceAccounts": ["api"]}}));
    let (cache, watches) = BindingCache::start(server.client());
    let task = tokio::spawn(watches);
    let ctx = wait_for(10, "binding caches filled", || async {
        let ctx = cache.context("sandbox");
        (ctx.guardrails.len() == 1
            && ctx.others_in_namespace.len() == 1
            && !ctx.namespace_labels.is_empty())
        .then_some(ctx)
    })
    .await;
    assert_eq!(
        ctx.namespace_labels.get("tier").map(String::as_str),
        Some("sandbox")
    );
    assert_eq!(ctx.others_in_namespace[0].spec.service_accounts, ["api"]);
    assert!(cache.context("elsewhere").others_in_namespace.is_empty());
    tokio::time::sleep(Duration::from_millis(10)).await;
    task.abort();
}
