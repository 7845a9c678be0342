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

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::json;
use tokio::sync::OnceCell;

use super::moto::free_port;

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

fn tool(env: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".tools")
        .join(name);
    assert!(
        path.exists(),
        "{name} not found at {}: run scripts/install-test-deps.sh (it builds etcd and \
         kube-apiserver from their Go modules), set {env}, or set HATRACK_TEST_KUBECONFIG to \
         test against a cluster of your own",
        path.display()
    );
    path
}

/// Path of a test tool (`kubectl`, `helm`, ...) in `.tools/`, or from its variable.
pub fn tool_path(env: &str, name: &str) -> PathBuf {
    tool(env, name)
}

struct Pki {
    ca_pem: String,
    serving_cert: String,
    serving_key: String,
    admin_cert: String,
    admin_key: String,
    sa_public: String,
    sa_private: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "hatrack test cluster CA");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).expect("CA issuer");

    let serving_key = KeyPair::generate().expect("serving key");
    let mut serving = CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "kubernetes.default.svc".to_string(),
    ])
    .expect("serving names");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kube-apiserver");
    serving.distinguished_name = dn;
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = serving
        .signed_by(&serving_key, &issuer)
        .expect("serving certificate");

    let admin_key = KeyPair::generate().expect("admin key");
    let mut admin = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "hatrack-test-admin");
    dn.push(DnType::OrganizationName, "system:masters");
    admin.distinguished_name = dn;
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_cert = admin
        .signed_by(&admin_key, &issuer)
        .expect("admin certificate");

    let sa_key = KeyPair::generate().expect("service account signing key");
    Pki {
        ca_pem,
        serving_cert: serving_cert.pem(),
        serving_key: serving_key.serialize_pem(),
        admin_cert: admin_cert.pem(),
        admin_key: admin_key.serialize_pem(),
        sa_public: sa_key.public_key_pem(),
        sa_private: sa_key.serialize_pem(),
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Starts `cmd` so that the kernel kills it when the calling thread ends (PR_SET_PDEATHSIG),
/// its stdout and stderr going to `log`. The cluster calls it from its own thread, which
/// lives as long as the test process; a test calling it from its own thread gets the child
/// killed when the test ends, even by a panic.
pub fn spawn_tied_to_this_thread(cmd: &mut Command, log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    tie_to_this_thread(cmd)
        .spawn()
        .unwrap_or_else(|e| panic!("start {:?}: {e}", cmd.get_program()))
}

/// Makes the child `cmd` starts die with SIGKILL when the thread that starts it ends
/// (PR_SET_PDEATHSIG): a test process killed before its `Drop`s run leaves no server behind.
pub fn tie_to_this_thread(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

fn audit_enabled() -> bool {
    std::env::var_os("HATRACK_TEST_AUDIT").is_some_and(|v| v == "1")
}

/// Requests in the audit log made by `username`, by verb (`list`, `watch`, `patch`, ...).
pub fn audited_requests(
    audit_log: &Path,
    username: &str,
) -> std::collections::BTreeMap<String, u64> {
    let mut by_verb = std::collections::BTreeMap::new();
    let text = std::fs::read_to_string(audit_log).unwrap_or_default();
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let verb = event["verb"].as_str().unwrap_or("?").to_string();
        // A watch is counted when it starts (it completes only when it ends); others once done.
        let stage = if verb == "watch" {
            "ResponseStarted"
        } else {
            "ResponseComplete"
        };
        if event["user"]["username"] == username && event["stage"] == stage {
            *by_verb.entry(verb).or_insert(0) += 1;
        }
    }
    by_verb
}

static REMOVE_AT_EXIT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Removes the cluster's directory (etcd's data, certificates, logs) when the test process
/// exits, unless `HATRACK_KEEP_TEST_CLUSTER` is set (to read the servers' logs afterwards).
fn remove_at_exit(dir: &Path) {
    extern "C" fn remove() {
        if let Some(dir) = REMOVE_AT_EXIT.get() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    if std::env::var_os("HATRACK_KEEP_TEST_CLUSTER").is_some() {
        eprintln!("test cluster files kept in {}", dir.display());
        return;
    }
    if REMOVE_AT_EXIT.set(dir.to_path_buf()).is_ok() {
        // SAFETY: registers a plain function; it runs once, at exit, after the tests.
        unsafe {
            libc::atexit(remove);
        }
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

impl TestCluster {
    fn start() -> TestCluster {
        let etcd_bin = tool("HATRACK_ETCD", "etcd");
        let apiserver_bin = tool("HATRACK_KUBE_APISERVER", "kube-apiserver");
        let dir = tempfile::Builder::new()
            .prefix("hatrack-apiserver-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let pki = pki();
        for (name, contents) in [
            ("ca.crt", &pki.ca_pem),
            ("apiserver.crt", &pki.serving_cert),
            ("apiserver.key", &pki.serving_key),
            ("sa.pub", &pki.sa_public),
            ("sa.key", &pki.sa_private),
        ] {
            write(&dir.join(name), contents);
        }

        remove_at_exit(&dir);

        let (tx, rx) = mpsc::channel::<Result<String, String>>();
        let thread_dir = dir.clone();
        // The processes' parent thread: it must outlive every test of this binary, so it
        // parks forever; the process's exit ends it and, through PDEATHSIG, the servers.
        std::thread::Builder::new()
            .name("test-apiserver".into())
            .spawn(move || {
                let result = start_processes(&thread_dir, &etcd_bin, &apiserver_bin);
                let children = match result {
                    Ok((server, children)) => {
                        let _ = tx.send(Ok(server));
                        children
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _keep = children;
                loop {
                    std::thread::park();
                }
            })
            .expect("cluster thread");
        let server = match rx.recv().expect("cluster thread answers") {
            Ok(server) => server,
            Err(e) => panic!("{e}"),
        };

        let kubeconfig = dir.join("admin.kubeconfig");
        write(
            &kubeconfig,
            &kubeconfig_yaml(
                &server,
                &pki.ca_pem,
                &format!(
                    "client-certificate-data: {}\n    client-key-data: {}",
                    b64(&pki.admin_cert),
                    b64(&pki.admin_key)
                ),
            ),
        );
        let audit_log = audit_enabled().then(|| dir.join("audit.log"));
        TestCluster {
            kubeconfig,
            server,
            ca_pem: pki.ca_pem,
            is_local: true,
            dir,
            audit_log,
        }
    }

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

/// Starts etcd, then kube-apiserver, each on free loopback ports; retries with new ports if a
/// port was taken in between. Returns the API server's URL and the children.
fn start_processes(
    dir: &Path,
    etcd_bin: &Path,
    apiserver_bin: &Path,
) -> Result<(String, Vec<Child>), String> {
    let mut last_error = String::new();
    for attempt in 0..3 {
        let etcd_client = free_port();
        let etcd_peer = free_port();
        let data = dir.join(format!("etcd-{attempt}"));
        let etcd_log = dir.join("etcd.log");
        let mut etcd = spawn_tied_to_this_thread(
            Command::new(etcd_bin).arg("--data-dir").arg(&data).args([
                "--name=test",
                &format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
                &format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
                &format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
                &format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
                &format!("--initial-cluster=test=http://127.0.0.1:{etcd_peer}"),
                // Tests need no durability; fsync dominates etcd's latency on small VMs.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ]),
            &etcd_log,
        );
        if let Err(e) = wait_port(etcd_client, &mut etcd, Duration::from_secs(30)) {
            last_error = format!("etcd: {e}; its log ends:\n{}", tail(&etcd_log));
            let _ = etcd.kill();
            continue;
        }

        let port = free_port();
        let log = dir.join("kube-apiserver.log");
        let mut audit_args = Vec::new();
        if audit_enabled() {
            let policy = dir.join("audit-policy.yaml");
            write(
                &policy,
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
            );
            audit_args.push(format!("--audit-policy-file={}", policy.display()));
            audit_args.push(format!(
                "--audit-log-path={}",
                dir.join("audit.log").display()
            ));
        }
        let mut apiserver = spawn_tied_to_this_thread(
            Command::new(apiserver_bin)
                .args(&audit_args)
                .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_client}"))
                .arg(format!("--secure-port={port}"))
                .args([
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    "--authorization-mode=RBAC",
                    "--service-cluster-ip-range=10.0.0.0/24",
                    "--service-account-issuer=https://kubernetes.default.svc",
                    "--allow-privileged=true",
                    // No controller-manager keeps endpoints here.
                    "--endpoint-reconciler-type=none",
                    "--v=1",
                ])
                .arg(format!("--cert-dir={}", dir.join("certs").display()))
                .arg(format!("--client-ca-file={}", dir.join("ca.crt").display()))
                .arg(format!(
                    "--tls-cert-file={}",
                    dir.join("apiserver.crt").display()
                ))
                .arg(format!(
                    "--tls-private-key-file={}",
                    dir.join("apiserver.key").display()
                ))
                .arg(format!(
                    "--service-account-key-file={}",
                    dir.join("sa.pub").display()
                ))
                .arg(format!(
                    "--service-account-signing-key-file={}",
                    dir.join("sa.key").display()
                )),
            &log,
        );
        match wait_port(port, &mut apiserver, Duration::from_secs(60)) {
            Ok(()) => return Ok((format!("https://127.0.0.1:{port}"), vec![etcd, apiserver])),
            Err(e) => {
                last_error = format!("kube-apiserver: {e}; its log ends:\n{}", tail(&log));
                let _ = apiserver.kill();
                let _ = etcd.kill();
            }
        }
    }
    Err(format!("test API server did not start: {last_error}"))
}

fn wait_port(port: u16, child: &mut Child, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status}"));
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("port {port} not open after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a command, returning (success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("run {:?}: {e}", cmd.get_program()));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `kubectl` against this cluster as administrator (`.tools/kubectl` or `HATRACK_KUBECTL`).
pub fn kubectl(cluster: &TestCluster) -> Command {
    let mut cmd = Command::new(tool("HATRACK_KUBECTL", "kubectl"));
    cmd.env("KUBECONFIG", &cluster.kubeconfig);
    cmd
}

/// `helm` against this cluster as administrator (`.tools/helm` or `HATRACK_HELM`), with its
/// caches and configuration in the cluster's directory instead of `$HOME`.
pub fn helm(cluster: &TestCluster) -> Command {
    let mut cmd = Command::new(tool("HATRACK_HELM", "helm"));
    cmd.env("KUBECONFIG", &cluster.kubeconfig);
    for (var, sub) in [
        ("HELM_CACHE_HOME", "helm/cache"),
        ("HELM_CONFIG_HOME", "helm/config"),
        ("HELM_DATA_HOME", "helm/data"),
    ] {
        cmd.env(var, cluster.dir.join(sub));
    }
    cmd
}

/// Writes `text` to a file in the cluster's directory and returns its path.
pub fn temp_file(cluster: &TestCluster, name: &str, text: &str) -> PathBuf {
    let path = cluster.dir.join(name);
    let mut f = std::fs::File::create(&path).expect("create temp file");
    f.write_all(text.as_bytes()).expect("write temp file");
    path
}
