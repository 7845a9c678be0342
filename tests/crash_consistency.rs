//! Crash consistency: the controller dies at every step boundary of a create, an update and a
//! delete (after N IAM writes nothing more reaches IAM and the process is killed), a new one
//! starts, and the end state must be right: no duplicate role, no orphaned role, no leaked
//! finalizer, status eventually right; with Pod Identity, no duplicate or orphaned EKS
//! association either. Against the real test API server: each crash point
//! gets a fresh namespace and a reset moto.

use hatrack_test_support as support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use hatrack::role;
use serde_json::{Value, json};
use support::cluster::cluster_with_crds;
use support::controller::*;
use support::eks::EksStandIn;
use support::faults::{CrashAfterWrites, CrashState};
use support::moto::Moto;
use support::objects::{create_account, label_namespace};

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

/// The other account of the cross-account crash points.
const OTHER: &str = "222222222222";

/// The API server's client and the namespace of one crash point.
struct Cluster {
    client: kube::Client,
    ns: String,
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

/// Where a flow ends: binding `b` Synced, or gone.
#[derive(Clone, Copy)]
enum End {
    Synced,
    Gone,
}

impl End {
    async fn reached(self, c: &Cluster) -> bool {
        match self {
            End::Synced => is_synced(c).await,
            End::Gone => is_gone(c).await,
        }
    }

    /// Waits (30 s at most) until the flow has ended.
    async fn wait(self, c: &Cluster) {
        match self {
            End::Synced => {
                wait_ready_reason(&c.client, &c.ns, "b", "Synced", 30).await;
            }
            End::Gone => {
                wait_for(30, "binding gone", || async {
                    is_gone(c).await.then_some(())
                })
                .await
            }
        }
    }
}

/// One family of crash points: binding `b` with IRSA or (with `eks`) Pod Identity, in the
/// controller's account or (`in_b`) in account B through an IAMAccount, with a moto (and an EKS
/// stand-in) of its own. Each crash point gets a fresh namespace, a reset moto and a reset EKS.
struct Crashes {
    moto: Moto,
    eks: Option<EksStandIn>,
    in_b: bool,
}

impl Crashes {
    fn new(eks: Option<EksStandIn>, in_b: bool) -> Self {
        Crashes {
            moto: Moto::start(),
            eks,
            in_b,
        }
    }

    fn irsa() -> Self {
        Self::new(None, false)
    }

    fn irsa_in_b() -> Self {
        Self::new(None, true)
    }

    async fn pod_identity() -> Self {
        Self::new(Some(eks_for_test_cluster().await), false)
    }

    /// Pod Identity in B: the chaining role at home, the target role in B.
    async fn chained() -> Self {
        Self::new(Some(eks_for_test_cluster().await), true)
    }

    /// The EKS stand-in of a Pod Identity family.
    fn eks(&self) -> &EksStandIn {
        self.eks
            .as_ref()
            .expect("a Pod Identity family has an EKS stand-in")
    }

    /// A fresh IAM (with the cluster's OIDC provider where IRSA needs it), EKS and namespace
    /// holding binding `b` at v1 (naming a fresh IAMAccount for B that selects the namespace,
    /// if `in_b`).
    async fn fresh(&self) -> Cluster {
        self.moto.reset();
        if let Some(eks) = &self.eks {
            eks.reset();
        }
        let issuer = format!("https://{ISSUER_HOST_PATH}");
        match (self.eks.is_some(), self.in_b) {
            (false, false) => self.moto.create_oidc_provider(&issuer).await,
            (false, true) => self.moto.create_oidc_provider_in(OTHER, &issuer).await,
            (true, _) => {}
        }
        let prefix = match (self.eks.is_some(), self.in_b) {
            (false, false) => "crash",
            (false, true) => "crash-b",
            (true, false) => "crash-pi",
            (true, true) => "crash-chain",
        };
        let cluster = cluster_with_crds().await;
        let c = Cluster {
            client: cluster.client().await,
            ns: cluster.namespace(prefix).await,
        };
        let mut spec = if self.eks.is_some() {
            pod_spec_v1()
        } else {
            spec_v1()
        };
        if self.in_b {
            label_namespace(&c.client, &c.ns, json!({"crash-account": c.ns})).await;
            let selector = json!({"matchLabels": {"crash-account": c.ns}});
            create_account(&c.client, &c.ns, OTHER, None, selector).await;
            spec["account"] = json!(c.ns);
        }
        create_binding(&c.client, &c.ns, "b", spec).await;
        c
    }

