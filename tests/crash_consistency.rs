//! Crash consistency: the controller dies at every step boundary of a create, an update and a
//! delete (after N IAM writes nothing more reaches IAM and the process is killed), a new one
//! starts, and the end state must be right: no duplicate role, no orphaned role, no leaked
//! finalizer, status eventually right. Against the real test API server: each crash point
//! gets a fresh namespace and a reset moto.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hatrack::role;
use serde_json::{Value, json};
use support::cluster::cluster_with_crds;
use support::controller::*;
use support::faults::{CrashAfterWrites, CrashState};
use support::moto::Moto;

fn spec_v1() -> Value {
    json!({
        "serviceAccounts": ["api"],
        "managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
        "inlinePolicies": {"put": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}]}}
    })
}

fn spec_v2() -> Value {
    json!({
        "serviceAccounts": ["api", "worker"],
        "managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"],
        "inlinePolicies": {"put": null, "get": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}},
        "description": "v2"
    })
}

/// A controller that crashes after `n` IAM writes; returns it and its crash state.
fn crashing_controller(c: &Cluster, moto: &Moto, n: usize) -> (RunningController, Arc<CrashState>) {
    let state = Arc::new(CrashState::default());
    let (iam, metrics) = moto.iam_with(CrashAfterWrites {
        allowed_writes: n,
        state: state.clone(),
    });
    (
        RunningController::start_with_options(
            c.client.clone(),
            iam,
            metrics,
            Duration::from_secs(600),
            Some(c.ns.clone()),
        ),
        state,
    )
}

/// Waits until the crashing controller either crashed or reached `done`, then kills it. A
/// crash point before the last write must really crash (else the test proves nothing).
async fn run_until_crash_or(
    state: &CrashState,
    controller: RunningController,
    n: usize,
    writes_in_flow: usize,
    done: impl AsyncFn() -> bool,
) {
    wait_for(30, "crash or completion", || async {
        (state.crashed.load(Ordering::SeqCst) || done().await).then_some(())
    })
    .await;
    controller.kill();
    assert_eq!(
        state.crashed.load(Ordering::SeqCst),
        n < writes_in_flow,
        "crash point {n} of {writes_in_flow}: {:?}",
        state.operations.lock().unwrap()
    );
    assert_eq!(
        state.writes_done.load(Ordering::SeqCst),
        n.min(writes_in_flow)
    );
}

async fn assert_role_matches(c: &Cluster, moto: &Moto, name: &str) {
    let binding = get_binding(&c.client, &c.ns, name)
        .await
        .expect("binding exists");
    let desired = role::desired_role(&binding, &settings()).unwrap();
    let (iam, _) = moto.iam();
    let actual = iam
        .get_role(&desired.role.role_name)
        .await
        .unwrap()
        .expect("role exists");
    assert_eq!(
        role::diff(Some(&actual), &desired.role),
        role::Diff::default()
    );
    assert_eq!(
        hatrack_roles(moto).await,
        vec![desired.role.role_name.clone()],
        "exactly one role"
    );
    let finalizers = binding.metadata.finalizers.unwrap_or_default();
    assert_eq!(
        finalizers,
        vec![hatrack::controller::FINALIZER.to_string()],
        "one finalizer, once"
    );
}

/// The API server's client and the namespace of one crash point.
struct Cluster {
    client: kube::Client,
    ns: String,
}

/// A fresh IAM (with the cluster's OIDC provider) and a fresh namespace holding binding `b`
/// at v1.
async fn fresh_cluster_with_binding(moto: &Moto) -> Cluster {
    moto.reset();
    moto.create_oidc_provider(&format!("https://{ISSUER_HOST_PATH}"))
        .await;
    let cluster = cluster_with_crds().await;
    let c = Cluster {
        client: cluster.client().await,
        ns: cluster.namespace("crash").await,
    };
    create_binding(&c.client, &c.ns, "b", spec_v1()).await;
    c
}

/// A controller that does not crash, with a long resync so only watch events drive it.
fn healthy_controller(c: &Cluster, moto: &Moto) -> RunningController {
    RunningController::start_in(&c.ns, c.client.clone(), moto, Duration::from_secs(600))
}

