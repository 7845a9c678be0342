//! The admission webhook in a real kube-apiserver's admission chain (tests/support/cluster.rs).
//!
//! The chart is installed with `helm` and `webhook.url=https://127.0.0.1:PORT`, so the API server
//! stores the chart's own ValidatingWebhookConfiguration. The webhook runs as a host process —
//! the built `hatrack` binary with the arguments and environment of the chart's stored webhook
//! Deployment (only addresses and the certificate directory changed) — authenticated as the
//! chart's webhook ServiceAccount, so the chart's RBAC is what it gets. Its self-managed
//! certificate flow writes the Secret, the serving certificate (naming 127.0.0.1, from the
//! chart's `--cert-extra-names`) and the caBundle the API server uses to call it. Everything
//! else goes through the real API server: `kubectl apply`, `kubectl debug`, `helm upgrade`.
//!
//! One release and one webhook port serve the whole binary; the tests run one at a time
//! (the webhook configuration is cluster-wide, and one test stops the webhook), each starting
//! its own webhook process, killed when the test ends, passed or panicked.

use hatrack_test_support as support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use support::cluster::{
    TestCluster, cluster, helm, kubectl, run, spawn_tied_to_this_thread, temp_file,
};
use support::moto::free_port;
use tokio::sync::{Mutex, OnceCell};

const RELEASE: &str = "hatrack";
const WEBHOOK: &str = "hatrack-webhook";
const CERT_SECRET: &str = "hatrack-webhook-tls";
/// The example key pair of the AWS documentation: denied like any other.
const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// The installed release, shared by the tests of this binary.
struct Release {
    namespace: String,
    /// In `webhook.exemptNamespaces`.
    exempt: String,
    /// `webhook.url` is `https://127.0.0.1:{port}`.
    port: u16,
}

static RELEASE_ONCE: OnceCell<Release> = OnceCell::const_new();
/// The webhook configuration is cluster-wide: one test at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

fn chart_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/charts/hatrack"))
}

/// The cluster, the release and this test's turn (see [`SERIAL`]), or `None` (with a note)
/// when the API server cannot call back into this host.
async fn setup() -> Option<(
    &'static TestCluster,
    &'static Release,
    tokio::sync::MutexGuard<'static, ()>,
)> {
    let cluster = cluster().await;
    if !cluster.is_local {
        eprintln!(
            "skipped: the API server at {} cannot reach a webhook on 127.0.0.1",
            cluster.server
        );
        return None;
    }
    let release = RELEASE_ONCE
        .get_or_init(|| async {
            let namespace = cluster.namespace("hatrack-system").await;
            let exempt = cluster.namespace("exempt").await;
            let port = free_port();
            let (ok, out, err) = run(helm(cluster)
                .args(["install", RELEASE])
                .arg(chart_dir())
                .args(["--namespace", &namespace])
                .args(["--set", "cluster.name=test-cluster"])
                .args(["--set", "cluster.region=us-east-1"])
                .args(["--set-string", "cluster.accountId=111122223333"])
                .args([
                    "--set",
                    "cluster.oidcIssuer=https://oidc.eks.us-east-1.amazonaws.com/id/TEST",
                ])
                .args(["--set", &format!("webhook.url=https://127.0.0.1:{port}")])
                .args(["--set", &format!("webhook.exemptNamespaces={{{exempt}}}")]));
            assert!(ok, "helm install: {out}{err}");
            Release {
                namespace,
                exempt,
                port,
            }
        })
        .await;
    Some((cluster, release, SERIAL.lock().await))
}

