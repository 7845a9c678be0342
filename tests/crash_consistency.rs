//! Crash consistency: the controller dies at every step boundary of a create, an update and a
//! delete (after N IAM writes nothing more reaches IAM and the process is killed), a new one
//! starts, and the end state must be right: no duplicate role, no orphaned role, no leaked
//! finalizer, status eventually right; with Pod Identity, no duplicate or orphaned EKS
//! association either. Against the real test API server: each crash point
//! gets a fresh namespace and a reset moto.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hatrack::role;
use serde_json::{Value, json};
use support::cluster::cluster_with_crds;
use support::controller::*;
use support::eks::EksStandIn;
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

// EKS Pod Identity associations: the same crash points, with the association writes among
// them (IAM and EKS writes counted together, in the order the controller makes them).

fn pod_spec_v1() -> Value {
    json!({
        "serviceAccounts": ["api", "worker"],
        "trust": {"podIdentity": {}},
        "managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
    })
}

fn pod_spec_v2() -> Value {
    json!({"serviceAccounts": ["api", "jobs"]})
}

/// A controller with EKS whose IAM and EKS writes stop after `n` in all (`usize::MAX`: never).
fn crashing_controller_with_eks(
    c: &Cluster,
    moto: &Moto,
    eks: &EksStandIn,
    n: usize,
) -> (RunningController, Arc<CrashState>) {
    let state = Arc::new(CrashState::default());
    let crash = CrashAfterWrites {
        allowed_writes: n,
        state: state.clone(),
    };
    let (iam, metrics) = moto.iam_with(crash.clone());
    let eks = hatrack::eks::Eks::new(
        aws_sdk_eks::Client::from_conf(eks.sdk_config().interceptor(crash).build()),
        &settings().cluster_name,
        1000,
        metrics.clone(),
    );
    (
        RunningController::start_full(
            c.client.clone(),
            iam,
            Some(eks),
            metrics,
            Duration::from_secs(600),
            Some(c.ns.clone()),
        ),
        state,
    )
}

fn healthy_controller_with_eks(c: &Cluster, eks: &EksStandIn, moto: &Moto) -> RunningController {
    RunningController::start_with_eks(&c.ns, c.client.clone(), moto, eks, Duration::from_secs(600))
}

/// A fresh IAM, EKS and namespace holding Pod Identity binding `b` at v1.
async fn fresh_pod_identity_cluster(moto: &Moto, eks: &EksStandIn) -> Cluster {
    moto.reset();
    eks.reset();
    let cluster = cluster_with_crds().await;
    let c = Cluster {
        client: cluster.client().await,
        ns: cluster.namespace("crash-pi").await,
    };
    create_binding(&c.client, &c.ns, "b", pod_spec_v1()).await;
    c
}

/// Exactly one association per bound ServiceAccount, each the binding's and naming its role,
/// none other in the namespace, and the status recording them.
async fn assert_associations_match(c: &Cluster, eks: &EksStandIn) {
    let binding = get_binding(&c.client, &c.ns, "b").await.expect("binding");
    let desired = role::desired_role(&binding, &settings()).unwrap();
    let all: Vec<_> = eks
        .associations()
        .into_iter()
        .filter(|a| a.namespace == c.ns)
        .collect();
    let mut sas: Vec<&str> = all.iter().map(|a| a.service_account.as_str()).collect();
    sas.sort();
    let mut want: Vec<&str> = binding
        .spec
        .service_accounts
        .iter()
        .map(String::as_str)
        .collect();
    want.sort();
    assert_eq!(
        sas, want,
        "one association per bound ServiceAccount, no other"
    );
    for a in &all {
        assert_eq!(a.role_arn, desired.role.arn);
        assert_eq!(
            a.tags,
            hatrack::naming::ownership_tags(&settings().cluster_name, &c.ns, "b")
        );
    }
    let mut recorded: Vec<(String, String)> = binding
        .status
        .unwrap()
        .pod_identity_associations
        .into_iter()
        .map(|a| (a.service_account, a.association_id))
        .collect();
    recorded.sort();
    let mut stored: Vec<(String, String)> = all
        .iter()
        .map(|a| (a.service_account.clone(), a.id.clone()))
        .collect();
    stored.sort();
    assert_eq!(recorded, stored);
}

