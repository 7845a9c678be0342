//! `hatrack plan`: the IAM role each IAMRoleBinding in a set of manifests would produce,
//! computed offline by the same judge the controller and the webhook use ([`crate::judge`]).

use std::path::PathBuf;
use std::process::ExitCode;

use std::collections::{BTreeMap, HashMap};

use crate::account::AccountRefusal;
use crate::claims::{Age, ClaimIndex};
use crate::crd::{IAMGuardrail, IAMRoleBinding};
use crate::judge::{self, Judgement, Surroundings};
use crate::manifest::{self, Document};
use crate::role::{DesiredRole, SpecError};
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

/// What the offline commands know besides each binding: the IAMGuardrails, IAMAccounts and
/// Namespaces found in the same input, and the ServiceAccount claims of its bindings, aged by
/// input order (see [`crate::claims`]).
#[derive(Debug, Default)]
pub struct OfflineContext {
    pub guardrails: Vec<IAMGuardrail>,
    pub namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    pub default_namespace: String,
    /// IAMAccounts in the input (for bindings' `spec.account`).
    pub accounts: Vec<crate::crd::IAMAccount>,
    /// The claims of the input's bindings, each at its position.
    pub claims: ClaimIndex,
    /// (namespace, name) → position among the input's bindings.
    positions: HashMap<(String, String), u32>,
}

/// The labels of a namespace the input does not hold.
static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// Whether a manifest is an IAMGuardrail of any hatrack.dev version.
pub fn is_guardrail(doc: &Document) -> bool {
    doc.kind() == "IAMGuardrail"
        && doc
            .api_version()
            .starts_with(&format!("{}/", crate::crd::GROUP))
}

impl OfflineContext {
    /// Collects guardrails, accounts, namespace labels and the bindings' claims. Guardrails and
    /// accounts that cannot be read are returned as errors (with their document), so they are
    /// never silently skipped.
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
            } else if is_role_binding(doc)
                && let Ok(binding) = read_binding(doc, default_namespace)
            {
                // An unreadable binding is reported by `judge`; it claims nothing.
                let key = (
                    binding.metadata.namespace.clone().unwrap_or_default(),
                    binding.metadata.name.clone().unwrap_or_default(),
                );
                let position = u32::try_from(ctx.positions.len()).unwrap_or(u32::MAX);
                let position = *ctx.positions.entry(key).or_insert(position);
                ctx.claims
                    .upsert_aged(&binding, Age::at(&binding, position));
            }
        }
        (ctx, errors)
    }

    /// The judge's decision on a binding manifest, with what the input holds around it; `Err`:
    /// the manifest is not a readable IAMRoleBinding.
    pub fn judge<'a>(
        &'a self,
        doc: &Document,
        settings: &Settings,
        guardrails: &'a [&'a IAMGuardrail],
        accounts: &'a [&'a crate::crd::IAMAccount],
    ) -> Result<(IAMRoleBinding, Judgement<'a>), Vec<Problem>> {
        let binding = read_binding(doc, &self.default_namespace)
            .map_err(|errs| errs.into_iter().map(Problem::from).collect::<Vec<_>>())?;
        let ns = binding.metadata.namespace.clone().unwrap_or_default();
        let labels = self.namespace_labels.get(&ns).unwrap_or(&NO_LABELS);
        let position = self
            .positions
            .get(&(ns, binding.metadata.name.clone().unwrap_or_default()))
            .copied()
            .unwrap_or(u32::MAX);
        let judgement = judge::judge(
            &binding,
            settings,
            &Surroundings {
                guardrails,
                namespace_labels: labels,
                accounts,
                claims: &self.claims,
                age: Age::at(&binding, position),
                managed_policies: None,
            },
        );
        Ok((binding, judgement))
    }

    /// The role a binding manifest would produce with the guardrails applied (a required
    /// boundary set), or every reason it cannot; and what could not be checked offline (the
    /// contents of managed policies a guardrail's action rules need).
    pub fn plan(
        &self,
        doc: &Document,
        settings: &Settings,
    ) -> (Result<DesiredRole, Vec<Problem>>, Option<String>) {
        let guardrails: Vec<&IAMGuardrail> = self.guardrails.iter().collect();
        let accounts: Vec<&crate::crd::IAMAccount> = self.accounts.iter().collect();
        match self.judge(doc, settings, &guardrails, &accounts) {
            Err(problems) => (Err(problems), None),
            Ok((_, judgement)) => (
                judgement
                    .role()
                    .cloned()
                    .map_err(|problems| problems.iter().map(Problem::offline).collect()),
                judgement.unchecked,
            ),
        }
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

/// Why a binding cannot become a role, as the offline commands report it: the judge's
/// [`judge::Problem`] with the guardrail named apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub guardrail: Option<String>,
    pub field: String,
    pub message: String,
}

impl From<SpecError> for Problem {
    fn from(e: SpecError) -> Problem {
        Problem {
            guardrail: None,
            field: e.field,
            message: e.message,
        }
    }
}

impl Problem {
    /// The judge's problem as an offline report says it: an IAMAccount missing from the input
    /// is the input's gap, not the cluster's.
    fn offline(p: &judge::Problem) -> Problem {
        let message = match p {
            judge::Problem::Account(AccountRefusal::NotFound(name)) => format!(
                "IAMAccount {name:?} is not in the input; give it to plan to build the role in its account"
            ),
            other => other.message(),
        };
        Problem {
            guardrail: p.guardrail().map(str::to_string),
            field: p.field().to_string(),
            message,
        }
    }
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
            (Ok(role), unchecked) => {
                if let Some(note) = unchecked {
                    eprintln!("warning: {}", describe_errors(doc, &[note]));
                }
                roles.push(PlannedBinding::new(role, doc, &offline, &settings))
            }
            (Err(problems), _) => {
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
        let d = ctx.plan(&docs[2], &settings).0.unwrap();
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
        let refused = ctx.plan(&docs[3], &settings).0.unwrap_err();
        assert!(
            refused[0]
                .message
                .contains("does not select namespace \"web\""),
            "{refused:?}"
        );
        let unknown = ctx.plan(&docs[4], &settings).0.unwrap_err();
        assert!(
            unknown[0].message.contains("not in the input"),
            "{unknown:?}"
        );
    }
}
