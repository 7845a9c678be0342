//! Controller at scale: the real `hatrack controller` binary (release build, its own process,
//! so its RSS is its own) against a Kubernetes API and a moto IAM server. The API is either the
//! in-process stand-in (tests/support/apiserver.rs, over a kubeconfig file; the default) or,
//! with `CONTROLLER_API=real`, a real etcd + kube-apiserver (tests/support/cluster.rs), where
//! the controller acts as its own ServiceAccount and the API server's audit log counts its
//! requests.
//!
//!     scripts/install-test-deps.sh   # once: moto into .venv, etcd and kube-apiserver into .tools
//!     cargo bench --bench controller
//!     CONTROLLER_API=real cargo bench --bench controller
//!
//! With the real API each phase runs in a process of its own (the bench re-executes itself),
//! so that bindings of one phase are not reconciled by the next phase's controller.
//! Phases (each prints a markdown section):
//! 1. `CONTROLLER_BINDINGS` (1,000) IAMRoleBindings stored at once → time until all are
//!    Ready=True/Synced; IAM calls by operation per binding (the controller's own
//!    `hatrack_iam_calls_total`, scraped from its /metrics); controller RSS.
//! 2. One resync window with no changes (resync period `CONTROLLER_RESYNC` = 20 s; the
//!    window is that period plus 5 s) → IAM write and read calls, reconciles.
//!    `CONTROLLER_RESYNC_WINDOW=0` skips it: with a long `CONTROLLER_RESYNC` (say 3600), phase
//!    1 then counts creation calls without resyncs mixed in, and phase 3 follows at once.
//! 3. Up to `CONTROLLER_HOLD` (10,000) bindings held → controller RSS (VmRSS and VmHWM from
//!    /proc), with how many were Ready when measured (bounded by `CONTROLLER_HOLD_SECONDS`).
//! 4. Throttling: an HTTP proxy in front of a fresh moto answers 50% of IAM requests (seeded
//!    random) with HTTP 400 `Throttling` → time until `CONTROLLER_THROTTLE_BINDINGS` (200)
//!    bindings are Ready, SDK attempts vs hatrack's calls, reconcile errors.
//!
//! `CONTROLLER_WRAPPER` runs the controller under a command (a heap profiler, say:
//! `CONTROLLER_WRAPPER="heaptrack -o /tmp/ht"`); its RSS figures are then not the controller's.
//!
//! Every wait is bounded in time; nothing here asserts a timing.

#[path = "support/http.rs"]
mod bench_http;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bench_http::http_get;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use support::apiserver::ApiServer;
use support::cluster::TestCluster;
use support::controller::{ACCOUNT, ISSUER_HOST_PATH};
use support::moto::{Moto, free_port};

const ALL_BINDINGS: &str = "/apis/hatrack.dev/v1alpha1/iamrolebindings";
const NAMESPACES: usize = 20;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------
// The controller process

struct ControllerProcess {
    child: Child,
    metrics_port: u16,
    log: PathBuf,
}

impl ControllerProcess {
    fn start(dir: &Path, kubeconfig: &Path, iam_endpoint: &str, resync_secs: u64) -> Self {
        Self::start_limited(dir, kubeconfig, iam_endpoint, resync_secs, 2000)
    }