    /// A controller whose IAM writes (in every account, if `in_b`) and EKS writes stop
    /// after `n` in all (`usize::MAX`: never); returns it and its crash state.
    fn crashing(&self, c: &Cluster, n: usize) -> (RunningController, Arc<CrashState>) {
        let state = Arc::new(CrashState::default());
        let crash = CrashAfterWrites {
            allowed_writes: n,
            state: state.clone(),
        };
        let (iam, metrics) = if self.in_b {
            self.moto.iam_crashing(n, state.clone())
        } else {
            self.moto.iam_with(crash.clone())
        };
        let mut controller =
            RunningController::builder_with_iam(c.client.clone(), iam, metrics).namespace(&c.ns);
        if let Some(eks) = &self.eks {
            controller = controller.eks_client(aws_sdk_eks::Client::from_conf(
                eks.sdk_config().interceptor(crash).build(),
            ));
        }
        (controller.start(), state)
    }

    /// A controller that does not crash, with a long resync so only watch events drive it.
    fn healthy(&self, c: &Cluster) -> RunningController {
        let controller = RunningController::builder(c.client.clone(), &self.moto).namespace(&c.ns);
        match &self.eks {
            Some(eks) => controller.eks(eks).start(),
            None => controller.start(),
        }
    }

    /// Lets a healthy controller sync binding `b`, then stops it.
    async fn sync(&self, c: &Cluster) {
        let healthy = self.healthy(c);
        wait_ready_reason(&c.client, &c.ns, "b", "Synced", 30).await;
        healthy.stop().await;
    }

    /// [`sync`](Self::sync), then change binding `b` to `spec`: where an update flow starts.
    async fn sync_then_patch(&self, c: &Cluster, spec: Value) {
        self.sync(c).await;
        patch_spec(&c.client, &c.ns, "b", spec).await;
    }

    /// [`sync`](Self::sync), then delete binding `b`: where a delete flow starts.
    async fn sync_then_delete(&self, c: &Cluster) {
        self.sync(c).await;
        delete_binding(&c.client, &c.ns, "b").await;
    }

    /// The writes a never-crashing counting controller makes in `c` until `done` (`what`).
    async fn writes_until(
        &self,
        c: &Cluster,
        what: &str,
        done: impl AsyncFn() -> bool,
    ) -> Vec<String> {
        let (counting, state) = self.crashing(c, usize::MAX);
        wait_for(30, what, || async { done().await.then_some(()) }).await;
        counting.kill();
        state.writes()
    }

    /// The writes of the flow from where `prepare` leaves a fresh namespace to `end` (so
    /// the crash points follow the flow, whatever it takes).
    async fn writes_of_flow(&self, prepare: impl AsyncFn(&Cluster), end: End) -> Vec<String> {
        let c = self.fresh().await;
        prepare(&c).await;
        self.writes_until(&c, "flow done", async || end.reached(&c).await)
            .await
    }