/// Runs a never-crashing counting controller through the flow that `prepare` sets up, and
/// returns the writes it made (so the crash points follow the flow, whatever it takes).
async fn writes_of_flow(
    moto: &Moto,
    eks: &EksStandIn,
    prepare: impl AsyncFn(&Cluster),
    done: impl AsyncFn(&Cluster) -> bool,
) -> Vec<String> {
    let c = fresh_pod_identity_cluster(moto, eks).await;
    writes_of_flow_in(c, moto, eks, prepare, done, crashing_controller_with_eks).await
}

/// Starts a controller that crashes after `n` writes.
type StartCrashing =
    fn(&Cluster, &Moto, &EksStandIn, usize) -> (RunningController, Arc<CrashState>);

async fn writes_of_flow_in(
    c: Cluster,
    moto: &Moto,
    eks: &EksStandIn,
    prepare: impl AsyncFn(&Cluster),
    done: impl AsyncFn(&Cluster) -> bool,
    controller: StartCrashing,
) -> Vec<String> {
    prepare(&c).await;
    let (counting, state) = controller(&c, moto, eks, usize::MAX);
    wait_for(30, "flow done", || async { done(&c).await.then_some(()) }).await;
    counting.kill();
    let ops = state.operations.lock().unwrap().clone();
    ops.into_iter()
        .filter(|op| {
            // STS AssumeRole (credentials for another account) is not a write the crash counts.
            !(op.starts_with("Get")
                || op.starts_with("List")
                || op.starts_with("Describe")
                || op == "AssumeRole")
        })
        .collect()
}

#[tokio::test]
async fn crash_at_every_step_of_a_pod_identity_create() {
    let moto = Moto::start();
    let eks = EksStandIn::start(ACCOUNT, "eu-west-1", &[&settings().cluster_name]).await;
    let writes = writes_of_flow(&moto, &eks, async |_| {}, async |c| is_synced(c).await).await;
    assert_eq!(
        writes
            .iter()
            .filter(|w| *w == "CreatePodIdentityAssociation")
            .count(),
        2,
        "{writes:?}"
    );
    for n in 0..=writes.len() {
        let c = fresh_pod_identity_cluster(&moto, &eks).await;
        let (first, state) = crashing_controller_with_eks(&c, &moto, &eks, n);
        run_until_crash_or(&state, first, n, writes.len(), async || is_synced(&c).await).await;
        let second = healthy_controller_with_eks(&c, &eks, &moto);
        wait_ready_reason(&c.client, &c.ns, "b", "Synced", 30).await;
        assert_role_matches(&c, &moto, "b").await;
        assert_associations_match(&c, &eks).await;
        second.stop().await;
    }
}

#[tokio::test]
async fn crash_at_every_step_of_a_pod_identity_update() {
    let moto = Moto::start();
    let eks = EksStandIn::start(ACCOUNT, "eu-west-1", &[&settings().cluster_name]).await;
    let prepare = async |c: &Cluster| {
        let healthy = healthy_controller_with_eks(c, &eks, &moto);
        wait_ready_reason(&c.client, &c.ns, "b", "Synced", 30).await;
        healthy.stop().await;
        patch_spec(&c.client, &c.ns, "b", pod_spec_v2()).await;
    };
    let updated = async |c: &Cluster| {
        get_binding(&c.client, &c.ns, "b")
            .await
            .and_then(|b| ready(&b))
            .is_some_and(|r| r.1 == "Synced")
    };
    let writes = writes_of_flow(&moto, &eks, prepare, updated).await;
    for op in [
        "CreatePodIdentityAssociation",
        "DeletePodIdentityAssociation",
    ] {
        assert!(writes.iter().any(|w| w == op), "{op} in {writes:?}");
    }
    for n in 0..=writes.len() {
        let c = fresh_pod_identity_cluster(&moto, &eks).await;
        prepare(&c).await;
        let (first, state) = crashing_controller_with_eks(&c, &moto, &eks, n);
        run_until_crash_or(&state, first, n, writes.len(), async || updated(&c).await).await;
        let second = healthy_controller_with_eks(&c, &eks, &moto);
        let b = wait_ready_reason(&c.client, &c.ns, "b", "Synced", 30).await;
        assert_eq!(b.status.unwrap().observed_generation, Some(2));
        assert_role_matches(&c, &moto, "b").await;
        assert_associations_match(&c, &eks).await;
        second.stop().await;
    }
}

