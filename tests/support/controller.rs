//! Running the real controller in-process against a Kubernetes API (the real test API server
//! of `cluster.rs`, or the stand-in for injected faults) and a moto IAM server, and waiting
//! for what it should do; a client that logs its requests, to count what a real server cannot.
#![allow(dead_code)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hatrack::crd::IAMRoleBinding;
use hatrack::metrics::Metrics;
use hatrack::settings::Settings;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::eks::EksStandIn;
use super::moto::Moto;

/// moto's account, so ARNs we compute match the ones it returns.
pub const ACCOUNT: &str = "123456789012";
/// The test cluster's region (`--cluster-region`).
pub const REGION: &str = "eu-west-1";
pub const ISSUER_HOST_PATH: &str = "oidc.eks.eu-west-1.amazonaws.com/id/E2ETEST";

pub fn settings() -> Settings {
    let mut s = Settings::example();
    s.account_id = ACCOUNT.into();
    s.cluster_account_id = ACCOUNT.into();
    s.oidc_issuer_host_path = Some(ISSUER_HOST_PATH.into());
    // The cluster is known by its ARN, as every install is since issue 14.
    s.cluster_region = Some(REGION.into());
    s
}

/// A controller running in a tokio task; stopped gracefully by `stop`, or killed by `kill`.
pub struct RunningController {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), String>>,
    pub metrics: Arc<Metrics>,
}

impl RunningController {
    /// A controller to start against `client` with an IAM client on `moto`: by default it
    /// watches all namespaces, resyncs every 600 s (so only watch events drive it), keeps no
    /// EKS associations and sweeps no orphans.
    pub fn builder(client: kube::Client, moto: &Moto) -> ControllerBuilder {
        let (iam, metrics) = moto.iam();
        Self::builder_with_iam(client, iam, metrics)
    }

    /// [`builder`](Self::builder) with an IAM client of the test's own (e.g. one that fails).
    pub fn builder_with_iam(
        client: kube::Client,
        iam: hatrack::iam::Iam,
        metrics: Arc<Metrics>,
    ) -> ControllerBuilder {
        ControllerBuilder {
            client,
            iam,
            metrics,
            settings: settings(),
            options: hatrack::controller::ControllerOptions {
                resync: Duration::from_secs(600),
                concurrency: 4,
                ..Default::default()
            },
        }
    }

    /// Graceful shutdown: in-flight reconciles finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(20), &mut self.task).await;
        assert!(result.is_ok(), "controller did not stop within 20 s");
    }

    /// A crash: the task is dropped wherever it is, mid-reconcile or not.
    pub fn kill(self) {
        self.task.abort();
    }
}

/// What a [`RunningController`] starts with; made by [`RunningController::builder`].
pub struct ControllerBuilder {
    client: kube::Client,
    iam: hatrack::iam::Iam,
    metrics: Arc<Metrics>,
    settings: Settings,
    options: hatrack::controller::ControllerOptions,
}

impl ControllerBuilder {
    /// Watch only the bindings of `namespace` (`--watch-namespace`): on the shared real API
    /// server, each test's controller keeps to the test's namespace.
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.options.watch_namespace = Some(namespace.to_string());
        self
    }

    pub fn resync(mut self, resync: Duration) -> Self {
        self.options.resync = resync;
        self
    }

    /// Know the cluster as `settings` say (e.g. an earlier version's, by name alone).
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Keep EKS Pod Identity associations in the stand-in's cluster named as
    /// `settings().cluster_name`.
    pub fn eks(self, eks: &EksStandIn) -> Self {
        self.eks_client(eks.sdk_client())
    }

    /// [`eks`](Self::eks) through an EKS client of the test's own (e.g. one that fails).
    pub fn eks_client(mut self, client: aws_sdk_eks::Client) -> Self {
        self.options.eks = Some(hatrack::eks::Eks::new(
            client,
            &settings().cluster_name,
            1000,
            self.metrics.clone(),
        ));
        self
    }

    /// Turn the orphan sweep on.
    pub fn sweeping(mut self, orphans: hatrack::controller::orphans::SweepOptions) -> Self {
        self.options.orphans = Some(orphans);
        self
    }

    pub fn start(self) -> RunningController {
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(hatrack::controller::run_with(
            self.client,
            self.iam,
            self.settings,
            self.metrics.clone(),
            self.options,
            async move {
                let _ = rx.await;
            },
        ));
        RunningController {
            stop: Some(tx),
            task,
            metrics: self.metrics,
        }
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or fails the test after `secs` seconds
/// with `what` and the last value seen.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs} s waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn binding_manifest(ns: &str, name: &str, spec: Value) -> IAMRoleBinding {
    serde_json::from_value(json!({
        "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec
    }))
    .expect("valid binding manifest")
}