/// Lets a healthy controller sync binding `b`, then stops it.
async fn sync_with_healthy_controller(c: &Cluster, moto: &Moto) {
    let healthy = healthy_controller(c, moto);
    wait_ready_reason(&c.client, &c.ns, "b", "Synced", 30).await;
    healthy.stop().await;
}

/// Whether binding `b` reports Ready with reason Synced.
async fn is_synced(c: &Cluster) -> bool {
    get_binding(&c.client, &c.ns, "b")
        .await
        .and_then(|b| ready(&b))
        .is_some_and(|r| r.1 == "Synced")
}

async fn is_gone(c: &Cluster) -> bool {
    get_binding(&c.client, &c.ns, "b").await.is_none()
}

#[tokio::test]
async fn crash_at_every_step_of_a_create() {
    let moto = Moto::start();
    // CreateRole, PutRolePolicy, AttachRolePolicy: crash before each, and after the last.
    for n in 0..=3 {
        let c = fresh_cluster_with_binding(&moto).await;
        let (first, state) = crashing_controller(&c, &moto, n);
        run_until_crash_or(&state, first, n, 3, async || is_synced(&c).await).await;
        let second = healthy_controller(&c, &moto);
        wait_ready_reason(&c.client, &c.ns, "b", "Synced", 30).await;
        assert_role_matches(&c, &moto, "b").await;
        second.stop().await;
    }
}

#[tokio::test]
async fn crash_at_every_step_of_an_update() {
    let moto = Moto::start();
    // v1 → v2: UpdateAssumeRolePolicy, UpdateRole, PutRolePolicy, DeleteRolePolicy,
    // AttachRolePolicy, DetachRolePolicy.
    for n in 0..=6 {
        let c = fresh_cluster_with_binding(&moto).await;
        sync_with_healthy_controller(&c, &moto).await;

        patch_spec(&c.client, &c.ns, "b", spec_v2()).await;
        let (first, state) = crashing_controller(&c, &moto, n);
        run_until_crash_or(&state, first, n, 6, async || is_synced(&c).await).await;
        let second = healthy_controller(&c, &moto);
        let b = wait_ready_reason(&c.client, &c.ns, "b", "Synced", 30).await;
        assert_eq!(b.status.unwrap().observed_generation, Some(2));
        assert_role_matches(&c, &moto, "b").await;
        second.stop().await;
    }
}

#[tokio::test]
async fn crash_at_every_step_of_a_delete() {
    let moto = Moto::start();
    // DetachRolePolicy, DeleteRolePolicy, DeleteRole.
    for n in 0..=3 {
        let c = fresh_cluster_with_binding(&moto).await;
        sync_with_healthy_controller(&c, &moto).await;

        delete_binding(&c.client, &c.ns, "b").await;
        let (first, state) = crashing_controller(&c, &moto, n);
        run_until_crash_or(&state, first, n, 3, async || is_gone(&c).await).await;
        let second = healthy_controller(&c, &moto);
        wait_for(30, "binding gone", || async {
            is_gone(&c).await.then_some(())
        })
        .await;
        assert!(
            hatrack_roles(&moto).await.is_empty(),
            "orphaned role after a crash at step {n}"
        );
        second.stop().await;
    }
}

// Cross-account: the same crash points for a role made in account B through an IAMAccount
// (the controller's IAM client and B's, with credentials assumed through STS, die together).

const OTHER: &str = "222222222222";

