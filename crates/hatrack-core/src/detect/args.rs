//! The static-key admission policy as flags, shared by `webhook`, `check` and `audit`.

use std::collections::HashSet;

use super::Mode;

/// The admission policy flags shared by `webhook` and `check`, so `check` judges exactly as the
/// webhook would with the same flags and environment.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// What to do with findings: enforce (deny), warn (allow with warnings) or audit (allow,
    /// log); a Namespace's `hatrack.dev/static-keys` label overrides it for its workloads.
    #[arg(long, value_enum, default_value = "enforce", env = "HATRACK_MODE")]
    pub mode: Mode,

    /// Namespaces whose workloads are never judged (comma-separated). kube-system is judged
    /// (the webhook: in `--system-mode`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "hatrack-system",
        env = "HATRACK_EXEMPT_NAMESPACES"
    )]
    pub exempt_namespaces: Vec<String>,

    /// A YAML file listing kinds beyond the built-in workloads that embed a pod template
    /// (group, kind, resource, pod spec paths); replaces the shipped list (PodTemplate, Argo
    /// Rollouts and Workflows, Knative, KServe, …; `crates/hatrack-core/src/detect/pod-templates.yaml`).
    #[arg(long, env = "HATRACK_POD_TEMPLATES")]
    pub pod_templates: Option<std::path::PathBuf>,
}

impl PolicyArgs {
    /// The kinds judged besides the built-in workloads: `--pod-templates`, or the shipped list.
    pub fn pod_templates(&self) -> Result<super::PodTemplates, super::TemplatesError> {
        match &self.pod_templates {
            Some(path) => super::PodTemplates::from_file(path),
            None => Ok(super::PodTemplates::default()),
        }
    }

    /// `--exempt-namespaces` as a set, without blanks (`a, ,b` is `a` and `b`).
    pub fn exempt_namespace_set(&self) -> HashSet<String> {
        self.exempt_namespaces
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }
}
