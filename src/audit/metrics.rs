//! Prometheus metrics of the background audit (served by `hatrack auditor` on
//! `--metrics-listen`, prefix `hatrack_audit_`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::state::NamespaceSummary;
use crate::detect::RuleId;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    pub namespace: String,
    pub rule: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    pub namespace: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// active or expired.
    pub state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// apply or delete.
    pub operation: &'static str,
    /// ok or error.
    pub result: &'static str,
}

/// The audit's metrics and their registry.
#[derive(Debug)]
pub struct AuditMetrics {
    registry: Registry,
    /// Workloads with at least one finding of the rule, by namespace (not exempted).
    pub workloads_with_findings: Family<FindingLabels, Gauge>,
    /// Workloads with at least one finding, by namespace (each counted once; not exempted).
    pub failing_workloads: Family<NamespaceLabels, Gauge>,
    /// Workloads with findings an active StaticKeyExemption excuses, by namespace.
    pub exempted_workloads: Family<NamespaceLabels, Gauge>,
    /// Of the failing workloads, those whose StaticKeyExemption expired, by namespace.
    pub expired_exemption_workloads: Family<NamespaceLabels, Gauge>,
    /// StaticKeyExemption objects by state.
    pub exemptions: Family<StateLabels, Gauge>,
    /// Workloads the audit holds a judgement of.
    pub workloads: Gauge,
    /// Judgements made (unchanged workloads are not judged again).
    pub judgements: Counter,
    pub judge_duration: Histogram,
    /// Seconds from start (or winning the lease) to the first complete set of reports.
    pub first_report_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Time to bring every out-of-date report up to date, per round.
    pub flush_duration: Histogram,
    pub report_writes: Family<WriteLabels, Counter>,
    /// Rounds that brought every report up to date (also when nothing needed writing).
    pub flushes: Counter,
}