/// A fresh IAM (the OIDC provider in B), a fresh namespace selected by a fresh IAMAccount for
/// B, and binding `b` naming it.
async fn fresh_cluster_with_binding_in_b(moto: &Moto) -> Cluster {
    moto.reset();
    moto.sdk_client_in(OTHER)
        .await
        .create_open_id_connect_provider()
        .url(format!("https://{ISSUER_HOST_PATH}"))
        .client_id_list("sts.amazonaws.com")
        .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
        .send()
        .await
        .expect("OIDC provider in B");
    let cluster = cluster_with_crds().await;
    let c = Cluster {
        client: cluster.client().await,
        ns: cluster.namespace("crash-b").await,
    };
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(c.client.clone());
    namespaces
        .patch(
            &c.ns,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {"crash-account": c.ns}}})),
        )
        .await
        .expect("label namespace");
    let accounts: kube::Api<hatrack::crd::IAMAccount> = kube::Api::all(c.client.clone());
    let account: hatrack::crd::IAMAccount = serde_json::from_value(json!({
        "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMAccount",
        "metadata": {"name": c.ns},
        "spec": {"accountId": OTHER,
                 "assumeRole": {"roleArn": format!("arn:aws:iam::{OTHER}:role/hatrack-operator")},
                 "namespaceSelector": {"matchLabels": {"crash-account": c.ns}}}
    }))
    .unwrap();
    accounts
        .create(&kube::api::PostParams::default(), &account)
        .await
        .expect("create IAMAccount");
    let mut spec = spec_v1();
    spec["account"] = json!(c.ns);
    create_binding(&c.client, &c.ns, "b", spec).await;
    c
}

fn crashing_controller_all_accounts(
    c: &Cluster,
    moto: &Moto,
    n: usize,
) -> (RunningController, Arc<CrashState>) {
    let state = Arc::new(CrashState::default());
    let (iam, metrics) = moto.iam_crashing(n, state.clone());
    (
        RunningController::start_with_options(
            c.client.clone(),
            iam,
            metrics,
            Duration::from_secs(600),
            Some(c.ns.clone()),
        ),
        state,
    )
}

/// Exactly binding `b`'s role in B, as its spec says; none in the controller's account.
async fn assert_role_matches_in_b(c: &Cluster, moto: &Moto) {
    let binding = get_binding(&c.client, &c.ns, "b")
        .await
        .expect("binding exists");
    let mut in_b = settings();
    in_b.account_id = OTHER.into();
    let desired = role::desired_role(&binding, &in_b).unwrap();
    let (home, _) = moto.iam();
    let iam_b = home
        .assume_role(
            &hatrack::iam::AssumeRoleTarget {
                role_arn: format!("arn:aws:iam::{OTHER}:role/check"),
                external_id: None,
                session_name: "check".into(),
            },
            1000,
        )
        .await
        .unwrap();
    let actual = iam_b
        .get_role(&desired.role.role_name)
        .await
        .unwrap()
        .expect("role in B");
    assert_eq!(
        role::diff(Some(&actual), &desired.role),
        role::Diff::default()
    );
    assert_eq!(
        moto.roles_in(OTHER, "/hatrack/").await,
        vec![desired.role.role_name.clone()],
        "exactly one role in B"
    );
    assert!(
        hatrack_roles(moto).await.is_empty(),
        "none in the controller's account"
    );
}

#[tokio::test]
async fn crash_at_every_step_of_a_create_in_another_account() {
    let moto = Moto::start();
    for n in 0..=3 {
        let c = fresh_cluster_with_binding_in_b(&moto).await;
        let (first, state) = crashing_controller_all_accounts(&c, &moto, n);
        run_until_crash_or(&state, first, n, 3, async || is_synced(&c).await).await;
        let second = healthy_controller(&c, &moto);
        wait_ready_reason(&c.client, &c.ns, "b", "Synced", 30).await;
        assert_role_matches_in_b(&c, &moto).await;
        second.stop().await;
    }
}

#[tokio::test]
async fn crash_at_every_step_of_a_delete_in_another_account() {
    let moto = Moto::start();
    for n in 0..=3 {
        let c = fresh_cluster_with_binding_in_b(&moto).await;
        sync_with_healthy_controller(&c, &moto).await;
        assert_role_matches_in_b(&c, &moto).await;

        delete_binding(&c.client, &c.ns, "b").await;
        let (first, state) = crashing_controller_all_accounts(&c, &moto, n);
        run_until_crash_or(&state, first, n, 3, async || is_gone(&c).await).await;
        let second = healthy_controller(&c, &moto);
        wait_for(30, "binding gone", || async {
            is_gone(&c).await.then_some(())
        })
        .await;
        assert!(
            moto.roles_in(OTHER, "/hatrack/").await.is_empty(),
            "orphaned role in B after a crash at step {n}"
        );
        assert!(hatrack_roles(&moto).await.is_empty());
        second.stop().await;
    }
}
