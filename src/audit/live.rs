//! The background audit's loop: events of its watches (`super::watches`: Secrets and
//! ConfigMaps into the webhook's fact cache, [`WatchCache`], and every workload kind) into the
//! judgements in [`AuditState`], and on each tick the out-of-date PolicyReports to the
//! writer (`super::writer`), which applies a namespace's report only when its content changed.
//!
//! Memory: no workload object is kept. A watch event is judged and dropped; what stays is the
//! judgement (findings, and the facts of the objects it read, shared with the cache). When a
//! Secret's facts change, its readers are fetched again (one GET each) and judged.
//!
//! StaticKeyExemptions are watched too (a handful of cluster-scoped objects) and applied by
//! [`AuditState`] without judging anything again; a timer set to the next expiry moves the
//! audit's clock, so an exemption that expires is enforced in the reports at that time with
//! no other event.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;

use super::kinds::{self, WorkloadKind};
use super::metrics::AuditMetrics;
use super::report;
use super::state::{AuditPolicy, AuditState, StaleReader, Workload};
use super::watches::{FactChange, run_facts, workload_streams};
use super::writer::{ReportWriter, existing_reports};
use crate::crd::StaticKeyExemption;
use crate::exemption::Exemption;
use crate::webhook::cache::WatchCache;

pub use super::writer::MANAGER;

/// Failures that stop the audit (everything else is retried).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(
        "cannot list PolicyReports (is the wgpolicyk8s.io/v1alpha2 CRD installed? the chart installs it): {0}"
    )]
    ListReports(#[source] Box<kube::Error>),
}

/// How the audit runs.
#[derive(Debug, Clone)]
pub struct AuditorOptions {
    pub policy: AuditPolicy,
    /// How often out-of-date reports are written (changes within it are written together).
    pub flush_every: Duration,
}

impl Default for AuditorOptions {
    fn default() -> Self {
        AuditorOptions {
            policy: AuditPolicy::default(),
            flush_every: Duration::from_secs(2),
        }
    }
}

/// The audit loop's state beyond [`AuditState`].
struct Auditor {
    client: Client,
    cache: Arc<WatchCache>,
    options: AuditorOptions,
    metrics: Arc<AuditMetrics>,
    state: AuditState,
    reports: ReportWriter,
    /// Workloads to fetch again and judge (a fact they read changed).
    refetch: Vec<StaleReader>,
    synced_kinds: HashSet<WorkloadKind>,
    /// The StaticKeyExemptions were listed (or cannot be: no CRD, no RBAC).
    exemptions_listed: bool,
    /// StaticKeyExemptions of a re-list in progress.
    exemption_buffer: Vec<Exemption>,
    started: Instant,
    first_report_done: bool,
}

impl Auditor {
    fn on_workload(&mut self, kind: WorkloadKind, event: Event<DynamicObject>) {
        match event {
            Event::Init => self.state.begin_relist(kind),
            Event::InitApply(o) | Event::Apply(o) => self.judge(kind, &o),
            Event::InitDone => {
                self.state.end_relist(kind);
                if self.synced_kinds.insert(kind) {
                    tracing::info!(kind = kind.as_str(), "workloads listed");
                }
            }
            Event::Delete(o) => {
                if let Some(uid) = o.metadata.uid.as_deref() {
                    self.state.remove(uid);
                }
            }
        }
        self.metrics
            .workloads
            .set(i64::try_from(self.state.len()).unwrap_or(i64::MAX));
    }

    fn judge(&mut self, kind: WorkloadKind, o: &DynamicObject) {
        let meta = &o.metadata;
        let (Some(uid), Some(namespace), Some(name)) = (
            meta.uid.as_deref(),
            meta.namespace.as_deref(),
            meta.name.as_deref(),
        ) else {
            return;
        };
        let w = Workload {
            kind,
            namespace,
            name,
            uid,
            resource_version: meta.resource_version.as_deref().unwrap_or(""),
            body: &o.data,
        };
        let itself = kinds::judged_itself_object(kind, meta, &o.data);
        let start = Instant::now();
        if self
            .state
            .upsert(&w, itself, &self.options.policy, self.cache.as_ref())
        {
            self.metrics.judgements.inc();
            self.metrics
                .judge_duration
                .observe(start.elapsed().as_secs_f64());
        }
    }