    /// With `--iam-calls-per-second` (the controller's own account's limit).
    fn start_limited(
        dir: &Path,
        kubeconfig: &Path,
        iam_endpoint: &str,
        resync_secs: u64,
        calls_per_second: u64,
    ) -> Self {
        let metrics_port = free_port();
        let log = dir.join(format!("controller-{metrics_port}.log"));
        // `CONTROLLER_WRAPPER` (e.g. "heaptrack -o /tmp/ht") runs the binary under a profiler;
        // the RSS figures are then the wrapper's, not the controller's.
        let wrapper = std::env::var("CONTROLLER_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(words).arg(env!("CARGO_BIN_EXE_hatrack"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_hatrack")),
        };
        let child = command
            .arg("controller")
            .args(["--cluster-name", "bench", "--account-id", ACCOUNT])
            .args(["--cluster-region", "eu-west-1"])
            .args(["--oidc-issuer", &format!("https://{ISSUER_HOST_PATH}")])
            .args(["--iam-endpoint", iam_endpoint])
            .args(["--iam-calls-per-second", &calls_per_second.to_string()])
            .args(["--concurrency", "16"])
            .args(["--resync-seconds", &resync_secs.to_string()])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .env("KUBECONFIG", kubeconfig)
            // moto's dummy credentials; the SDK needs some to sign requests.
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("controller log"))
            .spawn()
            .expect("start hatrack controller");
        let p = ControllerProcess {
            child,
            metrics_port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(metrics_port, "/metrics").is_none() {
            assert!(
                Instant::now() < deadline,
                "controller metrics did not come up; log: {}",
                std::fs::read_to_string(&p.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// (VmRSS, VmHWM) in KiB.
    fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn metrics(&self) -> Scrape {
        Scrape::parse(&http_get(self.metrics_port, "/metrics").unwrap_or_default())
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// hatrack's own metrics, from its Prometheus text.
#[derive(Default, Clone)]
struct Scrape {
    /// (operation, outcome) → count
    iam: BTreeMap<(String, String), u64>,
    /// result → count
    reconciles: BTreeMap<String, u64>,
    /// account (an id, or `controller`) → IAM calls made in it
    by_account: BTreeMap<String, u64>,
}

fn label<'a>(labels: &'a str, name: &str) -> &'a str {
    labels
        .split(',')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix("=\""))
        .map(|v| v.trim_end_matches('"'))
        .unwrap_or("")
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut s = Scrape::default();
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let value = value as u64;
            if let Some(labels) = series.strip_prefix("hatrack_iam_calls_total{") {
                let labels = labels.trim_end_matches('}');
                s.iam.insert(
                    (
                        label(labels, "operation").to_string(),
                        label(labels, "outcome").to_string(),
                    ),
                    value,
                );
            } else if let Some(labels) = series.strip_prefix("hatrack_iam_calls_by_account_total{")
            {
                s.by_account.insert(
                    label(labels.trim_end_matches('}'), "account").to_string(),
                    value,
                );
            } else if let Some(labels) = series.strip_prefix("hatrack_reconciles_total{") {
                s.reconciles.insert(
                    label(labels.trim_end_matches('}'), "result").to_string(),
                    value,
                );
            }
        }
        s
    }

    fn minus(&self, before: &Scrape) -> Scrape {
        let mut d = self.clone();
        for (k, v) in d.iam.iter_mut() {
            *v -= before.iam.get(k).copied().unwrap_or(0);
        }
        for (k, v) in d.by_account.iter_mut() {
            *v -= before.by_account.get(k).copied().unwrap_or(0);
        }
        for (k, v) in d.reconciles.iter_mut() {
            *v -= before.reconciles.get(k).copied().unwrap_or(0);
        }
        d
    }

    fn by_operation(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for ((op, _), n) in &self.iam {
            *m.entry(op.clone()).or_default() += n;
        }
        m
    }

    fn writes(&self) -> u64 {
        self.by_operation()
            .iter()
            .filter(|(op, _)| !is_read(op))
            .map(|(_, n)| n)
            .sum()
    }

    fn reads(&self) -> u64 {
        self.by_operation()
            .iter()
            .filter(|(op, _)| is_read(op))
            .map(|(_, n)| n)
            .sum()
    }

    fn total_reconciles(&self) -> u64 {
        self.reconciles.values().sum()
    }
}

fn is_read(op: &str) -> bool {
    op.starts_with("Get") || op.starts_with("List")
}

// ---------------------------------------------------------------------------------------
// The Kubernetes API: the stand-in or a real kube-apiserver

