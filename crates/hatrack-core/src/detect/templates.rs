//! Kinds beyond the built-in workloads that embed a pod template (`PodTemplate`, Argo
//! Rollouts, Argo Workflows, Knative, KServe, …): a list of kind → pod spec path(s), shipped
//! with defaults ([`PodTemplates::default`], `pod-templates.yaml`) and replaceable by a file
//! (`--pod-templates`, the chart's `podTemplates`). Used by the webhook and `check`.

use serde::{Deserialize, Serialize};

/// Where one kind keeps its pods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateKind {
    /// API group (`""` for the core group).
    #[serde(default)]
    pub group: String,
    pub kind: String,
    /// Plural resource name, for the webhook's rules.
    pub resource: String,
    pub pods: Vec<PodLocation>,
}

/// One pod spec of a kind, and where its containers are below it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodLocation {
    /// Dotted path from the object to the pod spec (`spec.template.spec`).
    pub path: String,
    /// Container fields below the pod spec; empty: `containers`, `initContainers` and
    /// `ephemeralContainers`.
    #[serde(default)]
    pub containers: Vec<String>,
}

/// A list of kinds that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplatesError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// The kinds judged besides the built-in workloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTemplates {
    kinds: Vec<TemplateKind>,
}

/// The list shipped with hatrack.
pub const DEFAULT_YAML: &str = include_str!("pod-templates.yaml");

impl Default for PodTemplates {
    fn default() -> Self {
        Self::from_yaml("pod-templates.yaml", DEFAULT_YAML).unwrap_or(Self { kinds: Vec::new() })
    }
}

impl PodTemplates {
    /// No kinds beyond the built-in ones.
    pub fn none() -> Self {
        Self { kinds: Vec::new() }
    }

    pub fn from_yaml(path: &str, text: &str) -> Result<Self, TemplatesError> {
        let invalid = |message: String| TemplatesError::Invalid {
            path: path.to_string(),
            message,
        };
        let kinds: Vec<TemplateKind> =
            serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        for k in &kinds {
            if k.kind.is_empty() || k.pods.is_empty() {
                return Err(invalid(format!(
                    "kind '{}' ({}): needs a kind and at least one pod path",
                    k.kind, k.group
                )));
            }
            // The built-in kinds in their own groups, or in none (a core "Deployment" does
            // not exist; the entry is a mistake).
            if super::is_builtin_workload(&k.group, &k.kind)
                || (k.group.is_empty() && super::is_workload_kind(&k.kind))
            {
                return Err(invalid(format!("{} is a built-in workload kind", k.kind)));
            }
            for p in &k.pods {
                if p.path.is_empty() || p.path.contains("[]") {
                    return Err(invalid(format!(
                        "kind {}: pod path '{}' must be a dotted path without []",
                        k.kind, p.path
                    )));
                }
            }
        }
        Ok(Self { kinds })
    }

    pub fn from_file(path: &std::path::Path) -> Result<Self, TemplatesError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TemplatesError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_yaml(&shown, &text)
    }

    pub fn kinds(&self) -> &[TemplateKind] {
        &self.kinds
    }

    /// The entry for an object's group and kind.
    pub fn find(&self, group: &str, kind: &str) -> Option<&TemplateKind> {
        self.kinds
            .iter()
            .find(|k| k.kind == kind && k.group == group)
    }

    /// Whether objects of this group and kind are judged (built-in workloads included).
    pub fn is_workload(&self, group: &str, kind: &str) -> bool {
        super::is_builtin_workload(group, kind) || self.find(group, kind).is_some()
    }
}

/// The API group of an `apiVersion` (`apps/v1` → `apps`, `v1` → ``).
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_list_parses_and_names_the_common_kinds() {
        let t = PodTemplates::from_yaml("d", DEFAULT_YAML).expect("default list");
        assert_eq!(t, PodTemplates::default());
        for (group, kind) in [
            ("", "PodTemplate"),
            ("argoproj.io", "Rollout"),
            ("argoproj.io", "Workflow"),
            ("argoproj.io", "CronWorkflow"),
            ("serving.knative.dev", "Service"),
            ("serving.kserve.io", "InferenceService"),
        ] {
            assert!(t.find(group, kind).is_some(), "{group} {kind}");
        }
        // A core Service is not a Knative Service.
        assert!(!t.is_workload("", "Service"));
        // Built-in kinds in their own groups only: a Volcano Job is not a batch Job.
        for (group, kind) in [
            ("apps", "Deployment"),
            ("extensions", "DaemonSet"),
            ("batch", "CronJob"),
            ("", "Pod"),
        ] {
            assert!(t.is_workload(group, kind), "{group} {kind}");
        }
        for (group, kind) in [
            ("batch.volcano.sh", "Job"),
            ("", "Deployment"),
            ("example.com", "Pod"),
        ] {
            assert!(!t.is_workload(group, kind), "{group} {kind}");
        }
        assert_eq!(group_of("serving.knative.dev/v1"), "serving.knative.dev");
        assert_eq!(group_of("v1"), "");
    }

    #[test]
    fn rejects_lists_that_cannot_work() {
        for bad in [
            "- {kind: X, resource: xs, pods: []}",
            "- {kind: Deployment, resource: d, pods: [{path: spec}]}",
            "- {kind: Deployment, group: apps, resource: d, pods: [{path: spec}]}",
            "- {group: g, kind: X, resource: xs, pods: [{path: 'spec.items[]'}]}",
            "- {group: g, kind: X, resource: xs, pods: [{path: spec}], extra: 1}",
            "not a list",
        ] {
            assert!(PodTemplates::from_yaml("t", bad).is_err(), "{bad}");
        }
    }
}
