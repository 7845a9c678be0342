//! A real Kubernetes API server for the tests: etcd and kube-apiserver, built from their Go
//! modules by `scripts/install-test-deps.sh` (`.tools/etcd`, `.tools/kube-apiserver`), started
//! on free loopback ports the way controller-runtime's envtest runs them (no kubelet, no
//! scheduler, no controller-manager: Pods are stored, never run; namespaces are never
//! finalized; nothing is garbage-collected).
//!
//! One cluster per test binary, started on first use by [`cluster`] and shared by its tests.
//! The processes are started from a thread that lives as long as the test process, with
//! `PR_SET_PDEATHSIG`: when the test binary exits — passed, failed, panicked or killed — the
//! kernel kills etcd and kube-apiserver, so no process outlives a run.
//!
//! Set `HATRACK_TEST_KUBECONFIG=/path/to/kubeconfig` to run the same tests against a cluster of
//! your own (kind, k3d, EKS ...) instead: nothing is started then. Tests that need the API
//! server to call back into a process on this host (admission webhooks by
//! `url: https://127.0.0.1:...`) say so through [`TestCluster::is_local`].
#![allow(dead_code)]

mod local;
mod pki;
mod tools;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use tokio::sync::OnceCell;

// Each test crate uses a part of these, as of the rest of `support`.
#[allow(unused_imports)]
pub use local::{audited_requests, spawn_tied_to_this_thread, tie_to_this_thread};
#[allow(unused_imports)]
pub use tools::{helm, kubectl, run, temp_file, tool_path};

use local::tail;

/// A Kubernetes API server the tests can use: started here, or named by
/// `HATRACK_TEST_KUBECONFIG`.
pub struct TestCluster {
    /// Kubeconfig of a cluster administrator (`system:masters`).
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:PORT` (or the server of the named cluster).
    pub server: String,
    /// PEM of the CA that signed the API server's serving certificate.
    pub ca_pem: String,
    /// True when the API server runs on this host (it can reach webhooks on 127.0.0.1).
    pub is_local: bool,
    /// Directory with certificates, kubeconfigs, logs and etcd's data (kept for the run).
    pub dir: PathBuf,
    /// The API server's audit log (one JSON line per request, Metadata level), when the
    /// cluster was started with `HATRACK_TEST_AUDIT=1` (the controller benchmark counts the
    /// controller's API requests with it).
    pub audit_log: Option<PathBuf>,
}

static CLUSTER: OnceCell<TestCluster> = OnceCell::const_new();
static CRDS: OnceCell<()> = OnceCell::const_new();

/// The test binary's cluster, started on first call.
pub async fn cluster() -> &'static TestCluster {
    CLUSTER
        .get_or_init(|| async {
            match std::env::var_os("HATRACK_TEST_KUBECONFIG") {
                Some(path) => TestCluster::external(PathBuf::from(path)).await,
                None => {
                    let cluster = tokio::task::spawn_blocking(TestCluster::start)
                        .await
                        .expect("cluster start thread");
                    cluster.wait_ready().await;
                    cluster
                }
            }
        })
        .await
}

/// The cluster with hatrack's CRDs installed (server-side apply) and established.
pub async fn cluster_with_crds() -> &'static TestCluster {
    let cluster = cluster().await;
    CRDS.get_or_init(|| async {
        let client = cluster.client().await;
        install_crds(&client).await;
    })
    .await;
    cluster
}

/// Applies hatrack's CRDs with server-side apply and waits until each is Established.
pub async fn install_crds(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in hatrack::crd::all() {
        let name = crd.metadata.name.clone().expect("CRD name");
        crds.patch(
            &name,
            &PatchParams::apply("hatrack-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("apply CRD {name}: {e}"));
        wait_established(&crds, &name).await;
    }
}

async fn wait_established(crds: &Api<CustomResourceDefinition>, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let crd = crds.get(name).await.expect("get CRD");
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "CRD {name} not Established after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

impl TestCluster {
    async fn external(kubeconfig: PathBuf) -> TestCluster {
        let kc = Kubeconfig::read_from(&kubeconfig).expect("read HATRACK_TEST_KUBECONFIG");
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("HATRACK_TEST_KUBECONFIG is a usable kubeconfig");
        let server = config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_string();
        let ca_pem = config
            .root_cert
            .unwrap_or_default()
            .iter()
            .map(|der| {
                let body = base64::engine::general_purpose::STANDARD.encode(der);
                let lines: Vec<String> = body
                    .as_bytes()
                    .chunks(64)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect();
                format!(
                    "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                    lines.join("\n")
                )
            })
            .collect::<String>();
        let is_local = server.contains("://127.") || server.contains("://localhost");
        let dir = tempfile::Builder::new()
            .prefix("hatrack-external-")
            .tempdir()
            .expect("temp dir")
            .keep();
        TestCluster {
            kubeconfig,
            server,
            ca_pem,
            is_local,
            dir,
            audit_log: None,
        }
    }

    /// Waits for `/readyz` (which includes the RBAC bootstrap roles) and the default namespace.
    async fn wait_ready(&self) {
        {
            let client = self.client().await;
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                let req = http::Request::get("/readyz").body(Vec::new()).unwrap();
                let ready = client.request_text(req).await;
                if matches!(&ready, Ok(text) if text.trim() == "ok") {
                    let namespaces: Api<Namespace> = Api::all(client.clone());
                    if namespaces.get_opt("default").await.ok().flatten().is_some() {
                        return;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "kube-apiserver not ready after 90 s ({ready:?}); its log ends:\n{}",
                    tail(&self.dir.join("kube-apiserver.log"))
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// A client acting as the cluster administrator.
    pub async fn client(&self) -> kube::Client {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// A fresh namespace named `<prefix>-<n>` with what kube-controller-manager would put in it
    /// (there is none here): the `default` ServiceAccount, which the ServiceAccount admission
    /// plugin wants for Pods, and the `kube-root-ca.crt` ConfigMap every Pod's token volume
    /// projects.
    pub async fn namespace(&self, prefix: &str) -> String {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let client = self.client().await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
            )
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        let _ = sas
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap(),
            )
            .await;
        let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
            Api::namespaced(client, &name);
        let _ = config_maps
            .create(
                &PostParams::default(),
                &serde_json::from_value(
                    json!({"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": self.ca_pem}}),
                )
                .unwrap(),
            )
            .await;
        name
    }

    /// A kubeconfig that authenticates as ServiceAccount `namespace/name` with a token from the
    /// TokenRequest API, exactly as a pod of that ServiceAccount would.
    pub async fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let client = self.client().await;
        let sas: Api<ServiceAccount> = Api::namespaced(client, namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(24 * 3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let token = sas
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("token for {namespace}/{name}: {e}"))
            .status
            .expect("token status")
            .token;
        let path = self.dir.join(format!("sa-{namespace}-{name}.kubeconfig"));
        write(
            &path,
            &kubeconfig_yaml(&self.server, &self.ca_pem, &format!("token: {token}")),
        );
        path
    }

    /// A client acting as ServiceAccount `namespace/name`.
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> kube::Client {
        client_from_kubeconfig(&self.service_account_kubeconfig(namespace, name).await).await
    }
}

pub async fn client_from_kubeconfig(path: &Path) -> kube::Client {
    let kc = Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("read kubeconfig {}: {e}", path.display()));
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    kube::Client::try_from(config).expect("client")
}

fn kubeconfig_yaml(server: &str, ca_pem: &str, user: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: test
  user:
    {user}
contexts:
- name: test
  context: {{cluster: test, user: test, namespace: default}}
current-context: test
",
        ca = b64(ca_pem)
    )
}