#[tokio::test]
async fn crash_at_every_step_of_a_pod_identity_delete() {
    let moto = Moto::start();
    let eks = EksStandIn::start(ACCOUNT, "eu-west-1", &[&settings().cluster_name]).await;
    let prepare = async |c: &Cluster| {
        let healthy = healthy_controller_with_eks(c, &eks, &moto);
        wait_ready_reason(&c.client, &c.ns, "b", "Synced", 30).await;
        healthy.stop().await;
        delete_binding(&c.client, &c.ns, "b").await;
    };
    let writes = writes_of_flow(&moto, &eks, prepare, async |c| is_gone(c).await).await;
    // The associations name the role: they go first.
    let last_association = writes
        .iter()
        .rposition(|w| w == "DeletePodIdentityAssociation")
        .expect("associations deleted");
    let role = writes
        .iter()
        .position(|w| w == "DeleteRole")
        .expect("role deleted");
    assert!(last_association < role, "{writes:?}");
    for n in 0..=writes.len() {
        let c = fresh_pod_identity_cluster(&moto, &eks).await;
        prepare(&c).await;
        let (first, state) = crashing_controller_with_eks(&c, &moto, &eks, n);
        run_until_crash_or(&state, first, n, writes.len(), async || is_gone(&c).await).await;
        let second = healthy_controller_with_eks(&c, &eks, &moto);
        wait_for(30, "binding gone", || async {
            is_gone(&c).await.then_some(())
        })
        .await;
        assert!(
            hatrack_roles(&moto).await.is_empty(),
            "orphaned role after a crash at step {n}"
        );
        assert!(
            eks.associations().is_empty(),
            "orphaned association after a crash at step {n}: {:?}",
            eks.associations()
        );
        second.stop().await;
    }
}

// Pod Identity in another account: the chaining role in the controller's account, the target
// role in B, the associations with their targetRoleArn, the target's trust of their external
// ids; the crash budget counts IAM writes in both accounts and EKS writes together.

/// A controller with EKS whose IAM writes (in every account) and EKS writes stop after `n`.
fn crashing_chained_controller(
    c: &Cluster,
    moto: &Moto,
    eks: &EksStandIn,
    n: usize,
) -> (RunningController, Arc<CrashState>) {
    let state = Arc::new(CrashState::default());
    let (iam, metrics) = moto.iam_crashing(n, state.clone());
    let crash = CrashAfterWrites {
        allowed_writes: n,
        state: state.clone(),
    };
    let eks = hatrack::eks::Eks::new(
        aws_sdk_eks::Client::from_conf(eks.sdk_config().interceptor(crash).build()),
        &settings().cluster_name,
        1000,
        metrics.clone(),
    );
    (
        RunningController::start_full(
            c.client.clone(),
            iam,
            Some(eks),
            metrics,
            Duration::from_secs(600),
            Some(c.ns.clone()),
        ),
        state,
    )
}

/// A fresh IAM, EKS and namespace holding Pod Identity binding `b` in account B.
async fn fresh_chained_cluster(moto: &Moto, eks: &EksStandIn) -> Cluster {
    moto.reset();
    eks.reset();
    let cluster = cluster_with_crds().await;
    let c = Cluster {
        client: cluster.client().await,
        ns: cluster.namespace("crash-chain").await,
    };
    let accounts: kube::Api<hatrack::crd::IAMAccount> = kube::Api::all(c.client.clone());
    let account: hatrack::crd::IAMAccount = serde_json::from_value(json!({
        "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMAccount",
        "metadata": {"name": c.ns},
        "spec": {"accountId": OTHER,
                 "assumeRole": {"roleArn": format!("arn:aws:iam::{OTHER}:role/hatrack-operator")},
                 "namespaceSelector": {}}
    }))
    .unwrap();
    accounts
        .create(&kube::api::PostParams::default(), &account)
        .await
        .expect("create IAMAccount");
    let mut spec = pod_spec_v1();
    spec["account"] = json!(c.ns);
    create_binding(&c.client, &c.ns, "b", spec).await;
    c
}

