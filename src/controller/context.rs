//! What every reconcile shares: the clients, the settings, the caches it reads, and the
//! per-binding state of retries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};

use super::cache::CachedBinding;
use super::requeue::{FailureClass, retry_delay};
use super::{CachedServiceAccount, MANAGER, accounts, enforce, resync_gate, sa_index};
use crate::claims::ClaimIndex;
use crate::crd::{IAMAccount, IAMGuardrail};
use crate::eks::Eks;
use crate::iam::{Iam, IamError};
use crate::metrics::Metrics;
use crate::settings::Settings;

/// The caches a reconcile reads.
pub struct Stores {
    pub bindings: Store<CachedBinding>,
    pub service_accounts: Store<CachedServiceAccount>,
    pub service_accounts_by_namespace: Arc<RwLock<sa_index::NamespaceIndex>>,
    pub guardrails: Store<IAMGuardrail>,
    pub namespaces: Store<Namespace>,
    pub claims: Arc<RwLock<ClaimIndex>>,
    pub accounts: Store<IAMAccount>,
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub iam: Iam,
    /// EKS, for Pod Identity associations (`None`: hatrack does not manage them).
    pub eks: Option<Eks>,
    pub settings: Settings,
    /// Warning Events (folded into series while a problem repeats).
    pub recorder: Recorder,
    /// `reportingInstance` of the Normal Events written without the Recorder.
    pub event_instance: String,
    pub metrics: Arc<Metrics>,
    pub resync: Duration,
    /// All bindings (the controller's own cache, compacted: see [`cache`]).
    pub bindings: Store<CachedBinding>,
    /// ServiceAccount claims and bindings per namespace, kept in step with `bindings`.
    pub claims: Arc<RwLock<ClaimIndex>>,
    /// ServiceAccounts (metadata only), to annotate the ones that exist.
    pub service_accounts: Store<CachedServiceAccount>,
    /// Their names by namespace (a reconcile looks at its own namespace only).
    pub service_accounts_by_namespace: Arc<RwLock<sa_index::NamespaceIndex>>,
    /// All guardrails, re-checked before every IAM write.
    pub guardrails: Store<IAMGuardrail>,
    /// Namespaces (labels only), to know which guardrails apply.
    pub namespaces: Store<Namespace>,
    /// Consecutive failures per binding, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<CachedBinding>, u32>>,
    /// OIDC provider existence, checked at most once per resync period.
    oidc_provider_checked: Mutex<Option<(Instant, bool)>>,
    /// IAMAccounts: the other AWS accounts bindings may name.
    pub accounts: Store<IAMAccount>,
    /// IAM clients of those accounts.
    pub account_clients: accounts::AccountClients,
    /// Managed policy documents by ARN and version, for guardrails' action rules.
    pub managed_policies: enforce::ManagedPolicyCache,
    /// Caps the workers resyncs hold, so changes never wait behind them.
    pub resync_gate: resync_gate::SharedGate<ObjectRef<CachedBinding>>,
}

impl Context {
    pub fn new(
        client: Client,
        iam: Iam,
        settings: Settings,
        metrics: Arc<Metrics>,
        resync: Duration,
        stores: Stores,
    ) -> Context {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let event_instance = reporter
            .instance
            .clone()
            .unwrap_or_else(|| MANAGER.to_string());
        Context {
            account_clients: accounts::AccountClients::new(iam.clone(), iam.calls_per_second()),
            accounts: stores.accounts,
            recorder: Recorder::new(client.clone(), reporter),
            event_instance,
            client,
            iam,
            eks: None,
            settings,
            metrics,
            resync,
            bindings: stores.bindings,
            claims: stores.claims,
            service_accounts: stores.service_accounts,
            service_accounts_by_namespace: stores.service_accounts_by_namespace,
            guardrails: stores.guardrails,
            namespaces: stores.namespaces,
            failures: Mutex::new(HashMap::new()),
            oidc_provider_checked: Mutex::new(None),
            managed_policies: enforce::ManagedPolicyCache::default(),
            resync_gate: Arc::new(Mutex::new(resync_gate::ResyncGate::new(1, resync))),
        }
    }

    /// The resync period with ±10% jitter, so bindings created together do not resync together.
    pub fn jittered_resync(&self) -> Duration {
        self.resync.mul_f64(rand::random_range(0.9..1.1))
    }

    pub(super) fn record_success(&self, obj: &ObjectRef<CachedBinding>) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(obj);
        }
    }

    /// Backoff after a failure, by its class (see [`requeue`]).
    pub(super) fn backoff(&self, obj: &ObjectRef<CachedBinding>, class: FailureClass) -> Duration {
        let n = self
            .failures
            .lock()
            .map(|mut f| {
                let n = f.entry(obj.clone()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            })
            .unwrap_or(1);
        retry_delay(class, n, rand::random::<f64>())
    }

    /// Whether the OIDC provider exists, asking IAM at most once per resync period.
    pub async fn oidc_provider_exists(&self, arn: &str) -> Result<bool, IamError> {
        if let Ok(cached) = self.oidc_provider_checked.lock()
            && let Some((at, exists)) = *cached
            && exists
            && at.elapsed() < self.resync
        {
            return Ok(true);
        }
        let exists = self.iam.oidc_provider_exists(arn).await?;
        if let Ok(mut cached) = self.oidc_provider_checked.lock() {
            *cached = Some((Instant::now(), exists));
        }
        Ok(exists)
    }
}
