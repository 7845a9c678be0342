//! The background audit against a real kube-apiserver (tests/support/cluster.rs), with no
//! webhook installed: workloads with static keys are created as if the webhook were absent,
//! the audit runs in-process as the chart's audit ServiceAccount (the chart's RBAC, rendered by
//! `helm template` and stored by the real server), and the PolicyReports it writes are read
//! back from the server. The PolicyReport CRD is the chart's own (charts/hatrack/crds/).
//!
//! The audit watches the whole cluster: the tests run one at a time. StaticKeyExemptions are
//! cluster-scoped: each test names its own after its namespace.

use hatrack_test_support as support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use hatrack::audit::{AuditMetrics, AuditPolicy, AuditorOptions, live, report};
use hatrack::crd::{StaticKeyExemption, StaticKeyExemptionSpec};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::cluster::{TestCluster, cluster_with_crds, helm, kubectl, run, temp_file};
use support::controller::{RequestLog, wait_for};
use tokio::sync::{Mutex, OnceCell};

const KEY_ID: &str = "AKIAZ7Q3EXAMPLEK3Y4N";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKE";
const RELEASE: &str = "hr";
const AUDIT_SA: &str = "hr-hatrack-audit";

static SERIAL: Mutex<()> = Mutex::const_new(());
static SETUP: OnceCell<String> = OnceCell::const_new();

fn chart_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/charts/hatrack"))
}

/// This test's turn (see [`SERIAL`]), then the cluster with hatrack's CRDs
/// (StaticKeyExemption), the chart's PolicyReport CRD and the audit's RBAC; returns the
/// release namespace (where the audit's ServiceAccount is) and the turn.
async fn setup() -> (
    &'static TestCluster,
    String,
    tokio::sync::MutexGuard<'static, ()>,
) {
    let serial = SERIAL.lock().await;
    let c = cluster_with_crds().await;
    let ns = SETUP
        .get_or_init(|| async {
            let ns = c.namespace("audit-release").await;
            let crd = chart_dir().join("crds/wgpolicyk8s.io.yaml");
            let (ok, out, err) = run(kubectl(c).args(["apply", "--server-side", "-f"]).arg(&crd));
            assert!(ok, "apply the chart's PolicyReport CRD: {out}{err}");
            let (ok, out, err) = run(kubectl(c).args([
                "wait",
                "--for=condition=Established",
                "crd/policyreports.wgpolicyk8s.io",
                "crd/clusterpolicyreports.wgpolicyk8s.io",
                "--timeout=30s",
            ]));
            assert!(ok, "CRDs established: {out}{err}");
            let (ok, rendered, err) = run(helm(c)
                .args(["template", RELEASE])
                .arg(chart_dir())
                .args(["--namespace", &ns])
                .args([
                    "--set",
                    "cluster.name=test",
                    "--set",
                    "cluster.region=eu-west-1",
                    "--set-string",
                    "cluster.accountId=111122223333",
                ])
                .args(["--set", "cluster.oidcIssuer=https://oidc.example.com/id/x"])
                .args(["--set", "audit.enabled=true"])
                .args(["--show-only", "templates/audit-rbac.yaml"])
                .args(["--show-only", "templates/audit-serviceaccount.yaml"]));
            assert!(ok, "helm template: {err}");
            let file = temp_file(c, "audit-rbac.yaml", &rendered);
            let (ok, out, err) = run(kubectl(c).args(["apply", "-n", &ns, "-f"]).arg(&file));
            assert!(ok, "apply the audit's RBAC: {out}{err}");
            ns
        })
        .await;
    (c, ns.clone(), serial)
}

/// The audit, running in-process as the chart's ServiceAccount, its requests logged.
struct RunningAudit {
    metrics: Arc<AuditMetrics>,
    log: RequestLog,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), live::AuditError>>,
}