/// IAMGuardrail `name` denying `iam:*` in the namespaces labelled `hatrack-test/guardrail=<name>`.
fn denies_iam_where_labelled(name: &str) -> Value {
    json!({
        "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMGuardrail",
        "metadata": {"name": name},
        "spec": {
            "namespaceSelector": {"matchLabels": {"hatrack-test/guardrail": name}},
            "deniedActions": ["iam:*"],
        },
    })
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A `hatrack webhook` process run as the chart's webhook Deployment would run it. Killed on
/// drop (and by PR_SET_PDEATHSIG if the test thread dies first).
struct Webhook {
    child: Child,
    log: PathBuf,
    metrics_port: u16,
    /// `ca.crt` of the certificate Secret when the webhook became ready.
    ca_pem: String,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A reqwest client over rustls (ring) that trusts `ca_pem` only.
fn https_client(ca_pem: &str) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("PEM certificate")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .expect("client")
}

fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

impl Webhook {
    /// Starts the webhook with the arguments, environment and ServiceAccount of the chart's
    /// stored webhook Deployment, and waits until it serves `/readyz` with the certificate
    /// of its Secret and the API server admits through it.
    async fn start(cluster: &TestCluster, release: &Release) -> Webhook {
        let admin = cluster.client().await;
        let deployment = Api::<Deployment>::namespaced(admin.clone(), &release.namespace)
            .get(WEBHOOK)
            .await
            .expect("the chart's webhook Deployment");
        let pod = deployment
            .spec
            .expect("spec")
            .template
            .spec
            .expect("pod spec");
        let service_account = pod
            .service_account_name
            .clone()
            .expect("the webhook Deployment names its ServiceAccount");
        let container = pod.containers.first().expect("webhook container").clone();
        let chart_args = container.args.clone().unwrap_or_default();
        assert_eq!(chart_args.first().map(String::as_str), Some("webhook"));
        assert!(chart_args.contains(&"--self-managed-certs".to_string()));
        assert!(
            chart_args.contains(&"--cert-extra-names=127.0.0.1".to_string()),
            "the chart names webhook.url's host in the certificate: {chart_args:?}"
        );

        let dir = tempfile::Builder::new()
            .prefix("webhook-")
            .tempdir_in(&cluster.dir)
            .expect("temp dir")
            .keep();
        let metrics_port = free_port();
        let path = |name: &str| dir.join(name).display().to_string();
        // The pod-templates list the chart mounts from its ConfigMap.
        let pod_templates = Api::<ConfigMap>::namespaced(admin.clone(), &release.namespace)
            .get(&format!("{WEBHOOK}-pod-templates"))
            .await
            .expect("the chart's pod-templates ConfigMap");
        let list = pod_templates
            .data
            .as_ref()
            .and_then(|d| d.get("pod-templates.yaml"))
            .expect("pod-templates.yaml in the ConfigMap");
        std::fs::write(dir.join("pod-templates.yaml"), list).expect("write pod-templates.yaml");
        // Only where it listens and where the certificate files go differ from the pod.
        let args: Vec<String> = chart_args
            .iter()
            .map(|arg| match arg.split_once('=') {
                Some(("--listen", _)) => format!("--listen=127.0.0.1:{}", release.port),
                Some(("--metrics-listen", _)) => {
                    format!("--metrics-listen=127.0.0.1:{metrics_port}")
                }
                Some(("--tls-cert", _)) => format!("--tls-cert={}", path("tls.crt")),
                Some(("--tls-key", _)) => format!("--tls-key={}", path("tls.key")),
                Some(("--cert-dir", _)) => format!("--cert-dir={}", dir.display()),
                Some(("--pod-templates", _)) => {
                    format!("--pod-templates={}", path("pod-templates.yaml"))
                }
                _ => arg.clone(),
            })
            .collect();

        let kubeconfig = cluster
            .service_account_kubeconfig(&release.namespace, &service_account)
            .await;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hatrack"));
        cmd.args(&args)
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info,hatrack=debug");
        for var in container.env.iter().flatten() {
            let field = var
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.as_str());
            match (&var.value, field) {
                (Some(value), _) => cmd.env(&var.name, value),
                (None, Some("metadata.namespace")) => cmd.env(&var.name, &release.namespace),
                (None, Some("metadata.name")) => cmd.env(&var.name, "hatrack-webhook-host"),
                _ => panic!("env {} of the webhook Deployment is not modelled", var.name),
            };
        }
        let log = dir.join("webhook.log");
        let mut child = spawn_tied_to_this_thread(&mut cmd, &log);

        let secrets: Api<Secret> = Api::namespaced(admin.clone(), &release.namespace);
        let deadline = Instant::now() + Duration::from_secs(60);
        let ca_pem = loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "hatrack webhook exited with {status}; its log:\n{}",
                    tail(&log)
                );
            }
            let ca = secrets
                .get_opt(CERT_SECRET)
                .await
                .ok()
                .flatten()
                .and_then(|s| secret_text(&s, "ca.crt"));
            let mut last = "no ca.crt in Secret {CERT_SECRET} yet".to_string();
            if let Some(ca) = ca {
                // Verifies the serving certificate against the Secret's CA, for 127.0.0.1.
                match https_client(&ca)
                    .get(format!("https://127.0.0.1:{}/readyz", release.port))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => break ca,
                    Ok(r) => last = format!("/readyz: {}", r.status()),
                    Err(e) => last = format!("/readyz: {e:?}"),
                }
            }
            assert!(
                Instant::now() < deadline,
                "hatrack webhook not ready after 60 s ({last}); its log:\n{}",
                tail(&log)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let webhook = Webhook {
            child,
            log,
            metrics_port,
            ca_pem,
        };
        webhook.wait_admission(cluster).await;
        webhook
    }

    /// Waits until the API server admits a clean Deployment through the webhook (server-side
    /// dry run): it has seen the caBundle and reaches the process.
    async fn wait_admission(&self, cluster: &TestCluster) {
        let ns = cluster.namespace("probe").await;
        let api: Api<Deployment> = Api::namespaced(cluster.client().await, &ns);
        let probe: Deployment = serde_json::from_value(deployment("probe", json!([]))).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let result = api
                .create(
                    &PostParams {
                        dry_run: true,
                        ..Default::default()
                    },
                    &probe,
                )
                .await;
            match result {
                Ok(_) => return,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "the API server does not admit through the webhook after 30 s: {e}; \
                     the webhook's log:\n{}",
                    tail(&self.log)
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `/metrics` (plain HTTP).
    fn metrics(&self) -> String {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port))
            .expect("connect to /metrics");
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .expect("request /metrics");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("read /metrics");
        text
    }

    /// Sum of `hatrack_webhook_decisions_total` samples whose labels contain every one of
    /// `labels` (e.g. `mode="audit"`).
    fn decisions(&self, labels: &[&str]) -> f64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with("hatrack_webhook_decisions_total{"))
            .filter(|l| labels.iter().all(|want| l.contains(want)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

fn deployment(name: &str, env: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1", "env": env}]},
            },
        },
    })
}

fn static_keys() -> Value {
    json!([
        {"name": "AWS_ACCESS_KEY_ID", "value": KEY_ID},
        {"name": "AWS_SECRET_ACCESS_KEY", "value": SECRET_KEY},
    ])
}

fn clean_env() -> Value {
    json!([{"name": "AWS_REGION", "value": "eu-west-1"}])
}

/// `kubectl apply -n ns -f <manifest>` as the cluster administrator: (ok, stdout, stderr).
fn apply(cluster: &TestCluster, ns: &str, manifest: &Value) -> (bool, String, String) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let file = temp_file(
        cluster,
        &format!("manifest-{}.json", NEXT.fetch_add(1, Ordering::Relaxed)),
        &manifest.to_string(),
    );
    run(kubectl(cluster).args(["apply", "-n", ns, "-f"]).arg(file))
}

fn assert_refused(result: (bool, String, String), what: &str, expected: &[&str]) {
    let (ok, out, err) = result;
    assert!(!ok, "{what} was admitted: {out}{err}");
    for text in expected {
        assert!(
            err.contains(text),
            "{what}: kubectl's error lacks {text:?}:\n{err}"
        );
    }
}

fn assert_admitted(result: (bool, String, String), what: &str) -> String {
    let (ok, out, err) = result;
    assert!(ok, "{what} was refused: {out}{err}");
    err
}

/// A namespace for workloads: the harness gives it what kube-controller-manager would (the
/// `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap every Pod's service account
/// volume projects: the webhook reads it; a missing one earns every Pod a warning).
async fn app_namespace(cluster: &TestCluster, prefix: &str) -> String {
    cluster.namespace(prefix).await
}

async fn namespace_with_labels(cluster: &TestCluster, prefix: &str, labels: Value) -> String {
    let ns = app_namespace(cluster, prefix).await;
    support::objects::label_namespace(&cluster.client().await, &ns, labels).await;
    ns
}

