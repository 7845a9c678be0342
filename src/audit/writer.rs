//! The PolicyReport writer of the background audit: applies a namespace's report only when
//! its content changed since it was last written (or found, from an earlier run), and
//! deletes it when the namespace has no findings left.

use std::collections::HashMap;
use std::sync::Arc;

use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};

use super::live::AuditError;
use super::metrics::AuditMetrics;
use super::report;

/// Field manager of the report writes.
pub const MANAGER: &str = "hatrack-audit";

/// Writes reports, remembering what it wrote.
pub(super) struct ReportWriter {
    client: Client,
    metrics: Arc<AuditMetrics>,
    /// Hash of the report last written (or found) per namespace.
    written: HashMap<String, String>,
}

impl ReportWriter {
    /// A writer that knows the reports `written` before (namespace -> content hash).
    pub(super) fn new(
        client: Client,
        metrics: Arc<AuditMetrics>,
        written: HashMap<String, String>,
    ) -> Self {
        ReportWriter {
            client,
            metrics,
            written,
        }
    }

    /// Brings one namespace's report to `desired`; returns whether it succeeded.
    #[tracing::instrument(skip(self, desired), fields(namespace = %ns))]
    pub(super) async fn write(&mut self, ns: &str, desired: Option<serde_json::Value>) -> bool {
        let api =
            Api::<DynamicObject>::namespaced_with(self.client.clone(), ns, &report::api_resource());
        match desired {
            Some(r) => {
                let hash = report::hash_of(&r).unwrap_or_default().to_string();
                if self.written.get(ns) == Some(&hash) {
                    return true;
                }
                tracing::debug!(hash = %hash, previous = ?self.written.get(ns), "writing PolicyReport");
                let params = PatchParams::apply(MANAGER).force();
                match api
                    .patch(report::REPORT_NAME, &params, &Patch::Apply(&r))
                    .await
                {
                    Ok(_) => {
                        self.metrics.write("apply", true);
                        self.written.insert(ns.to_string(), hash);
                        true
                    }
                    Err(e) => {
                        self.metrics.write("apply", false);
                        tracing::warn!(error = %e, "cannot write PolicyReport; retrying");
                        false
                    }
                }
            }
            None => {
                if !self.written.contains_key(ns) {
                    return true;
                }
                match api
                    .delete(report::REPORT_NAME, &DeleteParams::default())
                    .await
                {
                    Ok(_) => {
                        self.metrics.write("delete", true);
                        self.written.remove(ns);
                        true
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {
                        self.written.remove(ns);
                        true
                    }
                    Err(e) => {
                        self.metrics.write("delete", false);
                        tracing::warn!(error = %e, "cannot delete PolicyReport; retrying");
                        false
                    }
                }
            }
        }
    }
}

/// The reports hatrack wrote before (by an earlier run): namespace -> content hash.
pub(super) async fn existing_reports(
    client: &Client,
) -> Result<HashMap<String, String>, AuditError> {
    let api = Api::<DynamicObject>::all_with(client.clone(), &report::api_resource());
    let params = ListParams::default().labels(&format!(
        "{}={}",
        report::MANAGED_BY_LABEL,
        report::MANAGED_BY
    ));
    let list = api
        .list_metadata(&params)
        .await
        .map_err(|e| AuditError::ListReports(Box::new(e)))?;
    Ok(list
        .items
        .into_iter()
        .filter(|r| r.metadata.name.as_deref() == Some(report::REPORT_NAME))
        .filter_map(|r| {
            let ns = r.metadata.namespace?;
            let hash = r
                .metadata
                .annotations
                .and_then(|mut a| a.remove(report::HASH_ANNOTATION))
                .unwrap_or_default();
            Some((ns, hash))
        })
        .collect())
}