impl RunningAudit {
    async fn start(c: &TestCluster, release_ns: &str) -> RunningAudit {
        let log = RequestLog::default();
        let kubeconfig = c.service_account_kubeconfig(release_ns, AUDIT_SA).await;
        let client = log.client(&kubeconfig).await;
        let metrics = Arc::new(AuditMetrics::new());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let options = AuditorOptions {
            policy: AuditPolicy::default(),
            flush_every: Duration::from_millis(200),
        };
        let task = tokio::spawn(live::run(client, options, metrics.clone(), async {
            let _ = rx.await;
        }));
        RunningAudit {
            metrics,
            log,
            stop: Some(tx),
            task,
        }
    }

    /// Waits for the first complete set of reports.
    async fn wait_first_report(&self) {
        let m = self.metrics.clone();
        wait_for(60, "the audit's first complete set of reports", || {
            let m = m.clone();
            async move { (m.first_report_seconds.get() > 0.0).then_some(()) }
        })
        .await;
    }

    /// Waits until the audit has judged `n` more workloads than `from` and then finished two
    /// more report rounds (so whatever those judgements changed is written).
    async fn wait_settled_after(&self, judgements_from: u64, n: u64) {
        let m = self.metrics.clone();
        wait_for(30, "the audit to judge the change", || {
            let m = m.clone();
            async move { (m.judgements.get() >= judgements_from + n).then_some(()) }
        })
        .await;
        let flushes = self.metrics.flushes.get();
        let m = self.metrics.clone();
        wait_for(30, "two report rounds", || {
            let m = m.clone();
            async move { (m.flushes.get() >= flushes + 2).then_some(()) }
        })
        .await;
    }

    /// PATCH and DELETE requests to PolicyReports since the log was cleared.
    fn report_writes(&self) -> Vec<String> {
        self.log
            .requests()
            .into_iter()
            .filter(|r| r.path.contains("/policyreports") && r.method != "GET")
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(20), &mut self.task)
            .await
            .expect("audit stops within 20 s")
            .expect("audit task");
        result.expect("audit ran without error");
    }
}

async fn create(client: &kube::Client, ns: &str, manifest: Value) {
    let kind = manifest["kind"].as_str().unwrap().to_string();
    let ar = hatrack::audit::kinds::WorkloadKind::from_kind(&kind)
        .map(|k| k.api_resource())
        .unwrap_or_else(|| {
            kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk("", "v1", &kind))
        });
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let obj: DynamicObject = serde_json::from_value(manifest).unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create {kind}: {e}"));
}

fn pod_spec(containers: Value) -> Value {
    json!({"containers": containers})
}

fn deployment(name: &str, containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec(containers)}
        }
    })
}

fn secret(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data})
}

async fn report_in(client: &kube::Client, ns: &str) -> Option<Value> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &report::api_resource());
    let r = api
        .get_opt(report::REPORT_NAME)
        .await
        .expect("get report")?;
    Some(serde_json::to_value(r).unwrap())
}

