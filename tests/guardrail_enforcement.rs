//! Guardrails with teeth (issue 14), on the real test API server and a moto IAM server with
//! AWS's managed policies loaded: a guardrail added after a role exists takes its grants away
//! until the binding complies and they come back; `deniedActions` finds actions inside an
//! attached managed policy; a restart with a violating binding in place never applies it;
//! `deletionPolicy: Retain` keeps no trust, or is refused where a guardrail forbids it.

use hatrack_test_support as support;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::{Value, json};
use support::controller::*;
use support::objects::{create_guardrail_for, delete_guardrail_for};

const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
const IAM_FULL_ACCESS: &str = "arn:aws:iam::aws:policy/IAMFullAccess";

fn passes_any_role(resource: &str) -> Value {
    json!({
        "serviceAccounts": ["api"],
        "managedPolicyArns": [READ_ONLY],
        "inlinePolicies": {"deploy": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["iam:PassRole", "ecs:RunTask"], "Resource": resource}
        ]}}
    })
}

#[tokio::test]
async fn a_guardrail_added_after_the_role_exists_revokes_its_grants_until_the_binding_complies() {
    let t = TestNamespace::new("revoke").await;
    let (client, ns, moto) = (&t.client, t.ns.as_str(), &t.moto);
    let controller = t.controller().start();

    create_binding(client, ns, "deployer", passes_any_role("*")).await;
    wait_ready_reason(client, ns, "deployer", "Synced", 30).await;
    let name = role_name(ns, "deployer");
    let before = iam_role(moto, &name).await.expect("role made");
    assert_eq!(before.inline_policies.len(), 1);
    assert_eq!(before.managed_policy_arns.len(), 1);

    // The platform team forbids passing any role: the existing role loses every grant.
    create_guardrail_for(
        client,
        ns,
        "no-pass-any",
        json!({"deniedActionsOnAllResources": ["iam:PassRole", "sts:AssumeRole"]}),
    )
    .await;
    let b = wait_ready_reason(client, ns, "deployer", "GuardrailViolation", 30).await;
    let (_, _, message) = ready(&b).unwrap();
    assert!(
        message.contains(&format!(
            "IAMGuardrail {ns}-no-pass-any: spec.inlinePolicies.deploy.Statement[0].Action[0]"
        )) && message.contains("revoked until the binding complies"),
        "{message}"
    );
    let revoked = iam_role(moto, &name).await.expect("the role itself stays");
    assert!(
        revoked.inline_policies.is_empty() && revoked.managed_policy_arns.is_empty(),
        "grants left on a violating role: {revoked:?}"
    );
    assert_eq!(
        revoked.assume_role_policy, before.assume_role_policy,
        "trust is kept so the grants can come back"
    );
    let (status, _, what) = condition(&b, "GrantsRevoked").expect("GrantsRevoked condition");
    assert_eq!(status, "True");
    assert!(
        what.contains("withheld until the binding complies: inline policy deploy")
            && what.contains(&format!("managed policy {READ_ONLY}")),
        "{what}"
    );
    let note = wait_event(client, ns, "deployer", "GrantsRevoked", 20)
        .await
        .note
        .unwrap_or_default();
    assert!(
        note.contains(&name) && note.contains("deleted inline policy deploy"),
        "{note}"
    );
    let metrics = controller.metrics.encode();
    for kind in ["inline", "managed"] {
        let name = format!("hatrack_grants_revoked_total{{kind=\"{kind}\"}}");
        assert_eq!(metric(&metrics, &name), Some(1.0), "{metrics}");
    }

    // The team names the role it passes: compliant, and the grants are back.
    let named = format!("arn:aws:iam::{ACCOUNT}:role/ecs-task-runner");
    patch_spec(
        client,
        ns,
        "deployer",
        json!({"inlinePolicies": passes_any_role(&named)["inlinePolicies"]}),
    )
    .await;
    let b = wait_ready_reason(client, ns, "deployer", "Synced", 30).await;
    let restored = iam_role(moto, &name).await.unwrap();
    assert_eq!(
        restored.managed_policy_arns.iter().collect::<Vec<_>>(),
        [READ_ONLY]
    );
    assert_eq!(
        restored.inline_policies["deploy"]["Statement"][0]["Resource"],
        json!(named)
    );
    let (status, reason, _) = condition(&b, "GrantsRevoked").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Compliant"));
    wait_event(client, ns, "deployer", "GrantsRestored", 20).await;
    // Counted once, however many passes find the binding compliant.
    let metrics = controller.metrics.encode();
    assert_eq!(
        metric(&metrics, "hatrack_grants_restored_total"),
        Some(1.0),
        "{metrics}"
    );
    delete_guardrail_for(client, ns, "no-pass-any").await;
    controller.stop().await;
}

