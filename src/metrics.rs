//! Prometheus metrics of the controller.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IamCallLabels {
    operation: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabels {
    /// An IAMAccount's account id, or `controller` for the controller's own credentials.
    account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadyLabels {
    ready: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrantLabels {
    /// `inline` (a deleted inline policy) or `managed` (a detached managed policy).
    kind: String,
}

/// The controller's metrics, and a registry to serve them from.
pub struct Metrics {
    registry: Registry,
    grants_revoked: Family<GrantLabels, Counter>,
    grants_restored: Counter,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_duration: Histogram,
    iam_calls: Family<IamCallLabels, Counter>,
    /// EKS calls (Pod Identity associations), labelled as IAM calls are.
    eks_calls: Family<IamCallLabels, Counter>,
    bindings: Family<ReadyLabels, Gauge>,
    orphaned_roles: Gauge,
    orphaned_roles_deleted: Counter,
    orphaned_associations: Gauge,
    iam_calls_by_account: Family<AccountLabels, Counter>,
    orphaned_associations_deleted: Counter,
    resyncs_deferred: Counter,
    /// (operation, outcome) → count, readable by tests and benchmarks.
    iam_call_counts: Mutex<BTreeMap<(String, String), u64>>,
    /// (operation, outcome) → count of EKS calls.
    eks_call_counts: Mutex<BTreeMap<(String, String), u64>>,
    /// binding key → ready, the source of the `bindings` gauge.
    readiness: Mutex<std::collections::HashMap<Box<str>, bool>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hatrack");
        let reconciles = Family::<ResultLabels, Counter>::default();
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let iam_calls = Family::<IamCallLabels, Counter>::default();
        let bindings = Family::<ReadyLabels, Gauge>::default();
        let eks_calls = Family::<IamCallLabels, Counter>::default();
        registry.register(
            "eks_calls",
            "EKS API calls (Pod Identity associations) by operation and outcome",
            eks_calls.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles of IAMRoleBindings by result (ok or an error reason)",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            reconcile_duration.clone(),
        );
        registry.register(
            "iam_calls",
            "IAM API calls by operation and outcome (success, throttled, ...)",
            iam_calls.clone(),
        );
        registry.register(
            "bindings",
            "IAMRoleBindings by Ready state",
            bindings.clone(),
        );
        let orphaned_roles = Gauge::default();
        let orphaned_roles_deleted = Counter::default();
        registry.register(
            "orphaned_roles",
            "IAM roles tagged as this cluster's whose IAMRoleBinding is gone, at the last sweep",
            orphaned_roles.clone(),
        );
        registry.register(
            "orphaned_roles_deleted",
            "Orphaned IAM roles deleted by the sweep (--delete-orphans)",
            orphaned_roles_deleted.clone(),
        );
        let iam_calls_by_account = Family::<AccountLabels, Counter>::default();
        registry.register(
            "iam_calls_by_account",
            "IAM API calls by the AWS account they act in (an IAMAccount's id, or controller for the controller's own credentials); each account has its own rate limit",
            iam_calls_by_account.clone(),
        );
        let orphaned_associations = Gauge::default();
        let orphaned_associations_deleted = Counter::default();
        registry.register(
            "orphaned_pod_identity_associations",
            "EKS Pod Identity associations tagged as this cluster's whose IAMRoleBinding is gone, at the last sweep",
            orphaned_associations.clone(),
        );
        registry.register(
            "orphaned_pod_identity_associations_deleted",
            "Orphaned EKS Pod Identity associations deleted by the sweep (--delete-orphans)",
            orphaned_associations_deleted.clone(),
        );
        let resyncs_deferred = Counter::default();
        registry.register(
            "resyncs_deferred",
            "Resyncs put off because resyncs held their share of the reconcile workers",
            resyncs_deferred.clone(),
        );
        // Guardrail enforcement (issue 14): grants taken away from violating bindings' roles.
        let grants_revoked = Family::<GrantLabels, Counter>::default();
        let grants_restored = Counter::default();
        registry.register(
            "grants_revoked",
            "Permission policies removed from roles whose bindings violate a guardrail, by kind (inline, managed)",
            grants_revoked.clone(),
        );
        registry.register(
            "grants_restored",
            "Roles whose revoked permission policies were put back once their binding complied",
            grants_restored.clone(),
        );
        Metrics {
            orphaned_roles,
            orphaned_roles_deleted,
            orphaned_associations,
            orphaned_associations_deleted,
            iam_calls_by_account,
            resyncs_deferred,
            registry,
            grants_revoked,
            grants_restored,
            reconciles,
            reconcile_duration,
            iam_calls,
            eks_calls,
            bindings,
            iam_call_counts: Mutex::new(BTreeMap::new()),
            eks_call_counts: Mutex::new(BTreeMap::new()),
            readiness: Mutex::new(std::collections::HashMap::new()),
        }
    }
}

impl Metrics {
    pub fn iam_call(&self, operation: &str, outcome: &str) {
        self.iam_calls
            .get_or_create(&IamCallLabels {
                operation: operation.into(),
                outcome: outcome.into(),
            })
            .inc();
        if let Ok(mut counts) = self.iam_call_counts.lock() {
            *counts
                .entry((operation.to_string(), outcome.to_string()))
                .or_default() += 1;
        }
    }

    /// One IAM call in `account` (see [`AccountLabels`]).
    pub fn iam_call_in(&self, account: &str) {
        self.iam_calls_by_account
            .get_or_create(&AccountLabels {
                account: account.into(),
            })
            .inc();
    }

    pub fn eks_call(&self, operation: &str, outcome: &str) {
        self.eks_calls
            .get_or_create(&IamCallLabels {
                operation: operation.into(),
                outcome: outcome.into(),
            })
            .inc();
        if let Ok(mut counts) = self.eks_call_counts.lock() {
            *counts
                .entry((operation.to_string(), outcome.to_string()))
                .or_default() += 1;
        }
    }

    /// EKS calls so far: (operation, outcome) → count.
    pub fn eks_call_counts(&self) -> BTreeMap<(String, String), u64> {
        self.eks_call_counts
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    pub fn reconciled(&self, result: &str, took: Duration) {
        self.reconciles
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    /// Records a binding's Ready state (`None` when it is gone).
    pub fn binding_ready(&self, key: &str, ready: Option<bool>) {
        let Ok(mut readiness) = self.readiness.lock() else {
            return;
        };
        // Adjust the two gauges by the change of this one binding (no pass over all).
        let was = match ready {
            Some(r) => match readiness.get_mut(key) {
                Some(old) => Some(std::mem::replace(old, r)),
                None => {
                    readiness.insert(key.into(), r);
                    None
                }
            },
            None => readiness.remove(key),
        };
        let gauge = |ready: bool| {
            self.bindings.get_or_create(&ReadyLabels {
                ready: if ready { "true" } else { "false" }.into(),
            })
        };
        if let Some(old) = was {
            gauge(old).dec();
        }
        if let Some(new) = ready {
            gauge(new).inc();
        }
    }

    /// The orphaned roles found by the last sweep.
    pub fn orphans_found(&self, n: usize) {
        self.orphaned_roles
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// One orphaned role deleted.
    pub fn orphan_deleted(&self) {
        self.orphaned_roles_deleted.inc();
    }

    /// The orphaned EKS Pod Identity associations found by the last sweep.
    pub fn orphaned_associations_found(&self, n: usize) {
        self.orphaned_associations
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// One orphaned association deleted.
    pub fn orphaned_association_deleted(&self) {
        self.orphaned_associations_deleted.inc();
    }

    /// A resync put off (see `controller::resync_gate`).
    pub fn resync_deferred(&self) {
        self.resyncs_deferred.inc();
    }

    /// Counts permission policies removed from a violating binding's role.
    pub fn grants_revoked(&self, inline: usize, managed: usize) {
        for (kind, n) in [("inline", inline), ("managed", managed)] {
            if n > 0 {
                self.grants_revoked
                    .get_or_create(&GrantLabels { kind: kind.into() })
                    .inc_by(n as u64);
            }
        }
    }

    /// Counts a role whose revoked grants were put back.
    pub fn grants_restored(&self) {
        self.grants_restored.inc();
    }

    /// IAM calls so far: (operation, outcome) → count.
    pub fn iam_call_counts(&self) -> BTreeMap<(String, String), u64> {
        self.iam_call_counts
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Number of IAM calls of operations that change IAM (anything but Get*/List*).
    pub fn iam_write_count(&self) -> u64 {
        self.iam_call_counts()
            .iter()
            .filter(|((op, _), _)| !op.starts_with("Get") && !op.starts_with("List"))
            .map(|(_, n)| n)
            .sum()
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves /metrics (what `encode` returns, in the OpenMetrics text format), /healthz and
/// /readyz on `addr`: the controller's and the auditor's metrics endpoint.
pub async fn serve(
    addr: std::net::SocketAddr,
    encode: impl Fn() -> String + Clone + Send + Sync + 'static,
) -> Result<tokio::task::JoinHandle<()>, String> {
    use axum::{Router, routing::get};
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let body = encode();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        body,
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }));
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server failed");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges(m: &Metrics) -> (String, String) {
        let text = m.encode();
        let value = |ready: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("hatrack_bindings{{ready=\"{ready}\"}} ")))
                .unwrap_or("absent")
                .to_string()
        };
        (value("true"), value("false"))
    }

    #[test]
    fn the_ready_gauges_follow_each_binding() {
        let m = Metrics::default();
        m.binding_ready("ns/a", Some(false));
        m.binding_ready("ns/b", Some(true));
        m.binding_ready("ns/b", Some(true));
        assert_eq!(gauges(&m), ("1".into(), "1".into()));
        m.binding_ready("ns/a", Some(true));
        assert_eq!(gauges(&m), ("2".into(), "0".into()));
        m.binding_ready("ns/b", None);
        m.binding_ready("ns/gone", None);
        assert_eq!(gauges(&m), ("1".into(), "0".into()));
    }
}
