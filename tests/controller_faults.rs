//! The controller recovers from API server faults without a restart: 409 conflicts on status
//! writes, watch streams dropped and expired (410 Gone → re-list), 500s; and a guardrail list
//! that fails at start never lets a binding be judged without its guardrails; a guardrail status
//! write that fails is tried again.

use hatrack_test_support as support;

use serde_json::json;
use support::apiserver::ApiServer;
use support::controller::*;
use support::moto::Moto;

const NS: &str = "payments";

async fn setup() -> (ApiServer, Moto, RunningController) {
    let server = ApiServer::start().await;
    let moto = Moto::start();
    moto.create_oidc_provider(&format!("https://{ISSUER_HOST_PATH}"))
        .await;
    let controller = RunningController::builder(server.client(), &moto).start();
    (server, moto, controller)
}

#[tokio::test]
async fn status_write_conflicts_are_retried() {
    let (server, moto, controller) = setup().await;
    server
        .faults()
        .fail_next_status_writes(3, "/iamrolebindings/", 409);
    create_binding(
        &server.client(),
        NS,
        "a",
        json!({"serviceAccounts": ["api"]}),
    )
    .await;
    wait_ready_reason(&server.client(), NS, "a", "Synced", 60).await;
    let failed = server.count_requests(|r| r.path.ends_with("/status") && r.method != "GET");
    assert!(
        failed >= 4,
        "expected the 3 refused status writes and a successful one, saw {failed}"
    );
    assert_eq!(hatrack_roles(&moto).await.len(), 1);
    controller.stop().await;
}

#[tokio::test]
async fn dropped_and_expired_watches_are_relisted() {
    let (server, moto, controller) = setup().await;
    let client = server.client();
    create_binding(&client, NS, "a", json!({"serviceAccounts": ["api"]})).await;
    wait_ready_reason(&client, NS, "a", "Synced", 30).await;
    let lists_before = server.count_requests(|r| {
        r.method == "GET" && !r.is_watch() && r.path.ends_with("/iamrolebindings")
    });
    // History compacted, then every watch cut: resuming gets 410 Gone and must re-list.
    server.faults().expire_history();
    server.faults().drop_watches();
    create_binding(&client, NS, "b", json!({"serviceAccounts": ["web"]})).await;
    wait_ready_reason(&client, NS, "b", "Synced", 60).await;
    let lists_after = server.count_requests(|r| {
        r.method == "GET" && !r.is_watch() && r.path.ends_with("/iamrolebindings")
    });
    assert!(
        lists_after > lists_before,
        "the controller did not re-list after 410 Gone"
    );
    assert_eq!(hatrack_roles(&moto).await.len(), 2);
    controller.stop().await;
}

#[tokio::test]
async fn server_errors_are_retried() {
    let (server, moto, controller) = setup().await;
    let client = server.client();
    // Refuse the next writes to bindings (finalizer patch, status) with 500s.
    server
        .faults()
        .fail_next(2, "PATCH", "/iamrolebindings/", 500);
    create_binding(&client, NS, "a", json!({"serviceAccounts": ["api"]})).await;
    wait_ready_reason(&client, NS, "a", "Synced", 60).await;
    let refused =
        server.count_requests(|r| r.method == "PATCH" && r.path.contains("/iamrolebindings/"));
    assert!(
        refused >= 3,
        "expected 2 refused PATCHes and later successful ones, saw {refused}"
    );
    assert_eq!(hatrack_roles(&moto).await.len(), 1);
    controller.stop().await;
}

#[tokio::test]
async fn no_binding_is_judged_before_the_guardrails_are_listed() {
    // A violating binding is in place when the controller starts (a restart, a new leader), and
    // the guardrails' first lists fail: the binding must wait for them, never get its role.
    let server = ApiServer::start().await;
    let moto = Moto::start();
    moto.create_oidc_provider(&format!("https://{ISSUER_HOST_PATH}"))
        .await;
    server.put_object("/api/v1/namespaces", json!({"metadata": {"name": NS}}));
    server.put_object(
        "/apis/hatrack.dev/v1alpha1/iamguardrails",
        json!({"apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMGuardrail",
               "metadata": {"name": "no-iam"},
               "spec": {"namespaceSelector": {}, "deniedActions": ["iam:*"]}}),
    );
    server.put_object(
        &format!("/apis/hatrack.dev/v1alpha1/namespaces/{NS}/iamrolebindings"),
        serde_json::to_value(binding_manifest(
            NS,
            "escalates",
            json!({"serviceAccounts": ["api"], "inlinePolicies": {"pass": {"Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}]}}}),
        ))
        .unwrap(),
    );
    server.faults().fail_next(3, "GET", "/iamguardrails", 500);
    let controller = RunningController::builder(server.client(), &moto).start();
    let b = wait_ready_reason(&server.client(), NS, "escalates", "GuardrailViolation", 60).await;
    let (status, _, message) = ready(&b).unwrap();
    assert_eq!(status, "False");
    assert!(message.contains("iam:"), "{message}");
    assert!(
        hatrack_roles(&moto).await.is_empty(),
        "a role was made before the guardrails were known"
    );
    let refused = server.count_requests(|r| r.method == "GET" && r.path.contains("/iamguardrails"));
    assert!(
        refused >= 4,
        "expected 3 refused guardrail lists and a good one, saw {refused}"
    );
    controller.stop().await;
}

#[tokio::test]
async fn a_failed_guardrail_status_write_is_retried_without_a_change_to_the_guardrail() {
    let (server, _moto, controller) = setup().await;
    let client = server.client();
    server
        .faults()
        .fail_next_status_writes(2, "/iamguardrails/", 500);
    let guardrails: kube::Api<hatrack::crd::IAMGuardrail> = kube::Api::all(client.clone());
    let g = serde_json::from_value(json!({
        "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMGuardrail",
        "metadata": {"name": "status-retry"},
        "spec": {"deniedActions": ["iam:*"],
                 "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "none"}}}
    }))
    .unwrap();
    guardrails
        .create(&Default::default(), &g)
        .await
        .expect("create guardrail");
    // Nothing changes the guardrail after the refused writes: only a retry writes its status.
    wait_for(60, "guardrail status written", || async {
        let g = guardrails.get("status-retry").await.ok()?;
        let c = g
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        (c.status == "True" && c.reason == "Valid").then_some(())
    })
    .await;
    let writes = server.count_requests(|r| {
        r.path.contains("/iamguardrails/") && r.path.ends_with("/status") && r.method != "GET"
    });
    assert!(
        writes >= 3,
        "expected the 2 refused status writes and a successful one, saw {writes}"
    );
    controller.stop().await;
}