#[tokio::test]
async fn the_webhook_writes_the_ca_bundle_the_api_server_calls_it_with() {
    let Some((cluster, release, _serial)) = setup().await else {
        return;
    };
    let webhook = Webhook::start(cluster, release).await;
    let admin = cluster.client().await;

    // Every webhook of the chart's configuration (workloads, system namespaces' workloads,
    // bindings) carries the CA of hatrack's own Secret.
    let vwc = Api::<ValidatingWebhookConfiguration>::all(admin.clone())
        .get(&format!("{RELEASE}-{}", release.namespace))
        .await
        .expect("the chart's ValidatingWebhookConfiguration");
    let webhooks = vwc.webhooks.unwrap_or_default();
    assert_eq!(webhooks.len(), 3);
    for w in &webhooks {
        let ca = w
            .client_config
            .ca_bundle
            .as_ref()
            .map(|b| String::from_utf8_lossy(&b.0).into_owned());
        assert_eq!(
            ca.as_deref(),
            Some(webhook.ca_pem.as_str()),
            "caBundle of {}",
            w.name
        );
        let url = w.client_config.url.as_deref().unwrap_or_default();
        assert!(
            url.starts_with(&format!("https://127.0.0.1:{}/validate/", release.port)),
            "{url}"
        );
    }
    // The serving certificate names 127.0.0.1 as an IP address (Go's TLS client insists).
    let secret = Api::<Secret>::namespaced(admin.clone(), &release.namespace)
        .get(CERT_SECRET)
        .await
        .expect("certificate Secret");
    let serving = secret_text(&secret, "tls.crt").expect("tls.crt");
    let names = hatrack::certs::subject_alt_names(&serving).expect("SANs");
    assert!(names.contains(&"127.0.0.1".to_string()), "{names:?}");
    assert!(
        names.contains(&format!("{WEBHOOK}.{}.svc", release.namespace)),
        "{names:?}"
    );

    // The webhook ran as the chart's ServiceAccount; that identity may write its own
    // Secret and configuration, and nothing next to them.
    let sa = format!("system:serviceaccount:{}:{WEBHOOK}", release.namespace);
    let vwc_name = vwc.metadata.name.clone().unwrap_or_default();
    let own_secret = format!("secrets/{CERT_SECRET}");
    let own_vwc = format!("validatingwebhookconfigurations/{vwc_name}");
    for (verb, target, ns, allowed) in [
        (
            "update",
            own_secret.as_str(),
            release.namespace.as_str(),
            true,
        ),
        ("update", "secrets/other", release.namespace.as_str(), false),
        ("update", own_vwc.as_str(), "", true),
        ("update", "validatingwebhookconfigurations/other", "", false),
        ("create", "deployments", release.namespace.as_str(), false),
        ("watch", "secrets", "default", true),
    ] {
        let mut cmd = kubectl(cluster);
        cmd.args(["auth", "can-i", "--as", &sa, verb, target]);
        if !ns.is_empty() {
            cmd.args(["-n", ns]);
        }
        let (_, out, err) = run(&mut cmd);
        assert_eq!(
            out.trim(),
            if allowed { "yes" } else { "no" },
            "may {sa} {verb} {target} in {ns:?}? {err}"
        );
    }

    // A Deployment with static keys: refused by the API server with hatrack's message.
    let ns = app_namespace(cluster, "app").await;
    assert_refused(
        apply(cluster, &ns, &deployment("leaky", static_keys())),
        "a Deployment with static keys",
        &[
            "Error from server (Forbidden)",
            "admission webhook \"workloads.hatrack.dev\" denied the request",
            &format!("hatrack: Deployment {ns}/leaky carries static AWS keys (2 findings)"),
            "env-static-key",
            "give ServiceAccount 'default' an IAM role",
        ],
    );
    assert!(
        !run(kubectl(cluster).args(["get", "deploy", "leaky", "-n", &ns])).0,
        "the refused Deployment is not stored"
    );
    // A clean one is created.
    let warnings = assert_admitted(
        apply(cluster, &ns, &deployment("clean", clean_env())),
        "a clean Deployment",
    );
    assert!(!warnings.contains("Warning"), "{warnings}");
    assert!(run(kubectl(cluster).args(["get", "deploy", "clean", "-n", &ns])).0);

    // A Pod using a Secret that holds keys: the webhook reads the Secret (chart RBAC:
    // list/watch secrets) and refuses the Pod.
    let (ok, _, err) = run(kubectl(cluster).args([
        "create",
        "secret",
        "generic",
        "aws-creds",
        "-n",
        &ns,
        &format!(
            "--from-literal=credentials=[default]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET_KEY}\n"
        ),
    ]));
    assert!(ok, "create Secret: {err}");
    let pod = |name: &str, secret: &str| {
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {
                "containers": [{"name": "app", "image": "registry.example/app:1",
                    "volumeMounts": [{"name": "creds", "mountPath": "/etc/app"}]}],
                "volumes": [{"name": "creds", "secret": {"secretName": secret}}],
            },
        })
    };
    // The webhook's Secret cache catches up with the watch: retry until it has.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out, err) = apply(cluster, &ns, &pod("uses-creds", "aws-creds"));
        if !ok {
            assert!(
                err.contains("credentials-in-referenced-secret") && err.contains("hatrack: Pod"),
                "{err}"
            );
            break;
        }
        // Admitted while the Secret was unknown (with a warning): delete and retry.
        assert!(
            err.contains("Warning"),
            "admitted without a warning: {out}{err}"
        );
        run(kubectl(cluster).args(["delete", "pod", "uses-creds", "-n", &ns, "--wait=false"]));
        assert!(
            Instant::now() < deadline,
            "the webhook never saw Secret aws-creds: {err}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // An ephemeral container with a key, added to a stored Pod through the
    // pods/ephemeralcontainers subresource (`kubectl debug`): refused.
    let stderr = assert_admitted(
        apply(
            cluster,
            &ns,
            &json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "running"},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
            }),
        ),
        "a clean Pod",
    );
    assert!(!stderr.contains("Warning"), "a clean Pod: {stderr}");
    let custom = temp_file(
        cluster,
        "debug-custom.json",
        &json!({"env": [{"name": "AWS_ACCESS_KEY_ID", "value": KEY_ID}]}).to_string(),
    );
    let (ok, out, err) = run(kubectl(cluster)
        .args([
            "debug",
            "running",
            "-n",
            &ns,
            "--image=registry.example/debug:1",
            "--container=debugger",
            "--profile=general",
            "--custom",
        ])
        .arg(&custom));
    assert!(
        !ok,
        "an ephemeral container with a key was admitted: {out}{err}"
    );
    assert!(
        err.contains("workloads.hatrack.dev") && err.contains("env-static-key"),
        "{err}"
    );
    let (_, out, _) = run(kubectl(cluster).args([
        "get",
        "pod",
        "running",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.ephemeralContainers}",
    ]));
    assert!(out.trim().is_empty(), "ephemeral container stored: {out}");
    // The same without the key is admitted: the subresource really goes through.
    let (ok, out, err) = run(kubectl(cluster).args([
        "debug",
        "running",
        "-n",
        &ns,
        "--image=registry.example/debug:1",
        "--container=debugger",
        "--profile=general",
    ]));
    assert!(ok, "a clean ephemeral container was refused: {out}{err}");
    drop(webhook);
}

