//! The IAMRoleBinding controller's wiring: watches, caches, the error policy, HTTP endpoints.
//! What every reconcile shares is in [`context`], its errors in [`error`], the reconcile
//! itself in [`reconcile`].

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

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, Predicate, PredicateConfig, WatchStreamExt, predicates, watcher};
use kube::{Api, Client, ResourceExt};

use self::cache::CachedBinding;
use crate::claims::ClaimIndex;
use crate::crd::{IAMAccount, IAMGuardrail, IAMRoleBinding};
use crate::eks::{Eks, EksArgs};
use crate::iam::{Iam, IamArgs};
use crate::metrics::Metrics;
use crate::settings::{ClusterArgs, Settings};
use crate::watch::{Relist, WatchIndex};

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

/// The bindings in `sa`'s namespace that name it.
fn bindings_naming(
    claims: &RwLock<ClaimIndex>,
    sa: &CachedServiceAccount,
) -> Vec<ObjectRef<CachedBinding>> {
    let ns = sa.namespace().unwrap_or_default();
    claims
        .read()
        .map(|c| c.claimants(&ns, &sa.name_any()))
        .unwrap_or_default()
        .into_iter()
        .map(|name| ObjectRef::new(&name).within(&ns))
        .collect()
}

/// The claim index follows the bindings' watch through [`Relist`].
impl WatchIndex<IAMRoleBinding> for ClaimIndex {
    fn upsert(&mut self, b: &IAMRoleBinding) {
        ClaimIndex::upsert(self, b);
    }
    fn remove(&mut self, b: &IAMRoleBinding) {
        ClaimIndex::remove(self, b);
    }
}

/// What of a binding decides whether a watch event needs a reconcile: the spec (generation;
/// deletion bumps it too), finalizers and deletion. Status-only updates (our own status
/// writes among them) are filtered out: they would re-read the role from IAM for nothing.
/// kube's `predicate_filter` remembers each binding's last value (an hour; a binding not seen
/// for that long counts as new).
fn reconcile_inputs(b: &CachedBinding) -> Option<u64> {
    let deleting = |b: &CachedBinding| Some(u64::from(b.metadata.deletion_timestamp.is_some()));
    predicates::generation
        .combine(predicates::finalizers)
        .combine(deleting)
        .hash_property(b)
}

/// The binding events as the cache and the controller take them: compacted.
fn compact_event(event: watcher::Event<IAMRoleBinding>) -> watcher::Event<CachedBinding> {
    use watcher::Event;
    match event {
        Event::Apply(b) => Event::Apply(b.into()),
        Event::Delete(b) => Event::Delete(b.into()),
        Event::Init => Event::Init,
        Event::InitApply(b) => Event::InitApply(b.into()),
        Event::InitDone => Event::InitDone,
    }
}

/// Drops what the controller never reads from a cached binding: managedFields and
/// annotations (kubectl's last-applied-configuration is a second copy of the spec).
fn strip_binding(b: &mut IAMRoleBinding) {
    b.metadata.managed_fields = None;
    b.metadata.annotations = None;
}

