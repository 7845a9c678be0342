//! `POST /validate/iamrolebindings` over real HTTPS: spec validation, ServiceAccount claims and
//! guardrails at admission, with the same implementation as the controller and `plan`.

#[path = "corpus/harness.rs"]
mod harness;

use std::sync::Arc;

use hatrack::binding_admission::BindingContext;
use hatrack::detect::{Mode, NoLookups};
use hatrack::webhook::bindings::StaticBindingView;
use serde_json::{Value, json};

fn binding(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding", "metadata": {"name": name, "namespace": "sandbox"}, "spec": spec})
}

async fn server() -> harness::TestServer {
    let ctx = BindingContext {
        guardrails: vec![Arc::new(serde_json::from_value(json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMGuardrail", "metadata": {"name": "platform-defaults"},
            "spec": {"namespaceSelector": {"matchLabels": {"tier": "sandbox"}}, "deniedActions": ["iam:*"], "allowedManagedPolicyArns": ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"]}
        }))
        .unwrap())],
        namespace_labels: [("tier".to_string(), "sandbox".to_string())].into(),
        others_in_namespace: vec![Arc::new(serde_json::from_value(binding("first", json!({"serviceAccounts": ["api"]}))).unwrap())],
        ..Default::default()
    };
    harness::start_with_bindings(
        Mode::Enforce,
        Arc::new(NoLookups),
        Arc::new(StaticBindingView(ctx)),
    )
    .await
}

async fn admit(server: &harness::TestServer, review: &Value) -> Value {
    let (status, body) = server
        .post_to(
            "/validate/iamrolebindings",
            serde_json::to_vec(review).unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["response"]["uid"], review["request"]["uid"]);
    v["response"].clone()
}

#[tokio::test]
async fn denies_a_binding_that_violates_a_guardrail_naming_it_and_the_statement() {
    let s = server().await;
    let b = binding(
        "escalate",
        json!({"serviceAccounts": ["web"], "managedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"],
        "inlinePolicies": {"sneaky": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "i*:Create*"], "Resource": "*"}]}}}),
    );
    let r = admit(&s, &harness::review_for("CREATE", &b, None, "u1")).await;
    assert_eq!(r["allowed"], false);
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains(
            "IAMGuardrail platform-defaults: spec.inlinePolicies.sneaky.Statement[0].Action[1]"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("IAMGuardrail platform-defaults: spec.managedPolicyArns[0]"),
        "{msg}"
    );
}

#[tokio::test]
async fn denies_a_second_claim_of_a_service_account_and_invalid_specs() {
    let s = server().await;
    let b = binding(
        "second",
        json!({"serviceAccounts": ["api"], "maxSessionDuration": 60}),
    );
    let r = admit(&s, &harness::review_for("CREATE", &b, None, "u2")).await;
    assert_eq!(r["allowed"], false);
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains(r#"ServiceAccount "api" is already bound by IAMRoleBinding "first""#),
        "{msg}"
    );
    assert!(msg.contains("spec.maxSessionDuration"), "{msg}");
}

#[tokio::test]
async fn admits_valid_bindings_and_spec_preserving_updates() {
    let s = server().await;
    let ok = binding(
        "reader",
        json!({"serviceAccounts": ["web"], "managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"]}),
    );
    assert_eq!(
        admit(&s, &harness::review_for("CREATE", &ok, None, "u3")).await["allowed"],
        true
    );
    // A binding admitted before the guardrail existed must still lose its finalizer.
    let mut old = binding(
        "legacy",
        json!({"serviceAccounts": ["old"], "managedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]}),
    );
    old["metadata"]["finalizers"] = json!(["hatrack.dev/cleanup"]);
    let mut new = old.clone();
    new["metadata"]["finalizers"] = json!([]);
    assert_eq!(
        admit(&s, &harness::review_for("UPDATE", &new, Some(&old), "u4")).await["allowed"],
        true
    );
    // ... but a spec change is judged.
    new["spec"]["description"] = json!("changed");
    assert_eq!(
        admit(&s, &harness::review_for("UPDATE", &new, Some(&old), "u5")).await["allowed"],
        false
    );
}

#[tokio::test]
async fn a_body_that_is_not_a_review_gets_400() {
    let s = server().await;
    let (status, body) = s
        .post_to("/validate/iamrolebindings", "{\"kind\":\"Pod\"}")
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("AdmissionReview"), "{body}");
}