/// `kind/name rule container` of each result.
fn results(report: &Value) -> Vec<String> {
    let mut out: Vec<String> = report["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{}/{} {} {}",
                r["resources"][0]["kind"].as_str().unwrap_or(""),
                r["resources"][0]["name"].as_str().unwrap_or(""),
                r["rule"].as_str().unwrap_or(""),
                r["properties"]["container"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

async fn wait_results(client: &kube::Client, ns: &str, want: &[&str]) -> Value {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    wait_report(client, ns, 30, results, &want).await
}

/// Waits up to `secs` until the report of `ns` shows `want` as `view` sees it; fails with the
/// last view seen.
async fn wait_report(
    client: &kube::Client,
    ns: &str,
    secs: u64,
    view: fn(&Value) -> Vec<String>,
    want: &[String],
) -> Value {
    let mut last = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            if let Some(r) = report_in(client, ns).await {
                last = view(&r);
                if last == want {
                    return r;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    match found {
        Ok(r) => r,
        Err(_) => panic!("report of {ns} within {secs} s: wanted {want:#?}\nlast seen {last:#?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_follow_workloads_secrets_and_fixes() {
    let (c, release_ns, _serial) = setup().await;
    let admin = c.client().await;
    let ns = c.namespace("audit").await;

    // Created while no webhook was there to refuse them.
    create(&admin, &ns, secret("creds", json!({"password": "hunter2"}))).await;
    create(
        &admin,
        &ns,
        deployment(
            "leaky",
            json!([{"name": "app", "image": "app", "env": [{"name": "AWS_ACCESS_KEY_ID", "value": KEY_ID}]}]),
        ),
    )
    .await;
    create(
        &admin,
        &ns,
        deployment(
            "envfrom",
            json!([{"name": "web", "image": "web", "envFrom": [{"secretRef": {"name": "creds"}}]}]),
        ),
    )
    .await;
    create(
        &admin,
        &ns,
        deployment(
            "later",
            json!([{"name": "worker", "image": "w", "envFrom": [{"secretRef": {"name": "later", "optional": true}}]}]),
        ),
    )
    .await;
    create(
        &admin,
        &ns,
        deployment(
            "clean",
            json!([{"name": "app", "image": "app", "env": [{"name": "A", "value": "1"}]}]),
        ),
    )
    .await;
    create(
        &admin,
        &ns,
        json!({
            "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "backup"},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "s3sync", "image": "aws", "args": ["--key", KEY_ID]}]
            }}}}}
        }),
    )
    .await;
    create(
        &admin,
        &ns,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug"},
            "spec": pod_spec(json!([{"name": "shell", "image": "busybox",
                "env": [{"name": "AWS_SECRET_ACCESS_KEY", "value": SECRET_KEY}]}]))}),
    )
    .await;
    // Owned by the Deployment "leaky": reported once, at the Deployment.
    let leaky: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    let leaky_uid = leaky.get("leaky").await.unwrap().metadata.uid.unwrap();
    create(
        &admin,
        &ns,
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "leaky-1", "labels": {"app": "leaky"}, "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "Deployment", "name": "leaky", "uid": leaky_uid,
                "controller": true}]},
            "spec": {"selector": {"matchLabels": {"app": "leaky"}},
                "template": {"metadata": {"labels": {"app": "leaky"}}, "spec": pod_spec(
                    json!([{"name": "app", "image": "app", "env": [{"name": "AWS_ACCESS_KEY_ID", "value": KEY_ID}]}]))}}
        }),
    )
    .await;

    // `hatrack audit` sees the same, printed like `check`.
    let out = Command::new(env!("CARGO_BIN_EXE_hatrack"))
        .args(["audit", "--format", "json", "-n", &ns, "--kubeconfig"])
        .arg(&c.kubeconfig)
        .output()
        .expect("run hatrack audit");
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit 1: something would be denied; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    let mut denied: Vec<String> = printed["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["verdict"] == "deny")
        .map(|r| {
            format!(
                "{}/{}",
                r["kind"].as_str().unwrap(),
                r["name"].as_str().unwrap()
            )
        })
        .collect();
    denied.sort();
    assert_eq!(
        denied,
        ["CronJob/backup", "Deployment/leaky", "Pod/debug"],
        "{printed:#}"
    );
    assert!(
        printed["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["kind"] != "ReplicaSet"),
        "the owned ReplicaSet is judged at its Deployment"
    );
    let text = Command::new(env!("CARGO_BIN_EXE_hatrack"))
        .args(["audit", "-n", &ns, "--kubeconfig"])
        .arg(&c.kubeconfig)
        .output()
        .expect("run hatrack audit");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("DENY  Deployment {ns}/leaky")),
        "{text}"
    );

    let audit = RunningAudit::start(c, &release_ns).await;
    audit.wait_first_report().await;
    let r = wait_results(
        &admin,
        &ns,
        &[
            "CronJob/backup literal-access-key s3sync",
            "Deployment/leaky env-static-key app",
            "Pod/debug env-static-key shell",
        ],
    )
    .await;
    assert_eq!(r["apiVersion"], "wgpolicyk8s.io/v1alpha2");
    assert_eq!(r["scope"]["name"], ns.as_str());
    assert_eq!(r["summary"]["fail"], r["results"].as_array().unwrap().len());
    let leaky_result = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["resources"][0]["name"] == "leaky")
        .unwrap();
    assert_eq!(leaky_result["resources"][0]["uid"], leaky_uid.as_str());
    assert_eq!(leaky_result["source"], "hatrack");
    assert_eq!(leaky_result["result"], "fail");
    let message = leaky_result["message"].as_str().unwrap();
    assert!(
        message.contains("IAMRoleBinding"),
        "the fix is in the message: {message}"
    );
    assert!(
        !r.to_string().contains(KEY_ID),
        "no key material in the report"
    );
    let metrics = audit.metrics.encode();
    assert!(
        metrics.contains(&format!(
            "hatrack_audit_workloads_with_findings{{namespace=\"{ns}\",rule=\"env-static-key\"}} 2"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "hatrack_audit_failing_workloads{{namespace=\"{ns}\"}} 3"
        )),
        "{metrics}"
    );

    // A Secret edited to hold keys after its workload was admitted.
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
    secrets
        .patch(
            "creds",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"AWS_ACCESS_KEY_ID": KEY_ID}})),
        )
        .await
        .unwrap();
    // An optional Secret that appears, with keys.
    create(
        &admin,
        &ns,
        secret("later", json!({"aws_secret_access_key": SECRET_KEY})),
    )
    .await;
    wait_results(
        &admin,
        &ns,
        &[
            "CronJob/backup literal-access-key s3sync",
            "Deployment/envfrom envfrom-credential-keys web",
            "Deployment/later envfrom-credential-keys worker",
            "Deployment/leaky env-static-key app",
            "Pod/debug env-static-key shell",
        ],
    )
    .await;

    // Fixed: keys out of the workloads and Secrets, the leftovers deleted.
    leaky
        .patch(
            "leaky",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "env": [{"name": "AWS_ACCESS_KEY_ID", "$patch": "delete"}]}
            ]}}}})),
        )
        .await
        .unwrap();
    secrets
        .replace(
            "creds",
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "creds", "namespace": ns},
                "stringData": {"password": "hunter3"}}))
            .unwrap(),
        )
        .await
        .unwrap();
    secrets
        .delete("later", &DeleteParams::default())
        .await
        .unwrap();
    let dp = DeleteParams::default();
    let cronjobs: Api<DynamicObject> = Api::namespaced_with(
        admin.clone(),
        &ns,
        &hatrack::audit::kinds::WorkloadKind::CronJob.api_resource(),
    );
    cronjobs.delete("backup", &dp).await.unwrap();
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(admin.clone(), &ns);
    pods.delete("debug", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let (a, n) = (&admin, ns.as_str());
    wait_for(
        30,
        "the report to be deleted once nothing is left",
        || async move { report_in(a, n).await.is_none().then_some(()) },
    )
    .await;
    let metrics = audit.metrics.encode();
    assert!(
        !metrics.contains(&format!("namespace=\"{ns}\"")),
        "{metrics}"
    );
    audit.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_written_only_when_their_content_changes() {
    let (c, release_ns, _serial) = setup().await;
    let admin = c.client().await;
    let ns = c.namespace("audit-writes").await;
    create(&admin, &ns, secret("creds", json!({"password": "a"}))).await;
    create(
        &admin,
        &ns,
        deployment(
            "leaky",
            json!([{"name": "app", "image": "app",
                "env": [{"name": "AWS_ACCESS_KEY_ID", "value": KEY_ID}],
                "envFrom": [{"secretRef": {"name": "creds"}}]}]),
        ),
    )
    .await;

    let audit = RunningAudit::start(c, &release_ns).await;
    audit.wait_first_report().await;
    let first = wait_results(&admin, &ns, &["Deployment/leaky env-static-key app"]).await;
    let rv = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let writes_to_ns: Vec<String> = audit
        .report_writes()
        .into_iter()
        .filter(|w| w.contains(&format!("/namespaces/{ns}/")))
        .collect();
    assert_eq!(
        writes_to_ns.len(),
        1,
        "one apply for the new report: {writes_to_ns:?}"
    );
    audit.log.clear();

    // A change of the workload that changes no finding: judged again, not written.
    let judged = audit.metrics.judgements.get();
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    deployments
        .patch(
            "leaky",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .unwrap();
    audit.wait_settled_after(judged, 1).await;
    // A rotated password: the Secret's facts are unchanged, so nothing is judged again.
    let judged = audit.metrics.judgements.get();
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
    secrets
        .patch(
            "creds",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": "b"}})),
        )
        .await
        .unwrap();
    let flushes = audit.metrics.flushes.get();
    let m = audit.metrics.clone();
    wait_for(30, "three report rounds", || {
        let m = m.clone();
        async move { (m.flushes.get() >= flushes + 3).then_some(()) }
    })
    .await;
    assert_eq!(
        audit.metrics.judgements.get(),
        judged,
        "a rotation re-judges nothing"
    );
    assert_eq!(audit.report_writes(), Vec::<String>::new());
    let now = report_in(&admin, &ns).await.unwrap();
    assert_eq!(
        now["metadata"]["resourceVersion"],
        rv.as_str(),
        "report untouched"
    );
    audit.stop().await;

    // A fresh audit (a restart, a new leader) finds the report as it would write it.
    let audit = RunningAudit::start(c, &release_ns).await;
    audit.wait_first_report().await;
    let m = audit.metrics.clone();
    let flushes = m.flushes.get();
    wait_for(30, "two report rounds", || {
        let m = m.clone();
        async move { (m.flushes.get() >= flushes + 2).then_some(()) }
    })
    .await;
    assert_eq!(
        audit.report_writes(),
        Vec::<String>::new(),
        "a restart writes nothing"
    );
    let now = report_in(&admin, &ns).await.unwrap();
    assert_eq!(now["metadata"]["resourceVersion"], rv.as_str());

    // A real change is written once.
    let judged = audit.metrics.judgements.get();
    secrets
        .patch(
            "creds",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"AWS_SECRET_ACCESS_KEY": SECRET_KEY}})),
        )
        .await
        .unwrap();
    audit.wait_settled_after(judged, 1).await;
    wait_results(
        &admin,
        &ns,
        &[
            "Deployment/leaky env-static-key app",
            "Deployment/leaky envfrom-credential-keys app",
        ],
    )
    .await;
    let writes: Vec<String> = audit
        .report_writes()
        .into_iter()
        .filter(|w| w.contains(&format!("/namespaces/{ns}/")))
        .collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(writes[0].starts_with("PATCH"), "{writes:?}");
    assert_eq!(
        audit.metrics.writes("apply") as usize,
        audit.report_writes().len()
    );
    audit.stop().await;
}

