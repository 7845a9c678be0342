//! Prometheus metrics of the background audit (served by `hatrack auditor` on
//! `--metrics-listen`, prefix `hatrack_audit_`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
    /// Workloads with at least one finding of the rule, by namespace.
    pub workloads_with_findings: Family<FindingLabels, Gauge>,
    /// Workloads with at least one finding, by namespace (each counted once).
    pub failing_workloads: Family<NamespaceLabels, Gauge>,
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
            "Running workloads with at least one static-key finding of the rule, by namespace",
            workloads_with_findings.clone(),
        );
        let failing_workloads = Family::<NamespaceLabels, Gauge>::default();
        registry.register(
            "failing_workloads",
            "Running workloads with at least one static-key finding, by namespace",
            failing_workloads.clone(),
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
            workloads,
            judgements,
            judge_duration,
            first_report_seconds,
            flush_duration,
            report_writes,
        }
    }

    /// Sets the gauges of `namespace`: `failing` workloads with findings, `counts` of them by
    /// rule (absent rules, and a namespace without findings, are removed).
    pub fn set_namespace(
        &self,
        namespace: &str,
        failing: usize,
        counts: &std::collections::BTreeMap<RuleId, u64>,
    ) {
        let labels = NamespaceLabels {
            namespace: namespace.to_string(),
        };
        if failing == 0 {
            self.failing_workloads.remove(&labels);
        } else {
            self.failing_workloads
                .get_or_create(&labels)
                .set(i64::try_from(failing).unwrap_or(i64::MAX));
        }
        for rule in RuleId::ALL {
            let labels = FindingLabels {
                namespace: namespace.to_string(),
                rule: rule.as_str(),
            };
            match counts.get(&rule) {
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
        m.set_namespace(
            "team",
            2,
            &BTreeMap::from([(RuleId::EnvStaticKey, 2), (RuleId::LiteralAccessKey, 1)]),
        );
        let text = m.encode();
        assert!(
            text.contains(
                "hatrack_audit_workloads_with_findings{namespace=\"team\",rule=\"env-static-key\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("hatrack_audit_failing_workloads{namespace=\"team\"} 2"));
        m.set_namespace("team", 1, &BTreeMap::from([(RuleId::EnvStaticKey, 1)]));
        let text = m.encode();
        assert!(!text.contains("literal-access-key"), "{text}");
        m.set_namespace("team", 0, &BTreeMap::new());
        assert!(!m.encode().contains("namespace=\"team\""));
    }
}