/// Keeps of a ServiceAccount only its identity and the role ARN annotation.
fn strip_service_account(sa: &mut CachedServiceAccount) {
    sa.metadata.managed_fields = None;
    sa.metadata.labels = None;
    sa.metadata.owner_references = None;
    if let Some(annotations) = sa.metadata.annotations.as_mut() {
        annotations.retain(|k, _| k == ROLE_ARN_ANNOTATION);
        if annotations.is_empty() {
            sa.metadata.annotations = None;
        }
    }
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

/// The bindings in namespaces that a guardrail selects.
fn bindings_selected_by(
    bindings: &Store<CachedBinding>,
    namespaces: &Store<Namespace>,
    g: &IAMGuardrail,
) -> Vec<ObjectRef<CachedBinding>> {
    let selected: std::collections::HashSet<String> = namespaces
        .state()
        .iter()
        .filter(|ns| {
            crate::guardrail::selector_matches(g.spec.namespace_selector.as_ref(), ns.labels())
        })
        .map(|ns| ns.name_any())
        .collect();
    bindings
        .state()
        .iter()
        .filter(|b| b.namespace().is_some_and(|ns| selected.contains(&ns)))
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
}

fn bindings_in_namespace(
    bindings: &Store<CachedBinding>,
    ns: &str,
) -> Vec<ObjectRef<CachedBinding>> {
    bindings
        .state()
        .iter()
        .filter(|b| b.namespace().as_deref() == Some(ns))
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
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
    let guardrail_stream = crate::watch::guardrails(client.clone(), guardrail_writer);
    let namespace_stream = crate::watch::namespace_labels(client.clone(), namespace_writer);
    let (account_tx, account_rx) = tokio::sync::mpsc::unbounded_channel::<IAMAccount>();
    let account_stream = {
        let tx = account_tx.clone();
        let mut changed = accounts::spec_changes(account_store.clone());
        accounts::watch(client.clone(), account_writer).try_filter(move |a| {
            // Its status is written off the watch path; only spec changes and deletions
            // concern the bindings naming it.
            let _ = tx.send(a.clone());
            std::future::ready(changed(a))
        })
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
    let account_status = tokio::spawn(accounts::status_writer(
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn binding(name: &str, sas: &[&str]) -> IAMRoleBinding {
        serde_json::from_value(json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
            "metadata": {"name": name, "namespace": "ns", "generation": 1,
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"serviceAccounts": sas}
        }))
        .unwrap()
    }

    #[test]
    fn a_relist_replaces_the_claim_index_when_complete() {
        let index = RwLock::new(ClaimIndex::default());
        let mut writer = Relist::default();
        writer.apply(&index, &watcher::Event::Apply(binding("gone", &["api"])));
        writer.apply(&index, &watcher::Event::Init);
        writer.apply(
            &index,
            &watcher::Event::InitApply(binding("kept", &["web"])),
        );
        // Until the relist is done, the old index answers.
        assert_eq!(index.read().unwrap().claimants("ns", "api"), vec!["gone"]);
        writer.apply(&index, &watcher::Event::InitDone);
        let live = index.read().unwrap();
        assert!(live.claimants("ns", "api").is_empty());
        assert_eq!(live.claimants("ns", "web"), vec!["kept"]);
    }

    #[test]
    fn deletion_removes_claims() {
        let index = RwLock::new(ClaimIndex::default());
        let mut writer = Relist::default();
        writer.apply(&index, &watcher::Event::Apply(binding("a", &["api"])));
        writer.apply(&index, &watcher::Event::Delete(binding("a", &["api"])));
        assert_eq!(index.read().unwrap().live_in_namespace("ns"), 0);
    }

    #[test]
    fn status_only_updates_do_not_trigger_a_reconcile() {
        let b = binding("a", &["api"]);
        let mut with_status = b.clone();
        with_status.status = Some(Default::default());
        assert_eq!(
            reconcile_inputs(&b.clone().into()),
            reconcile_inputs(&with_status.into())
        );
        let mut finalized = b.clone();
        finalized.metadata.finalizers = Some(vec![FINALIZER.into()]);
        assert_ne!(
            reconcile_inputs(&b.clone().into()),
            reconcile_inputs(&finalized.into())
        );
        let mut edited = b.clone();
        edited.metadata.generation = Some(2);
        assert_ne!(
            reconcile_inputs(&b.clone().into()),
            reconcile_inputs(&edited.into())
        );
        let mut deleting = b.clone();
        deleting.metadata.deletion_timestamp = b.metadata.creation_timestamp.clone();
        assert_ne!(
            reconcile_inputs(&b.clone().into()),
            reconcile_inputs(&deleting.into())
        );
    }
}
