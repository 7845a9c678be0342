//! Test harness for the webhook: certificates generated with rcgen, the server started
//! in-process on 127.0.0.1:0, and a real HTTPS client (reqwest + rustls/ring) that trusts the
//! generated CA. Also builds AdmissionReviews from manifests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hatrack::detect::{Mode, ReferenceView};
use hatrack::webhook::{self, Lookups, Running, WebhookArgs};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};

/// A CA and a server certificate for `localhost` / `127.0.0.1`, as PEM.
pub struct Pki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn pki(ca_name: &str) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "hatrack-webhook.hatrack-system.svc");
    let cert = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// A running webhook with its certificate files and a client trusting its CA.
pub struct TestServer {
    pub running: Running,
    pub dir: tempfile::TempDir,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub client: reqwest::Client,
    pub pki: Pki,
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.running.addr.port(), path)
    }

    pub fn metrics_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/metrics",
            self.running.metrics_addr.port()
        )
    }

    /// The Prometheus text from the metrics listener (plain HTTP).
    pub async fn metrics(&self) -> String {
        let resp = self
            .client
            .get(self.metrics_url())
            .send()
            .await
            .expect("metrics");
        assert_eq!(resp.status(), 200);
        resp.text().await.expect("metrics body")
    }

    /// Posts a body to /validate/workloads; returns status and body.
    pub async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, String) {
        self.post_to("/validate/workloads", body).await
    }

    /// Posts a body to any path; returns status and body.
    pub async fn post_to(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
        let resp = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request reaches the webhook");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    }

    /// GET `path` with the client trusting the server's CA.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.get_with(&self.client, path).await
    }

    /// GET `path` with another client (other ALPN protocols, other trusted CA); the request
    /// must get an answer.
    pub async fn get_with(&self, client: &reqwest::Client, path: &str) -> reqwest::Response {
        client
            .get(self.url(path))
            .send()
            .await
            .expect("request reaches the webhook")
    }

    /// Shuts the server down; it must stop within a second.
    pub async fn stop(self) {
        self.running
            .shutdown(Duration::from_secs(1))
            .await
            .expect("the webhook shuts down");
    }

    /// Posts a CREATE review of `object` and returns its `response`.
    pub async fn admit_create(&self, object: &Value, uid: &str) -> Value {
        self.admit(&review_for("CREATE", object, None, uid)).await
    }

    /// Posts a review and returns its `response`.
    pub async fn admit(&self, review: &Value) -> Value {
        let (status, body) = self.post(serde_json::to_vec(review).unwrap()).await;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("JSON answer");
        assert_eq!(v["kind"], "AdmissionReview");
        assert_eq!(v["response"]["uid"], review["request"]["uid"], "uid echoed");
        v["response"].clone()
    }
}

pub fn client_trusting(ca_pem: &str) -> reqwest::Client {
    client_with_alpn(ca_pem, &[b"h2", b"http/1.1"])
}

/// A client that trusts `ca_pem` and offers exactly these ALPN protocols.
pub fn client_with_alpn(ca_pem: &str, alpn: &[&[u8]]) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_certs(ca_pem) {
        roots.add(cert).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .no_proxy()
        .build()
        .unwrap()
}

fn rustls_pki_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

pub fn args(dir: &Path, mode: Mode, lookups: Lookups) -> WebhookArgs {
    WebhookArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_cert: dir.join("tls.crt"),
        tls_key: dir.join("tls.key"),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        policy: hatrack::detect::PolicyArgs {
            mode,
            exempt_namespaces: vec!["kube-system".into(), "hatrack-system".into()],
            pod_templates: None,
        },
        lookups,
        max_body_bytes: 256 * 1024,
        system: Default::default(),
        limits: Default::default(),
        tls_reload_interval: Duration::from_millis(100),
        cluster: hatrack::settings::ClusterArgs {
            cluster_name: "test".into(),
            cluster_region: Some("eu-west-1".into()),
            account_id: "111122223333".into(),
            partition: "aws".into(),
            oidc_issuer: Some("https://oidc.eks.eu-west-1.amazonaws.com/id/TEST".into()),
            role_path: "/hatrack/".into(),
            default_trust: vec![hatrack::crd::TrustMechanism::Irsa],
            default_audience: "sts.amazonaws.com".into(),
            trust_policy_max_chars: 2048,
            max_managed_policies: 10,
        },
        certs: hatrack::certs::CertArgs {
            self_managed_certs: false,
            cert_secret: "hatrack-webhook-tls".into(),
            cert_namespace: "hatrack-system".into(),
            webhook_service: "hatrack-webhook".into(),
            webhook_configuration: "hatrack".into(),
            cert_extra_names: Vec::new(),
            cert_dir: dir.to_path_buf(),
            cert_renew_before_days: 30,
            cert_check_seconds: 3600,
        },
    }
}

pub async fn start(mode: Mode, refs: Arc<dyn ReferenceView>) -> TestServer {
    start_with_bindings(
        mode,
        refs,
        Arc::new(webhook::bindings::StaticBindingView::default()),
    )
    .await
}

/// As [`start`], with a view of guardrails and bindings for `/validate/iamrolebindings`.
pub async fn start_with_bindings(
    mode: Mode,
    refs: Arc<dyn ReferenceView>,
    bindings: Arc<dyn webhook::BindingView>,
) -> TestServer {
    start_with_args(mode, refs, bindings, |_| {}).await
}

/// As [`start_with_bindings`], with the arguments changed by `change` (limits, namespaces).
pub async fn start_with_args(
    mode: Mode,
    refs: Arc<dyn ReferenceView>,
    bindings: Arc<dyn webhook::BindingView>,
    change: impl FnOnce(&mut WebhookArgs),
) -> TestServer {
    start_with_live(mode, refs, bindings, change, None).await
}

/// As [`start_with_args`]; with `live`, what `refs` lacks is read from that API server.
pub async fn start_with_live(
    mode: Mode,
    refs: Arc<dyn ReferenceView>,
    bindings: Arc<dyn webhook::BindingView>,
    change: impl FnOnce(&mut WebhookArgs),
    live: Option<kube::Client>,
) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki("hatrack test CA");
    std::fs::write(dir.path().join("tls.crt"), &pki.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &pki.key_pem).unwrap();
    let mut a = args(dir.path(), mode, Lookups::Off);
    change(&mut a);
    let running = webhook::start_with_live(&a, refs, bindings, live)
        .await
        .expect("webhook starts");
    TestServer {
        running,
        cert_path: a.tls_cert.clone(),
        key_path: a.tls_key.clone(),
        dir,
        client: client_trusting(&pki.ca_pem),
        pki,
    }
}

/// The API group/version of a manifest's apiVersion.
fn group_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// An `admission.k8s.io/v1` AdmissionReview for `object` as the API server sends it.
pub fn review_for(op: &str, object: &Value, old: Option<&Value>, uid: &str) -> Value {
    let kind = object["kind"].as_str().unwrap_or("");
    let (group, version) = group_version(object["apiVersion"].as_str().unwrap_or("v1"));
    let resource = format!("{}s", kind.to_lowercase());
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": resource},
            "name": object.pointer("/metadata/name").cloned().unwrap_or(json!("")),
            "namespace": namespace,
            "operation": op,
            "userInfo": {"username": "system:serviceaccount:argocd:argocd-application-controller", "groups": ["system:serviceaccounts"]},
            "object": object,
            "oldObject": old.cloned().unwrap_or(Value::Null),
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": if op == "UPDATE" {"UpdateOptions"} else {"CreateOptions"}}
        }
    })
}
