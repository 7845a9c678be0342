//! `hatrack plan`: the IAM role each IAMRoleBinding in a set of manifests would produce,
//! computed offline with the same code the controller uses.

use std::path::PathBuf;
use std::process::ExitCode;

use std::collections::BTreeMap;

use crate::crd::{IAMGuardrail, IAMRoleBinding};
use crate::guardrail;
use crate::manifest::{self, Document};
use crate::role::{self, DesiredRole, SpecError};
use crate::settings::{ClusterArgs, Settings};

/// Flags of `hatrack plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Namespace assumed for bindings whose metadata has none (as `kubectl apply` would).
    #[arg(long, env = "HATRACK_DEFAULT_NAMESPACE", default_value = "default")]
    pub default_namespace: String,

    /// Files, directories (searched recursively for *.yaml, *.yml, *.json) or `-` for stdin.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Whether a manifest is an IAMRoleBinding of any hatrack.dev version.
pub fn is_role_binding(doc: &Document) -> bool {
    doc.kind() == "IAMRoleBinding"
        && doc
            .api_version()
            .starts_with(&format!("{}/", crate::crd::GROUP))
}

/// Reads an IAMRoleBinding manifest into the typed resource. Type errors name the field.
pub fn read_binding(
    doc: &Document,
    default_namespace: &str,
) -> Result<IAMRoleBinding, Vec<SpecError>> {
    let mut binding: IAMRoleBinding =
        serde_path_to_error::deserialize(&doc.object).map_err(|e| {
            let path = e.path().to_string();
            vec![SpecError {
                // serde_path_to_error names the root ".": say "object" instead.
                field: if path == "." { "object".into() } else { path },
                message: e.inner().to_string(),
            }]
        })?;
    if binding
        .metadata
        .namespace
        .as_deref()
        .unwrap_or("")
        .is_empty()
    {
        binding.metadata.namespace = Some(default_namespace.to_string());
    }
    Ok(binding)
}

/// What the offline commands know besides the bindings: the IAMGuardrails and Namespaces
/// found in the same input, and how many bindings each namespace holds there.
#[derive(Debug, Default)]
pub struct OfflineContext {
    pub guardrails: Vec<IAMGuardrail>,
    pub namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    pub bindings_per_namespace: BTreeMap<String, usize>,
    pub default_namespace: String,
    /// IAMAccounts in the input (for bindings' `spec.account`).
    pub accounts: Vec<crate::crd::IAMAccount>,
}

/// Whether a manifest is an IAMGuardrail of any hatrack.dev version.
pub fn is_guardrail(doc: &Document) -> bool {
    doc.kind() == "IAMGuardrail"
        && doc
            .api_version()
            .starts_with(&format!("{}/", crate::crd::GROUP))
}

impl OfflineContext {
    /// Collects guardrails, namespace labels and binding counts. Guardrails that cannot be read
    /// are returned as errors (with their document), so they are never silently skipped.
    pub fn from_documents(
        docs: &[Document],
        default_namespace: &str,
    ) -> (OfflineContext, Vec<(Document, Vec<SpecError>)>) {
        let mut ctx = OfflineContext {
            default_namespace: default_namespace.to_string(),
            ..Default::default()
        };
        let mut errors = Vec::new();
        for doc in docs {
            if is_guardrail(doc) {
                match serde_path_to_error::deserialize::<_, IAMGuardrail>(&doc.object) {
                    Ok(g) => ctx.guardrails.push(g),
                    Err(e) => errors.push((
                        doc.clone(),
                        vec![SpecError {
                            field: e.path().to_string(),
                            message: e.inner().to_string(),
                        }],
                    )),
                }
            } else if doc.kind() == "IAMAccount"
                && doc
                    .api_version()
                    .starts_with(&format!("{}/", crate::crd::GROUP))
            {
                match serde_path_to_error::deserialize::<_, crate::crd::IAMAccount>(&doc.object) {
                    Ok(a) => ctx.accounts.push(a),
                    Err(e) => errors.push((
                        doc.clone(),
                        vec![SpecError {
                            field: e.path().to_string(),
                            message: e.inner().to_string(),
                        }],
                    )),
                }
            } else if doc.kind() == "Namespace" && doc.api_version() == "v1" {
                let labels: BTreeMap<String, String> = doc
                    .object
                    .pointer("/metadata/labels")
                    .and_then(|l| serde_json::from_value(l.clone()).ok())
                    .unwrap_or_default();
                ctx.namespace_labels.insert(doc.name().to_string(), labels);
            } else if is_role_binding(doc) {
                let ns = doc
                    .namespace()
                    .filter(|n| !n.is_empty())
                    .unwrap_or(default_namespace)
                    .to_string();
                *ctx.bindings_per_namespace.entry(ns).or_default() += 1;
            }
        }
        (ctx, errors)
    }