    /// For each crash point `n` of a flow of `writes` writes: a fresh namespace, `prepare`, a
    /// controller that dies after `n` writes, a healthy one until the flow's `end`, and then
    /// `check(c, n)` of the end state.
    async fn crash_at_every_step(
        &self,
        writes: usize,
        prepare: impl AsyncFn(&Cluster),
        end: End,
        check: impl AsyncFn(&Cluster, usize),
    ) {
        for n in 0..=writes {
            let c = self.fresh().await;
            prepare(&c).await;
            let (first, state) = self.crashing(&c, n);
            run_until_crash_or(&state, first, n, writes, async || end.reached(&c).await).await;
            let second = self.healthy(&c);
            end.wait(&c).await;
            check(&c, n).await;
            second.stop().await;
        }
    }
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

async fn assert_observed_generation(c: &Cluster, generation: i64) {
    let b = get_binding(&c.client, &c.ns, "b").await.expect("binding");
    assert_eq!(b.status.unwrap().observed_generation, Some(generation));
}

async fn assert_no_roles(moto: &Moto, n: usize) {
    assert!(
        hatrack_roles(moto).await.is_empty(),
        "orphaned role after a crash at step {n}"
    );
}

fn assert_no_associations(eks: &EksStandIn, n: usize) {
    assert!(
        eks.associations().is_empty(),
        "orphaned association after a crash at step {n}: {:?}",
        eks.associations()
    );
}

#[tokio::test]
async fn crash_at_every_step_of_a_create() {
    let crashes = Crashes::irsa();
    let moto = &crashes.moto;
    // CreateRole, PutRolePolicy, AttachRolePolicy: crash before each, and after the last.
    crashes
        .crash_at_every_step(
            3,
            async |_| {},
            End::Synced,
            async |c, _| assert_role_matches(c, moto, "b").await,
        )
        .await;
}

#[tokio::test]
async fn crash_at_every_step_of_an_update() {
    let crashes = Crashes::irsa();
    let moto = &crashes.moto;
    // v1 → v2: UpdateAssumeRolePolicy, UpdateRole, PutRolePolicy, DeleteRolePolicy,
    // AttachRolePolicy, DetachRolePolicy.
    let prepare = async |c: &Cluster| crashes.sync_then_patch(c, spec_v2()).await;
    crashes
        .crash_at_every_step(6, prepare, End::Synced, async |c, _| {
            assert_observed_generation(c, 2).await;
            assert_role_matches(c, moto, "b").await;
        })
        .await;
}

#[tokio::test]
async fn crash_at_every_step_of_a_delete() {
    let crashes = Crashes::irsa();
    let moto = &crashes.moto;
    // DetachRolePolicy, DeleteRolePolicy, DeleteRole.
    let prepare = async |c: &Cluster| crashes.sync_then_delete(c).await;
    crashes
        .crash_at_every_step(3, prepare, End::Gone, async |_, n| {
            assert_no_roles(moto, n).await
        })
        .await;
}

// Cross-account: the same crash points for a role made in account B through an IAMAccount
// (the controller's IAM client and B's, with credentials assumed through STS, die together).

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
    let crashes = Crashes::irsa_in_b();
    let moto = &crashes.moto;
    crashes
        .crash_at_every_step(
            3,
            async |_| {},
            End::Synced,
            async |c, _| assert_role_matches_in_b(c, moto).await,
        )
        .await;
}

#[tokio::test]
async fn crash_at_every_step_of_a_delete_in_another_account() {
    let crashes = Crashes::irsa_in_b();
    let moto = &crashes.moto;
    let prepare = async |c: &Cluster| {
        crashes.sync(c).await;
        assert_role_matches_in_b(c, moto).await;
        delete_binding(&c.client, &c.ns, "b").await;
    };
    crashes
        .crash_at_every_step(3, prepare, End::Gone, async |_, n| {
            assert!(
                moto.roles_in(OTHER, "/hatrack/").await.is_empty(),
                "orphaned role in B after a crash at step {n}"
            );
            assert!(hatrack_roles(moto).await.is_empty());
        })
        .await;
}

// EKS Pod Identity associations: the same crash points, with the association writes among
// them (IAM and EKS writes counted together, in the order the controller makes them).

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

/// The writes of a delete flow delete every association before the first role.
fn assert_associations_deleted_before_roles(writes: &[String]) {
    let last_association = writes
        .iter()
        .rposition(|w| w == "DeletePodIdentityAssociation")
        .expect("associations deleted");
    let first_role = writes
        .iter()
        .position(|w| w == "DeleteRole")
        .expect("roles deleted");
    assert!(last_association < first_role, "{writes:?}");
}

#[tokio::test]
async fn crash_at_every_step_of_a_pod_identity_create() {
    let crashes = Crashes::pod_identity().await;
    let (moto, eks) = (&crashes.moto, crashes.eks());
    let writes = crashes.writes_of_flow(async |_| {}, End::Synced).await;
    assert_eq!(
        writes
            .iter()
            .filter(|w| *w == "CreatePodIdentityAssociation")
            .count(),
        2,
        "{writes:?}"
    );
    crashes
        .crash_at_every_step(
            writes.len(),
            async |_| {},
            End::Synced,
            async |c, _| {
                assert_role_matches(c, moto, "b").await;
                assert_associations_match(c, eks).await;
            },
        )
        .await;
}

#[tokio::test]
async fn crash_at_every_step_of_a_pod_identity_update() {
    let crashes = Crashes::pod_identity().await;
    let (moto, eks) = (&crashes.moto, crashes.eks());
    let prepare = async |c: &Cluster| crashes.sync_then_patch(c, pod_spec_v2()).await;
    let writes = crashes.writes_of_flow(prepare, End::Synced).await;
    for op in [
        "CreatePodIdentityAssociation",
        "DeletePodIdentityAssociation",
    ] {
        assert!(writes.iter().any(|w| w == op), "{op} in {writes:?}");
    }
    crashes
        .crash_at_every_step(writes.len(), prepare, End::Synced, async |c, _| {
            assert_observed_generation(c, 2).await;
            assert_role_matches(c, moto, "b").await;
            assert_associations_match(c, eks).await;
        })
        .await;
}

#[tokio::test]
async fn crash_at_every_step_of_a_pod_identity_delete() {
    let crashes = Crashes::pod_identity().await;
    let (moto, eks) = (&crashes.moto, crashes.eks());
    let prepare = async |c: &Cluster| crashes.sync_then_delete(c).await;
    let writes = crashes.writes_of_flow(prepare, End::Gone).await;
    // The associations name the role: they go first.
    assert_associations_deleted_before_roles(&writes);
    crashes
        .crash_at_every_step(writes.len(), prepare, End::Gone, async |_, n| {
            assert_no_roles(moto, n).await;
            assert_no_associations(eks, n);
        })
        .await;
}

// Pod Identity in another account: the chaining role in the controller's account, the target
// role in B, the associations with their targetRoleArn, the target's trust of their external
// ids; the crash budget counts IAM writes in both accounts and EKS writes together.

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

/// Waits until the target role in B trusts the external ids of the namespace's associations.
async fn wait_target_trusts_association_ids(c: &Cluster, moto: &Moto, eks: &EksStandIn) {
    wait_for(
        30,
        "the target role trusts the associations' external ids",
        || async {
            target_trusts_association_ids(c, moto, eks)
                .await
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn crash_at_every_step_of_a_pod_identity_create_in_another_account() {
    let crashes = Crashes::chained().await;
    let (moto, eks) = (&crashes.moto, crashes.eks());
    let writes = crashes.writes_of_flow(async |_| {}, End::Synced).await;
    // Chaining role, target role, associations, then the target's trust of their ids.
    assert!(
        writes.iter().filter(|w| *w == "CreateRole").count() == 2
            && writes.iter().any(|w| w == "UpdateAssumeRolePolicy"),
        "{writes:?}"
    );
    crashes
        .crash_at_every_step(
            writes.len(),
            async |_| {},
            End::Synced,
            async |c, _| {
                // Synced may be the crashed controller's last word: wait for the healthy one to
                // have set the target's trust (a write the crash can interrupt) before judging.
                wait_target_trusts_association_ids(c, moto, eks).await;
                assert_chain_matches(c, moto, eks).await;
            },
        )
        .await;
}

/// A status that lags the associations (here: their external ids wiped from it, as a cache
/// behind the controller's own last write shows it) must not make the role step write the
/// target's trust without them: pods would lose credentials until the association step put
/// them back. The ids come from EKS, so a reconcile of a chain in sync writes nothing.
#[tokio::test]
async fn a_status_behind_the_associations_never_drops_a_trusted_external_id() {
    let crashes = Crashes::chained().await;
    let (moto, eks) = (&crashes.moto, crashes.eks());
    let c = crashes.fresh().await;
    let first = crashes.healthy(&c);
    wait_target_trusts_association_ids(&c, moto, eks).await;
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

    let writes = crashes
        .writes_until(
            &c,
            "the status records the external ids again",
            async || {
                get_binding(&c.client, &c.ns, "b")
                    .await
                    .and_then(|b| b.status)
                    .is_some_and(|s| {
                        !s.pod_identity_associations.is_empty()
                            && s.pod_identity_associations
                                .iter()
                                .all(|a| a.external_id.is_some())
                    })
            },
        )
        .await;
    assert!(
        writes.is_empty(),
        "a chain in sync needs no write, whatever the status says: {writes:?}"
    );
    assert_chain_matches(&c, moto, eks).await;
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
    let crashes = Crashes::chained().await;
    let (moto, eks) = (&crashes.moto, crashes.eks());
    let prepare = async |c: &Cluster| crashes.sync_then_delete(c).await;
    let writes = crashes.writes_of_flow(prepare, End::Gone).await;
    // Associations first; then both roles.
    assert_associations_deleted_before_roles(&writes);
    assert_eq!(
        writes.iter().filter(|w| *w == "DeleteRole").count(),
        2,
        "{writes:?}"
    );
    crashes
        .crash_at_every_step(writes.len(), prepare, End::Gone, async |_, n| {
            assert!(
                hatrack_roles(moto).await.is_empty(),
                "orphaned chaining role after a crash at step {n}"
            );
            assert!(
                moto.roles_in(OTHER, "/hatrack/").await.is_empty(),
                "orphaned target role after a crash at step {n}"
            );
            assert_no_associations(eks, n);
        })
        .await;
}
