//! The Kubernetes API the controller runs against: the in-process stand-in (over a kubeconfig
//! file) or, with `CONTROLLER_API=real`, the real test kube-apiserver where the controller acts
//! as its own ServiceAccount; bindings stored, counted and waited for, requests counted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bench_http::http_get;
use crate::process::ControllerProcess;
use crate::support::apiserver::ApiServer;
use crate::support::cluster::TestCluster;
use crate::{ALL_BINDINGS, NAMESPACES};

// ---------------------------------------------------------------------------------------
// The Kubernetes API: the stand-in or a real kube-apiserver

/// The ServiceAccount the controller acts as on the real API server (bound to cluster-admin:
/// the bench measures load, tests/real_controller.rs proves the chart's RBAC).
pub(super) const BENCH_SA: (&str, &str) = ("default", "hatrack-bench-controller");

pub(super) enum KubeApi {
    StandIn(ApiServer),
    Real {
        cluster: &'static TestCluster,
        client: kube::Client,
        phase: String,
    },
}

impl KubeApi {
    pub(super) fn is_real() -> bool {
        std::env::var("CONTROLLER_API").is_ok_and(|v| v == "real")
    }

    pub(super) async fn start(phase: &str) -> KubeApi {
        if !Self::is_real() {
            return KubeApi::StandIn(ApiServer::start().await);
        }
        let cluster = crate::support::cluster::cluster_with_crds().await;
        let client = cluster.client().await;
        let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
            kube::Api::all(client.clone());
        for i in 0..NAMESPACES {
            let ns = json!({"metadata": {"name": format!("{phase}-{i:02}")}});
            let _ = namespaces
                .create(&Default::default(), &serde_json::from_value(ns).unwrap())
                .await;
        }
        let sas: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
            kube::Api::namespaced(client.clone(), BENCH_SA.0);
        let sa = json!({"metadata": {"name": BENCH_SA.1}});
        let _ = sas
            .create(&Default::default(), &serde_json::from_value(sa).unwrap())
            .await;
        let crbs: kube::Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> =
            kube::Api::all(client.clone());
        let crb = json!({"metadata": {"name": BENCH_SA.1},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "namespace": BENCH_SA.0, "name": BENCH_SA.1}]});
        let _ = crbs
            .create(&Default::default(), &serde_json::from_value(crb).unwrap())
            .await;
        KubeApi::Real {
            cluster,
            client,
            phase: phase.to_string(),
        }
    }

    pub(super) fn label(&self) -> &'static str {
        match self {
            KubeApi::StandIn(_) => "the stand-in",
            KubeApi::Real { .. } => "kube-apiserver",
        }
    }

    /// A kubeconfig for the controller.
    pub(super) async fn kubeconfig(&self, dir: &Path) -> PathBuf {
        match self {
            KubeApi::StandIn(api) => {
                let kubeconfig = dir.join("kubeconfig");
                std::fs::write(
                    &kubeconfig,
                    format!(
                        "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster: {{server: \"{}\"}}\nusers:\n- name: bench\n  user: {{}}\ncontexts:\n- name: bench\n  context: {{cluster: standin, user: bench, namespace: default}}\ncurrent-context: bench\n",
                        api.url()
                    ),
                )
                .expect("write kubeconfig");
                kubeconfig
            }
            KubeApi::Real { cluster, .. } => {
                cluster
                    .service_account_kubeconfig(BENCH_SA.0, BENCH_SA.1)
                    .await
            }
        }
    }

    /// Waits until the controller has opened its watches (the stand-in counts them; on the
    /// real server, the controller's /readyz and a short grace period).
    pub(super) async fn wait_watches(&self, controller: &ControllerProcess) {
        let deadline = Instant::now() + Duration::from_secs(30);
        match self {
            KubeApi::StandIn(api) => {
                while api.open_watches() == 0 && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            KubeApi::Real { .. } => {
                while http_get(controller.metrics_port, "/readyz").is_none()
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    /// Stores bindings `from..to` (each fires ADDED), spread over `NAMESPACES` namespaces.
    pub(super) async fn add_bindings(&self, from: usize, to: usize) {
        self.add_bindings_in(from, to, |_| None).await
    }

    /// Stores IAMAccount objects (cluster-scoped).
    pub(super) async fn add_accounts(&self, accounts: &[Value]) {
        for a in accounts {
            match self {
                KubeApi::StandIn(api) => {
                    api.put_object("/apis/hatrack.dev/v1alpha1/iamaccounts", a.clone());
                }
                KubeApi::Real { client, .. } => {
                    let api: kube::Api<hatrack::crd::IAMAccount> = kube::Api::all(client.clone());
                    let object = serde_json::from_value(a.clone()).expect("IAMAccount");
                    api.create(&Default::default(), &object)
                        .await
                        .expect("create IAMAccount");
                }
            }
        }
    }

    /// [`add_bindings`](Self::add_bindings), binding `i` naming IAMAccount `account_of(i)`.
    pub(super) async fn add_bindings_in(
        &self,
        from: usize,
        to: usize,
        account_of: impl Fn(usize) -> Option<String>,
    ) {
        let binding = |ns: &str, name: &str, i: usize| {
            let mut b = binding(ns, name);
            if let Some(a) = account_of(i) {
                b["spec"]["account"] = json!(a);
            }
            b
        };
        match self {
            KubeApi::StandIn(api) => {
                for i in from..to {
                    let ns = format!("team-{:02}", i % NAMESPACES);
                    api.put_object(
                        &format!("/apis/hatrack.dev/v1alpha1/namespaces/{ns}/iamrolebindings"),
                        binding(&ns, &format!("app-{i:05}"), i),
                    );
                }
            }
            KubeApi::Real { client, phase, .. } => {
                use futures::StreamExt;
                let creates = (from..to).map(|i| {
                    let ns = format!("{phase}-{:02}", i % NAMESPACES);
                    let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
                        client.clone(),
                        &ns,
                        &kube::api::ApiResource::erase::<hatrack::crd::IAMRoleBinding>(&()),
                    );
                    let object = binding(&ns, &format!("app-{i:05}"), i);
                    async move {
                        let object: kube::api::DynamicObject =
                            serde_json::from_value(object).expect("binding object");
                        if let Err(e) = api.create(&Default::default(), &object).await {
                            eprintln!("  create binding failed: {e}");
                        }
                    }
                });
                futures::stream::iter(creates)
                    .buffer_unordered(16)
                    .collect::<Vec<()>>()
                    .await;
            }
        }
    }

    /// Every binding, as JSON.
    pub(super) async fn objects(&self) -> Vec<Value> {
        match self {
            KubeApi::StandIn(api) => api.objects(ALL_BINDINGS),
            KubeApi::Real { client, .. } => {
                let api: kube::Api<hatrack::crd::IAMRoleBinding> = kube::Api::all(client.clone());
                let mut out = Vec::new();
                let mut params = kube::api::ListParams::default().limit(1000);
                loop {
                    let Ok(page) = api.list(&params).await else {
                        return out;
                    };
                    out.extend(
                        page.items
                            .iter()
                            .filter_map(|b| serde_json::to_value(b).ok()),
                    );
                    match page.metadata.continue_ {
                        Some(token) if !token.is_empty() => {
                            params = params.continue_token(&token);
                        }
                        _ => return out,
                    }
                }
            }
        }
    }

    /// How often to look at all bindings: a full list of 10,000 is work for a real server.
    pub(super) fn poll_every(&self) -> Duration {
        match self {
            KubeApi::StandIn(_) => Duration::from_millis(250),
            KubeApi::Real { .. } => Duration::from_secs(2),
        }
    }

    /// The controller's API requests so far by verb (real API server only: its audit log).
    pub(super) fn controller_requests(&self) -> Option<BTreeMap<String, u64>> {
        match self {
            KubeApi::StandIn(_) => None,
            KubeApi::Real { cluster, .. } => {
                let log = cluster.audit_log.as_ref()?;
                Some(crate::support::cluster::audited_requests(
                    log,
                    &format!("system:serviceaccount:{}:{}", BENCH_SA.0, BENCH_SA.1),
                ))
            }
        }
    }
}

pub(super) fn binding(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "serviceAccounts": [name, format!("{name}-worker")],
            "managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"],
            "inlinePolicies": {"put-receipts": {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": ["s3:PutObject"],
                               "Resource": [format!("arn:aws:s3:::receipts-{ns}/{name}/*")]}]
            }},
            "tags": {"team": ns}
        }
    })
}