#[tokio::test]
async fn report_enforcement_leaves_the_role_as_it_is() {
    let t = TestNamespace::new("report").await;
    let (client, ns, moto) = (&t.client, t.ns.as_str(), &t.moto);
    let controller = t.controller().start();
    create_binding(client, ns, "deployer", passes_any_role("*")).await;
    wait_ready_reason(client, ns, "deployer", "Synced", 30).await;
    create_guardrail_for(
        client,
        ns,
        "report",
        json!({"deniedActionsOnAllResources": ["iam:PassRole"], "enforcement": "Report"}),
    )
    .await;
    let b = wait_ready_reason(client, ns, "deployer", "GuardrailViolation", 30).await;
    assert!(ready(&b).unwrap().2.contains("enforcement: Report"));
    let kept = iam_role(moto, &role_name(ns, "deployer")).await.unwrap();
    assert_eq!(kept.inline_policies.len(), 1);
    assert_eq!(kept.managed_policy_arns.len(), 1);
    assert!(condition(&b, "GrantsRevoked").is_none());
    delete_guardrail_for(client, ns, "report").await;
    controller.stop().await;
}

#[tokio::test]
async fn denied_actions_are_found_inside_an_attached_managed_policy() {
    let t = TestNamespace::new("managed").await;
    let (client, ns, moto) = (&t.client, t.ns.as_str(), &t.moto);
    create_guardrail_for(client, ns, "no-iam", json!({"deniedActions": ["iam:*"]})).await;
    let controller = t.controller().start();

    // IAMFullAccess grants iam:* in its default version: read from IAM, refused.
    create_binding(
        client,
        ns,
        "iam-admin",
        json!({"serviceAccounts": ["api"], "managedPolicyArns": [IAM_FULL_ACCESS]}),
    )
    .await;
    let b = wait_ready_reason(client, ns, "iam-admin", "GuardrailViolation", 30).await;
    let (_, _, message) = ready(&b).unwrap();
    assert!(
        message.contains(&format!(
            "IAMGuardrail {ns}-no-iam: spec.managedPolicyArns[0]: managed policy {IAM_FULL_ACCESS} (version v"
        )) && message.contains("\"iam:*\" could grant \"iam:*\""),
        "{message}"
    );
    assert!(
        iam_role(moto, &role_name(ns, "iam-admin")).await.is_none(),
        "no role for a binding whose managed policy breaks a guardrail"
    );

    // A managed policy without IAM actions passes, and is read once: later reconciles use
    // the cached version.
    create_binding(
        client,
        ns,
        "s3-reader",
        json!({"serviceAccounts": ["web"], "managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"]}),
    )
    .await;
    wait_ready_reason(client, ns, "s3-reader", "Synced", 30).await;
    let counts = controller.metrics.iam_call_counts();
    let calls = |op: &str| {
        counts
            .iter()
            .filter(|((o, _), _)| o == op)
            .map(|(_, n)| *n)
            .sum::<u64>()
    };
    assert!(calls("GetPolicy") >= 2, "{counts:?}");
    assert_eq!(
        calls("GetPolicyVersion"),
        2,
        "one document per policy and version: {counts:?}"
    );
    delete_guardrail_for(client, ns, "no-iam").await;
    controller.stop().await;
}

/// A client layer that holds back the answers to guardrail requests for a while: the
/// controller's guardrail cache stays empty, as after a restart whose guardrail lists are
/// slow, while everything else (bindings, namespaces) is answered at once.
#[derive(Clone)]
struct HoldGuardrails<S> {
    inner: S,
    until: tokio::time::Instant,
}

impl<S> tower::Layer<S> for HoldGuardrailsLayer {
    type Service = HoldGuardrails<S>;
    fn layer(&self, inner: S) -> HoldGuardrails<S> {
        HoldGuardrails {
            inner,
            until: self.0,
        }
    }
}

struct HoldGuardrailsLayer(tokio::time::Instant);

impl<S, B> tower::Service<http::Request<B>> for HoldGuardrails<S>
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
        let hold = req.uri().path().contains("/iamguardrails");
        let until = self.until;
        let answer = self.inner.call(req);
        Box::pin(async move {
            if hold {
                tokio::time::sleep_until(until).await;
            }
            answer.await
        })
    }
}

