//! Running the real controller in-process against a Kubernetes API (the real test API server
//! of `cluster.rs`, or the stand-in for injected faults) and a moto IAM server, and waiting
//! for what it should do; a client that logs its requests, to count what a real server cannot.
#![allow(dead_code)]

mod bindings;
mod request_log;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hatrack::metrics::Metrics;
use hatrack::settings::Settings;
use tokio::sync::oneshot;

use super::eks::EksStandIn;
use super::moto::Moto;

// Each test crate uses a part of these, as of the rest of `support`.
#[allow(unused_imports)]
pub use bindings::*;
#[allow(unused_imports)]
pub use request_log::{LoggedRequest, RequestLog};

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

/// The value of the sample `name` (with its labels as exposed, if any) in a Prometheus text
/// exposition.
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