#[tokio::test]
async fn exempt_namespaces_are_not_sent_to_the_webhook() {
    let Some((cluster, release, _serial)) = setup().await else {
        return;
    };
    let webhook = Webhook::start(cluster, release).await;
    let before = webhook.decisions(&[]);
    for ns in [release.namespace.as_str(), release.exempt.as_str()] {
        assert_admitted(
            apply(
                cluster,
                ns,
                &deployment(&format!("exempt-{}", std::process::id()), static_keys()),
            ),
            &format!("a Deployment with keys in exempt namespace {ns}"),
        );
    }
    // The namespaceSelector kept the API server from calling the webhook at all.
    assert_eq!(webhook.decisions(&[]), before, "{}", webhook.metrics());
    // ... while a checked namespace still is.
    let ns = cluster.namespace("checked").await;
    assert_refused(
        apply(cluster, &ns, &deployment("leaky", static_keys())),
        "a Deployment with keys in a checked namespace",
        &["hatrack: Deployment"],
    );
    assert!(webhook.decisions(&[]) > before);
}

#[tokio::test]
async fn kube_system_is_judged_with_warnings_while_other_namespaces_are_enforced() {
    let Some((cluster, release, _serial)) = setup().await else {
        return;
    };
    let webhook = Webhook::start(cluster, release).await;
    let before = webhook.decisions(&["mode=\"warn\"", "rule=\"env-static-key\""]);
    let name = format!("keyed-addon-{}", std::process::id());
    // The chart's system entry sends kube-system to the webhook, which warns there.
    let stderr = assert_admitted(
        apply(cluster, "kube-system", &deployment(&name, static_keys())),
        "a keyed Deployment in kube-system",
    );
    assert!(
        stderr.contains("Warning: hatrack: ") && stderr.contains("env-static-key"),
        "kubectl shows hatrack's warnings for kube-system: {stderr}"
    );
    assert!(!stderr.contains(SECRET_KEY), "no secret value in a warning");
    assert!(
        webhook.decisions(&["mode=\"warn\"", "rule=\"env-static-key\""]) > before,
        "{}",
        webhook.metrics()
    );
    // The same Deployment anywhere else is denied.
    let ns = cluster.namespace("team").await;
    assert_refused(
        apply(cluster, &ns, &deployment(&name, static_keys())),
        "the same keyed Deployment in an application namespace",
        &["admission webhook \"workloads.hatrack.dev\" denied the request"],
    );
    run(kubectl(cluster).args([
        "delete",
        "deployment",
        &name,
        "-n",
        "kube-system",
        "--wait=false",
    ]));
}

#[tokio::test]
async fn the_binding_webhook_judges_namespaces_the_workload_webhook_exempts() {
    let Some((cluster, release, _serial)) = setup().await else {
        return;
    };
    let guarded = format!("all-{}", std::process::id());
    // kube-system (judged in warn mode for workloads), the release namespace and
    // webhook.exemptNamespaces (never sent to the workload webhook).
    let namespaces = [
        "kube-system",
        release.namespace.as_str(),
        release.exempt.as_str(),
    ];
    let admin = cluster.client().await;
    for ns in namespaces {
        let labels = json!({"hatrack-test/guardrail": guarded});
        support::objects::label_namespace(&admin, ns, labels).await;
    }
    assert_admitted(
        apply(cluster, "default", &denies_iam_where_labelled(&guarded)),
        "the IAMGuardrail",
    );
    let webhook = Webhook::start(cluster, release).await;
    for ns in namespaces {
        let binding = json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
            "metadata": {"name": format!("sneaky-{}", std::process::id())},
            "spec": {
                "serviceAccounts": ["api"],
                "inlinePolicies": {"app": {"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": ["iam:CreateUser"], "Resource": "*"}
                ]}},
            },
        });
        assert_refused(
            apply(cluster, ns, &binding),
            &format!("a binding breaking the guardrail in {ns}"),
            &[
                "admission webhook \"iamrolebindings.hatrack.dev\" denied the request",
                &format!("IAMGuardrail {guarded}"),
            ],
        );
    }
    drop(webhook);
}