/// `name result` of each result of a report (`result` is fail or skip).
fn outcomes(report: &Value) -> Vec<String> {
    let mut out: Vec<String> = report["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{} {}",
                r["resources"][0]["name"].as_str().unwrap_or(""),
                r["result"].as_str().unwrap_or("")
            )
        })
        .collect();
    out.sort();
    out
}

async fn wait_outcomes(client: &kube::Client, ns: &str, secs: u64, want: &[&str]) -> Value {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    wait_report(client, ns, secs, outcomes, &want).await
}

fn exemption(name: &str, ns: &str, workload: &str, expires: jiff::Timestamp) -> StaticKeyExemption {
    StaticKeyExemption::new(
        name,
        StaticKeyExemptionSpec {
            namespace: ns.to_string(),
            kind: Some("Deployment".into()),
            name: Some(workload.to_string()),
            granted_by: "platform@example.com".into(),
            reason: "TICKET-16 move to IRSA".into(),
            expires: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(expires),
        },
    )
}

/// The API server keeps times to the second.
fn whole_seconds(t: jiff::Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_second(t.as_second()).expect("a time in range")
}

fn result_of<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resources"][0]["name"] == name)
        .unwrap_or_else(|| panic!("a result for {name}: {report:#}"))
}

/// PolicyReport writes to `ns` since the log was cleared.
fn writes_to(audit: &RunningAudit, ns: &str) -> Vec<String> {
    audit
        .report_writes()
        .into_iter()
        .filter(|w| w.contains(&format!("/namespaces/{ns}/")))
        .collect()
}