/// Exactly one chaining role at home and one target role in B (both binding `b`'s), one
/// association per bound ServiceAccount chaining from the one to the other, and the target
/// role trusting the chaining role with exactly those associations' external ids.
async fn assert_chain_matches(c: &Cluster, moto: &Moto, eks: &EksStandIn) {
    let binding = get_binding(&c.client, &c.ns, "b").await.expect("binding");
    let status = binding.status.clone().unwrap();
    let role_name = status.role_name.clone().unwrap();
    let target_arn = status.role_arn.clone().unwrap();
    let chaining_arn = format!("arn:aws:iam::{ACCOUNT}:role/hatrack/{role_name}");
    assert_eq!(
        hatrack_roles(moto).await,
        vec![role_name.clone()],
        "one chaining role"
    );
    assert_eq!(
        moto.roles_in(OTHER, "/hatrack/").await,
        vec![role_name.clone()],
        "one target role"
    );
    let all: Vec<_> = eks
        .associations()
        .into_iter()
        .filter(|a| a.namespace == c.ns)
        .collect();
    let mut sas: Vec<&str> = all.iter().map(|a| a.service_account.as_str()).collect();
    sas.sort();
    assert_eq!(sas, ["api", "worker"], "one association per ServiceAccount");
    let mut ids = Vec::new();
    for a in &all {
        assert_eq!(a.role_arn, chaining_arn);
        assert_eq!(a.target_role_arn.as_deref(), Some(target_arn.as_str()));
        ids.push(a.external_id.clone().expect("external id"));
    }
    ids.sort();
    let in_b = moto.sdk_client_in(OTHER).await;
    let role = in_b.get_role().role_name(&role_name).send().await.unwrap();
    let trust = hatrack::policy::decode_document(
        role.role().unwrap().assume_role_policy_document().unwrap(),
    )
    .unwrap();
    assert_eq!(
        trust["Statement"][0]["Principal"]["AWS"],
        json!(chaining_arn)
    );
    assert_eq!(
        trust["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"],
        json!(ids),
        "the target trusts exactly the associations' external ids"
    );
    let mut recorded: Vec<String> = status
        .pod_identity_associations
        .iter()
        .filter_map(|a| a.external_id.clone())
        .collect();
    recorded.sort();
    assert_eq!(recorded, ids);
}

#[tokio::test]
async fn crash_at_every_step_of_a_pod_identity_create_in_another_account() {
    let moto = Moto::start();
    let eks = EksStandIn::start(ACCOUNT, "eu-west-1", &[&settings().cluster_name]).await;
    let c = fresh_chained_cluster(&moto, &eks).await;
    let writes = writes_of_flow_in(
        c,
        &moto,
        &eks,
        async |_| {},
        async |c| is_synced(c).await,
        crashing_chained_controller,
    )
    .await;
    // Chaining role, target role, associations, then the target's trust of their ids.
    assert!(
        writes.iter().filter(|w| *w == "CreateRole").count() == 2
            && writes.iter().any(|w| w == "UpdateAssumeRolePolicy"),
        "{writes:?}"
    );
    for n in 0..=writes.len() {
        let c = fresh_chained_cluster(&moto, &eks).await;
        let (first, state) = crashing_chained_controller(&c, &moto, &eks, n);
        run_until_crash_or(&state, first, n, writes.len(), async || is_synced(&c).await).await;
        let second = healthy_controller_with_eks(&c, &eks, &moto);
        wait_ready_reason(&c.client, &c.ns, "b", "Synced", 30).await;
        // Synced may be the crashed controller's last word: wait for the healthy one to
        // have set the target's trust (a write the crash can interrupt) before judging.
        wait_for(
            30,
            "the target role trusts the associations' external ids",
            || async {
                target_trusts_association_ids(&c, &moto, &eks)
                    .await
                    .then_some(())
            },
        )
        .await;
        assert_chain_matches(&c, &moto, &eks).await;
        second.stop().await;
    }
}

