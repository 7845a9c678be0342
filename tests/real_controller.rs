//! The controller as users run it, against a real kube-apiserver (tests/support/cluster.rs) and
//! a real moto IAM server: the chart is installed with `helm install` (its ServiceAccounts,
//! ClusterRole and Lease Role stored by the real server; no pod runs), and `hatrack
//! controller` runs as a host process with the chart's own Deployment arguments, authenticated
//! as the chart's controller ServiceAccount (a TokenRequest token), so every call it makes is
//! judged by the chart's RBAC. Proves the full lifecycle (trust, Events, ServiceAccount
//! annotation, edits, drift, finalizer, Retain, RoleNotOwned), that the ServiceAccount is not
//! cluster-admin in disguise, leader election on the real Lease API across a `kill -9`, and that
//! applying the examples causes no churn (`kubectl diff` clean after the controller synced).

use hatrack_test_support as support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use hatrack::crd::{IAMGuardrail, IAMRoleBinding};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::cluster::{
    TestCluster, client_from_kubeconfig, cluster_with_crds, helm, kubectl, run,
    spawn_tied_to_this_thread,
};
use support::controller::{
    ACCOUNT, ISSUER_HOST_PATH, TestNamespace, associations_in, create_binding,
    create_service_account, delete_binding, get_binding, hatrack_roles, iam_role, patch_spec,
    ready, role_arn_annotation, wait_binding_gone, wait_for, wait_ready_reason,
};
use support::eks::EksStandIn;
use support::moto::{Moto, free_port};
use tokio::sync::{RwLock, RwLockReadGuard};

/// The GitOps test runs a controller over all namespaces (as the chart does by default); the
/// other tests each watch one namespace of their own. The GitOps test runs alone so that no
/// two controllers ever reconcile the same binding.
static EXCLUSIVE: RwLock<()> = RwLock::const_new(());

const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
const S3_READ_ONLY: &str = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess";

/// A `helm install` of charts/hatrack into a namespace of its own.
struct Release {
    namespace: String,
    /// The controller's ServiceAccount, as the chart names it.
    controller_sa: String,
    /// The arguments of the chart's controller Deployment.
    controller_args: Vec<String>,
    /// The EKS stand-in the release's `aws.eksEndpoint` names (Pod Identity associations).
    eks: EksStandIn,
}

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/hatrack")
}

/// The identity of the chart-installed controller's cluster `life` (`cluster.region=us-east-1`).
fn life_arn() -> String {
    hatrack::naming::cluster_arn("aws", "us-east-1", ACCOUNT, "life")
}

/// Installs the chart as release `name` with the required values, IAM at moto, and the
/// webhooks registered by URL at a loopback port nobody listens on with `failurePolicy:
/// Ignore` (no webhook runs here; the stored configuration must never block a request nor
/// make the API server dial a Service). `extra` are more `--set` values.
async fn install_chart(
    cluster: &TestCluster,
    name: &str,
    cluster_name: &str,
    moto: &Moto,
    extra: &[String],
) -> Release {
    let namespace = cluster.namespace(name).await;
    let unused_port = free_port();
    // Pod Identity associations go to the EKS stand-in, never to AWS.
    let eks = EksStandIn::start(ACCOUNT, "us-east-1", &[cluster_name]).await;
    let mut cmd = helm(cluster);
    cmd.args(["install", name])
        .arg(chart_dir())
        .args(["--namespace", &namespace])
        .args(["--set", &format!("cluster.name={cluster_name}")])
        .args(["--set", "cluster.region=us-east-1"])
        .args(["--set-string", &format!("cluster.accountId={ACCOUNT}")])
        .args([
            "--set",
            &format!("cluster.oidcIssuer=https://{ISSUER_HOST_PATH}"),
        ])
        .args(["--set", &format!("aws.iamEndpoint={}", moto.endpoint)])
        .args(["--set", &format!("aws.eksEndpoint={}", eks.endpoint)])
        .args([
            "--set",
            &format!("webhook.url=https://127.0.0.1:{unused_port}"),
        ])
        .args(["--set", "webhook.failurePolicy=Ignore"]);
    for value in extra {
        cmd.args(["--set", value]);
    }
    let (ok, out, err) = run(&mut cmd);
    assert!(ok, "helm install {name}:\n{out}{err}");

    // What the chart made for the controller, found by its labels as an operator would.
    let admin = cluster.client().await;
    let selector =
        format!("app.kubernetes.io/instance={name},app.kubernetes.io/component=controller");
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), &namespace);
    let sa_list = sas
        .list(&ListParams::default().labels(&selector))
        .await
        .expect("list ServiceAccounts");
    assert_eq!(
        sa_list.items.len(),
        1,
        "the chart makes one controller ServiceAccount"
    );
    let controller_sa = sa_list.items[0].metadata.name.clone().expect("SA name");
    let deployments: Api<Deployment> = Api::namespaced(admin, &namespace);
    let list = deployments
        .list(&ListParams::default().labels(&selector))
        .await
        .expect("list Deployments");
    assert_eq!(
        list.items.len(),
        1,
        "the chart makes one controller Deployment"
    );
    let pod = list.items[0]
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec");
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some(controller_sa.as_str())
    );
    let container = pod
        .containers
        .iter()
        .find(|c| c.name == "controller")
        .expect("controller container");
    let controller_args = container.args.clone().unwrap_or_default();
    assert_eq!(
        controller_args.first().map(String::as_str),
        Some("controller")
    );
    Release {
        eks,
        namespace,
        controller_sa,
        controller_args,
    }
}