pub(super) fn is_synced(b: &Value) -> bool {
    b["status"]["observedGeneration"] == b["metadata"]["generation"]
        && b["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True" && c["reason"] == "Synced")
        })
}

pub(super) async fn count_synced(api: &KubeApi) -> (usize, usize) {
    let all = api.objects().await;
    (all.iter().filter(|b| is_synced(b)).count(), all.len())
}

pub(super) fn print_requests(
    title: &str,
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    per: usize,
) {
    println!("| {title} | requests | per binding |");
    println!("|---|---|---|");
    let mut total = 0;
    for (verb, n) in after {
        let d = n - before.get(verb).copied().unwrap_or(0);
        total += d;
        println!("| {verb} | {d} | {:.2} |", d as f64 / per as f64);
    }
    println!(
        "| **total** | {total} | {:.2} |\n",
        total as f64 / per as f64
    );
}

/// Counts of (Ready status, reason) among bindings that are not synced, with one message.
pub(super) fn not_ready_summary(all: &[Value]) -> String {
    let mut counts: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for b in all.iter().filter(|b| !is_synced(b)) {
        let ready = b["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
        let key = match ready {
            Some(c) => format!("{}/{}", c["status"], c["reason"]),
            None => "no status".into(),
        };
        let msg = ready
            .and_then(|c| c["message"].as_str())
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        let e = counts.entry(key).or_insert((0, msg));
        e.0 += 1;
    }
    format!("{counts:?}")
}

/// Waits until `want` bindings are synced or `limit` passes; returns (synced, elapsed).
pub(super) async fn wait_synced(
    api: &KubeApi,
    want: usize,
    start: Instant,
    limit: Duration,
) -> usize {
    let mut last_print = Instant::now();
    loop {
        let all = api.objects().await;
        let synced = all.iter().filter(|b| is_synced(b)).count();
        if synced >= want || start.elapsed() >= limit {
            return synced;
        }
        if last_print.elapsed() >= Duration::from_secs(15) {
            eprintln!(
                "  ... {synced}/{} Ready after {:.0} s; not ready: {}",
                all.len(),
                start.elapsed().as_secs_f64(),
                not_ready_summary(&all)
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(api.poll_every()).await;
    }
}