/// A status that lags the associations (here: their external ids wiped from it, as a cache
/// behind the controller's own last write shows it) must not make the role step write the
/// target's trust without them: pods would lose credentials until the association step put
/// them back. The ids come from EKS, so a reconcile of a chain in sync writes nothing.
#[tokio::test]
async fn a_status_behind_the_associations_never_drops_a_trusted_external_id() {
    let moto = Moto::start();
    let eks = EksStandIn::start(ACCOUNT, "eu-west-1", &[&settings().cluster_name]).await;
    let c = fresh_chained_cluster(&moto, &eks).await;
    let first = healthy_controller_with_eks(&c, &eks, &moto);
    wait_for(
        30,
        "the target role trusts the associations' external ids",
        || async {
            target_trusts_association_ids(&c, &moto, &eks)
                .await
                .then_some(())
        },
    )
    .await;
    first.stop().await;

    let api: kube::Api<hatrack::crd::IAMRoleBinding> =
        kube::Api::namespaced(c.client.clone(), &c.ns);
    let mut binding = api.get_status("b").await.expect("binding");
    let status = binding.status.as_mut().expect("status");
    assert!(
        status
            .pod_identity_associations
            .iter()
            .all(|a| a.external_id.is_some())
    );
    for a in &mut status.pod_identity_associations {
        a.external_id = None;
    }
    api.replace_status("b", &kube::api::PostParams::default(), &binding)
        .await
        .expect("write the lagging status");

    let (counting, state) = crashing_chained_controller(&c, &moto, &eks, usize::MAX);
    wait_for(30, "the status records the external ids again", || async {
        get_binding(&c.client, &c.ns, "b")
            .await
            .and_then(|b| b.status)
            .filter(|s| {
                !s.pod_identity_associations.is_empty()
                    && s.pod_identity_associations
                        .iter()
                        .all(|a| a.external_id.is_some())
            })
            .map(|_| ())
    })
    .await;
    counting.kill();
    let writes: Vec<String> = state
        .operations
        .lock()
        .unwrap()
        .iter()
        .filter(|op| {
            !(op.starts_with("Get")
                || op.starts_with("List")
                || op.starts_with("Describe")
                || *op == "AssumeRole")
        })
        .cloned()
        .collect();
    assert!(
        writes.is_empty(),
        "a chain in sync needs no write, whatever the status says: {writes:?}"
    );
    assert_chain_matches(&c, &moto, &eks).await;
}

/// Whether the target role in B trusts exactly the external ids of the namespace's
/// associations (and there are some).
async fn target_trusts_association_ids(c: &Cluster, moto: &Moto, eks: &EksStandIn) -> bool {
    let Some(role_name) = get_binding(&c.client, &c.ns, "b")
        .await
        .and_then(|b| b.status)
        .and_then(|s| s.role_name)
    else {
        return false;
    };
    let mut ids: Vec<String> = eks
        .associations()
        .into_iter()
        .filter(|a| a.namespace == c.ns)
        .filter_map(|a| a.external_id)
        .collect();
    ids.sort();
    let in_b = moto.sdk_client_in(OTHER).await;
    let Ok(role) = in_b.get_role().role_name(&role_name).send().await else {
        return false;
    };
    let Some(trust) = role
        .role()
        .and_then(|r| r.assume_role_policy_document())
        .and_then(|d| hatrack::policy::decode_document(d).ok())
    else {
        return false;
    };
    !ids.is_empty()
        && trust["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"] == json!(ids)
}

#[tokio::test]
async fn crash_at_every_step_of_a_pod_identity_delete_in_another_account() {
    let moto = Moto::start();
    let eks = EksStandIn::start(ACCOUNT, "eu-west-1", &[&settings().cluster_name]).await;
    let prepare = async |c: &Cluster| {
        let healthy = healthy_controller_with_eks(c, &eks, &moto);
        wait_ready_reason(&c.client, &c.ns, "b", "Synced", 30).await;
        healthy.stop().await;
        delete_binding(&c.client, &c.ns, "b").await;
    };
    let c = fresh_chained_cluster(&moto, &eks).await;
    let writes = writes_of_flow_in(
        c,
        &moto,
        &eks,
        prepare,
        async |c| is_gone(c).await,
        crashing_chained_controller,
    )
    .await;
    // Associations first; then both roles.
    let last_association = writes
        .iter()
        .rposition(|w| w == "DeletePodIdentityAssociation")
        .expect("associations deleted");
    let first_role = writes
        .iter()
        .position(|w| w == "DeleteRole")
        .expect("roles deleted");
    assert!(last_association < first_role, "{writes:?}");
    assert_eq!(
        writes.iter().filter(|w| *w == "DeleteRole").count(),
        2,
        "{writes:?}"
    );
    for n in 0..=writes.len() {
        let c = fresh_chained_cluster(&moto, &eks).await;
        prepare(&c).await;
        let (first, state) = crashing_chained_controller(&c, &moto, &eks, n);
        run_until_crash_or(&state, first, n, writes.len(), async || is_gone(&c).await).await;
        let second = healthy_controller_with_eks(&c, &eks, &moto);
        wait_for(30, "binding gone", || async {
            is_gone(&c).await.then_some(())
        })
        .await;
        assert!(
            hatrack_roles(&moto).await.is_empty(),
            "orphaned chaining role after a crash at step {n}"
        );
        assert!(
            moto.roles_in(OTHER, "/hatrack/").await.is_empty(),
            "orphaned target role after a crash at step {n}"
        );
        assert!(
            eks.associations().is_empty(),
            "orphaned association after a crash at step {n}: {:?}",
            eks.associations()
        );
        second.stop().await;
    }
}
