//! The webhook's watch caches against the real test API server: Secret and ConfigMap facts
//! (never values), namespace modes, and the guardrail/binding caches of binding admission.

#[path = "corpus/harness.rs"]
mod harness;
use hatrack_test_support as support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hatrack::crd::{IAMGuardrail, IAMRoleBinding};
use hatrack::detect::{Lookup, Mode, RefKind, ReferenceView};
use hatrack::webhook::WatchCache;
use hatrack::webhook::bindings::{BindingCache, BindingView};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use support::cluster::{cluster, cluster_with_crds};
use support::controller::wait_for;
use support::objects::{create_guardrail, label_namespace};

const SECRET_KEY_VALUE: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn secret_facts_arrive_by_watch_and_no_value_survives_in_the_cache() {
    let cluster = cluster().await;
    let client = cluster.client().await;
    let team = cluster.namespace("team").await;
    let team = team.as_str();
    let (cache, watches) = WatchCache::start(client.clone());
    let task = tokio::spawn(watches);
    wait_for(30, "caches synced", || async {
        cache.ready().then_some(())
    })
    .await;

    let secrets: Api<Secret> = Api::namespaced(client.clone(), team);
    let secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "aws", "namespace": team},
        "data": {
            "credentials": b64(&format!("[default]\naws_access_key_id = {ACCESS_KEY_ID}\naws_secret_access_key = {SECRET_KEY_VALUE}\n")),
            "password": b64("hunter2-not-aws")
        }
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    label_namespace(&client, team, json!({"hatrack.dev/static-keys": "warn"})).await;

    let facts = wait_for(30, "secret facts", || async {
        match cache.lookup(RefKind::Secret, team, "aws") {
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
    wait_for(30, "namespace mode", || async {
        (cache.namespace_mode(team) == Some(Mode::Warn)).then_some(())
    })
    .await;
    assert!(matches!(
        cache.lookup(RefKind::Secret, team, "missing"),
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
    secrets
        .delete("aws", &DeleteParams::default())
        .await
        .expect("delete secret");
    wait_for(30, "secret forgotten", || async {
        matches!(cache.lookup(RefKind::Secret, team, "aws"), Lookup::Missing).then_some(())
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn binding_cache_sees_guardrails_bindings_and_namespace_labels() {
    let cluster = cluster_with_crds().await;
    let client = cluster.client().await;
    let sandbox = cluster.namespace("sandbox").await;
    let sandbox = sandbox.as_str();
    label_namespace(&client, sandbox, json!({"tier": "sandbox"})).await;
    // Guardrails are cluster-wide: this one selects only the test's namespace.
    let guardrail = format!("{sandbox}-g");
    create_guardrail(
        &client,
        &guardrail,
        json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": sandbox}}, "deniedActions": ["iam:*"]}),
    )
    .await;
    let bindings: Api<IAMRoleBinding> = Api::namespaced(client.clone(), sandbox);
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding", "metadata": {"name": "first", "namespace": sandbox}, "spec": {"serviceAccounts": ["api"]}})).expect("binding"),
        )
        .await
        .expect("create binding");
    let (cache, watches) = BindingCache::start(client.clone());
    let task = tokio::spawn(watches);
    let ctx = wait_for(30, "binding caches filled", || async {
        let ctx = cache.context(sandbox);
        (ctx.guardrails
            .iter()
            .any(|g| g.metadata.name.as_deref() == Some(guardrail.as_str()))
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
    let guardrails: Api<IAMGuardrail> = Api::all(client.clone());
    guardrails
        .delete(&guardrail, &DeleteParams::default())
        .await
        .expect("delete guardrail");
}

/// A client layer that holds back every request to one resource path (the list and the watch)
/// until the gate opens, and tells when the first such request arrived.
#[derive(Clone)]
struct Gate {
    path_suffix: &'static str,
    open: tokio::sync::watch::Receiver<bool>,
    asked: Arc<tokio::sync::Notify>,
}

#[derive(Clone)]
struct Gated<S> {
    inner: S,
    gate: Gate,
}

impl<S> tower::Layer<S> for Gate {
    type Service = Gated<S>;
    fn layer(&self, inner: S) -> Gated<S> {
        Gated {
            inner,
            gate: self.clone(),
        }
    }
}

impl<S, B> tower::Service<http::Request<B>> for Gated<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let held = req.uri().path().ends_with(self.gate.path_suffix);
        if held {
            self.gate.asked.notify_one();
        }
        let mut open = self.gate.open.clone();
        let answer = self.inner.call(req);
        Box::pin(async move {
            if held {
                let _ = open.wait_for(|open| *open).await;
            }
            answer.await
        })
    }
}

/// `/readyz` of a webhook whose caches are those of `--lookups on` (`webhook::start_caches`),
/// over a client that holds back one kind's list: 503 while held, 200 once it is let through.
#[tokio::test]
async fn readyz_is_503_until_every_cache_has_listed() {
    let cluster = cluster_with_crds().await;
    for path_suffix in [
        "/api/v1/secrets",
        "/api/v1/configmaps",
        "/api/v1/namespaces",
        "/iamguardrails",
        "/iamrolebindings",
        "/iamaccounts",
    ] {
        let (open, gate_rx) = tokio::sync::watch::channel(false);
        let gate = Gate {
            path_suffix,
            open: gate_rx,
            asked: Arc::new(tokio::sync::Notify::new()),
        };
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&cluster.kubeconfig).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap();
        let client = kube::client::ClientBuilder::try_from(config)
            .unwrap()
            .with_layer(&gate)
            .build();
        let (refs, bindings, watches) = hatrack::webhook::start_caches(client);
        let watches = tokio::spawn(watches);
        let server = harness::start_with_bindings(Mode::Enforce, refs, bindings).await;
        tokio::time::timeout(Duration::from_secs(30), gate.asked.notified())
            .await
            .unwrap_or_else(|_| panic!("no request to {path_suffix} in 30 s"));
        // Everything but the held kind lists meanwhile; readiness must still wait for it.
        for _ in 0..10 {
            assert_eq!(
                server.get("/readyz").await.status(),
                503,
                "ready while {path_suffix} was not listed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        open.send_replace(true);
        wait_for(30, &format!("ready after {path_suffix} listed"), || async {
            (server.get("/readyz").await.status() == 200).then_some(())
        })
        .await;
        server.stop().await;
        watches.abort();
    }
}

/// A Secret the webhook's caches have not seen yet — one `kubectl apply` or Helm release
/// creates it a moment before the Deployment that reads it — is read from the API server
/// before the review is answered, so its keys deny instead of passing with a warning. A
/// reference to a Secret that does not exist is read, found absent, and judged as before.
#[tokio::test]
async fn a_secret_the_caches_have_not_seen_yet_is_read_from_the_api_server() {
    let cluster = cluster().await;
    let client = cluster.client().await;
    let team = cluster.namespace("live").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &team);
    let secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "aws", "namespace": team},
        "data": {"AWS_ACCESS_KEY_ID": b64(ACCESS_KEY_ID)}
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    // The caches as they are before the Secret's watch event arrives: lookups on, nothing
    // known.
    let refs: Arc<dyn ReferenceView> = Arc::new(hatrack::detect::InMemoryView::new());
    let deployment = |secret: &str| {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "app", "namespace": team},
            "spec": {"template": {"spec": {"containers": [{"name": "app",
                "envFrom": [{"secretRef": {"name": secret}}]}]}}}
        })
    };
    let bindings = || Arc::new(hatrack::webhook::bindings::StaticBindingView::default());

    let without =
        harness::start_with_live(Mode::Enforce, refs.clone(), bindings(), |_| {}, None).await;
    let answer = without.admit_create(&deployment("aws"), "u-1").await;
    assert_eq!(answer["allowed"], true, "{answer}");
    assert!(answer["warnings"].to_string().contains("aws"), "{answer}");
    without.stop().await;

    let live = Some(client.clone());
    let server = harness::start_with_live(Mode::Enforce, refs, bindings(), |_| {}, live).await;
    let answer = server.admit_create(&deployment("aws"), "u-2").await;
    assert_eq!(answer["allowed"], false, "{answer}");
    let message = answer["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Secret 'aws'") && !message.contains(ACCESS_KEY_ID),
        "{message}"
    );
    let answer = server.admit_create(&deployment("not-there"), "u-3").await;
    assert_eq!(answer["allowed"], true, "{answer}");
    assert!(
        answer["warnings"].to_string().contains("not-there"),
        "{answer}"
    );
    let metrics = server.metrics().await;
    for (result, count) in [("found", 1), ("absent", 1)] {
        let sample = format!("hatrack_webhook_live_lookups_total{{result=\"{result}\"}} {count}");
        assert!(metrics.contains(&sample), "{sample} in:\n{metrics}");
    }
    server.stop().await;
}
