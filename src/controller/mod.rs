//! The IAMRoleBinding controller's wiring: watches, caches, the error policy, HTTP endpoints.
//! What every reconcile shares is in [`context`], its errors in [`error`], the reconcile
//! itself in [`reconcile`], what the watches keep and re-queue in `watches`.

pub mod accounts;
pub mod associations;
pub mod cache;
mod cleanup;
mod context;
pub mod decide;
pub mod enforce;
mod error;
mod events;
pub mod guardrail_status;
pub mod orphans;
pub mod reconcile;
mod report;
pub mod requeue;
pub mod resync_gate;
pub mod sa_index;
pub mod status;
mod watches;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, PredicateConfig, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use self::cache::CachedBinding;
use self::watches::{
    bindings_in_namespace, bindings_naming, bindings_selected_by, compact_event, reconcile_inputs,
    strip_binding, strip_service_account,
};
use crate::claims::ClaimIndex;
use crate::crd::{IAMAccount, IAMRoleBinding};
use crate::eks::{Eks, EksArgs};
use crate::iam::{Iam, IamArgs};
use crate::metrics::Metrics;
use crate::settings::{ClusterArgs, Settings};
use crate::watch::Relist;

pub use self::context::{Context, Stores};
pub use self::error::Error;

/// The finalizer that makes deletion wait for IAM cleanup.
pub const FINALIZER: &str = "hatrack.dev/cleanup";
/// The annotation IRSA reads on a ServiceAccount.
pub const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
/// Field manager and Event reporter name.
pub const MANAGER: &str = "hatrack-controller";

/// Flags of `hatrack controller`.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub iam: IamArgs,
    #[command(flatten)]
    pub eks: EksArgs,
    #[command(flatten)]
    pub leader: crate::leader::LeaderArgs,
    /// How often every binding is compared with IAM to repair drift (seconds; jittered ±10%).
    #[arg(long, env = "HATRACK_RESYNC_SECONDS", default_value_t = 600)]
    pub resync_seconds: u64,
    /// Bindings reconciled at the same time.
    #[arg(long, env = "HATRACK_CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,
    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "HATRACK_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    pub metrics_listen: SocketAddr,
    /// Only watch bindings in this namespace (default: all namespaces).
    #[arg(long, env = "HATRACK_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    #[command(flatten)]
    pub orphans: orphans::OrphanArgs,
}

/// A ServiceAccount as the controller caches it: metadata only, with only the role ARN
/// annotation.
pub type CachedServiceAccount = PartialObjectMeta<ServiceAccount>;