    fn on_exemption(&mut self, event: Event<StaticKeyExemption>) {
        self.state.advance(jiff::Timestamp::now());
        let (what, name, reevaluated) = match event {
            Event::Init => {
                self.exemption_buffer.clear();
                return;
            }
            Event::InitApply(e) => {
                self.exemption_buffer.push(Exemption::from_resource(&e));
                return;
            }
            Event::InitDone => {
                let all = std::mem::take(&mut self.exemption_buffer);
                let n = all.len();
                let reevaluated = self.state.set_exemptions(all);
                if !self.exemptions_listed {
                    self.exemptions_listed = true;
                    tracing::info!(exemptions = n, "StaticKeyExemptions listed");
                }
                ("listed", String::new(), reevaluated)
            }
            Event::Apply(e) => {
                let e = Exemption::from_resource(&e);
                let name = e.name.clone();
                ("applied", name, self.state.apply_exemption(e))
            }
            Event::Delete(e) => {
                let name = e.metadata.name.clone().unwrap_or_default();
                let n = self.state.delete_exemption(&name);
                ("deleted", name, n)
            }
        };
        tracing::debug!(event = what, exemption = %name, workloads = reevaluated,
            "StaticKeyExemption change re-evaluated the workloads it covers");
        self.exemption_metrics();
    }

    /// The StaticKeyExemption watch failed. A cluster without the CRD (or an auditor without
    /// the RBAC to read them) is audited without exemptions rather than not at all.
    fn on_exemption_error(&mut self, e: &watcher::Error) {
        let absent = match e {
            watcher::Error::InitialListFailed(kube::Error::Api(s)) => {
                matches!(s.code, 403 | 404).then_some(s.code)
            }
            _ => None,
        };
        match absent {
            Some(code) if !self.exemptions_listed => {
                self.exemptions_listed = true;
                tracing::warn!(code, error = %e,
                    "cannot list StaticKeyExemptions (CRD not installed, or no RBAC to read them); auditing without exemptions and retrying");
            }
            Some(_) => tracing::debug!(error = %e, "StaticKeyExemption watch error; retrying"),
            None => tracing::warn!(error = %e, "StaticKeyExemption watch error; retrying"),
        }
    }

    /// The time passed an exemption's expiry: the workloads it covers are enforced again.
    fn on_clock(&mut self) {
        let expired = self.state.advance(jiff::Timestamp::now());
        if expired > 0 {
            tracing::info!(
                workloads = expired,
                "a StaticKeyExemption expired; its workloads are enforced again"
            );
        }
        self.exemption_metrics();
    }

    fn exemption_metrics(&self) {
        let (active, expired) = self.state.exemption_counts();
        self.metrics.set_exemptions(active, expired);
    }

    /// How long until the next exemption expires (`None`: none will).
    fn until_next_expiry(&self) -> Option<Duration> {
        let next = self.state.next_expiry()?;
        let wait = jiff::Timestamp::now().duration_until(next);
        // Already past (or a clock step): at once.
        Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
    }

    fn on_fact_change(&mut self, change: FactChange) {
        let stale = match change {
            FactChange::Object(kind, ns, name) => {
                self.state
                    .stale_readers_of(kind, &ns, &name, self.cache.as_ref())
            }
            FactChange::Relisted(_) => self.state.all_stale(self.cache.as_ref()),
        };
        for s in stale {
            tracing::debug!(kind = s.kind.as_str(), namespace = %s.namespace, name = %s.name,
                "a Secret or ConfigMap it reads changed; judging again");
            self.state.invalidate(&s.uid);
            self.refetch.push(s);
        }
    }

    /// Fetches and judges the workloads whose facts changed.
    async fn refetch(&mut self) {
        let mut todo = std::mem::take(&mut self.refetch);
        todo.sort();
        todo.dedup();
        for s in todo {
            let api = Api::<DynamicObject>::namespaced_with(
                self.client.clone(),
                &s.namespace,
                &s.kind.api_resource(),
            );
            match api.get_opt(&s.name).await {
                Ok(Some(o)) if o.metadata.uid.as_deref() == Some(&*s.uid) => self.judge(s.kind, &o),
                // Gone, or replaced by another object of that name (its own event judges it).
                Ok(_) => self.state.remove(&s.uid),
                Err(e) => {
                    tracing::warn!(kind = s.kind.as_str(), namespace = %s.namespace,
                        name = %s.name, error = %e, "cannot fetch workload; retrying");
                    self.refetch.push(s);
                }
            }
        }
    }

    fn complete(&self) -> bool {
        self.synced_kinds.len() == WorkloadKind::ALL.len() && self.exemptions_listed
    }