/// The ServiceAccount the controller acts as on the real API server (bound to cluster-admin:
/// the bench measures load, tests/real_controller.rs proves the chart's RBAC).
const BENCH_SA: (&str, &str) = ("default", "hatrack-bench-controller");

enum KubeApi {
    StandIn(ApiServer),
    Real {
        cluster: &'static TestCluster,
        client: kube::Client,
        phase: String,
    },
}

impl KubeApi {
    fn is_real() -> bool {
        std::env::var("CONTROLLER_API").is_ok_and(|v| v == "real")
    }

    async fn start(phase: &str) -> KubeApi {
        if !Self::is_real() {
            return KubeApi::StandIn(ApiServer::start().await);
        }
        let cluster = support::cluster::cluster_with_crds().await;
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

    fn label(&self) -> &'static str {
        match self {
            KubeApi::StandIn(_) => "the stand-in",
            KubeApi::Real { .. } => "kube-apiserver",
        }
    }

    /// A kubeconfig for the controller.
    async fn kubeconfig(&self, dir: &Path) -> PathBuf {
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
    async fn wait_watches(&self, controller: &ControllerProcess) {
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
    async fn add_bindings(&self, from: usize, to: usize) {
        self.add_bindings_in(from, to, |_| None).await
    }

    /// Stores IAMAccount objects (cluster-scoped).
    async fn add_accounts(&self, accounts: &[Value]) {
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
    async fn add_bindings_in(
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
    async fn objects(&self) -> Vec<Value> {
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
    fn poll_every(&self) -> Duration {
        match self {
            KubeApi::StandIn(_) => Duration::from_millis(250),
            KubeApi::Real { .. } => Duration::from_secs(2),
        }
    }

    /// The controller's API requests so far by verb (real API server only: its audit log).
    fn controller_requests(&self) -> Option<BTreeMap<String, u64>> {
        match self {
            KubeApi::StandIn(_) => None,
            KubeApi::Real { cluster, .. } => {
                let log = cluster.audit_log.as_ref()?;
                Some(support::cluster::audited_requests(
                    log,
                    &format!("system:serviceaccount:{}:{}", BENCH_SA.0, BENCH_SA.1),
                ))
            }
        }
    }
}

fn binding(ns: &str, name: &str) -> Value {
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

fn is_synced(b: &Value) -> bool {
    b["status"]["observedGeneration"] == b["metadata"]["generation"]
        && b["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True" && c["reason"] == "Synced")
        })
}

async fn count_synced(api: &KubeApi) -> (usize, usize) {
    let all = api.objects().await;
    (all.iter().filter(|b| is_synced(b)).count(), all.len())
}

fn print_requests(
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
fn not_ready_summary(all: &[Value]) -> String {
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
async fn wait_synced(api: &KubeApi, want: usize, start: Instant, limit: Duration) -> usize {
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

fn print_calls(title: &str, calls: &Scrape, per: usize) {
    println!("| {title} | calls | per binding |");
    println!("|---|---|---|");
    for (op, n) in calls.by_operation() {
        println!("| {op} | {n} | {:.2} |", n as f64 / per as f64);
    }
    let total: u64 = calls.by_operation().values().sum();
    println!("| **total** | {total} | {:.2} |", total as f64 / per as f64);
    let failed: Vec<String> = calls
        .iam
        .iter()
        .filter(|((_, outcome), n)| outcome != "success" && **n > 0)
        .map(|((op, outcome), n)| format!("{op} {outcome}: {n}"))
        .collect();
    println!(
        "\nCalls with an outcome other than success: {}",
        if failed.is_empty() {
            "none".to_string()
        } else {
            failed.join(", ")
        }
    );
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

// ---------------------------------------------------------------------------------------
// Throttling proxy

#[derive(Default)]
struct ProxyStats {
    requests: AtomicU64,
    throttled: AtomicU64,
}

const THROTTLING_BODY: &str = "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>x</RequestId></ErrorResponse>";

async fn start_throttling_proxy(upstream: String, stats: Arc<ProxyStats>) -> String {
    use axum::body::{Body, Bytes};
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::Response;

    let client = reqwest::Client::builder()
        .build()
        .expect("proxy HTTP client");
    let rng = Arc::new(Mutex::new(rand::rngs::StdRng::seed_from_u64(6)));
    let handler = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let client = client.clone();
        let upstream = upstream.clone();
        let stats = stats.clone();
        let rng = rng.clone();
        async move {
            stats.requests.fetch_add(1, Ordering::Relaxed);
            let throttle = rng.lock().map(|mut r| r.random_bool(0.5)).unwrap_or(false);
            if throttle {
                stats.throttled.fetch_add(1, Ordering::Relaxed);
                return Response::builder()
                    .status(StatusCode::BAD_REQUEST)
                    .header("content-type", "text/xml")
                    .body(Body::from(THROTTLING_BODY))
                    .unwrap();
            }
            let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let mut req = client.request(method, format!("{upstream}{path}"));
            for (k, v) in &headers {
                if k != "host" && k != "content-length" {
                    req = req.header(k, v);
                }
            }
            match req.body(body).send().await {
                Ok(resp) => {
                    let mut out = Response::builder().status(resp.status());
                    if let Some(ct) = resp.headers().get("content-type") {
                        out = out.header("content-type", ct);
                    }
                    let bytes = resp.bytes().await.unwrap_or_default();
                    out.body(Body::from(bytes)).unwrap()
                }
                Err(e) => Response::builder()
                    .status(StatusCode::BAD_GATEWAY)
                    .body(Body::from(e.to_string()))
                    .unwrap(),
            }
        }
    };
    let app = axum::Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

// ---------------------------------------------------------------------------------------

async fn scale(dir: &Path) {
    let n = env_num("CONTROLLER_BINDINGS", 1000) as usize;
    let hold = env_num("CONTROLLER_HOLD", 10_000) as usize;
    let hold_limit = Duration::from_secs(env_num("CONTROLLER_HOLD_SECONDS", 300));
    let resync = env_num("CONTROLLER_RESYNC", 20);

    let moto = Moto::start();
    moto.create_oidc_provider(&format!("https://{ISSUER_HOST_PATH}"))
        .await;
    let api = KubeApi::start("scale").await;
    let kubeconfig = api.kubeconfig(dir).await;
    let controller = ControllerProcess::start(dir, &kubeconfig, &moto.endpoint, resync);
    // Wait for the controller's watches before storing anything.
    api.wait_watches(&controller).await;
    let (idle_rss, _) = controller.rss_kib();
    let before = controller.metrics();
    let requests_before = api.controller_requests();

    println!(
        "## Controller: {n} IAMRoleBindings applied at once ({})\n",
        api.label()
    );
    let start = Instant::now();
    api.add_bindings(0, n).await;
    let stored = start.elapsed();
    let synced = wait_synced(&api, n, start, Duration::from_secs(600)).await;
    let took = start.elapsed();
    let after = controller.metrics();
    let calls = after.minus(&before);
    let (rss, hwm) = controller.rss_kib();
    println!(
        "- {synced}/{n} Ready=True (Synced) after **{:.1} s** ({:.0} bindings/s); storing them in {} took {:.0} ms",
        took.as_secs_f64(),
        synced as f64 / took.as_secs_f64(),
        api.label(),
        stored.as_secs_f64() * 1000.0
    );
    println!(
        "- reconciles: {} ({:?})",
        calls.total_reconciles(),
        calls.reconciles
    );
    println!(
        "- controller RSS: idle {} → {} after {n} bindings (peak {})\n",
        mib(idle_rss),
        mib(rss),
        mib(hwm)
    );
    print_calls("IAM operation (creation)", &calls, synced.max(1));
    if let (Some(b), Some(a)) = (&requests_before, api.controller_requests()) {
        println!("\nThe controller's requests to kube-apiserver (its audit log), creation:\n");
        print_requests("API verb (creation)", b, &a, synced.max(1));
    }

    if env_num("CONTROLLER_RESYNC_WINDOW", 1) == 0 {
        println!("\n(resync window skipped: CONTROLLER_RESYNC_WINDOW=0; resync period {resync} s)");
    } else {
        resync_window(&api, &controller, resync, n).await;
    }
    hold_bindings(&api, &controller, &before, n, hold, hold_limit, idle_rss).await;
    drop(controller);
}

async fn resync_window(api: &KubeApi, controller: &ControllerProcess, resync: u64, n: usize) {
    println!("\n## Controller: one resync window with no changes\n");
    // Let in-flight work settle, then measure one resync period plus 5 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r0 = controller.metrics();
    let q0 = api.controller_requests();
    let window = Duration::from_secs(resync + 5);
    tokio::time::sleep(window).await;
    let r1 = controller.metrics();
    if let (Some(b), Some(a)) = (&q0, api.controller_requests()) {
        println!("The controller's requests to kube-apiserver in the window:\n");
        print_requests("API verb (resync window)", b, &a, n);
    }
    let d = r1.minus(&r0);
    println!(
        "- resync period {resync} s, window measured {} s, {n} bindings",
        window.as_secs()
    );
    println!(
        "- IAM **write** calls: **{}**; read calls: {} ({:.2} per reconcile); reconciles in the window: {} ({:?})\n",
        d.writes(),
        d.reads(),
        d.reads() as f64 / d.total_reconciles().max(1) as f64,
        d.total_reconciles(),
        d.reconciles
    );
    print_calls("IAM operation (resync window)", &d, n);
}

async fn hold_bindings(
    api: &KubeApi,
    controller: &ControllerProcess,
    before: &Scrape,
    n: usize,
    hold: usize,
    hold_limit: Duration,
    idle_rss: u64,
) {
    println!("\n## Controller: {hold} IAMRoleBindings held\n");
    let start = Instant::now();
    api.add_bindings(n, hold).await;
    let synced = wait_synced(api, hold, start, hold_limit).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss, hwm) = controller.rss_kib();
    let (synced_now, total) = count_synced(api).await;
    println!(
        "- added {} bindings; {synced}/{hold} Ready after {:.0} s (limit {} s); at measurement {synced_now}/{total} Ready",
        hold - n,
        start.elapsed().as_secs_f64(),
        hold_limit.as_secs()
    );
    println!(
        "- controller RSS with {total} bindings held: **{}** (VmRSS), peak {} (VmHWM); idle was {}",
        mib(rss),
        mib(hwm),
        mib(idle_rss)
    );
    let total_calls = controller.metrics().minus(before);
    println!(
        "- IAM calls in all phases: {} ({} writes)\n",
        total_calls.reads() + total_calls.writes(),
        total_calls.writes()
    );
}

async fn throttling(dir: &Path) {
    let n = env_num("CONTROLLER_THROTTLE_BINDINGS", 200) as usize;
    println!("## Controller: 50% of IAM requests throttled\n");
    let moto = Moto::start();
    moto.create_oidc_provider(&format!("https://{ISSUER_HOST_PATH}"))
        .await;
    let stats = Arc::new(ProxyStats::default());
    let proxy = start_throttling_proxy(moto.endpoint.clone(), stats.clone()).await;
    let api = KubeApi::start("throttled").await;
    let kubeconfig = api.kubeconfig(dir).await;
    let controller = ControllerProcess::start(dir, &kubeconfig, &proxy, 600);
    api.wait_watches(&controller).await;
    let before = controller.metrics();
    let start = Instant::now();
    api.add_bindings(0, n).await;
    let synced = wait_synced(&api, n, start, Duration::from_secs(600)).await;
    let took = start.elapsed();
    let calls = controller.metrics().minus(&before);
    let requests = stats.requests.load(Ordering::Relaxed);
    let throttled = stats.throttled.load(Ordering::Relaxed);
    let logical: u64 = calls.by_operation().values().sum();
    let throttled_calls: u64 = calls
        .iam
        .iter()
        // not_found is GetRole's expected answer before a role exists, not a failure.
        .filter(|((_, o), _)| o != "success" && o != "not_found")
        .map(|(_, n)| n)
        .sum();
    println!(
        "- {synced}/{n} bindings Ready=True (Synced) after **{:.1} s** (all converged: {})",
        took.as_secs_f64(),
        synced == n
    );
    println!(
        "- HTTP requests reaching the proxy: {requests}, answered Throttling: {throttled} ({:.1}%)",
        100.0 * throttled as f64 / requests.max(1) as f64
    );
    println!(
        "- hatrack IAM calls (after the SDK's retries): {logical}; SDK attempts per call: {:.2}; retries (attempts - calls): {}",
        requests as f64 / logical.max(1) as f64,
        requests.saturating_sub(logical)
    );
    println!(
        "- calls that still failed after the SDK's attempts (requeued by the controller): {throttled_calls}"
    );
    println!(
        "- reconciles: {} ({:?})\n",
        calls.total_reconciles(),
        calls.reconciles
    );
    print_calls("IAM operation (throttled run)", &calls, n);
    drop(controller);
}

/// Phase `accounts`: `CONTROLLER_ACCOUNT_BINDINGS` (1,000) bindings spread round-robin over
/// `CONTROLLER_ACCOUNTS` (4) AWS accounts — the controller's own and IAMAccounts for the
/// others, whose roles moto makes with assumed-role credentials — each limited to
/// `CONTROLLER_ACCOUNT_RATE` (50) IAM calls per second; then the same bindings all in the
/// controller's account under the same one limit. Time until all are Ready, calls per binding.
async fn accounts(dir: &Path) {
    let n = env_num("CONTROLLER_ACCOUNT_BINDINGS", 1000) as usize;
    let k = env_num("CONTROLLER_ACCOUNTS", 4).max(1) as usize;
    let rate = env_num("CONTROLLER_ACCOUNT_RATE", 50);
    let ids: Vec<String> = (0..k)
        .map(|i| {
            if i == 0 {
                ACCOUNT.to_string()
            } else {
                format!("{}", 200_000_000_000u64 + 11_111_111_111 * i as u64)
            }
        })
        .collect();
    // With the real API each run is a process of its own (its own API server): two
    // controllers over all namespaces one after the other would share one server.
    let runs: Vec<bool> = match std::env::var("CONTROLLER_ACCOUNTS_RUN").as_deref() {
        Ok("spread") => vec![true],
        Ok("one") => vec![false],
        _ if KubeApi::is_real() => {
            for run in ["spread", "one"] {
                let status = Command::new(std::env::current_exe().expect("bench binary"))
                    .args(std::env::args().skip(1))
                    .env("CONTROLLER_PHASES", "accounts")
                    .env("CONTROLLER_ACCOUNTS_RUN", run)
                    .status()
                    .expect("run accounts run");
                assert!(status.success(), "accounts run {run} failed");
            }
            return;
        }
        _ => vec![true, false],
    };
    println!(
        "## Controller: {n} IAMRoleBindings over {k} AWS accounts, {rate} IAM calls/s per account\n"
    );
    for spread in runs {
        let moto = Moto::start();
        moto.create_oidc_provider(&format!("https://{ISSUER_HOST_PATH}"))
            .await;
        for id in &ids[1..] {
            moto.create_oidc_provider_in(id, &format!("https://{ISSUER_HOST_PATH}"))
                .await;
        }
        let phase = if spread { "accounts" } else { "oneaccount" };
        let api = KubeApi::start(phase).await;
        let accounts: Vec<Value> = ids[1..]
            .iter()
            .enumerate()
            .map(|(i, id)| {
                json!({"apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMAccount",
                    "metadata": {"name": format!("acct-{}", i + 1)},
                    "spec": {"accountId": id,
                             "assumeRole": {"roleArn": format!("arn:aws:iam::{id}:role/hatrack-operator")},
                             "namespaceSelector": {},
                             "iamCallsPerSecond": rate}})
            })
            .collect();
        api.add_accounts(&accounts).await;
        let kubeconfig = api.kubeconfig(dir).await;
        let controller =
            ControllerProcess::start_limited(dir, &kubeconfig, &moto.endpoint, 3600, rate);
        api.wait_watches(&controller).await;
        let before = controller.metrics();
        let start = Instant::now();
        if spread {
            api.add_bindings_in(0, n, |i| (i % k != 0).then(|| format!("acct-{}", i % k)))
                .await;
        } else {
            api.add_bindings(0, n).await;
        }
        let synced = wait_synced(&api, n, start, Duration::from_secs(900)).await;
        let took = start.elapsed();
        let calls = controller.metrics().minus(&before);
        let total: u64 = calls.by_operation().values().sum();
        let mut per_account = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let roles = moto.roles_in(id, "/hatrack/").await.len();
            // The controller's own account is counted as `controller`.
            let key = if i == 0 { "controller" } else { id.as_str() };
            let made = calls.by_account.get(key).copied().unwrap_or(0);
            per_account.push(format!(
                "{id}: {roles} roles, {made} IAM calls ({:.1} calls/s, limit {rate})",
                made as f64 / took.as_secs_f64()
            ));
        }
        println!(
            "- {}{}: {synced}/{n} Ready=True (Synced) after **{:.1} s** ({:.1} bindings/s); {total} IAM calls ({:.2} per binding, {:.0} calls/s overall); per account: {}",
            if KubeApi::is_real() {
                "real kube-apiserver, "
            } else {
                ""
            },
            if spread {
                format!("spread over {k} accounts (each its own limit)")
            } else {
                "all in the controller's account (one limit)".to_string()
            },
            took.as_secs_f64(),
            synced as f64 / took.as_secs_f64(),
            total as f64 / synced.max(1) as f64,
            total as f64 / took.as_secs_f64(),
            per_account.join(", ")
        );
        drop(controller);
    }
    println!();
}

fn main() {
    let only = std::env::var("CONTROLLER_PHASES").unwrap_or_else(|_| "scale,throttling".into());
    let phases: Vec<&str> = ["scale", "throttling", "accounts"]
        .into_iter()
        .filter(|p| only.contains(p))
        .collect();
    if KubeApi::is_real() && phases.len() > 1 {
        // One real API server per process: run each phase in a process of its own.
        let t0 = Instant::now();
        for phase in phases {
            let status = Command::new(std::env::current_exe().expect("bench binary"))
                .args(std::env::args().skip(1))
                .env("CONTROLLER_PHASES", phase)
                .status()
                .expect("run phase");
            assert!(status.success(), "phase {phase} failed");
        }
        println!("controller bench took {:.0} s", t0.elapsed().as_secs_f64());
        return;
    }
    if KubeApi::is_real() {
        // SAFETY: set before the runtime starts, while this is the only thread.
        unsafe { std::env::set_var("HATRACK_TEST_AUDIT", "1") };
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            // reqwest (the throttling proxy's client) needs a process-wide rustls provider.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let dir = tempfile::tempdir().expect("temp dir");
            let t0 = Instant::now();
            if phases.contains(&"scale") {
                scale(dir.path()).await;
            }
            if phases.contains(&"throttling") {
                throttling(dir.path()).await;
            }
            if phases.contains(&"accounts") {
                accounts(dir.path()).await;
            }
            println!("controller bench took {:.0} s", t0.elapsed().as_secs_f64());
        });
}