fn error_policy(binding: Arc<CachedBinding>, error: &Error, ctx: Arc<Context>) -> Action {
    let obj = ObjectRef::from_obj(binding.as_ref());
    let wait = ctx.backoff(&obj, error.failure_class());
    tracing::warn!(binding = %obj, error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// How the controller loop runs (the parts of [`ControllerArgs`] that are not settings).
#[derive(Debug, Clone, Default)]
pub struct ControllerOptions {
    pub resync: Duration,
    pub concurrency: u16,
    pub watch_namespace: Option<String>,
    /// The periodic sweep for orphaned roles (off when `None`).
    pub orphans: Option<orphans::SweepOptions>,
    /// EKS for Pod Identity associations (`None`: not managed).
    pub eks: Option<Eks>,
}

impl From<&ControllerArgs> for ControllerOptions {
    fn from(args: &ControllerArgs) -> Self {
        ControllerOptions {
            resync: Duration::from_secs(args.resync_seconds.max(1)),
            concurrency: args.concurrency.max(1),
            watch_namespace: args.watch_namespace.clone(),
            orphans: args.orphans.sweep_options(),
            eks: None,
        }
    }
}

/// Guardrail changes the status controller may fall behind by before the guardrail watch waits
/// for it (guardrails are few and change rarely).
const GUARDRAIL_SUBSCRIBER_BUFFER: usize = 256;

/// Runs the controller until `shutdown` completes (in-flight reconciles finish first).
/// Tests run it in-process against the API stand-in and moto.
pub async fn run_with(
    client: Client,
    iam: Iam,
    settings: Settings,
    metrics: Arc<Metrics>,
    options: ControllerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), String> {
    let args = &options;
    let bindings: Api<IAMRoleBinding> = match &args.watch_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // Metadata-only requests: the controller reads ServiceAccounts' names and annotations.
    let sa_api: Api<CachedServiceAccount> = match &args.watch_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // Bindings must be readable at all before we start (a missing CRD is a clear error).
    bindings
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .map_err(|e| format!("cannot list IAMRoleBindings (are the CRDs installed? `hatrack crd | kubectl apply -f -`): {e}"))?;

    let (sa_store, sa_writer) = reflector::store();
    // Shared: the guardrail status controller follows the same watch.
    let (guardrail_store, guardrail_writer) = reflector::store_shared(GUARDRAIL_SUBSCRIBER_BUFFER);
    let (namespace_store, namespace_writer) = reflector::store();
    let (binding_store, binding_writer) = reflector::store();
    let (account_store, account_writer) = reflector::store();
    let claims = Arc::new(RwLock::new(ClaimIndex::default()));
    let claims_for_stream = claims.clone();
    let gate: resync_gate::SharedGate<ObjectRef<CachedBinding>> = Arc::new(Mutex::new(
        resync_gate::ResyncGate::new(usize::from(args.concurrency.max(1)), args.resync),
    ));
    let (gate_sa, gate_guardrail, gate_namespace, gate_account) =
        (gate.clone(), gate.clone(), gate.clone(), gate.clone());
    let mut claim_writer = Relist::default();
    let binding_stream = watcher(bindings, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(strip_binding)
        .inspect(move |event| {
            if let Ok(event) = event {
                claim_writer.apply(&claims_for_stream, event);
            }
        })
        .map_ok(compact_event)
        .reflect(binding_writer)
        .applied_objects()
        .predicate_filter(reconcile_inputs, PredicateConfig::default())
        // What passes the filter changed: its next reconcile is not a capped resync.
        .inspect_ok({
            let gate = gate.clone();
            move |b| {
                resync_gate::mark_changed(&gate, vec![ObjectRef::from_obj(b)]);
            }
        });
    let controller = Controller::for_stream(binding_stream, binding_store.clone());
    let claims_for_map = claims.clone();
    let guardrail_map = (binding_store.clone(), namespace_store.clone());
    let namespace_map = binding_store.clone();
    let first_list = binding_store.clone();
    let status_task = guardrail_writer.subscribe().map(|changes| {
        tokio::spawn(guardrail_status::run(
            client.clone(),
            changes,
            guardrail_store.clone(),
        ))
    });
    let guardrail_stream =
        crate::watch::spec_changes(crate::watch::guardrails(client.clone(), guardrail_writer));
    let namespace_stream = crate::watch::namespace_labels(client.clone(), namespace_writer);
    let (account_tx, account_rx) = tokio::sync::mpsc::unbounded_channel::<IAMAccount>();
    let account_stream = {
        let tx = account_tx.clone();
        // Only a new account, a spec change or a deletion concerns the bindings naming it and
        // the status writer (which checks failed accounts again on its own timer): a status
        // write, its own among them, is neither.
        crate::watch::spec_changes(accounts::watch(client.clone(), account_writer)).inspect_ok(
            move |a| {
                let _ = tx.send(a.clone());
            },
        )
    };
    let account_map = binding_store.clone();
    let sa_by_namespace = Arc::new(RwLock::new(sa_index::NamespaceIndex::default()));
    let sa_index_for_stream = sa_by_namespace.clone();
    let mut sa_index_writer = sa_index::NamespaceIndexWriter::default();
    let sa_stream = watcher(sa_api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(strip_service_account)
        .reflect(sa_writer)
        .inspect(move |event| {
            if let Ok(event) = event {
                sa_index_writer.apply(&sa_index_for_stream, event);
            }
        })
        .applied_objects();
    let mut ctx = Context::new(
        client,
        iam,
        settings,
        metrics.clone(),
        args.resync,
        Stores {
            bindings: binding_store,
            service_accounts: sa_store,
            service_accounts_by_namespace: sa_by_namespace,
            guardrails: guardrail_store,
            namespaces: namespace_store,
            claims,
            accounts: account_store,
        },
    );
    ctx.eks = args.eks.clone();
    ctx.resync_gate = gate;
    let ctx = Arc::new(ctx);
    let account_status = tokio::spawn(accounts::credentials::status_writer(
        ctx.clone(),
        args.resync.min(Duration::from_secs(60)),
        account_tx,
        account_rx,
    ));
    let sweep = args.orphans.clone().map(|o| {
        tokio::spawn(orphans::sweep_periodically(
            ctx.clone(),
            o,
            args.watch_namespace.clone(),
        ))
    });
    let config = kube::runtime::controller::Config::default().concurrency(args.concurrency.max(1));
    // kube holds every reconcile until the bindings' cache has its first list, and stops
    // polling the watches once shutdown begins: a shutdown before that list (SIGTERM or a lost
    // lease right at start) would wait forever for a cache that can no longer fill. Nothing
    // has been reconciled then, so the controller simply ends.
    let stop = tokio_util::sync::CancellationToken::new();
    let signal = {
        let stop = stop.clone();
        async move {
            shutdown.await;
            stop.cancel();
        }
    };
    let stopped_before_first_list = async move {
        let listed = tokio::select! {
            biased;
            ready = first_list.wait_until_ready() => ready.is_ok(),
            _ = stop.cancelled() => false,
        };
        if listed {
            std::future::pending::<()>().await;
        }
        stop.cancelled().await;
        tracing::info!("shutdown before the first list of bindings: nothing to finish");
    };
    tracing::info!("controller starting");
    let running = controller
        .with_config(config)
        // Every mapped binding is marked changed: its reconcile is never a capped resync.
        .watches_stream(sa_stream, move |sa| {
            resync_gate::mark_changed(&gate_sa, bindings_naming(&claims_for_map, &sa))
        })
        // A guardrail change (deletion included) re-queues the bindings it selects.
        .watches_stream(guardrail_stream, move |g| {
            resync_gate::mark_changed(
                &gate_guardrail,
                bindings_selected_by(&guardrail_map.0, &guardrail_map.1, &g),
            )
        })
        // A namespace's labels decide which guardrails apply to its bindings.
        .watches_stream(namespace_stream, move |ns| {
            resync_gate::mark_changed(
                &gate_namespace,
                bindings_in_namespace(&namespace_map, &ns.name_any()),
            )
        })
        // An IAMAccount's change (deletion included) re-queues the bindings that name it.
        .watches_stream(account_stream, move |a| {
            resync_gate::mark_changed(
                &gate_account,
                accounts::bindings_naming(&account_map, &a.name_any()),
            )
        })
        .graceful_shutdown_on(signal)
        .run(reconcile::reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(binding = %obj, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile error"),
            }
        });
    tokio::select! {
        _ = running => {}
        _ = stopped_before_first_list => {}
    }
    if let Some(status_task) = status_task {
        status_task.abort();
    }
    account_status.abort();
    if let Some(sweep) = sweep {
        sweep.abort();
    }
    tracing::info!("controller stopped");
    Ok(())
}

/// `hatrack controller`.
pub async fn run(args: ControllerArgs) -> Result<(), String> {
    let settings = args
        .cluster
        .settings_with_region(args.iam.explicit_region())
        .map_err(|e| e.to_string())?;
    if args.cluster.cluster_region.is_none() {
        tracing::info!(region = ?settings.cluster_region, "cluster region taken from --aws-region");
    }
    let metrics = Arc::new(Metrics::default());
    let client = Client::try_default()
        .await
        .map_err(|e| format!("cannot reach the Kubernetes API: {e}"))?;
    let iam = Iam::from_args(&args.iam, metrics.clone()).await;
    let server = {
        let m = metrics.clone();
        crate::metrics::serve(args.metrics_listen, move || m.encode()).await?
    };
    let mut options = ControllerOptions::from(&args);
    options.eks = Eks::from_args(
        &args.eks,
        // The cluster's own region: its Pod Identity associations live there.
        settings
            .cluster_region
            .as_deref()
            .unwrap_or(args.iam.region()),
        args.iam.iam_max_attempts,
        &settings.cluster_name,
        metrics.clone(),
    )
    .await;
    let result = if args.leader.leader_election {
        // Only the replica holding the Lease reconciles; the others wait, serving /readyz.
        crate::leader::run_as_leader(
            client.clone(),
            args.leader.lease_config(),
            shutdown_signal(),
            |stop| {
                run_with(
                    client.clone(),
                    iam.clone(),
                    settings.clone(),
                    metrics.clone(),
                    options.clone(),
                    stop.cancelled_owned(),
                )
            },
        )
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or(Ok(()))
    } else {
        run_with(client, iam, settings, metrics, options, shutdown_signal()).await
    };
    server.abort();
    result
}

pub use crate::signal::shutdown_signal;