    /// The role a binding manifest would produce with the guardrails applied (a required
    /// boundary set), or every reason it cannot.
    pub fn plan(&self, doc: &Document, settings: &Settings) -> Result<DesiredRole, Vec<Problem>> {
        let from_spec = |errs: Vec<SpecError>| {
            errs.into_iter()
                .map(|e| Problem {
                    guardrail: None,
                    field: e.field,
                    message: e.message,
                })
                .collect::<Vec<_>>()
        };
        let binding = read_binding(doc, &self.default_namespace).map_err(from_spec)?;
        let ns = binding.metadata.namespace.clone().unwrap_or_default();
        let labels = self.namespace_labels.get(&ns).cloned().unwrap_or_default();
        // A role in another account (spec.account): built with that account's id, when the
        // IAMAccount is in the input.
        let in_account = crate::controller::accounts::resolve(
            &binding,
            settings,
            &self.accounts,
            &labels,
            false,
        )
        .map_err(|refusal| {
            let message = match refusal {
                crate::controller::accounts::AccountRefusal::NotFound(name) => format!(
                    "spec.account: IAMAccount {name:?} is not in the input; give it to plan to build the role in its account"
                ),
                other => other.to_string(),
            };
            vec![Problem {
                guardrail: None,
                field: "spec.account".into(),
                message: message
                    .strip_prefix("spec.account: ")
                    .unwrap_or(&message)
                    .to_string(),
            }]
        })?;
        let settings = &crate::controller::accounts::settings_in(settings, in_account);
        let built = role::desired_role(&binding, settings);
        let applicable = guardrail::applicable(&self.guardrails, &labels);
        let count = self.bindings_per_namespace.get(&ns).copied().unwrap_or(1);
        let violations: Vec<Problem> = guardrail::check(&binding, settings, &applicable, count)
            .into_iter()
            .map(|v| Problem {
                guardrail: Some(v.guardrail),
                field: v.field,
                message: v.message,
            })
            .collect();
        match built {
            Ok(mut desired) if violations.is_empty() => {
                guardrail::enforce_boundary(&mut desired, &applicable);
                Ok(desired)
            }
            Ok(_) => Err(violations),
            Err(errs) => {
                let mut all = from_spec(errs);
                all.extend(violations);
                Err(all)
            }
        }
    }
}

impl OfflineContext {
    /// What this offline judgement could not check: the contents of managed policies that an
    /// applicable guardrail's `deniedActions` would need (only the controller reads IAM).
    pub fn unchecked(&self, doc: &Document) -> Option<String> {
        let binding = read_binding(doc, &self.default_namespace).ok()?;
        let ns = binding.metadata.namespace.clone().unwrap_or_default();
        let labels = self.namespace_labels.get(&ns).cloned().unwrap_or_default();
        let applicable = guardrail::applicable(&self.guardrails, &labels);
        guardrail::managed_policies_unchecked(&binding, &applicable)
    }
}

/// One element of the `plan` output: the role, and the EKS Pod Identity associations that
/// will name it (podIdentity trust only).
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedBinding {
    #[serde(flatten)]
    pub role: DesiredRole,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pod_identity_associations: Vec<crate::association::PlannedAssociation>,
    /// Pod Identity in another account: the role in the cluster's account that the
    /// associations name and EKS chains from (see `association::chain`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chaining_role: Option<DesiredRole>,
}

impl PlannedBinding {
    fn new(
        mut role: DesiredRole,
        doc: &Document,
        offline: &OfflineContext,
        settings: &Settings,
    ) -> Self {
        use crate::association::chain;
        let binding = read_binding(doc, &offline.default_namespace).ok();
        let elsewhere = role.role.arn.split(':').nth(4) != Some(settings.account_id.as_str());
        let chaining_role = binding
            .as_ref()
            .filter(|b| elsewhere && crate::association::uses_pod_identity(b, settings))
            .and_then(|b| {
                let trust = crate::trust::trust_policy(
                    settings,
                    &crate::trust::TrustInputs {
                        namespace: &role.namespace,
                        service_accounts: &b.spec.service_accounts,
                        irsa_audience: None,
                        pod_identity: true,
                    },
                )
                .ok()?;
                Some(chain::chaining_role(&role, settings, trust))
            });
        if let Some(c) = &chaining_role {
            // EKS makes the external ids when it creates the associations.
            let ids = std::collections::BTreeSet::from([
                "<externalId of each association, made by EKS>".to_string(),
            ]);
            role.role.assume_role_policy =
                chain::target_trust(&role.role.assume_role_policy, &c.role.arn, &ids);
        }
        let pod_identity_associations = binding
            .and_then(|b| {
                let (arn, target) = match &chaining_role {
                    Some(c) => (c.role.arn.clone(), Some(role.role.arn.clone())),
                    None => (role.role.arn.clone(), None),
                };
                crate::association::desired(&b, settings, &arn).map(|mut d| {
                    d.target_role_arn = target;
                    d
                })
            })
            .map(|d| d.planned())
            .unwrap_or_default();
        PlannedBinding {
            role,
            pod_identity_associations,
            chaining_role,
        }
    }
}