#[tokio::test]
async fn namespace_modes_warn_and_audit_admit_as_documented() {
    let Some((cluster, release, _serial)) = setup().await else {
        return;
    };
    // Labelled before the webhook starts: its namespace cache lists them at start.
    let warn =
        namespace_with_labels(cluster, "warn", json!({"hatrack.dev/static-keys": "warn"})).await;
    let audit = namespace_with_labels(
        cluster,
        "audit",
        json!({"hatrack.dev/static-keys": "audit"}),
    )
    .await;
    let enforce = namespace_with_labels(
        cluster,
        "enforce",
        json!({"hatrack.dev/static-keys": "enforce"}),
    )
    .await;
    let webhook = Webhook::start(cluster, release).await;

    let stderr = assert_admitted(
        apply(cluster, &warn, &deployment("leaky", static_keys())),
        "warn mode",
    );
    assert!(
        stderr.contains("Warning: hatrack: ") && stderr.contains("env-static-key"),
        "warn mode: kubectl shows hatrack's warnings: {stderr}"
    );
    assert!(!stderr.contains(SECRET_KEY), "no secret value in a warning");

    let audit_before = webhook.decisions(&["mode=\"audit\""]);
    let stderr = assert_admitted(
        apply(cluster, &audit, &deployment("leaky", static_keys())),
        "audit mode",
    );
    assert!(
        !stderr.contains("Warning"),
        "audit mode is silent: {stderr}"
    );
    assert!(
        webhook.decisions(&["mode=\"audit\"", "rule=\"env-static-key\""]) > 0.0
            && webhook.decisions(&["mode=\"audit\""]) > audit_before,
        "audit decisions are counted: {}",
        webhook.metrics()
    );

    assert_refused(
        apply(cluster, &enforce, &deployment("leaky", static_keys())),
        "enforce mode",
        &["hatrack: Deployment"],
    );
}

#[tokio::test]
async fn an_iamrolebinding_breaking_a_guardrail_is_refused_at_admission() {
    let Some((cluster, release, _serial)) = setup().await else {
        return;
    };
    let guarded = format!("guarded-{}", std::process::id());
    let ns =
        namespace_with_labels(cluster, "irb", json!({"hatrack-test/guardrail": guarded})).await;
    assert_admitted(
        apply(cluster, "default", &denies_iam_where_labelled(&guarded)),
        "the IAMGuardrail",
    );
    let webhook = Webhook::start(cluster, release).await;

    let binding = |name: &str, sa: &str, action: &str| {
        json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
            "metadata": {"name": name},
            "spec": {
                "serviceAccounts": [sa],
                "inlinePolicies": {"app": {"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": ["s3:GetObject", action], "Resource": "*"}
                ]}},
            },
        })
    };
    assert_refused(
        apply(cluster, &ns, &binding("sneaky", "api", "i*:Create*")),
        "a binding breaking the guardrail",
        &[
            "Error from server (Forbidden)",
            "admission webhook \"iamrolebindings.hatrack.dev\" denied the request",
            &format!("IAMRoleBinding {ns}/sneaky denied by hatrack"),
            &format!("IAMGuardrail {guarded}: spec.inlinePolicies.app.Statement[0].Action[1]"),
            "could grant \"iam:*\"",
        ],
    );
    assert_admitted(
        apply(cluster, &ns, &binding("fine", "api", "s3:PutObject")),
        "a binding within the guardrail",
    );
    // A second binding claiming the same ServiceAccount: refused once the webhook's binding
    // cache has seen the first.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out, err) = apply(cluster, &ns, &binding("second", "api", "s3:PutObject"));
        if !ok {
            assert!(err.contains("api"), "{err}");
            break;
        }
        run(kubectl(cluster).args(["delete", "irb", "second", "-n", &ns, "--wait=false"]));
        assert!(
            Instant::now() < deadline,
            "a second claim of ServiceAccount api was admitted: {out}{err}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(webhook);
}

#[tokio::test]
async fn an_iamrolebinding_naming_an_account_that_does_not_select_its_namespace_is_refused() {
    let Some((cluster, release, _serial)) = setup().await else {
        return;
    };
    let team = format!("data-{}", std::process::id());
    let allowed =
        namespace_with_labels(cluster, "acct-ok", json!({"hatrack-test/team": team})).await;
    let other = app_namespace(cluster, "acct-no").await;
    let account = json!({
        "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMAccount",
        "metadata": {"name": team},
        "spec": {
            "accountId": "222222222222",
            "assumeRole": {"roleArn": "arn:aws:iam::222222222222:role/hatrack-operator"},
            "namespaceSelector": {"matchLabels": {"hatrack-test/team": team}},
        },
    });
    assert_admitted(apply(cluster, "default", &account), "the IAMAccount");
    let webhook = Webhook::start(cluster, release).await;
    let binding = json!({
        "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
        "metadata": {"name": "in-b"},
        "spec": {"serviceAccounts": ["api"], "account": team},
    });
    assert_refused(
        apply(cluster, &other, &binding),
        "a binding of a namespace the account does not select",
        &[
            "admission webhook \"iamrolebindings.hatrack.dev\" denied the request",
            &format!("IAMAccount {team:?} does not select namespace {other:?}"),
        ],
    );
    assert_admitted(
        apply(cluster, &allowed, &binding),
        "a binding of a selected namespace",
    );
    drop(webhook);
}

/// Restores `webhook.failurePolicy=Fail` when the test ends, passed or not.
struct RestoreFail<'a>(&'a TestCluster, &'a Release);

impl Drop for RestoreFail<'_> {
    fn drop(&mut self) {
        let (ok, out, err) = set_failure_policy(self.0, self.1, "Fail");
        if !ok && !std::thread::panicking() {
            panic!("helm upgrade back to Fail: {out}{err}");
        }
    }
}

fn set_failure_policy(
    cluster: &TestCluster,
    release: &Release,
    policy: &str,
) -> (bool, String, String) {
    run(helm(cluster)
        .args(["upgrade", RELEASE])
        .arg(chart_dir())
        .args(["--namespace", &release.namespace, "--reuse-values"])
        .args(["--set", &format!("webhook.failurePolicy={policy}")]))
}