/// `hatrack controller` as a host process: the chart's Deployment arguments (metrics on a free
/// loopback port instead of the pod's 0.0.0.0:8080), authenticated by `kubeconfig`, the pod's
/// downward-API environment, moto's test credentials. Killed on drop; and, being tied to the
/// test's thread (PR_SET_PDEATHSIG), by the kernel if the test process dies first.
struct ControllerProcess {
    child: Child,
    metrics: String,
    log: PathBuf,
}

impl ControllerProcess {
    fn start(
        cluster: &TestCluster,
        release: &Release,
        kubeconfig: &Path,
        identity: &str,
    ) -> ControllerProcess {
        let port = free_port();
        let metrics = format!("127.0.0.1:{port}");
        let args: Vec<String> = release
            .controller_args
            .iter()
            .map(|a| {
                if a.starts_with("--metrics-listen=") {
                    format!("--metrics-listen={metrics}")
                } else {
                    a.clone()
                }
            })
            .collect();
        let log = cluster.dir.join(format!("controller-{identity}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hatrack"));
        cmd.args(&args)
            .env_clear()
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", identity)
            .env("POD_NAMESPACE", &release.namespace)
            .env("HATRACK_LOG_FORMAT", "text")
            .env("RUST_LOG", "info,hatrack=debug")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
        let child = spawn_tied_to_this_thread(&mut cmd, &log);
        ControllerProcess {
            child,
            metrics,
            log,
        }
    }

    /// `kill -9`: no graceful shutdown, the Lease is not released.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The body of `GET path` on the metrics port, if it answers.
    fn get(&self, path: &str) -> Option<String> {
        let mut stream = std::net::TcpStream::connect(&self.metrics).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.metrics
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_string())
    }

    async fn wait_serving(&mut self) {
        for _ in 0..600 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("controller exited with {status}:\n{}", self.log_tail());
            }
            if self.get("/readyz").is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "controller not serving /readyz after 30 s:\n{}",
            self.log_tail()
        );
    }

    /// Successful IAM calls of `operation` according to /metrics.
    fn iam_calls(&self, operation: &str) -> u64 {
        let body = self.get("/metrics").expect("controller serves /metrics");
        iam_calls_in(&body, operation, Some("success"))
    }

    /// IAM calls of `operation` whatever their outcome (a GetRole of a role not there yet
    /// counts as `not_found`).
    fn iam_calls_any_outcome(&self, operation: &str) -> u64 {
        let body = self.get("/metrics").expect("controller serves /metrics");
        iam_calls_in(&body, operation, None)
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "controller log {} ends:\n{}",
                self.log.display(),
                self.log_tail()
            );
        }
        self.kill();
    }
}