    /// Writes the reports of namespaces whose content changed.
    async fn flush(&mut self) {
        if !self.complete() {
            return;
        }
        self.refetch().await;
        let dirty = self.state.take_dirty();
        if dirty.is_empty() && self.first_report_done {
            self.metrics.flushes.inc();
            return;
        }
        let start = Instant::now();
        let mut failed = Vec::new();
        for ns in dirty {
            let desired = report::build(&ns, &self.state.failing_in(&ns));
            self.metrics.set_namespace(&ns, &self.state.summary(&ns));
            if !self.reports.write(&ns, desired).await {
                failed.push(ns);
            }
        }
        for ns in &failed {
            self.state.mark_dirty(ns);
        }
        self.metrics
            .flush_duration
            .observe(start.elapsed().as_secs_f64());
        if failed.is_empty() && self.refetch.is_empty() {
            self.metrics.flushes.inc();
        }
        if !self.first_report_done && failed.is_empty() {
            self.first_report_done = true;
            let took = self.started.elapsed().as_secs_f64();
            self.metrics.first_report_seconds.set(took);
            tracing::info!(
                seconds = took,
                workloads = self.state.len(),
                namespaces_with_findings = self.state.failing_namespaces().len(),
                "first complete set of reports written"
            );
        }
    }
}

/// Runs the background audit until `shutdown` completes: judges every running workload,
/// keeps the judgements current and writes a PolicyReport per namespace with findings.
pub async fn run(
    client: Client,
    options: AuditorOptions,
    metrics: Arc<AuditMetrics>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AuditError> {
    let started = Instant::now();
    metrics.workloads_with_findings.clear();
    metrics.failing_workloads.clear();
    let written = existing_reports(&client).await?;
    let cache = Arc::new(WatchCache::new());
    let (tx, mut changes) = mpsc::unbounded_channel();
    let facts = tokio::spawn({
        let (cache, client, tx) = (cache.clone(), client.clone(), tx.clone());
        async move {
            futures::join!(
                run_facts(
                    cache.clone(),
                    Api::<Secret>::all(client.clone()),
                    tx.clone()
                ),
                run_facts(cache, Api::<ConfigMap>::all(client), tx),
            );
        }
    });
    // Aborts the fact watches however this function ends.
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _facts = AbortOnDrop(facts);
    drop(tx);

    let mut shutdown = std::pin::pin!(shutdown);
    // Judging before the facts are listed would read every Secret as missing.
    let mut listed = HashSet::new();
    while listed.len() < 2 {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            change = changes.recv() => match change {
                Some(FactChange::Relisted(kind)) => { listed.insert(kind); }
                Some(FactChange::Object(..)) => {}
                None => return Ok(()),
            }
        }
    }
    tracing::info!("Secrets and ConfigMaps listed; judging workloads");

    // The reports found are checked once everything is judged.
    let mut state = AuditState::new();
    for ns in written.keys() {
        state.mark_dirty(ns);
    }
    let mut auditor = Auditor {
        client: client.clone(),
        cache,
        options: options.clone(),
        reports: ReportWriter::new(client.clone(), metrics.clone(), written),
        metrics,
        state,
        refetch: Vec::new(),
        synced_kinds: HashSet::new(),
        exemptions_listed: false,
        exemption_buffer: Vec::new(),
        started,
        first_report_done: false,
    };
    auditor.state.advance(jiff::Timestamp::now());
    let mut workloads = std::pin::pin!(workload_streams(&client));
    let exemptions = watcher::watcher(
        Api::<StaticKeyExemption>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff();
    let mut exemptions = std::pin::pin!(exemptions);
    let mut tick = tokio::time::interval(options.flush_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Enforces an exemption again at its expiry, with no other event.
        let expiry = auditor.until_next_expiry();
        let expiry = async move {
            match expiry {
                Some(wait) => tokio::time::sleep(wait).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            Some(change) = changes.recv() => auditor.on_fact_change(change),
            Some((kind, event)) = workloads.next() => match event {
                Ok(event) => auditor.on_workload(kind, event),
                Err(e) => tracing::warn!(kind = kind.as_str(), error = %e, "watch error; retrying"),
            },
            Some(event) = exemptions.next() => match event {
                Ok(event) => auditor.on_exemption(event),
                Err(e) => auditor.on_exemption_error(&e),
            },
            _ = expiry => auditor.on_clock(),
            _ = tick.tick() => auditor.flush().await,
        }
    }
}