#[tokio::test]
async fn with_the_webhook_stopped_the_failure_policy_decides() {
    let Some((cluster, release, _serial)) = setup().await else {
        return;
    };
    let webhook = Webhook::start(cluster, release).await;
    let ca = webhook.ca_pem.clone();
    drop(webhook);
    let ns = cluster.namespace("stopped").await;

    // Fail (the chart's default): nothing is admitted in a checked namespace.
    assert_refused(
        apply(cluster, &ns, &deployment("clean", clean_env())),
        "a clean Deployment with the webhook down and failurePolicy Fail",
        &["failed calling webhook \"workloads.hatrack.dev\""],
    );
    // ... while kube-system's entry (failurePolicy Ignore) admits, keys included: hatrack
    // never stands between the cluster and its own repair.
    let name = format!("while-down-{}", std::process::id());
    assert_admitted(
        apply(cluster, "kube-system", &deployment(&name, static_keys())),
        "a Deployment in kube-system with the webhook down",
    );
    run(kubectl(cluster).args([
        "delete",
        "deployment",
        &name,
        "-n",
        "kube-system",
        "--wait=false",
    ]));

    // Ignore: admitted unchecked, keys included.
    let _restore = RestoreFail(cluster, release);
    let (ok, out, err) = set_failure_policy(cluster, release, "Ignore");
    assert!(ok, "helm upgrade to Ignore: {out}{err}");
    let vwc = Api::<ValidatingWebhookConfiguration>::all(cluster.client().await)
        .get(&format!("{RELEASE}-{}", release.namespace))
        .await
        .expect("webhook configuration");
    for w in vwc.webhooks.unwrap_or_default() {
        assert_eq!(w.failure_policy.as_deref(), Some("Ignore"));
        // helm upgrade keeps the caBundle hatrack wrote (docs/deploy.md: "Helm never sets caBundle").
        assert_eq!(
            w.client_config
                .ca_bundle
                .map(|b| String::from_utf8_lossy(&b.0).into_owned()),
            Some(ca.clone()),
            "caBundle of {} after helm upgrade",
            w.name
        );
    }
    // The API server's webhook configuration cache catches up with the upgrade.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out, err) = apply(cluster, &ns, &deployment("clean", clean_env()));
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "failurePolicy Ignore still refuses: {out}{err}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_admitted(
        apply(cluster, &ns, &deployment("unchecked", static_keys())),
        "a Deployment with keys, unchecked under Ignore",
    );
}

#[tokio::test]
async fn a_stored_certificate_without_the_url_host_is_reissued_and_served() {
    let Some((cluster, release, _serial)) = setup().await else {
        return;
    };
    // The Secret as hatrack's flow makes it, then its serving certificate swapped for one
    // that names the Service only (as a webhook without --cert-extra-names left it).
    drop(Webhook::start(cluster, release).await);
    let secrets: Api<Secret> = Api::namespaced(cluster.client().await, &release.namespace);
    let mut secret = secrets.get(CERT_SECRET).await.expect("certificate Secret");
    let ca_bundle = secret_text(&secret, "ca.crt").expect("ca.crt");
    let ca = hatrack::certs::Ca {
        cert_pem: hatrack::certs::pem_certificates(&ca_bundle)
            .into_iter()
            .next()
            .expect("a CA certificate"),
        key_pem: secret_text(&secret, "ca.key").expect("ca.key"),
    };
    let now = jiff::Timestamp::now();
    let (cert, key) = hatrack::certs::generate_serving(
        &ca,
        WEBHOOK,
        &release.namespace,
        now,
        now + jiff::SignedDuration::from_hours(200 * 24),
    )
    .expect("serving certificate");
    assert!(
        !hatrack::certs::subject_alt_names(&cert)
            .expect("SANs")
            .contains(&"127.0.0.1".to_string())
    );
    let data = secret.data.get_or_insert_default();
    data.insert(
        "tls.crt".into(),
        k8s_openapi::ByteString(cert.clone().into_bytes()),
    );
    data.insert("tls.key".into(), k8s_openapi::ByteString(key.into_bytes()));
    secrets
        .replace(CERT_SECRET, &PostParams::default(), &secret)
        .await
        .expect("replace the Secret");

    // Started again, the webhook reissues it from the same CA (an update the chart's RBAC
    // allows) and the API server calls it at 127.0.0.1 again.
    let webhook = Webhook::start(cluster, release).await;
    let secret = secrets.get(CERT_SECRET).await.expect("certificate Secret");
    let served = secret_text(&secret, "tls.crt").expect("tls.crt");
    assert_ne!(served, cert, "reissued");
    assert!(
        hatrack::certs::subject_alt_names(&served)
            .expect("SANs")
            .contains(&"127.0.0.1".to_string())
    );
    assert_eq!(
        secret_text(&secret, "ca.crt").as_deref(),
        Some(ca_bundle.as_str()),
        "same CA: the caBundle stays valid"
    );
    assert!(
        std::fs::read_to_string(&webhook.log)
            .unwrap_or_default()
            .contains("webhook certificate renewed"),
        "{}",
        tail(&webhook.log)
    );
}