/// StaticKeyExemptions as the webhook and `check` honour them: exempted findings are `skip`
/// results naming the exemption; a past expiry is enforced; an exemption that expires while
/// the audit runs turns `fail` at its expiry with no other change; exemption changes re-judge
/// nothing and write the report only when its content changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exemptions_skip_until_they_expire_and_write_only_on_change() {
    let (c, release_ns, _serial) = setup().await;
    let admin = c.client().await;
    let ns = c.namespace("audit-exempt").await;
    let leaky = |name: &str| {
        deployment(
            name,
            json!([{"name": "app", "image": "app", "env": [{"name": "AWS_ACCESS_KEY_ID", "value": KEY_ID}]}]),
        )
    };
    for name in ["exempt", "past", "soon", "plain"] {
        create(&admin, &ns, leaky(name)).await;
    }
    let exemptions: Api<StaticKeyExemption> = Api::all(admin.clone());
    let pp = PostParams::default();
    let now = whole_seconds(jiff::Timestamp::now());
    let far = now + jiff::SignedDuration::from_hours(24 * 365);
    let in_past = now - jiff::SignedDuration::from_hours(24);
    for e in [
        exemption(&format!("{ns}-exempt"), &ns, "exempt", far),
        exemption(&format!("{ns}-past"), &ns, "past", in_past),
    ] {
        exemptions.create(&pp, &e).await.expect("create exemption");
    }

    // `hatrack audit` reads the cluster's exemptions as `check` reads its input's.
    let out = Command::new(env!("CARGO_BIN_EXE_hatrack"))
        .args(["audit", "--format", "json", "-n", &ns, "--kubeconfig"])
        .arg(&c.kubeconfig)
        .output()
        .expect("run hatrack audit");
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    let mut verdicts: Vec<String> = printed["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["name"].as_str().unwrap(),
                r["verdict"].as_str().unwrap(),
                r["exemption"]["state"].as_str().unwrap_or("-")
            )
        })
        .collect();
    verdicts.sort();
    assert_eq!(
        verdicts,
        [
            "exempt allow active",
            "past deny expired",
            "plain deny -",
            "soon deny -"
        ],
        "{printed:#}"
    );
    assert_eq!(out.status.code(), Some(1));

    let audit = RunningAudit::start(c, &release_ns).await;
    audit.wait_first_report().await;
    let r = wait_outcomes(
        &admin,
        &ns,
        30,
        &["exempt skip", "past fail", "plain fail", "soon fail"],
    )
    .await;
    assert_eq!(r["summary"]["skip"], 1, "{r:#}");
    assert_eq!(r["summary"]["fail"], 3, "{r:#}");
    let skipped = result_of(&r, "exempt");
    let message = skipped["message"].as_str().unwrap();
    for part in [
        format!("StaticKeyExemption {ns}-exempt"),
        "platform@example.com".to_string(),
        "TICKET-16 move to IRSA".to_string(),
        format!("exempt until {far}"),
    ] {
        assert!(message.contains(&part), "{part}: {message}");
    }
    assert_eq!(skipped["properties"]["exemption"], format!("{ns}-exempt"));
    let expired = result_of(&r, "past");
    let message = expired["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("StaticKeyExemption {ns}-past"))
            && message.contains(&format!("expired at {in_past}")),
        "{message}"
    );
    assert_eq!(expired["properties"]["exemptionState"], "expired");
    let metrics = audit.metrics.encode();
    for line in [
        format!("hatrack_audit_exempted_workloads{{namespace=\"{ns}\"}} 1"),
        format!("hatrack_audit_expired_exemption_workloads{{namespace=\"{ns}\"}} 1"),
        format!("hatrack_audit_failing_workloads{{namespace=\"{ns}\"}} 3"),
    ] {
        assert!(metrics.contains(&line), "{line}\n{metrics}");
    }

    // An exemption that expires a few seconds after it is granted: skip, then fail at its
    // expiry with no other change (no workload, Secret or exemption event).
    let judged = audit.metrics.judgements.get();
    audit.log.clear();
    let expires = whole_seconds(jiff::Timestamp::now()) + jiff::SignedDuration::from_secs(20);
    exemptions
        .create(&pp, &exemption(&format!("{ns}-soon"), &ns, "soon", expires))
        .await
        .expect("create exemption");
    // Seen before it expires (a deadline, not a speed measure: 20 s for one watch event).
    wait_outcomes(
        &admin,
        &ns,
        18,
        &["exempt skip", "past fail", "plain fail", "soon skip"],
    )
    .await;
    let r = wait_outcomes(
        &admin,
        &ns,
        60,
        &["exempt skip", "past fail", "plain fail", "soon fail"],
    )
    .await;
    assert!(
        jiff::Timestamp::now() >= expires,
        "enforced again only once expired"
    );
    let message = result_of(&r, "soon")["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("expired at {expires}")),
        "{message}"
    );
    let writes = writes_to(&audit, &ns);
    assert_eq!(
        writes.len(),
        2,
        "one write when granted, one at the expiry: {writes:?}"
    );
    assert_eq!(
        audit.metrics.judgements.get(),
        judged,
        "exemptions re-judge nothing"
    );
    let m = audit.metrics.clone();
    let n = ns.clone();
    wait_for(30, "the expiry in the metrics", || {
        let (m, n) = (m.clone(), n.clone());
        async move {
            m.encode()
                .contains(&format!(
                    "hatrack_audit_expired_exemption_workloads{{namespace=\"{n}\"}} 2"
                ))
                .then_some(())
        }
    })
    .await;

    // Exemptions of other namespaces, and edits that change nothing the report shows, write
    // nothing; a reason edited is written once; a deletion once.
    audit.log.clear();
    let other = exemption(&format!("{ns}-elsewhere"), "elsewhere", "exempt", far);
    exemptions
        .create(&pp, &other)
        .await
        .expect("create exemption");
    exemptions
        .patch(
            &format!("{ns}-exempt"),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .unwrap();
    let flushes = audit.metrics.flushes.get();
    let m = audit.metrics.clone();
    wait_for(30, "three report rounds", || {
        let m = m.clone();
        async move { (m.flushes.get() >= flushes + 3).then_some(()) }
    })
    .await;
    assert_eq!(writes_to(&audit, &ns), Vec::<String>::new());
    exemptions
        .patch(
            &format!("{ns}-exempt"),
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"reason": "TICKET-17 new plan"}})),
        )
        .await
        .unwrap();
    let (a, n) = (&admin, ns.as_str());
    wait_for(30, "the new reason in the report", || async move {
        let r = report_in(a, n).await?;
        result_of(&r, "exempt")["message"]
            .as_str()?
            .contains("TICKET-17 new plan")
            .then_some(())
    })
    .await;
    exemptions
        .delete(&format!("{ns}-exempt"), &DeleteParams::default())
        .await
        .unwrap();
    wait_outcomes(
        &admin,
        &ns,
        30,
        &["exempt fail", "past fail", "plain fail", "soon fail"],
    )
    .await;
    let flushes = audit.metrics.flushes.get();
    let m = audit.metrics.clone();
    wait_for(30, "two report rounds", || {
        let m = m.clone();
        async move { (m.flushes.get() >= flushes + 2).then_some(()) }
    })
    .await;
    let writes = writes_to(&audit, &ns);
    assert_eq!(writes.len(), 2, "the reason, the deletion: {writes:?}");
    assert_eq!(audit.metrics.judgements.get(), judged);
    audit.stop().await;
    for name in ["past", "soon", "elsewhere"] {
        let _ = exemptions
            .delete(&format!("{ns}-{name}"), &DeleteParams::default())
            .await;
    }
}