/// Why a binding cannot become a role: a spec error, or a guardrail it violates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub guardrail: Option<String>,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.guardrail {
            Some(g) => write!(f, "IAMGuardrail {g}: {}: {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

/// Formats problems as `FILE (document N): Kind ns/name: problem` lines.
pub fn describe_errors(doc: &Document, problems: &[impl std::fmt::Display]) -> String {
    let object = format!(
        "{} {}/{}",
        doc.kind(),
        doc.namespace().unwrap_or("-"),
        doc.name()
    );
    problems
        .iter()
        .map(|p| format!("{}: {object}: {p}", doc.location()))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn run(args: PlanArgs) -> ExitCode {
    let settings = match args.cluster.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hatrack plan: {e}");
            return ExitCode::from(2);
        }
    };
    let docs = match manifest::load_paths(&args.paths) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("hatrack plan: {e}");
            return ExitCode::from(2);
        }
    };
    let (offline, guardrail_errors) =
        OfflineContext::from_documents(&docs, &args.default_namespace);
    let mut invalid = false;
    for (doc, errors) in &guardrail_errors {
        invalid = true;
        eprintln!(
            "{}",
            describe_errors(
                doc,
                &errors.iter().map(ToString::to_string).collect::<Vec<_>>()
            )
        );
    }
    let mut roles = Vec::new();
    for doc in docs.iter().filter(|d| is_role_binding(d)) {
        match offline.plan(doc, &settings) {
            Ok(role) => {
                if let Some(note) = offline.unchecked(doc) {
                    eprintln!("warning: {}", describe_errors(doc, &[note]));
                }
                roles.push(PlannedBinding::new(role, doc, &offline, &settings))
            }
            Err(problems) => {
                invalid = true;
                eprintln!("{}", describe_errors(doc, &problems));
            }
        }
    }
    if invalid {
        return ExitCode::from(1);
    }
    match serde_json::to_string_pretty(&roles) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hatrack plan: cannot serialise the plan: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INPUT: &str = r#"
apiVersion: hatrack.dev/v1alpha1
kind: IAMAccount
metadata: {name: data}
spec:
  accountId: "222222222222"
  assumeRole: {roleArn: "arn:aws:iam::222222222222:role/hatrack"}
  namespaceSelector: {matchLabels: {team: data}}
---
apiVersion: v1
kind: Namespace
metadata: {name: data, labels: {team: data}}
---
apiVersion: hatrack.dev/v1alpha1
kind: IAMRoleBinding
metadata: {name: in-b, namespace: data}
spec: {serviceAccounts: [api], account: data}
---
apiVersion: hatrack.dev/v1alpha1
kind: IAMRoleBinding
metadata: {name: not-allowed, namespace: web}
spec: {serviceAccounts: [api], account: data}
---
apiVersion: hatrack.dev/v1alpha1
kind: IAMRoleBinding
metadata: {name: unknown, namespace: data}
spec: {serviceAccounts: [web], account: elsewhere}
"#;

    #[test]
    fn plan_builds_a_role_in_the_account_a_binding_names() {
        let docs = crate::manifest::parse_documents("in.yaml", INPUT).unwrap();
        let (ctx, errors) = OfflineContext::from_documents(&docs, "default");
        assert!(errors.is_empty());
        let settings = Settings::example();
        let d = ctx.plan(&docs[2], &settings).unwrap();
        assert!(
            d.role
                .arn
                .starts_with("arn:aws:iam::222222222222:role/hatrack/")
        );
        assert!(
            d.role
                .assume_role_policy
                .to_string()
                .contains("arn:aws:iam::222222222222:oidc-provider/")
        );
        let refused = ctx.plan(&docs[3], &settings).unwrap_err();
        assert!(
            refused[0]
                .message
                .contains("does not select namespace \"web\""),
            "{refused:?}"
        );
        let unknown = ctx.plan(&docs[4], &settings).unwrap_err();
        assert!(
            unknown[0].message.contains("not in the input"),
            "{unknown:?}"
        );
    }
}