#[tokio::test]
async fn an_update_of_an_existing_violator_is_denied_only_for_new_keys() {
    let Some((cluster, release, _serial)) = setup().await else {
        return;
    };
    // A violator admitted while its namespace was in warn mode, then the namespace enforced.
    let ns = namespace_with_labels(
        cluster,
        "update",
        json!({"hatrack.dev/static-keys": "warn"}),
    )
    .await;
    let webhook = Webhook::start(cluster, release).await;
    assert_admitted(
        apply(cluster, &ns, &deployment("leaky", static_keys())),
        "a violator in warn mode",
    );
    let (ok, _, err) = run(kubectl(cluster).args([
        "label",
        "namespace",
        &ns,
        "--overwrite",
        "hatrack.dev/static-keys=enforce",
    ]));
    assert!(ok, "{err}");
    // The webhook's namespace cache follows the label: a new violator is refused once it has.
    let deadline = Instant::now() + Duration::from_secs(30);
    while apply(cluster, &ns, &deployment("probe-leaky", static_keys())).0 {
        run(kubectl(cluster).args(["delete", "deploy", "probe-leaky", "-n", &ns]));
        assert!(
            Instant::now() < deadline,
            "the webhook never saw the enforce label; its log:\n{}",
            tail(&webhook.log)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A new image (a strategic merge patch the API server applies, reviewed as UPDATE with
    // the old object): admitted, with the old findings as warnings.
    let (ok, out, err) = run(kubectl(cluster).args([
        "set",
        "image",
        "deployment/leaky",
        "app=registry.example/app:2",
        "-n",
        &ns,
    ]));
    assert!(ok, "new image of an existing violator refused: {out}{err}");
    assert!(
        err.contains("Warning: hatrack (already present, not denied)"),
        "{err}"
    );
    // A new key: refused, naming only the new finding.
    let token = "FwoGZXIvYXdzE".to_string() + &"x7Q".repeat(40);
    let (ok, out, err) = run(kubectl(cluster).args([
        "set",
        "env",
        "deployment/leaky",
        &format!("AWS_SESSION_TOKEN={token}"),
        "-n",
        &ns,
    ]));
    assert!(!ok, "a new key was admitted: {out}{err}");
    assert!(
        err.contains(&format!(
            "hatrack: Deployment {ns}/leaky carries static AWS keys (1 finding)"
        )) && err.contains("AWS_SESSION_TOKEN"),
        "{err}"
    );
    assert!(!err.contains(&token), "no secret value in the message");
}

#[tokio::test]
async fn pods_the_replicaset_controller_creates_for_an_owner_are_not_denied() {
    let Some((cluster, release, _serial)) = setup().await else {
        return;
    };
    let ns = app_namespace(cluster, "children").await;
    let webhook = Webhook::start(cluster, release).await;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "leaky-child", "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "leaky-123",
            "uid": "6c1d1a3e-3f55-4a43-9d8e-5a1c2f0b7e11", "controller": true,
        }]},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1",
            "env": static_keys()}]},
    });
    let file = temp_file(cluster, "leaky-child.json", &pod.to_string());
    // Anyone else creating the same Pod is judged normally.
    assert_refused(
        run(kubectl(cluster)
            .args(["create", "-n", &ns, "-f"])
            .arg(&file)),
        "a controlled Pod with keys created by a person",
        &["hatrack: Pod"],
    );
    // The replicaset-controller's identity (as kube-controller-manager with
    // --use-service-account-credentials creates Pods; its RBAC is the API server's bootstrap
    // policy): judged as audit, admitted and counted.
    let before = webhook.decisions(&["mode=\"controller\""]);
    let stderr = assert_admitted(
        run(kubectl(cluster)
            .args([
                "create",
                "-n",
                &ns,
                "--as=system:serviceaccount:kube-system:replicaset-controller",
                "-f",
            ])
            .arg(&file)),
        "a Pod with keys created by the replicaset-controller for its ReplicaSet",
    );
    assert!(!stderr.contains("Warning"), "{stderr}");
    assert!(
        webhook.decisions(&["mode=\"controller\""]) > before,
        "{}",
        webhook.metrics()
    );
}

/// A StaticKeyExemption (cluster-scoped) for `namespace`, optionally one workload.
fn exemption(name: &str, namespace: &str, target: Option<(&str, &str)>, expires: &str) -> Value {
    let mut spec = json!({
        "namespace": namespace,
        "grantedBy": "platform-team@example.com",
        "reason": "TICKET-42: moving to IRSA",
        "expires": expires,
    });
    if let Some((kind, workload)) = target {
        spec["kind"] = kind.into();
        spec["name"] = workload.into();
    }
    json!({
        "apiVersion": "hatrack.dev/v1alpha1", "kind": "StaticKeyExemption",
        "metadata": {"name": name},
        "spec": spec,
    })
}