pub async fn create_binding(
    client: &kube::Client,
    ns: &str,
    name: &str,
    spec: Value,
) -> IAMRoleBinding {
    let api: Api<IAMRoleBinding> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &binding_manifest(ns, name, spec))
        .await
        .expect("create binding")
}

pub async fn patch_spec(client: &kube::Client, ns: &str, name: &str, spec: Value) {
    let api: Api<IAMRoleBinding> = Api::namespaced(client.clone(), ns);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": spec})),
    )
    .await
    .expect("patch binding");
}

pub async fn delete_binding(client: &kube::Client, ns: &str, name: &str) {
    let api: Api<IAMRoleBinding> = Api::namespaced(client.clone(), ns);
    api.delete(name, &DeleteParams::default())
        .await
        .expect("delete binding");
}

pub async fn create_service_account(client: &kube::Client, ns: &str, name: &str) {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns}})).unwrap();
    api.create(&PostParams::default(), &sa)
        .await
        .expect("create service account");
}

pub async fn get_binding(client: &kube::Client, ns: &str, name: &str) -> Option<IAMRoleBinding> {
    let api: Api<IAMRoleBinding> = Api::namespaced(client.clone(), ns);
    api.get_opt(name).await.expect("get binding")
}

pub async fn role_arn_annotation(client: &kube::Client, ns: &str, name: &str) -> Option<String> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    api.get_opt(name)
        .await
        .expect("get service account")
        .and_then(|sa| {
            sa.metadata
                .annotations
                .and_then(|a| a.get(hatrack::controller::ROLE_ARN_ANNOTATION).cloned())
        })
}

/// (status, reason, message) of the Ready condition, if the binding has one for its current
/// generation.
pub fn ready(b: &IAMRoleBinding) -> Option<(String, String, String)> {
    let status = b.status.as_ref()?;
    if status.observed_generation != b.metadata.generation {
        return None;
    }
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until the binding's Ready condition has `reason` for its current generation.
pub async fn wait_ready_reason(
    client: &kube::Client,
    ns: &str,
    name: &str,
    reason: &str,
    secs: u64,
) -> IAMRoleBinding {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let b = get_binding(client, ns, name).await;
        if let Some(b) = &b
            && ready(b).is_some_and(|(_, r, _)| r == reason)
        {
            return b.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs} s waiting for {ns}/{name} Ready reason {reason}; last seen: generation {:?}, status {:?}",
            b.as_ref().and_then(|b| b.metadata.generation),
            b.as_ref().and_then(|b| b.status.as_ref()),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Roles under hatrack's path in IAM.
pub async fn hatrack_roles(moto: &Moto) -> Vec<String> {
    let out = moto
        .sdk_client()
        .list_roles()
        .path_prefix("/hatrack/")
        .send()
        .await
        .expect("list roles");
    out.roles()
        .iter()
        .map(|r| r.role_name().to_string())
        .collect()
}

/// One request a [`RequestLog`] client sent.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    /// Raw query string, "" when absent.
    pub query: String,
}

impl LoggedRequest {
    pub fn is_watch(&self) -> bool {
        self.query
            .split('&')
            .any(|p| p == "watch=true" || p == "watch=1")
    }
}

/// The requests of clients made by [`RequestLog::client`], recorded by a tower layer in the
/// client's stack: a real API server cannot say which requests one component sent, its
/// client can.
#[derive(Clone, Default)]
pub struct RequestLog(Arc<Mutex<Vec<LoggedRequest>>>);

impl RequestLog {
    /// A client for `kubeconfig` whose every request is logged here.
    pub async fn client(&self, kubeconfig: &std::path::Path) -> kube::Client {
        use kube::config::{KubeConfigOptions, Kubeconfig};
        let kc = Kubeconfig::read_from(kubeconfig)
            .unwrap_or_else(|e| panic!("read kubeconfig {}: {e}", kubeconfig.display()));
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig");
        let log = self.0.clone();
        let layer =
            tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
                if let Ok(mut log) = log.lock() {
                    log.push(LoggedRequest {
                        method: req.method().to_string(),
                        path: req.uri().path().to_string(),
                        query: req.uri().query().unwrap_or("").to_string(),
                    });
                }
                req
            });
        kube::client::ClientBuilder::try_from(config)
            .expect("client stack")
            .with_layer(&layer)
            .build()
    }

    /// Every request logged so far, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn clear(&self) {
        if let Ok(mut l) = self.0.lock() {
            l.clear();
        }
    }
}