/// A cluster that cannot be read is exit code 2 with the reason, as `check`'s unreadable input.
#[test]
fn audit_without_a_readable_kubeconfig_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_hatrack"))
        .args(["audit", "--kubeconfig", "/nonexistent/kubeconfig"])
        .output()
        .expect("run hatrack audit");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hatrack audit: kubeconfig /nonexistent/kubeconfig"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

/// Two replicas with leader election on the real Lease API: one judges and writes, the other
/// waits; when the leader stops, the other takes over and finds the reports as it would
/// write them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_leader_election_one_replica_writes() {
    let (c, release_ns, _serial) = setup().await;
    let admin = c.client().await;
    let ns = c.namespace("audit-lease").await;
    create(
        &admin,
        &ns,
        deployment(
            "leaky",
            json!([{"name": "app", "image": "app", "env": [{"name": "AWS_ACCESS_KEY_ID", "value": KEY_ID}]}]),
        ),
    )
    .await;
    let kubeconfig = c.service_account_kubeconfig(&release_ns, AUDIT_SA).await;
    let mut replicas = Vec::new();
    for identity in ["audit-a", "audit-b"] {
        let log = RequestLog::default();
        let client = log.client(&kubeconfig).await;
        let metrics = Arc::new(AuditMetrics::new());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let lease = hatrack::leader::LeaseConfig {
            namespace: release_ns.clone(),
            name: AUDIT_SA.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(3),
            renew_every: Duration::from_secs(1),
        };
        let options = AuditorOptions {
            policy: AuditPolicy::default(),
            flush_every: Duration::from_millis(200),
        };
        let m = metrics.clone();
        let task = tokio::spawn(async move {
            hatrack::leader::run_as_leader(
                client.clone(),
                lease,
                async {
                    let _ = rx.await;
                },
                |stop| {
                    live::run(
                        client.clone(),
                        options.clone(),
                        m.clone(),
                        stop.cancelled_owned(),
                    )
                },
            )
            .await
            .expect("lease timing")
            .unwrap_or(Ok(()))
            .expect("audit ran without error");
        });
        replicas.push((metrics, log, tx, task));
    }
    wait_results(&admin, &ns, &["Deployment/leaky env-static-key app"]).await;
    let metrics: Vec<Arc<AuditMetrics>> = replicas.iter().map(|r| r.0.clone()).collect();
    let leader = wait_for(30, "one leader with its first complete reports", || {
        let metrics = metrics.clone();
        async move {
            let done: Vec<bool> = metrics
                .iter()
                .map(|m| m.first_report_seconds.get() > 0.0)
                .collect();
            match done[..] {
                [true, false] => Some(0),
                [false, true] => Some(1),
                _ => None,
            }
        }
    })
    .await;
    let (leader_metrics, _, leader_stop, leader_task) = replicas.swap_remove(leader);
    let (standby_metrics, standby_log, standby_stop, standby_task) = replicas.remove(0);
    assert_eq!(
        standby_metrics.judgements.get(),
        0,
        "the standby judges nothing"
    );
    assert!(
        !standby_log
            .requests()
            .iter()
            .any(|r| r.path.contains("/policyreports")),
        "the standby does not touch reports"
    );
    assert!(leader_metrics.judgements.get() > 0);
    let rv = report_in(&admin, &ns).await.unwrap()["metadata"]["resourceVersion"].clone();

    // The leader stops and releases the Lease: the standby takes over and writes nothing.
    let _ = leader_stop.send(());
    tokio::time::timeout(Duration::from_secs(20), leader_task)
        .await
        .expect("leader stops")
        .expect("leader task");
    let m = standby_metrics.clone();
    wait_for(
        30,
        "the standby to take over and finish its first reports",
        || {
            let m = m.clone();
            async move { (m.first_report_seconds.get() > 0.0).then_some(()) }
        },
    )
    .await;
    assert!(standby_metrics.judgements.get() > 0);
    assert!(
        !standby_log
            .requests()
            .iter()
            .any(|r| r.path.contains("/policyreports") && r.method != "GET"),
        "the new leader found the reports as it would write them"
    );
    assert_eq!(
        report_in(&admin, &ns).await.unwrap()["metadata"]["resourceVersion"],
        rv
    );
    let _ = standby_stop.send(());
    tokio::time::timeout(Duration::from_secs(20), standby_task)
        .await
        .expect("standby stops")
        .expect("standby task");
}