#[tokio::test]
async fn a_current_exemption_admits_with_who_why_and_until_and_an_expired_one_is_enforced() {
    let Some((cluster, release, _serial)) = setup().await else {
        return;
    };
    let guarded = format!("exempted-{}", std::process::id());
    let ns = namespace_with_labels(
        cluster,
        "exempted",
        json!({"hatrack-test/guardrail": guarded}),
    )
    .await;
    assert_admitted(
        apply(cluster, "default", &denies_iam_where_labelled(&guarded)),
        "the IAMGuardrail",
    );
    let current = format!("{ns}-legacy");
    let expired = format!("{ns}-old");
    for e in [
        exemption(
            &current,
            &ns,
            Some(("Deployment", "legacy")),
            "2999-01-01T00:00:00Z",
        ),
        exemption(
            &expired,
            &ns,
            Some(("Deployment", "old")),
            "2020-01-01T00:00:00Z",
        ),
        // The binding webhook is not exemptible, whatever an exemption names.
        exemption(
            &format!("{ns}-rb"),
            &ns,
            Some(("IAMRoleBinding", "rb")),
            "2999-01-01T00:00:00Z",
        ),
    ] {
        assert_admitted(apply(cluster, "default", &e), "a StaticKeyExemption");
    }
    let webhook = Webhook::start(cluster, release).await;

    let stderr = assert_admitted(
        apply(cluster, &ns, &deployment("legacy", static_keys())),
        "a workload with a current exemption",
    );
    for part in [
        "Warning: hatrack: admitted until 2999-01-01T00:00:00Z",
        &format!("StaticKeyExemption {current}"),
        "granted by platform-team@example.com",
        "TICKET-42: moving to IRSA",
    ] {
        assert!(
            stderr.contains(part),
            "the warning lacks {part:?}: {stderr}"
        );
    }
    assert!(!stderr.contains(SECRET_KEY), "no secret value in a warning");

    assert_refused(
        apply(cluster, &ns, &deployment("old", static_keys())),
        "a workload whose exemption expired",
        &[
            "hatrack: Deployment",
            &format!("StaticKeyExemption {expired}"),
            "expired at 2020-01-01T00:00:00Z",
        ],
    );
    assert_refused(
        apply(cluster, &ns, &deployment("unnamed", static_keys())),
        "a workload no exemption names",
        &["hatrack: Deployment"],
    );
    assert_refused(
        apply(
            cluster,
            &ns,
            &json!({
                "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
                "metadata": {"name": "rb"},
                "spec": {
                    "serviceAccounts": ["api"],
                    "inlinePolicies": {"app": {"Version": "2012-10-17", "Statement": [
                        {"Effect": "Allow", "Action": ["iam:CreateRole"], "Resource": "*"}
                    ]}},
                },
            }),
        ),
        "an IAMRoleBinding breaking a guardrail that an exemption names",
        &[
            "admission webhook \"iamrolebindings.hatrack.dev\" denied the request",
            &format!("IAMGuardrail {guarded}"),
        ],
    );

    // An exemption granted while the webhook runs takes effect through its watch.
    assert_refused(
        apply(cluster, &ns, &deployment("late", static_keys())),
        "a workload before its exemption",
        &["hatrack: Deployment"],
    );
    assert_admitted(
        apply(
            cluster,
            "default",
            &exemption(&format!("{ns}-all"), &ns, None, "2999-01-01T00:00:00Z"),
        ),
        "a namespace-wide StaticKeyExemption",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out, err) = apply(cluster, &ns, &deployment("late", static_keys()));
        if ok {
            assert!(
                err.contains(&format!("StaticKeyExemption {ns}-all")),
                "{err}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the namespace-wide exemption never took effect: {out}{err}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let metrics = webhook.metrics();
    let count = |state: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "hatrack_webhook_exemptions_total{{state=\"{state}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(count("active") >= 2.0, "{metrics}");
    assert!(count("expired") >= 1.0, "{metrics}");
    // The gauges of exemption objects (refreshed every 10 s): three current, one expired.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = webhook.metrics();
        let gauge = |state: &str| {
            metrics
                .lines()
                .find(|l| {
                    l.starts_with(&format!(
                        "hatrack_webhook_exemption_objects{{state=\"{state}\"}}"
                    ))
                })
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        };
        if (gauge("active"), gauge("expired")) == (Some(3.0), Some(1.0)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "exemption gauges never showed 3 active, 1 expired: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for name in [current, expired, format!("{ns}-rb"), format!("{ns}-all")] {
        run(kubectl(cluster).args(["delete", "statickeyexemption", &name]));
    }
    run(kubectl(cluster).args(["delete", "iamguardrail", &guarded]));
}

#[tokio::test]
async fn the_charts_default_guardrail_refuses_admin_and_escalating_grants_at_admission() {
    let Some((cluster, release, _serial)) = setup().await else {
        return;
    };
    // The chart installed its default guardrail, for every namespace.
    let guardrails: Api<hatrack::crd::IAMGuardrail> = Api::all(cluster.client().await);
    let installed = guardrails
        .list(
            &kube::api::ListParams::default()
                .labels(&format!("app.kubernetes.io/instance={RELEASE}")),
        )
        .await
        .expect("list guardrails");
    assert_eq!(
        installed.items.len(),
        1,
        "the chart installs one default guardrail"
    );
    let name = installed.items[0].metadata.name.clone().unwrap();
    assert!(name.ends_with("-default"), "{name}");
    assert!(installed.items[0].spec.namespace_selector.is_none());
    let webhook = Webhook::start(cluster, release).await;
    let ns = app_namespace(cluster, "default-guardrail").await;
    let binding = |bname: &str, spec: Value| {
        json!({"apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
               "metadata": {"name": bname}, "spec": spec})
    };
    assert_refused(
        apply(
            cluster,
            &ns,
            &binding(
                "admin",
                json!({"serviceAccounts": ["api"], "managedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]}),
            ),
        ),
        "an AdministratorAccess binding",
        &[
            "denied the request",
            &format!(
                "IAMGuardrail {name}: spec.managedPolicyArns[0]: managed policy arn:aws:iam::aws:policy/AdministratorAccess is denied"
            ),
        ],
    );
    assert_refused(
        apply(
            cluster,
            &ns,
            &binding(
                "passer",
                json!({"serviceAccounts": ["api"], "inlinePolicies": {"p": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["iam:PassRole", "iam:CreatePolicyVersion"], "Resource": "*"}]}}}),
            ),
        ),
        "a binding passing any role and writing IAM",
        &[
            &format!(
                "IAMGuardrail {name}: spec.inlinePolicies.p.Statement[0].Action[0]: \"iam:PassRole\" could grant \"iam:PassRole\" on every resource"
            ),
            &format!(
                "IAMGuardrail {name}: spec.inlinePolicies.p.Statement[0].Action[1]: \"iam:CreatePolicyVersion\" could grant \"iam:CreatePolicy*\""
            ),
        ],
    );
    // Read-only access passes, with a warning that the managed policy's contents were not
    // read here (the controller reads them).
    let warnings = assert_admitted(
        apply(
            cluster,
            &ns,
            &binding(
                "reader",
                json!({"serviceAccounts": ["api"], "managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}),
            ),
        ),
        "a ReadOnlyAccess binding",
    );
    assert!(
        warnings.contains("were not checked against deniedActions here"),
        "{warnings}"
    );
    drop(webhook);
}

/// A minimal CRD for Argo Rollouts' Rollout (schema preserved as given, as a stand-in for the
/// real one: the webhook reads `spec.template.spec` whatever the schema says).
fn rollout_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "rollouts.argoproj.io"},
        "spec": {
            "group": "argoproj.io",
            "names": {"kind": "Rollout", "plural": "rollouts", "singular": "rollout", "listKind": "RolloutList"},
            "scope": "Namespaced",
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    })
}

fn rollout(name: &str, env: Value) -> Value {
    let mut d = deployment(name, env);
    d["apiVersion"] = json!("argoproj.io/v1alpha1");
    d["kind"] = json!("Rollout");
    d["spec"]["strategy"] = json!({"canary": {"steps": [{"setWeight": 20}]}});
    d
}

#[tokio::test]
async fn custom_resources_with_pod_templates_are_judged_through_the_charts_rules() {
    let Some((cluster, release, _serial)) = setup().await else {
        return;
    };
    let _webhook = Webhook::start(cluster, release).await;
    let (ok, out, err) = apply(cluster, "default", &rollout_crd());
    assert!(ok, "CRD: {out}{err}");
    run(kubectl(cluster).args([
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/rollouts.argoproj.io",
    ]));
    let ns = app_namespace(cluster, "rollouts").await;
    // The API server may serve the new kind a moment after Established.
    let mut result = apply(cluster, &ns, &rollout("keyed", static_keys()));
    for _ in 0..50 {
        if !result.2.contains("no matches for kind") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        result = apply(cluster, &ns, &rollout("keyed", static_keys()));
    }
    assert_refused(
        result,
        "a Rollout with static keys",
        &["env-static-key", "Rollout"],
    );
    assert_admitted(
        apply(cluster, &ns, &rollout("clean", clean_env())),
        "a Rollout with a clean env",
    );
    let pod_template = json!({
        "apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "keyed"},
        "template": {"spec": {"containers": [{"name": "a", "image": "registry.example/app:1", "env": static_keys()}]}},
    });
    assert_refused(
        apply(cluster, &ns, &pod_template),
        "a PodTemplate with static keys",
        &["env-static-key", "PodTemplate"],
    );
}