/// The EKS stand-in's associations in namespace `ns`: ServiceAccount → association.
pub fn associations_in(
    eks: &EksStandIn,
    ns: &str,
) -> std::collections::BTreeMap<String, super::eks::StoredAssociation> {
    eks.associations()
        .into_iter()
        .filter(|a| a.namespace == ns)
        .map(|a| (a.service_account.clone(), a))
        .collect()
}

/// The name of the role of binding `ns/name` in the test cluster.
pub fn role_name(ns: &str, name: &str) -> String {
    hatrack::naming::role_name(&settings().cluster_identity(), ns, name)
}

/// Role `name` as IAM (moto) holds it, if it exists.
pub async fn iam_role(moto: &Moto, name: &str) -> Option<hatrack::role::Role> {
    moto.iam().0.get_role(name).await.expect("GetRole")
}

/// (status, reason, message) of the binding's condition of `type_`, whatever its generation.
pub fn condition(b: &IAMRoleBinding, type_: &str) -> Option<(String, String, String)> {
    b.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until binding `ns/name` is gone (its finalizer done).
pub async fn wait_binding_gone(client: &kube::Client, ns: &str, name: &str, secs: u64) {
    wait_for(secs, &format!("binding {ns}/{name} gone"), || async {
        get_binding(client, ns, name).await.is_none().then_some(())
    })
    .await;
}

/// Waits until ServiceAccount `ns/name` carries the role ARN annotation `arn`.
pub async fn wait_role_arn_annotation(
    client: &kube::Client,
    ns: &str,
    name: &str,
    arn: &str,
    secs: u64,
) {
    wait_for(
        secs,
        &format!("{ns}/{name} annotated with {arn}"),
        || async {
            (role_arn_annotation(client, ns, name).await.as_deref() == Some(arn)).then_some(())
        },
    )
    .await;
}

/// The events.k8s.io Events about IAMRoleBinding `ns/name`, oldest first.
pub async fn events_about(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    api.list(&Default::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("IAMRoleBinding")
        })
        .collect()
}

/// Waits until an Event with `reason` about IAMRoleBinding `ns/name` exists; returns it.
pub async fn wait_event(
    client: &kube::Client,
    ns: &str,
    name: &str,
    reason: &str,
    secs: u64,
) -> k8s_openapi::api::events::v1::Event {
    wait_for(
        secs,
        &format!("an Event {reason} about {ns}/{name}"),
        || async {
            events_about(client, ns, name)
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some(reason))
        },
    )
    .await
}

/// What most controller tests start from: a fresh namespace of their own on the shared real
/// API server (CRDs installed) and a moto of their own, holding the cluster's OIDC provider
/// unless made [`without_oidc_provider`](Self::without_oidc_provider).
pub struct TestNamespace {
    pub cluster: &'static super::cluster::TestCluster,
    pub client: kube::Client,
    pub ns: String,
    pub moto: Moto,
}

impl TestNamespace {
    /// A namespace named `<prefix>-…`, and moto with the cluster's OIDC provider (IRSA).
    pub async fn new(prefix: &str) -> TestNamespace {
        let t = Self::without_oidc_provider(prefix).await;
        t.moto
            .create_oidc_provider(&format!("https://{ISSUER_HOST_PATH}"))
            .await;
        t
    }

    pub async fn without_oidc_provider(prefix: &str) -> TestNamespace {
        let cluster = super::cluster::cluster_with_crds().await;
        TestNamespace {
            cluster,
            client: cluster.client().await,
            ns: cluster.namespace(prefix).await,
            moto: Moto::start(),
        }
    }

    /// A controller for this namespace's bindings, IAM on this moto.
    pub fn controller(&self) -> ControllerBuilder {
        RunningController::builder(self.client.clone(), &self.moto).namespace(&self.ns)
    }
}

/// Deletes a binding the way a forced cleanup does: its finalizer removed, so hatrack never
/// sees the delete and the role stays. Only while no controller watches the namespace: a
/// running one puts its finalizer back before the delete arrives (a binding without it is a
/// binding to reconcile), and then cleans the role up, which is what a lost binding must not get.
pub async fn delete_by_force(client: &kube::Client, ns: &str, name: &str) {
    let api: Api<IAMRoleBinding> = Api::namespaced(client.clone(), ns);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("remove finalizer");
    delete_binding(client, ns, name).await;
}

/// The value of the unlabelled metric `name` in a Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// The EKS stand-in serving the test cluster (`settings().cluster_name` in [`REGION`], in
/// moto's [`ACCOUNT`]).
pub async fn eks_for_test_cluster() -> EksStandIn {
    EksStandIn::start(ACCOUNT, REGION, &[&settings().cluster_name]).await
}