#[tokio::test]
async fn a_restart_with_a_violating_binding_in_place_never_applies_it() {
    let t = TestNamespace::new("restart").await;
    let (cluster, admin, ns, moto) = (t.cluster, &t.client, t.ns.as_str(), &t.moto);
    // While no controller runs (a restart, a leader change): a guardrail, and a binding that
    // breaks it, admitted because no webhook was there to refuse it.
    create_guardrail_for(admin, ns, "no-iam", json!({"deniedActions": ["iam:*"]})).await;
    create_binding(
        admin,
        ns,
        "escalates",
        json!({"serviceAccounts": ["api"], "inlinePolicies": {"pass": {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}]}}}),
    )
    .await;
    // The controller comes up with its guardrail lists held back for 3 s.
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&cluster.kubeconfig).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let held_until = tokio::time::Instant::now() + Duration::from_secs(3);
    let client = kube::client::ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&HoldGuardrailsLayer(held_until))
        .build();
    let controller = RunningController::builder(client, moto)
        .namespace(ns)
        .start();
    // While the guardrails are held back, the binding gets neither a role nor a status.
    while tokio::time::Instant::now() < held_until {
        assert!(
            hatrack_roles(moto).await.is_empty(),
            "a role was made before the guardrails were known"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = wait_ready_reason(admin, ns, "escalates", "GuardrailViolation", 30).await;
    assert!(
        ready(&b)
            .unwrap()
            .2
            .contains(&format!("IAMGuardrail {ns}-no-iam"))
    );
    assert!(
        hatrack_roles(moto).await.is_empty(),
        "a violating binding got a role"
    );
    delete_guardrail_for(admin, ns, "no-iam").await;
    controller.stop().await;
}

#[tokio::test]
async fn retained_roles_keep_no_trust_and_a_guardrail_can_forbid_retain() {
    let t = TestNamespace::new("retain").await;
    let (client, ns, moto) = (&t.client, t.ns.as_str(), &t.moto);
    let controller = t.controller().start();

    // No guardrail says otherwise: the role stays, but nobody may assume it.
    create_binding(
        client,
        ns,
        "keeper",
        json!({"serviceAccounts": ["api"], "managedPolicyArns": [READ_ONLY], "deletionPolicy": "Retain"}),
    )
    .await;
    wait_ready_reason(client, ns, "keeper", "Synced", 30).await;
    delete_binding(client, ns, "keeper").await;
    wait_binding_gone(client, ns, "keeper", 30).await;
    let kept = iam_role(moto, &role_name(ns, "keeper"))
        .await
        .expect("Retain keeps the role");
    let subject = format!("system:serviceaccount:{ns}:api");
    let web_identity = iam_eval::Request {
        principal: Some(iam_eval::Principal::Federated(format!(
            "arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER_HOST_PATH}"
        ))),
        action: "sts:AssumeRoleWithWebIdentity".into(),
        ..Default::default()
    }
    .with(&format!("{ISSUER_HOST_PATH}:aud"), "sts.amazonaws.com")
    .with(&format!("{ISSUER_HOST_PATH}:sub"), &subject);
    assert_ne!(
        iam_eval::evaluate(&kept.assume_role_policy, &web_identity).unwrap(),
        iam_eval::Decision::Allow,
        "the retained role still trusts the ServiceAccount: {}",
        kept.assume_role_policy
    );

    // A guardrail that allows it keeps the trust.
    create_guardrail_for(client, ns, "keep-trust", json!({"retain": "WithTrust"})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    create_binding(
        client,
        ns,
        "trusted",
        json!({"serviceAccounts": ["api"], "deletionPolicy": "Retain"}),
    )
    .await;
    wait_ready_reason(client, ns, "trusted", "Synced", 30).await;
    delete_binding(client, ns, "trusted").await;
    wait_binding_gone(client, ns, "trusted", 30).await;
    let trusted = iam_role(moto, &role_name(ns, "trusted")).await.unwrap();
    assert_eq!(
        iam_eval::evaluate(&trusted.assume_role_policy, &web_identity).unwrap(),
        iam_eval::Decision::Allow
    );
    delete_guardrail_for(client, ns, "keep-trust").await;

    // A guardrail that forbids Retain: the binding is refused, and its role deleted with it.
    create_binding(
        client,
        ns,
        "escapee",
        json!({"serviceAccounts": ["web"], "deletionPolicy": "Retain"}),
    )
    .await;
    wait_ready_reason(client, ns, "escapee", "Synced", 30).await;
    create_guardrail_for(client, ns, "no-retain", json!({"retain": "Forbidden"})).await;
    let b = wait_ready_reason(client, ns, "escapee", "GuardrailViolation", 30).await;
    assert!(ready(&b).unwrap().2.contains("spec.deletionPolicy"));
    delete_binding(client, ns, "escapee").await;
    wait_binding_gone(client, ns, "escapee", 30).await;
    assert!(
        iam_role(moto, &role_name(ns, "escapee")).await.is_none(),
        "a forbidden Retain kept the role"
    );
    wait_event(client, ns, "escapee", "RetainForbidden", 20).await;
    delete_guardrail_for(client, ns, "no-retain").await;
    controller.stop().await;
}