/// Sums `hatrack_iam_calls_total{operation=...,outcome=...}` in a Prometheus text body.
fn iam_calls_in(metrics: &str, operation: &str, outcome: Option<&str>) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("hatrack_iam_calls_total{"))
        .filter(|l| {
            l.contains(&format!("operation=\"{operation}\""))
                && outcome.is_none_or(|o| l.contains(&format!("outcome=\"{o}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn assert_forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) {
    match result {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden for the controller, got {other:?}"),
    }
}

/// (type, reason, note) of the Event with `reason` about binding `ns/name`, once there is
/// one; every Event about it must come from hatrack's controller.
async fn wait_event(
    client: &kube::Client,
    ns: &str,
    name: &str,
    reason: &str,
) -> (String, String, String) {
    let e = support::controller::wait_event(client, ns, name, reason, 60).await;
    for e in support::controller::events_about(client, ns, name).await {
        assert_eq!(
            e.reporting_controller.as_deref(),
            Some("hatrack-controller")
        );
    }
    (
        e.type_.unwrap_or_default(),
        e.reason.unwrap_or_default(),
        e.note.unwrap_or_default(),
    )
}

/// Whether the trust policy lets exactly ServiceAccount `ns/sa` assume the role through the
/// cluster's OIDC provider with audience sts.amazonaws.com (IRSA).
fn irsa_trust_names(policy: &Value, ns: &str, sa: &str) -> bool {
    let provider = format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER_HOST_PATH}");
    let statements = match &policy["Statement"] {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    statements.iter().any(|st| {
        let equals = &st["Condition"]["StringEquals"];
        let sub = &equals[format!("{ISSUER_HOST_PATH}:sub")];
        let subject = format!("system:serviceaccount:{ns}:{sa}");
        st["Effect"] == "Allow"
            && st["Principal"]["Federated"] == provider.as_str()
            && st["Action"] == "sts:AssumeRoleWithWebIdentity"
            && equals[format!("{ISSUER_HOST_PATH}:aud")] == "sts.amazonaws.com"
            && (*sub == subject.as_str() || *sub == json!([subject]))
    })
}

fn managed(role: &hatrack::role::Role) -> BTreeSet<String> {
    role.managed_policy_arns.clone()
}

/// What most chart tests start from: a shared hold on the API server (see [`EXCLUSIVE`]), a
/// fresh namespace with moto ([`TestNamespace::new`] with `prefix`), and the chart installed as
/// release `name` of cluster `cluster_name` ([`install_chart`], `extra` values first) with its
/// controller watching that namespace only.
async fn chart_watching_its_namespace(
    prefix: &str,
    name: &str,
    cluster_name: &str,
    extra: &[String],
) -> (RwLockReadGuard<'static, ()>, TestNamespace, Release) {
    let shared = EXCLUSIVE.read().await;
    let t = TestNamespace::new(prefix).await;
    let mut values = extra.to_vec();
    values.push(format!("controller.watchNamespace={}", t.ns));
    let release = install_chart(t.cluster, name, cluster_name, &t.moto, &values).await;
    (shared, t, release)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_runs_the_lifecycle_as_the_charts_service_account() {
    let (_shared, t, release) = chart_watching_its_namespace(
        "team",
        "hatrack-life",
        "life",
        &[
            // Short resync, so drift in IAM is repaired within the test.
            "controller.resyncSeconds=3".into(),
        ],
    )
    .await;
    let (cluster, admin, team, moto) = (t.cluster, &t.client, &t.ns, &t.moto);
    let kubeconfig = cluster
        .service_account_kubeconfig(&release.namespace, &release.controller_sa)
        .await;

    // The chart's RBAC is not cluster-admin in disguise.
    let as_controller = client_from_kubeconfig(&kubeconfig).await;
    let bindings_as_controller: Api<IAMRoleBinding> = Api::all(as_controller.clone());
    bindings_as_controller
        .list(&ListParams::default())
        .await
        .expect("the controller's token works and may list bindings");
    assert_forbidden(
        Api::<Secret>::all(as_controller.clone())
            .list(&ListParams::default())
            .await,
        "list Secrets in all namespaces",
    );
    let escalation: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "hatrack-life-escalation"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": release.controller_sa, "namespace": release.namespace}]
    }))
    .unwrap();
    assert_forbidden(
        Api::<ClusterRoleBinding>::all(as_controller.clone())
            .create(&PostParams::default(), &escalation)
            .await,
        "create a ClusterRoleBinding",
    );
    assert_forbidden(
        Api::<IAMRoleBinding>::namespaced(as_controller.clone(), team)
            .create(
                &PostParams::default(),
                &support::controller::binding_manifest(
                    team,
                    "made-by-controller",
                    json!({"serviceAccounts": ["x"]}),
                ),
            )
            .await,
        "create an IAMRoleBinding",
    );

    let mut controller = ControllerProcess::start(cluster, &release, &kubeconfig, "life-0");
    controller.wait_serving().await;

    // Apply → role with IRSA trust for the ServiceAccount → Ready → annotation, Event.
    create_service_account(admin, team, "api").await;
    create_binding(
        admin,
        team,
        "app",
        json!({"serviceAccounts": ["api"], "managedPolicyArns": [READ_ONLY]}),
    )
    .await;
    let b = wait_ready_reason(admin, team, "app", "Synced", 60).await;
    assert_eq!(
        b.metadata.finalizers.as_deref(),
        Some(&[hatrack::controller::FINALIZER.to_string()][..])
    );
    let status = b.status.clone().expect("status");
    let role_name = status.role_name.clone().expect("status.roleName");
    let role_arn = status.role_arn.clone().expect("status.roleArn");
    assert_eq!(
        role_name,
        hatrack::naming::role_name(&life_arn(), team, "app")
    );
    assert_eq!(
        role_arn,
        format!("arn:aws:iam::{ACCOUNT}:role/hatrack/{role_name}")
    );
    let r = iam_role(moto, &role_name).await.expect("role in IAM");
    assert!(
        irsa_trust_names(&r.assume_role_policy, team, "api"),
        "trust policy: {}",
        r.assume_role_policy
    );
    assert_eq!(managed(&r), BTreeSet::from([READ_ONLY.to_string()]));
    assert_eq!(
        r.tags.get(hatrack::naming::TAG_CLUSTER).map(String::as_str),
        Some("life")
    );
    assert_eq!(
        role_arn_annotation(admin, team, "api").await.as_deref(),
        Some(role_arn.as_str())
    );
    let (type_, _, note) = wait_event(admin, team, "app", "RoleCreated").await;
    assert_eq!(type_, "Normal");
    assert!(note.contains(&role_name), "{note}");

    // Edit → role updated.
    patch_spec(
        admin,
        team,
        "app",
        json!({
            "managedPolicyArns": [S3_READ_ONLY],
            "inlinePolicies": {"logs": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["logs:PutLogEvents"], "Resource": ["*"]}]}}
        }),
    )
    .await;
    let b = wait_ready_reason(admin, team, "app", "Synced", 60).await;
    assert_eq!(b.metadata.generation, Some(2));
    let r = iam_role(moto, &role_name).await.expect("role in IAM");
    assert_eq!(managed(&r), BTreeSet::from([S3_READ_ONLY.to_string()]));
    assert_eq!(
        r.inline_policies.keys().collect::<Vec<_>>(),
        vec!["logs"],
        "inline policies after the edit"
    );
    wait_event(admin, team, "app", "RoleUpdated").await;

    // Drift in IAM (an extra policy, a different trust) is repaired at the next resync.
    let iam = moto.sdk_client();
    iam.attach_role_policy()
        .role_name(&role_name)
        .policy_arn("arn:aws:iam::aws:policy/AdministratorAccess")
        .send()
        .await
        .expect("attach a policy behind hatrack's back");
    iam.update_assume_role_policy()
        .role_name(&role_name)
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
            .to_string(),
        )
        .send()
        .await
        .expect("change the trust behind hatrack's back");
    wait_for(60, "drift repaired in IAM", || async {
        let r = iam_role(moto, &role_name).await?;
        (managed(&r) == BTreeSet::from([S3_READ_ONLY.to_string()])
            && irsa_trust_names(&r.assume_role_policy, team, "api"))
        .then_some(())
    })
    .await;
    wait_event(admin, team, "app", "DriftCorrected").await;

    // The annotation taken off the ServiceAccount comes back.
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), team);
    sas.patch(
        "api",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {hatrack::controller::ROLE_ARN_ANNOTATION: null}}}),
        ),
    )
    .await
    .expect("remove the annotation");
    wait_for(60, "the role-arn annotation restored", || async {
        (role_arn_annotation(admin, team, "api").await.as_deref() == Some(role_arn.as_str()))
            .then_some(())
    })
    .await;

    // A Warning with a note over the 1 KiB events.k8s.io allows is still recorded (cut short),
    // while the condition keeps the whole message.
    let guardrail: IAMGuardrail = serde_json::from_value(json!({
        "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMGuardrail",
        "metadata": {"name": format!("only-read-{team}")},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": team}},
            "allowedManagedPolicyArns": [READ_ONLY, S3_READ_ONLY]
        }
    }))
    .unwrap();
    let guardrails: Api<IAMGuardrail> = Api::all(admin.clone());
    guardrails
        .create(&PostParams::default(), &guardrail)
        .await
        .expect("create guardrail");
    let guardrail_name = guardrail.metadata.name.clone().expect("name");
    wait_for(
        60,
        "the guardrail's status written (Ready, Valid)",
        || async {
            let g = guardrails.get(&guardrail_name).await.ok()?;
            let ready = g
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            (ready.status == "True" && ready.reason == "Valid").then_some(())
        },
    )
    .await;
    let wide: Vec<String> = [
        "AmazonEC2FullAccess",
        "AmazonDynamoDBFullAccess",
        "AmazonSQSFullAccess",
        "AmazonSNSFullAccess",
        "AmazonRDSFullAccess",
        "AmazonRoute53FullAccess",
        "AWSLambda_FullAccess",
        "CloudWatchFullAccess",
        "AmazonElastiCacheFullAccess",
        "AmazonKinesisFullAccess",
    ]
    .iter()
    .map(|p| format!("arn:aws:iam::aws:policy/{p}"))
    .collect();
    create_binding(
        admin,
        team,
        "wide",
        json!({"serviceAccounts": ["wide"], "managedPolicyArns": wide}),
    )
    .await;
    let b = wait_ready_reason(admin, team, "wide", "GuardrailViolation", 60).await;
    let (_, _, message) = ready(&b).expect("Ready condition");
    assert!(
        message.len() > 1024,
        "the condition keeps the whole message"
    );
    let (type_, _, note) = wait_event(admin, team, "wide", "GuardrailViolation").await;
    assert_eq!(type_, "Warning");
    assert!(
        note.len() <= 1024
            && note.ends_with('…')
            && message.starts_with(note.trim_end_matches('…')),
        "note of {} bytes: {note}",
        note.len()
    );
    delete_binding(admin, team, "wide").await;
    wait_binding_gone(admin, team, "wide", 60).await;
    guardrails
        .delete(
            &guardrail.metadata.name.clone().unwrap(),
            &DeleteParams::default(),
        )
        .await
        .expect("delete guardrail");

    // deletionPolicy: Retain keeps the role after the binding is gone. The binding's name is
    // as long as a name may be (253): its Events must still be valid objects.
    let kept = format!("kept-{}", "k".repeat(248));
    create_binding(
        admin,
        team,
        &kept,
        json!({"serviceAccounts": ["kept"], "deletionPolicy": "Retain"}),
    )
    .await;
    wait_ready_reason(admin, team, &kept, "Synced", 60).await;
    wait_event(admin, team, &kept, "RoleCreated").await;
    let kept_role = hatrack::naming::role_name(&life_arn(), team, &kept);
    assert!(iam_role(moto, &kept_role).await.is_some());
    delete_binding(admin, team, &kept).await;
    wait_binding_gone(admin, team, &kept, 60).await;
    assert!(
        iam_role(moto, &kept_role).await.is_some(),
        "Retain keeps the role"
    );
    wait_event(admin, team, &kept, "RoleRetained").await;

    // A role of the same name that hatrack does not own is never touched (a Warning Event,
    // again for a binding with the longest name there may be).
    let squatter = format!("squatter-{}", "s".repeat(244));
    let squatted = hatrack::naming::role_name(&life_arn(), team, &squatter);
    iam.create_role()
        .role_name(&squatted)
        .path("/hatrack/")
        .assume_role_policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
            .to_string(),
        )
        .send()
        .await
        .expect("pre-create a role");
    create_binding(
        admin,
        team,
        &squatter,
        json!({"serviceAccounts": ["squatter"], "managedPolicyArns": [READ_ONLY]}),
    )
    .await;
    let b = wait_ready_reason(admin, team, &squatter, "RoleNotOwned", 60).await;
    assert_eq!(ready(&b).map(|r| r.0).as_deref(), Some("False"));
    wait_event(admin, team, &squatter, "RoleNotOwned").await;
    let r = iam_role(moto, &squatted).await.expect("the foreign role");
    assert!(r.managed_policy_arns.is_empty() && r.tags.is_empty());
    delete_binding(admin, team, &squatter).await;
    wait_binding_gone(admin, team, &squatter, 60).await;
    assert!(
        iam_role(moto, &squatted).await.is_some(),
        "a role hatrack does not own is never deleted"
    );

    // Delete → the finalizer holds the binding while the role cannot be deleted (it is in an
    // instance profile) → released, the role is deleted, the binding goes.
    iam.create_instance_profile()
        .instance_profile_name("holder")
        .send()
        .await
        .expect("create instance profile");
    iam.add_role_to_instance_profile()
        .instance_profile_name("holder")
        .role_name(&role_name)
        .send()
        .await
        .expect("add role to instance profile");
    delete_binding(admin, team, "app").await;
    let b = wait_ready_reason(admin, team, "app", "Deleting", 60).await;
    assert!(b.metadata.deletion_timestamp.is_some());
    assert!(
        b.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&hatrack::controller::FINALIZER.to_string()),
        "the finalizer holds the binding"
    );
    assert!(iam_role(moto, &role_name).await.is_some());
    wait_event(admin, team, "app", "DeleteBlocked").await;
    // The Warning repeats at each retry: the Recorder folds the repeats into the first Event
    // (a PATCH of its series, which the chart's RBAC must allow and the server must accept).
    let events: Api<Event> = Api::namespaced(admin.clone(), team);
    wait_for(60, "the DeleteBlocked Event counted twice", || async {
        events
            .list(&ListParams::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("DeleteBlocked")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("app")
                    && e.series.as_ref().is_some_and(|s| s.count >= 2)
            })
            .map(drop)
    })
    .await;
    iam.remove_role_from_instance_profile()
        .instance_profile_name("holder")
        .role_name(&role_name)
        .send()
        .await
        .expect("release the role");
    wait_binding_gone(admin, team, "app", 90).await;
    assert!(iam_role(moto, &role_name).await.is_none(), "role deleted");
    assert_eq!(role_arn_annotation(admin, team, "api").await, None);
    wait_event(admin, team, "app", "RoleDeleted").await;
    drop(controller);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_hands_over_on_the_real_lease_api_without_duplicate_writes() {
    let (_shared, t, release) =
        chart_watching_its_namespace("leaders", "hatrack-leader", "leader", &[]).await;
    let (cluster, admin, team, moto) = (t.cluster, &t.client, &t.ns, &t.moto);
    let args = &release.controller_args;
    assert!(
        args.iter().any(|a| a == "--leader-election"),
        "the chart enables leader election by default: {args:?}"
    );
    let lease_name = args
        .iter()
        .find_map(|a| a.strip_prefix("--lease-name="))
        .expect("--lease-name")
        .to_string();
    let kubeconfig = cluster
        .service_account_kubeconfig(&release.namespace, &release.controller_sa)
        .await;
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &release.namespace);
    let holder = |leases: Api<Lease>, name: String| async move {
        leases
            .get_opt(&name)
            .await
            .expect("get lease")
            .and_then(|l| l.spec?.holder_identity)
    };

    let mut first = ControllerProcess::start(cluster, &release, &kubeconfig, "replica-a");
    first.wait_serving().await;
    wait_for(60, "replica-a holds the Lease", || async {
        (holder(leases.clone(), lease_name.clone()).await.as_deref() == Some("replica-a"))
            .then_some(())
    })
    .await;
    let mut second = ControllerProcess::start(cluster, &release, &kubeconfig, "replica-b");
    second.wait_serving().await;

    for name in ["one", "two", "three"] {
        create_binding(
            admin,
            team,
            name,
            json!({"serviceAccounts": [name], "managedPolicyArns": [READ_ONLY]}),
        )
        .await;
    }
    for name in ["one", "two", "three"] {
        wait_ready_reason(admin, team, name, "Synced", 60).await;
    }
    assert_eq!(first.iam_calls("CreateRole"), 3);
    assert_eq!(first.iam_calls("AttachRolePolicy"), 3);
    // The standby has made no IAM call at all.
    let standby = second.get("/metrics").expect("standby serves /metrics");
    assert!(
        !standby.contains("hatrack_iam_calls_total{"),
        "the standby called IAM:\n{standby}"
    );
    assert_eq!(
        holder(leases.clone(), lease_name.clone()).await.as_deref(),
        Some("replica-a")
    );

    // kill -9 the leader: the Lease is not released; replica-b takes it once it expires.
    let first_creates = first.iam_calls("CreateRole");
    let first_attaches = first.iam_calls("AttachRolePolicy");
    first.kill();
    wait_for(90, "replica-b takes the Lease", || async {
        (holder(leases.clone(), lease_name.clone()).await.as_deref() == Some("replica-b"))
            .then_some(())
    })
    .await;
    for name in ["four", "five"] {
        create_binding(
            admin,
            team,
            name,
            json!({"serviceAccounts": [name], "managedPolicyArns": [READ_ONLY]}),
        )
        .await;
    }
    for name in ["four", "five"] {
        wait_ready_reason(admin, team, name, "Synced", 60).await;
    }
    // The new leader re-reads the first three roles on start; it finds them in sync.
    wait_for(60, "replica-b re-read all five roles", || async {
        (second.iam_calls_any_outcome("GetRole") >= 5).then_some(())
    })
    .await;
    let second_creates = second.iam_calls("CreateRole");
    let second_attaches = second.iam_calls("AttachRolePolicy");
    assert_eq!(
        (first_creates, second_creates),
        (3, 2),
        "CreateRole calls by replica-a and replica-b"
    );
    assert_eq!(
        first_attaches + second_attaches,
        5,
        "AttachRolePolicy calls"
    );
    assert_eq!(hatrack_roles(moto).await.len(), 5);
    for name in ["one", "two", "three", "four", "five"] {
        let b = get_binding(admin, team, name).await.expect("binding");
        assert_eq!(
            ready(&b).map(|r| r.1).as_deref(),
            Some("Synced"),
            "{name} after the hand-over"
        );
    }
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_apply_twice_and_diff_clean_after_the_controller_synced() {
    // Watches all namespaces, like the chart's default: no other controller may run meanwhile.
    let _alone = EXCLUSIVE.write().await;
    let cluster = cluster_with_crds().await;
    let admin = cluster.client().await;
    let moto = Moto::start();
    moto.create_oidc_provider(&format!("https://{ISSUER_HOST_PATH}"))
        .await;
    let release = install_chart(cluster, "hatrack-gitops", "gitops", &moto, &[]).await;
    let kubeconfig = cluster
        .service_account_kubeconfig(&release.namespace, &release.controller_sa)
        .await;
    let mut controller = ControllerProcess::start(cluster, &release, &kubeconfig, "gitops-0");
    controller.wait_serving().await;

    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut namespaces = BTreeSet::new();
    for entry in std::fs::read_dir(&examples).expect("examples/") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read example");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc).expect("example YAML");
            if let Some(ns) = v["metadata"]["namespace"].as_str() {
                namespaces.insert(ns.to_string());
            }
        }
    }
    for ns in &namespaces {
        let (ok, out, err) = run(kubectl(cluster).args(["create", "namespace", ns]));
        assert!(ok || err.contains("AlreadyExists"), "{out}{err}");
    }

    let apply = |extra: &[&str]| {
        let (ok, out, err) = run(kubectl(cluster)
            .arg("apply")
            .args(extra)
            .arg("-f")
            .arg(&examples));
        assert!(ok, "kubectl apply {extra:?} -f examples/:\n{out}{err}");
        out
    };
    apply(&[]);
    let bindings = [("monitoring", "exporter"), ("payments", "reader")];
    for (ns, name) in bindings {
        wait_ready_reason(&admin, ns, name, "Synced", 60).await;
    }
    let out = apply(&[]);
    assert!(
        out.lines().all(|l| l.ends_with(" unchanged")),
        "a second client-side apply changed something:\n{out}"
    );
    apply(&["--server-side"]);
    apply(&["--server-side"]);
    for (ns, name) in bindings {
        let b = wait_ready_reason(&admin, ns, name, "Synced", 60).await;
        assert_eq!(b.metadata.generation, Some(1), "{ns}/{name}: spec churn");
    }
    assert!(
        role_arn_annotation(&admin, "payments", "api")
            .await
            .is_some()
    );
    // payments/reader also trusts Pod Identity: an association per ServiceAccount, in status.
    let reader = get_binding(&admin, "payments", "reader").await.unwrap();
    let status = reader.status.unwrap();
    let in_eks = associations_in(&release.eks, "payments");
    assert_eq!(in_eks.keys().collect::<Vec<_>>(), ["api", "worker"]);
    assert!(
        in_eks
            .values()
            .all(|a| Some(&a.role_arn) == status.role_arn.as_ref())
    );
    assert_eq!(status.pod_identity_associations.len(), 2);
    for extra in [&[][..], &["--server-side"][..]] {
        let (ok, out, err) = run(kubectl(cluster)
            .arg("diff")
            .args(extra)
            .arg("-f")
            .arg(&examples));
        assert!(
            ok && out.is_empty(),
            "kubectl diff {extra:?} after the controller synced shows a change:\n{out}{err}"
        );
    }
    drop(controller);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_default_guardrail_refuses_admin_bindings_in_the_controller() {
    let (_shared, t, release) =
        chart_watching_its_namespace("guarded", "hatrack-guard", "guard", &[]).await;
    let (cluster, admin, team, moto) = (t.cluster, &t.client, &t.ns, &t.moto);
    // The chart's default guardrail, found by its release label as an operator would.
    let stored: Api<IAMGuardrail> = Api::all(admin.clone());
    let installed = stored
        .list(&ListParams::default().labels("app.kubernetes.io/instance=hatrack-guard"))
        .await
        .expect("list guardrails");
    assert_eq!(installed.items.len(), 1, "the chart installs one guardrail");
    let guardrail = installed.items[0].metadata.name.clone().unwrap();
    assert!(guardrail.ends_with("-default"), "{guardrail}");
    let guardrail = guardrail.as_str();
    let kubeconfig = cluster
        .service_account_kubeconfig(&release.namespace, &release.controller_sa)
        .await;
    let mut controller = ControllerProcess::start(cluster, &release, &kubeconfig, "guard-0");
    controller.wait_serving().await;

    // No webhook runs here (failurePolicy Ignore): the bindings are admitted, and the
    // controller is the one that refuses them.
    create_binding(
        admin,
        team,
        "admin",
        json!({"serviceAccounts": ["a"],
        "managedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]}),
    )
    .await;
    let b = wait_ready_reason(admin, team, "admin", "GuardrailViolation", 60).await;
    let message = ready(&b).unwrap().2;
    assert!(
        message.contains(&format!(
            "IAMGuardrail {guardrail}: spec.managedPolicyArns[0]"
        )),
        "{message}"
    );
    // A managed policy the default list does not name, whose contents grant IAM writes:
    // found by reading it from IAM.
    create_binding(
        admin,
        team,
        "iam-writer",
        json!({"serviceAccounts": ["b"],
        "managedPolicyArns": ["arn:aws:iam::aws:policy/IAMUserChangePassword"]}),
    )
    .await;
    let b = wait_ready_reason(admin, team, "iam-writer", "GuardrailViolation", 60).await;
    let message = ready(&b).unwrap().2;
    assert!(
        message.contains("managed policy arn:aws:iam::aws:policy/IAMUserChangePassword (version"),
        "{message}"
    );
    create_binding(
        admin,
        team,
        "reader",
        json!({"serviceAccounts": ["c"],
        "managedPolicyArns": [READ_ONLY]}),
    )
    .await;
    let b = wait_ready_reason(admin, team, "reader", "Synced", 60).await;
    assert_eq!(
        hatrack_roles(moto).await,
        vec![b.status.unwrap().role_name.unwrap()],
        "only the compliant binding has a role"
    );
    controller.kill();
}