impl Default for AuditMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AuditMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hatrack_audit");
        let workloads_with_findings = Family::<FindingLabels, Gauge>::default();
        registry.register(
            "workloads_with_findings",
            "Running workloads with at least one static-key finding of the rule, by namespace (exempted ones not counted)",
            workloads_with_findings.clone(),
        );
        let failing_workloads = Family::<NamespaceLabels, Gauge>::default();
        registry.register(
            "failing_workloads",
            "Running workloads with at least one static-key finding, by namespace (exempted ones not counted)",
            failing_workloads.clone(),
        );
        let exempted_workloads = Family::<NamespaceLabels, Gauge>::default();
        registry.register(
            "exempted_workloads",
            "Running workloads with static-key findings that an active StaticKeyExemption excuses (report results skip), by namespace",
            exempted_workloads.clone(),
        );
        let expired_exemption_workloads = Family::<NamespaceLabels, Gauge>::default();
        registry.register(
            "expired_exemption_workloads",
            "Running workloads with static-key findings whose StaticKeyExemption expired (enforced again: counted in failing_workloads too), by namespace",
            expired_exemption_workloads.clone(),
        );
        let exemptions = Family::<StateLabels, Gauge>::default();
        registry.register(
            "exemptions",
            "StaticKeyExemption objects by state (active, expired)",
            exemptions.clone(),
        );
        let workloads = Gauge::default();
        registry.register(
            "workloads",
            "Workloads judged by the audit (after owner and exemption filtering)",
            workloads.clone(),
        );
        let judgements = Counter::default();
        registry.register(
            "judgements",
            "Workload judgements made (a workload is judged again only when it or the facts of a Secret or ConfigMap it reads changed)",
            judgements.clone(),
        );
        let judge_duration = Histogram::new(exponential_buckets(0.00001, 2.0, 16));
        registry.register(
            "judge_duration_seconds",
            "Time to judge one workload",
            judge_duration.clone(),
        );
        let first_report_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "first_report_seconds",
            "Seconds from the audit's start to its first complete set of reports",
            first_report_seconds.clone(),
        );
        let flush_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "flush_duration_seconds",
            "Time to write every out-of-date PolicyReport, per round",
            flush_duration.clone(),
        );
        let report_writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "report_writes",
            "PolicyReport writes by operation (apply, delete) and result",
            report_writes.clone(),
        );
        let flushes = Counter::default();
        registry.register(
            "flushes",
            "Rounds that brought every out-of-date PolicyReport up to date",
            flushes.clone(),
        );
        AuditMetrics {
            registry,
            flushes,
            workloads_with_findings,
            failing_workloads,
            exempted_workloads,
            expired_exemption_workloads,
            exemptions,
            workloads,
            judgements,
            judge_duration,
            first_report_seconds,
            flush_duration,
            report_writes,
        }
    }

    /// Sets the gauges of `namespace` from its summary (zero counts, absent rules, and a
    /// namespace without findings are removed, so the series disappear).
    pub fn set_namespace(&self, namespace: &str, summary: &NamespaceSummary) {
        let labels = NamespaceLabels {
            namespace: namespace.to_string(),
        };
        for (family, n) in [
            (&self.failing_workloads, summary.failing),
            (&self.exempted_workloads, summary.exempted),
            (&self.expired_exemption_workloads, summary.expired),
        ] {
            if n == 0 {
                family.remove(&labels);
            } else {
                family
                    .get_or_create(&labels)
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        for rule in RuleId::ALL {
            let labels = FindingLabels {
                namespace: namespace.to_string(),
                rule: rule.as_str(),
            };
            match summary.by_rule.get(&rule) {
                Some(n) => {
                    self.workloads_with_findings
                        .get_or_create(&labels)
                        .set(i64::try_from(*n).unwrap_or(i64::MAX));
                }
                None => {
                    self.workloads_with_findings.remove(&labels);
                }
            }
        }
    }

    /// The StaticKeyExemption objects held, by state.
    pub fn set_exemptions(&self, active: usize, expired: usize) {
        for (state, n) in [("active", active), ("expired", expired)] {
            self.exemptions
                .get_or_create(&StateLabels { state })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    pub fn write(&self, operation: &'static str, ok: bool) {
        self.report_writes
            .get_or_create(&WriteLabels {
                operation,
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// Successful report writes of `operation`.
    pub fn writes(&self, operation: &'static str) -> u64 {
        self.report_writes
            .get_or_create(&WriteLabels {
                operation,
                result: "ok",
            })
            .get()
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn namespace_gauges_follow_the_counts() {
        let m = AuditMetrics::new();
        let summary = |failing, exempted, expired, by_rule: &[(RuleId, u64)]| NamespaceSummary {
            failing,
            exempted,
            expired,
            by_rule: by_rule.iter().copied().collect::<BTreeMap<_, _>>(),
        };
        m.set_namespace(
            "team",
            &summary(
                2,
                1,
                1,
                &[(RuleId::EnvStaticKey, 2), (RuleId::LiteralAccessKey, 1)],
            ),
        );
        let text = m.encode();
        assert!(
            text.contains(
                "hatrack_audit_workloads_with_findings{namespace=\"team\",rule=\"env-static-key\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("hatrack_audit_failing_workloads{namespace=\"team\"} 2"));
        assert!(text.contains("hatrack_audit_exempted_workloads{namespace=\"team\"} 1"));
        assert!(
            text.contains("hatrack_audit_expired_exemption_workloads{namespace=\"team\"} 1"),
            "{text}"
        );
        m.set_namespace("team", &summary(1, 0, 0, &[(RuleId::EnvStaticKey, 1)]));
        let text = m.encode();
        assert!(!text.contains("literal-access-key"), "{text}");
        assert!(!text.contains("exempted_workloads{"), "{text}");
        m.set_namespace("team", &summary(0, 0, 0, &[]));
        assert!(!m.encode().contains("namespace=\"team\""));
        m.set_exemptions(3, 1);
        let text = m.encode();
        assert!(
            text.contains("hatrack_audit_exemptions{state=\"active\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("hatrack_audit_exemptions{state=\"expired\"} 1"),
            "{text}"
        );
    }
}
