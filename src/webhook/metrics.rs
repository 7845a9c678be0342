//! Prometheus metrics of the webhook (served on `--metrics-listen`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::review::Outcome;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// enforce, warn, audit, exempt or skipped.
    pub mode: &'static str,
    /// allow, warn or deny.
    pub decision: &'static str,
    /// The rule of a finding, `none` for reviews without findings, `unreadable` for objects
    /// that could not be read.
    pub rule: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExemptionLabels {
    /// active (it admitted the workload) or expired (the workload was judged again).
    pub state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// The webhook's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub decisions: Family<DecisionLabels, Counter>,
    pub review_duration: Histogram,
    pub bad_requests: Family<ReasonLabels, Counter>,
    pub tls_reloads: Family<ResultLabels, Counter>,
    /// Reviews of workloads a StaticKeyExemption covers, by whether it was still active.
    pub exemptions: Family<ExemptionLabels, Counter>,
    /// StaticKeyExemptions in the cluster, by whether they are still active.
    pub exemption_objects: Family<ExemptionLabels, prometheus_client::metrics::gauge::Gauge>,
    /// notAfter of the certificate being served, as a Unix timestamp (alert well before it).
    pub certificate_expiry: prometheus_client::metrics::gauge::Gauge,
    /// Referenced objects read from the API server because the caches lacked them, by result.
    pub live_lookups: Family<ResultLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hatrack_webhook");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Admission decisions by mode, decision and rule (one count per rule found in a review)",
            decisions.clone(),
        );
        // 50 µs .. ~1.6 s
        let review_duration = Histogram::new(exponential_buckets(0.00005, 2.0, 16));
        registry.register(
            "review_duration_seconds",
            "Time to answer an AdmissionReview, from body received to response serialised",
            review_duration.clone(),
        );
        let bad_requests = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "bad_requests",
            "Requests refused before a decision (not JSON, not an AdmissionReview, too large)",
            bad_requests.clone(),
        );
        let tls_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "tls_reloads",
            "Certificate reloads after the files changed, by result",
            tls_reloads.clone(),
        );
        let exemptions = Family::<ExemptionLabels, Counter>::default();
        registry.register(
            "exemptions",
            "Reviews of workloads a StaticKeyExemption covers: state=active admitted them, state=expired judged them again",
            exemptions.clone(),
        );
        let exemption_objects =
            Family::<ExemptionLabels, prometheus_client::metrics::gauge::Gauge>::default();
        registry.register(
            "exemption_objects",
            "StaticKeyExemptions in the cluster by state (active, expired: due for clean-up), refreshed every 10 s",
            exemption_objects.clone(),
        );
        let certificate_expiry = prometheus_client::metrics::gauge::Gauge::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When the serving certificate expires (Unix time)",
            certificate_expiry.clone(),
        );
        let live_lookups = Family::<ResultLabels, Counter>::default();
        registry.register(
            "live_lookups",
            "Referenced Secrets and ConfigMaps read from the API server because the watch caches did not hold them yet, by result (found, absent, failed, timeout)",
            live_lookups.clone(),
        );
        Self {
            registry,
            decisions,
            review_duration,
            bad_requests,
            tls_reloads,
            exemptions,
            exemption_objects,
            certificate_expiry,
            live_lookups,
        }
    }

    /// Counts one live lookup (or one review's lookups that ran out of time).
    pub fn live_lookup(&self, result: &'static str) {
        self.live_lookups
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Records the expiry of the certificate now served (ignores a certificate it cannot read).
    pub fn served_certificate(&self, cert_pem: &[u8]) {
        if let Ok(pem) = std::str::from_utf8(cert_pem)
            && let Ok(not_after) = crate::certs::not_after(pem)
        {
            self.certificate_expiry.set(not_after.as_second());
        }
    }

    /// Counts one decided review.
    pub fn record(&self, outcome: &Outcome, seconds: f64) {
        self.review_duration.observe(seconds);
        let decision = outcome.verdict.as_str();
        let mode = outcome.mode;
        if let Some((_, state)) = &outcome.exemption {
            self.exemptions
                .get_or_create(&ExemptionLabels {
                    state: state.as_str(),
                })
                .inc();
        }
        if outcome.unreadable.is_some() {
            self.decisions
                .get_or_create(&DecisionLabels {
                    mode,
                    decision,
                    rule: "unreadable",
                })
                .inc();
        } else if outcome.rules.is_empty() {
            self.decisions
                .get_or_create(&DecisionLabels {
                    mode,
                    decision,
                    rule: "none",
                })
                .inc();
        }
        for rule in &outcome.rules {
            self.decisions
                .get_or_create(&DecisionLabels {
                    mode,
                    decision,
                    rule: rule.as_str(),
                })
                .inc();
        }
    }

    /// Sets the StaticKeyExemption gauges.
    pub fn exemption_objects(&self, active: usize, expired: usize) {
        for (state, n) in [("active", active), ("expired", expired)] {
            self.exemption_objects
                .get_or_create(&ExemptionLabels { state })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    pub fn bad_request(&self, reason: &'static str) {
        self.bad_requests
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
