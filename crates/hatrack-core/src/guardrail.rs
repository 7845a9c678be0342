//! Guardrails: what a namespace may grant through its IAMRoleBindings. One pure
//! implementation, called by the admission webhook, the controller (before any IAM write) and
//! the offline commands.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube_core::ResourceExt;
use serde_json::Value;

use crate::crd::{
    DeletionPolicy, Enforcement, IAMGuardrail, IAMRoleBinding, RetainPolicy, TrustMechanism,
};
use crate::policy::intersect::patterns_intersect;
use crate::policy::wildcard;
use crate::role::{DEFAULT_MAX_SESSION_SECONDS, DesiredRole};
use crate::settings::Settings;

/// One way a binding breaks a guardrail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("IAMGuardrail {guardrail}: {field}: {message}")]
pub struct Violation {
    pub guardrail: String,
    /// Where in the binding, e.g. `spec.inlinePolicies.admin.Statement[0].Action[1]`.
    pub field: String,
    pub message: String,
}

/// Whether a label selector selects an object with these labels (`None` and `{}` select all).
pub fn selector_matches(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(sel) = selector else { return true };
    if let Some(ml) = &sel.match_labels
        && !ml.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    for expr in sel.match_expressions.iter().flatten() {
        let value = labels.get(&expr.key);
        let values = expr.values.as_deref().unwrap_or(&[]);
        let ok = match expr.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            // An operator the API server would refuse: select nothing rather than everything.
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// The guardrails that apply to a namespace with these labels (from any collection: owned,
/// or `Arc`s shared with a watch cache, mapped with `Arc::as_ref`).
pub fn applicable<'a>(
    guardrails: impl IntoIterator<Item = &'a IAMGuardrail>,
    namespace_labels: &BTreeMap<String, String>,
) -> Vec<&'a IAMGuardrail> {
    guardrails
        .into_iter()
        .filter(|g| selector_matches(g.spec.namespace_selector.as_ref(), namespace_labels))
        .collect()
}

/// The trust mechanisms a binding uses (its own, or the controller default).
pub fn trust_mechanisms(binding: &IAMRoleBinding, settings: &Settings) -> Vec<TrustMechanism> {
    match &binding.spec.trust {
        Some(t) => {
            let mut m = Vec::new();
            if t.irsa.is_some() {
                m.push(TrustMechanism::Irsa);
            }
            if t.pod_identity.is_some() {
                m.push(TrustMechanism::PodIdentity);
            }
            m
        }
        None => settings.default_trust.clone(),
    }
}

/// Every violation of the applicable guardrails. `bindings_in_namespace` counts the bindings
/// of the namespace including this one.
pub fn check(
    binding: &IAMRoleBinding,
    settings: &Settings,
    applicable: &[&IAMGuardrail],
    bindings_in_namespace: usize,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let spec = &binding.spec;
    for g in applicable {
        let gname = g.name_any();
        let v = |field: String, message: String| Violation {
            guardrail: gname.clone(),
            field,
            message,
        };
        if let Some(allowed) = &g.spec.allowed_managed_policy_arns {
            for (i, arn) in spec.managed_policy_arns.iter().enumerate() {
                if !allowed.iter().any(|p| wildcard::matches(p, arn, false)) {
                    let message = if allowed.is_empty() {
                        format!(
                            "managed policy {arn} is not allowed: this guardrail allows no managed policies"
                        )
                    } else {
                        format!(
                            "managed policy {arn} is not allowed; allowed: {}",
                            allowed.join(", ")
                        )
                    };
                    out.push(v(format!("spec.managedPolicyArns[{i}]"), message));
                }
            }
        }
        for (i, arn) in spec.managed_policy_arns.iter().enumerate() {
            if let Some(p) = g
                .spec
                .denied_managed_policy_arns
                .iter()
                .flatten()
                .find(|p| wildcard::matches(p, arn, false))
            {
                out.push(v(
                    format!("spec.managedPolicyArns[{i}]"),
                    format!("managed policy {arn} is denied (matches {p})"),
                ));
            }
        }
        let rules = ActionRules::of(g, settings);
        if !rules.is_empty() {
            for (pname, doc) in &spec.inline_policies {
                for (field, message) in rules.grants(doc) {
                    out.push(v(format!("spec.inlinePolicies.{pname}.{field}"), message));
                }
            }
        }
        if binding.deletion_policy() == DeletionPolicy::Retain
            && g.spec.retain == Some(RetainPolicy::Forbidden)
        {
            out.push(v(
                "spec.deletionPolicy".into(),
                "Retain is forbidden here: a deleted binding's role is deleted".into(),
            ));
        }
        if let Some(required) = &g.spec.required_permissions_boundary
            && let Some(named) = &spec.permissions_boundary
            && named != required
        {
            out.push(v(
                "spec.permissionsBoundary".into(),
                format!("must be {required} (or left out, and hatrack sets it), got {named}"),
            ));
        }
        if let Some(max) = g.spec.max_session_duration {
            let asked = spec
                .max_session_duration
                .unwrap_or(DEFAULT_MAX_SESSION_SECONDS);
            if asked > max {
                out.push(v(
                    "spec.maxSessionDuration".into(),
                    format!("{asked} seconds exceeds the maximum of {max}"),
                ));
            }
        }
        if let Some(max) = g.spec.max_bindings_per_namespace
            && bindings_in_namespace > max as usize
        {
            out.push(v(
                "metadata.namespace".into(),
                format!("namespace would hold {bindings_in_namespace} IAMRoleBindings; at most {max} are allowed"),
            ));
        }
        if let Some(allowed) = &g.spec.allowed_trust {
            for m in trust_mechanisms(binding, settings) {
                if !allowed.contains(&m) {
                    let name = m.to_string();
                    out.push(v(
                        format!("spec.trust.{name}"),
                        format!("trust mechanism {name} is not allowed here"),
                    ));
                }
            }
        }
    }
    // Two guardrails requiring different boundaries cannot both be met.
    let mut required: Vec<(&str, String)> = applicable
        .iter()
        .filter_map(|g| {
            g.spec
                .required_permissions_boundary
                .as_deref()
                .map(|b| (b, g.name_any()))
        })
        .collect();
    required.sort();
    required.dedup_by(|a, b| a.0 == b.0);
    if required.len() > 1 {
        out.push(Violation {
            guardrail: required.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>().join(", "),
            field: "spec.permissionsBoundary".into(),
            message: format!(
                "guardrails require different permissions boundaries ({}); no role can satisfy them all",
                required.iter().map(|(b, _)| *b).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    out
}

/// The action rules of one guardrail (`deniedActions`, `deniedActionsOnAllResources`), to
/// apply to any policy document: a binding's inline policies or an attached managed policy.
struct ActionRules<'a> {
    denied: &'a [String],
    denied_on_all: &'a [String],
    denied_index: ActionIndex<'a>,
    denied_on_all_index: ActionIndex<'a>,
    /// A role ARN no binding could name on purpose: a `Resource` matching it matches any role.
    probe_role_arn: String,
}

impl<'a> ActionRules<'a> {
    fn of(g: &'a IAMGuardrail, settings: &Settings) -> ActionRules<'a> {
        let denied = g.spec.denied_actions.as_deref().unwrap_or(&[]);
        let denied_on_all = g
            .spec
            .denied_actions_on_all_resources
            .as_deref()
            .unwrap_or(&[]);
        ActionRules {
            denied,
            denied_on_all,
            denied_index: ActionIndex::new(denied),
            denied_on_all_index: ActionIndex::new(denied_on_all),
            probe_role_arn: format!(
                "arn:{}:iam::{}:role/hatrack-guardrail-probe/any-role-3f9c",
                settings.partition, settings.account_id
            ),
        }
    }

    fn is_empty(&self) -> bool {
        self.denied.is_empty() && self.denied_on_all.is_empty()
    }

    /// (field, message) for each Allow statement of a policy document that could grant a
    /// denied action. Odd shapes are skipped (documents are validated elsewhere).
    ///
    /// Conditions are not evaluated, on purpose (README "Guardrails"): an Allow with a
    /// `Condition` still grants whenever its condition holds, which the role's holder often
    /// controls (tags, source IP, time), so it counts as if unconditioned; and a Deny, with or
    /// without a `Condition`, never offsets an Allow here: a conditioned Deny stops applying
    /// when its condition fails, and crediting any Deny would make the check depend on how
    /// statements of different policies combine, which a guardrail must not bet on.
    fn grants(&self, doc: &Value) -> Vec<(String, String)> {
        let statements: Vec<&Value> = match doc.get("Statement") {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(s @ Value::Object(_)) => vec![s],
            _ => return Vec::new(),
        };
        let as_list = |v: &Value| -> Vec<String> {
            match v {
                Value::String(s) => vec![s.clone()],
                Value::Array(items) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let mut out = Vec::new();
        for (i, st) in statements.iter().enumerate() {
            // Deny statements grant nothing, and are not credited with taking a grant away.
            if st.get("Effect").and_then(Value::as_str) != Some("Allow") {
                continue;
            }
            let conditioned = if st.get("Condition").is_some() {
                " (its Condition does not exempt it: a conditioned Allow grants whenever the condition holds)"
            } else {
                ""
            };
            let all_denied = || {
                self.denied
                    .iter()
                    .chain(self.denied_on_all)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if st.get("NotAction").is_some() {
                out.push((
                    format!("Statement[{i}].NotAction"),
                    format!(
                        "an Allow with NotAction grants nearly every action, including denied ones ({}){conditioned}",
                        all_denied()
                    ),
                ));
                continue;
            }
            let Some(actions) = st.get("Action") else {
                continue;
            };
            // On every resource: `*`, a pattern any role matches, or NotResource.
            let any_resource = st.get("NotResource").is_some()
                || st.get("Resource").is_some_and(|r| {
                    as_list(r)
                        .iter()
                        .any(|p| p == "*" || wildcard::matches(p, &self.probe_role_arn, false))
                });
            for (j, action) in as_list(actions).iter().enumerate() {
                if let Some(d) = self.denied_index.find(action) {
                    out.push((
                        format!("Statement[{i}].Action[{j}]"),
                        format!("{action:?} could grant {d:?}, which is denied{conditioned}"),
                    ));
                } else if any_resource && let Some(d) = self.denied_on_all_index.find(action) {
                    out.push((
                        format!("Statement[{i}].Action[{j}]"),
                        format!(
                            "{action:?} could grant {d:?} on every resource, which is denied (name the resources){conditioned}"
                        ),
                    ));
                }
            }
        }
        out
    }
}

/// Denied action patterns grouped by service (the part before `:`, lower-cased), so that an
/// action is compared only with the patterns of its own service (and those whose service has
/// a wildcard): an AWS managed policy lists thousands of actions (ReadOnlyAccess: ~3,000).
struct ActionIndex<'a> {
    by_service: std::collections::HashMap<String, Vec<&'a String>>,
    /// Patterns whose service part has a wildcard (or that have no `:`): compared with all.
    any_service: Vec<&'a String>,
}

impl<'a> ActionIndex<'a> {
    fn new(patterns: &'a [String]) -> ActionIndex<'a> {
        let mut index = ActionIndex {
            by_service: std::collections::HashMap::new(),
            any_service: Vec::new(),
        };
        for p in patterns {
            match literal_service(p) {
                Some(svc) => index.by_service.entry(svc).or_default().push(p),
                None => index.any_service.push(p),
            }
        }
        index
    }

    /// The first pattern that `action` (itself a pattern) could intersect.
    fn find(&self, action: &str) -> Option<&'a String> {
        let candidates: Box<dyn Iterator<Item = &&'a String>> = match literal_service(action) {
            Some(svc) => Box::new(
                self.by_service
                    .get(&svc)
                    .into_iter()
                    .flatten()
                    .chain(self.any_service.iter()),
            ),
            None => Box::new(
                self.by_service
                    .values()
                    .flatten()
                    .chain(self.any_service.iter()),
            ),
        };
        candidates
            .copied()
            .find(|d| patterns_intersect(action, d, true))
    }
}

/// The service of an action pattern, lower-cased, when it is literal (`iam` in `iam:Get*`);
/// `None` when it has a wildcard or there is no `:` (`*`, `i*:Create*`).
fn literal_service(pattern: &str) -> Option<String> {
    let (svc, _) = pattern.split_once(':')?;
    (!svc.contains(['*', '?'])).then(|| svc.to_ascii_lowercase())
}

/// A managed policy's default version, as the controller read it from IAM.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedPolicyDocument {
    pub arn: String,
    pub version_id: String,
    pub document: Value,
}

/// Whether checking this binding needs its managed policies' contents (some applicable
/// guardrail has action rules, and the binding attaches managed policies).
pub fn needs_managed_documents(binding: &IAMRoleBinding, applicable: &[&IAMGuardrail]) -> bool {
    !binding.spec.managed_policy_arns.is_empty()
        && applicable.iter().any(|g| {
            g.spec
                .denied_actions
                .as_ref()
                .is_some_and(|d| !d.is_empty())
                || g.spec
                    .denied_actions_on_all_resources
                    .as_ref()
                    .is_some_and(|d| !d.is_empty())
        })
}

/// Violations of the action rules by the managed policies' documents (read by the controller).
pub fn check_managed(
    binding: &IAMRoleBinding,
    settings: &Settings,
    applicable: &[&IAMGuardrail],
    documents: &[ManagedPolicyDocument],
) -> Vec<Violation> {
    let mut out = Vec::new();
    for g in applicable {
        let rules = ActionRules::of(g, settings);
        if rules.is_empty() {
            continue;
        }
        for doc in documents {
            let index = binding
                .spec
                .managed_policy_arns
                .iter()
                .position(|a| *a == doc.arn)
                .map(|i| format!("[{i}]"))
                .unwrap_or_default();
            for (field, message) in rules.grants(&doc.document) {
                out.push(Violation {
                    guardrail: g.name_any(),
                    field: format!("spec.managedPolicyArns{index}"),
                    message: format!(
                        "managed policy {} (version {}) {field}: {message}",
                        doc.arn, doc.version_id
                    ),
                });
            }
        }
    }
    out
}

/// What a component that cannot read IAM (the webhook, `plan`, offline `check`) says about a
/// binding whose managed policies a guardrail's action rules would need to read.
pub fn managed_policies_unchecked(
    binding: &IAMRoleBinding,
    applicable: &[&IAMGuardrail],
) -> Option<String> {
    needs_managed_documents(binding, applicable).then(|| {
        format!(
            "the contents of managed policies {} were not checked against deniedActions here (this component does not read IAM); the controller reads them and revokes the role's grants if they break a guardrail",
            binding.spec.managed_policy_arns.join(", ")
        )
    })
}

/// Whether the controller revokes or only reports: `Revoke` when any guardrail that is
/// violated asks for it (the default).
pub fn enforcement(violations: &[Violation], applicable: &[&IAMGuardrail]) -> Enforcement {
    let revokes = applicable.iter().any(|g| {
        let name = g.name_any();
        g.spec.enforcement.unwrap_or_default() == Enforcement::Revoke
            && violations
                .iter()
                .any(|v| v.guardrail.split(", ").any(|n| n == name))
    });
    if revokes {
        Enforcement::Revoke
    } else {
        Enforcement::Report
    }
}

/// What a role left by `deletionPolicy: Retain` keeps: the strictest rule of the applicable
/// guardrails, `WithoutTrust` when none says.
pub fn retain_policy(applicable: &[&IAMGuardrail]) -> RetainPolicy {
    applicable
        .iter()
        .map(|g| g.spec.retain.unwrap_or_default())
        .min()
        .unwrap_or_default()
}

/// Sets the boundary the applicable guardrails require on a role whose binding names none.
pub fn enforce_boundary(desired: &mut DesiredRole, applicable: &[&IAMGuardrail]) {
    if desired.role.permissions_boundary.is_none()
        && let Some(b) = applicable
            .iter()
            .find_map(|g| g.spec.required_permissions_boundary.clone())
    {
        desired.role.permissions_boundary = Some(b);
    }
}

/// What is wrong with a guardrail itself (reported in its status). A guardrail with problems
/// still applies as written; this only tells the platform team.
pub fn guardrail_problems(g: &IAMGuardrail) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(sel) = &g.spec.namespace_selector {
        for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
            let values = e.values.as_deref().unwrap_or(&[]);
            let ok = match e.operator.as_str() {
                "In" | "NotIn" => !values.is_empty(),
                "Exists" | "DoesNotExist" => values.is_empty(),
                _ => false,
            };
            if !ok {
                out.push(format!(
                    "spec.namespaceSelector.matchExpressions[{i}]: operator {:?} with {} values is not a valid requirement (In/NotIn need values, Exists/DoesNotExist none); it selects nothing",
                    e.operator,
                    values.len()
                ));
            }
        }
    }
    for (i, p) in g
        .spec
        .allowed_managed_policy_arns
        .iter()
        .flatten()
        .enumerate()
    {
        if !p.starts_with("arn:") && p != "*" {
            out.push(format!(
                "spec.allowedManagedPolicyArns[{i}]: {p:?} is not an ARN pattern (arn:...)"
            ));
        }
    }
    for (field, patterns) in [
        ("deniedActions", &g.spec.denied_actions),
        (
            "deniedActionsOnAllResources",
            &g.spec.denied_actions_on_all_resources,
        ),
    ] {
        for (i, p) in patterns.iter().flatten().enumerate() {
            if p != "*" && !p.contains(':') {
                out.push(format!("spec.{field}[{i}]: {p:?} is not an action pattern (service:Action, wildcards allowed)"));
            }
        }
    }
    for (i, p) in g
        .spec
        .denied_managed_policy_arns
        .iter()
        .flatten()
        .enumerate()
    {
        if !p.starts_with("arn:") && p != "*" {
            out.push(format!(
                "spec.deniedManagedPolicyArns[{i}]: {p:?} is not an ARN pattern (arn:...)"
            ));
        }
    }
    if let Some(b) = &g.spec.required_permissions_boundary
        && let Err(m) = crate::validate::policy_arn(b)
    {
        out.push(format!("spec.requiredPermissionsBoundary: {m}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn guardrail(name: &str, spec: Value) -> IAMGuardrail {
        serde_json::from_value(json!({"apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMGuardrail", "metadata": {"name": name}, "spec": spec})).unwrap()
    }

    fn binding(spec: Value) -> IAMRoleBinding {
        serde_json::from_value(json!({"apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding", "metadata": {"name": "b", "namespace": "ns"}, "spec": spec})).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn violations(g: &IAMGuardrail, b: &IAMRoleBinding) -> Vec<String> {
        check(b, &Settings::example(), &[g], 1)
            .iter()
            .map(|v| v.to_string())
            .collect()
    }

    fn inline(actions: Value) -> Value {
        json!({"serviceAccounts": ["api"], "inlinePolicies": {"p": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}}})
    }

    #[test]
    fn selectors_pick_namespaces() {
        let g = guardrail(
            "g",
            json!({"namespaceSelector": {"matchLabels": {"tier": "sandbox"}, "matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["platform"]}]}}),
        );
        let all = [g];
        assert_eq!(applicable(&all, &labels(&[("tier", "sandbox")])).len(), 1);
        assert_eq!(
            applicable(&all, &labels(&[("tier", "sandbox"), ("team", "platform")])).len(),
            0
        );
        assert_eq!(applicable(&all, &labels(&[("tier", "prod")])).len(), 0);
        let everywhere = [guardrail("all", json!({}))];
        assert_eq!(applicable(&everywhere, &labels(&[])).len(), 1);
        let exists = LabelSelector {
            match_expressions: Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                    key: "x".into(),
                    operator: "Exists".into(),
                    values: None,
                },
            ]),
            ..Default::default()
        };
        assert!(selector_matches(Some(&exists), &labels(&[("x", "")])));
        assert!(!selector_matches(Some(&exists), &labels(&[])));
    }

    #[test]
    fn denied_actions_catch_every_spelling() {
        let g = guardrail(
            "no-iam",
            json!({"deniedActions": ["iam:*", "organizations:*", "sts:AssumeRole"]}),
        );
        for action in [
            "*",
            "iam:*",
            "IAM:createrole",
            "i*:Create*",
            "sts:Assume*",
            "org*:List*",
        ] {
            let v = violations(&g, &binding(inline(json!([action]))));
            assert_eq!(v.len(), 1, "{action}: {v:?}");
            assert!(
                v[0].contains("IAMGuardrail no-iam: spec.inlinePolicies.p.Statement[0].Action[0]"),
                "{v:?}"
            );
        }
        for action in [
            "s3:GetObject",
            "sts:AssumeRoleWithWebIdentity",
            "ec2:Describe*",
        ] {
            assert!(
                violations(&g, &binding(inline(json!([action])))).is_empty(),
                "{action}"
            );
        }
    }

    #[test]
    fn deny_statements_never_violate_and_not_action_always_does() {
        let g = guardrail("no-iam", json!({"deniedActions": ["iam:*"]}));
        let deny = json!({"serviceAccounts": ["api"], "inlinePolicies": {"p": {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}}});
        assert!(violations(&g, &binding(deny)).is_empty());
        let not_action = json!({"serviceAccounts": ["api"], "inlinePolicies": {"p": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}]}}});
        let v = violations(&g, &binding(not_action));
        assert!(v[0].contains("NotAction"), "{v:?}");
    }

    #[test]
    fn a_condition_never_excuses_an_allow_and_no_deny_offsets_one() {
        let no_iam = guardrail("no-iam", json!({"deniedActions": ["iam:*"]}));
        let no_any_role = guardrail(
            "no-any-role",
            json!({"deniedActionsOnAllResources": ["iam:PassRole"]}),
        );
        let policy = |statements: Value| {
            binding(
                json!({"serviceAccounts": ["api"], "inlinePolicies": {"p": {"Version": "2012-10-17", "Statement": statements}}}),
            )
        };
        // A condition the holder may well meet (or that looks unmeetable): still a grant.
        let in_region = json!({"StringEquals": {"aws:RequestedRegion": "nowhere-1"}});
        let v = violations(
            &no_iam,
            &policy(
                json!([{"Effect": "Allow", "Action": "iam:CreateUser", "Resource": "*", "Condition": in_region}]),
            ),
        );
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(
            v[0].contains("Statement[0].Action[0]") && v[0].contains("Condition"),
            "{v:?}"
        );
        let v = violations(
            &no_any_role,
            &policy(
                json!([{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*", "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}}]),
            ),
        );
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("on every resource"), "{v:?}");
        let v = violations(
            &no_iam,
            &policy(
                json!([{"Effect": "Allow", "NotAction": "s3:*", "Resource": "*", "Condition": in_region}]),
            ),
        );
        assert!(v.len() == 1 && v[0].contains("NotAction"), "{v:?}");
        // A Deny beside the Allow, conditioned or not, is not credited with removing it.
        for deny in [
            json!({"Effect": "Deny", "Action": "iam:*", "Resource": "*", "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "false"}}}),
            json!({"Effect": "Deny", "Action": "iam:*", "Resource": "*"}),
        ] {
            let allow = json!({"Effect": "Allow", "Action": "iam:*", "Resource": "*"});
            let v = violations(&no_iam, &policy(json!([allow, deny])));
            assert_eq!(v.len(), 1, "{deny}: {v:?}");
            assert!(v[0].contains("Statement[0].Action[0]"), "{v:?}");
        }
        // The same in an attached managed policy's document.
        let b = binding(
            json!({"serviceAccounts": ["a"], "managedPolicyArns": ["arn:aws:iam::111122223333:policy/cond"]}),
        );
        let docs = [ManagedPolicyDocument {
            arn: "arn:aws:iam::111122223333:policy/cond".into(),
            version_id: "v1".into(),
            document: json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "iam:AttachRolePolicy", "Resource": "*", "Condition": {"StringLike": {"aws:PrincipalTag/team": "*"}}},
                {"Effect": "Deny", "Action": "iam:*", "Resource": "*", "Condition": {"StringNotLike": {"aws:PrincipalTag/team": "*"}}}
            ]}),
        }];
        let v = check_managed(&b, &Settings::example(), &[&no_iam], &docs);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("Condition"), "{}", v[0].message);
    }

    #[test]
    fn managed_policies_must_be_allowed_and_empty_list_allows_none() {
        let g = guardrail(
            "arns",
            json!({"allowedManagedPolicyArns": ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess", "arn:aws:iam::111122223333:policy/team-*"]}),
        );
        let ok = binding(
            json!({"serviceAccounts": ["a"], "managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess", "arn:aws:iam::111122223333:policy/team-payments"]}),
        );
        assert!(violations(&g, &ok).is_empty());
        let admin = binding(
            json!({"serviceAccounts": ["a"], "managedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]}),
        );
        let v = violations(&g, &admin);
        assert!(
            v[0].contains("spec.managedPolicyArns[0]") && v[0].contains("AdministratorAccess"),
            "{v:?}"
        );
        let none = guardrail("none", json!({"allowedManagedPolicyArns": []}));
        assert!(violations(&none, &ok).len() == 2);
        // absent field: no restriction
        assert!(violations(&guardrail("open", json!({})), &admin).is_empty());
    }

    #[test]
    fn boundary_session_trust_and_count() {
        let g = guardrail(
            "strict",
            json!({"requiredPermissionsBoundary": "arn:aws:iam::111122223333:policy/hatrack-boundary", "maxSessionDuration": 3600, "allowedTrust": ["podIdentity"], "maxBindingsPerNamespace": 2}),
        );
        let b = binding(
            json!({"serviceAccounts": ["a"], "permissionsBoundary": "arn:aws:iam::111122223333:policy/other", "maxSessionDuration": 7200}),
        );
        let v: Vec<Violation> = check(&b, &Settings::example(), &[&g], 3);
        let fields: Vec<&str> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.permissionsBoundary",
                "spec.maxSessionDuration",
                "metadata.namespace",
                "spec.trust.irsa"
            ]
        );
        let fine = binding(json!({"serviceAccounts": ["a"], "trust": {"podIdentity": {}}}));
        assert!(check(&fine, &Settings::example(), &[&g], 2).is_empty());
    }

    #[test]
    fn conflicting_required_boundaries_are_a_violation() {
        let a = guardrail(
            "a",
            json!({"requiredPermissionsBoundary": "arn:aws:iam::111122223333:policy/a"}),
        );
        let b = guardrail(
            "b",
            json!({"requiredPermissionsBoundary": "arn:aws:iam::111122223333:policy/b"}),
        );
        let v = check(
            &binding(json!({"serviceAccounts": ["x"]})),
            &Settings::example(),
            &[&a, &b],
            1,
        );
        assert_eq!(v.len(), 1);
        assert!(v[0].message.contains("different permissions boundaries"));
    }

    #[test]
    fn malformed_guardrails_are_reported() {
        let g = guardrail(
            "bad",
            json!({
                "namespaceSelector": {"matchExpressions": [{"key": "tier", "operator": "In"}]},
                "allowedManagedPolicyArns": ["ReadOnlyAccess"],
                "deniedActions": ["iam"],
                "requiredPermissionsBoundary": "arn:aws:s3:::bucket"
            }),
        );
        let p = guardrail_problems(&g).join("\n");
        for field in [
            "matchExpressions[0]",
            "allowedManagedPolicyArns[0]",
            "deniedActions[0]",
            "requiredPermissionsBoundary",
        ] {
            assert!(p.contains(field), "{field} missing in {p}");
        }
        assert!(guardrail_problems(&guardrail("ok", json!({"deniedActions": ["iam:*"], "allowedManagedPolicyArns": ["arn:aws:iam::aws:policy/*"]}))).is_empty());
    }

    #[test]
    fn denied_managed_policies_are_refused_by_pattern() {
        let g = guardrail(
            "no-admin",
            json!({"deniedManagedPolicyArns": ["arn:aws*:iam::aws:policy/AdministratorAccess", "arn:aws*:iam::aws:policy/IAMFullAccess"]}),
        );
        let admin = binding(
            json!({"serviceAccounts": ["a"], "managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess", "arn:aws-us-gov:iam::aws:policy/AdministratorAccess"]}),
        );
        let v = violations(&g, &admin);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("spec.managedPolicyArns[1]"), "{v:?}");
        // a customer policy of the same name is another policy
        let own = binding(
            json!({"serviceAccounts": ["a"], "managedPolicyArns": ["arn:aws:iam::111122223333:policy/AdministratorAccess-lookalike"]}),
        );
        assert!(violations(&g, &own).is_empty());
    }

    #[test]
    fn actions_denied_on_all_resources_are_allowed_on_named_roles() {
        let g = guardrail(
            "no-any-role",
            json!({"deniedActionsOnAllResources": ["iam:PassRole", "sts:AssumeRole"]}),
        );
        let with = |action: &str, resource: Value| {
            binding(
                json!({"serviceAccounts": ["api"], "inlinePolicies": {"p": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]}}}),
            )
        };
        for (action, resource) in [
            ("iam:PassRole", json!("*")),
            (
                "iam:Pass*",
                json!(["arn:aws:iam::111122223333:role/x", "*"]),
            ),
            ("sts:AssumeRole", json!("arn:aws:iam::*:role/*")),
            ("sts:*", json!("arn:aws:iam::111122223333:role/*")),
            ("*", json!("arn:aws:iam::111122223333:role/*")),
        ] {
            let v = violations(&g, &with(action, resource.clone()));
            assert_eq!(v.len(), 1, "{action} on {resource}: {v:?}");
            assert!(v[0].contains("on every resource"), "{v:?}");
        }
        for (action, resource) in [
            (
                "iam:PassRole",
                json!("arn:aws:iam::111122223333:role/app-task"),
            ),
            (
                "sts:AssumeRole",
                json!("arn:aws:iam::111122223333:role/team-*"),
            ),
            ("sts:AssumeRoleWithWebIdentity", json!("*")),
            ("s3:GetObject", json!("*")),
        ] {
            assert!(
                violations(&g, &with(action, resource.clone())).is_empty(),
                "{action} on {resource}"
            );
        }
        let not_resource = binding(
            json!({"serviceAccounts": ["api"], "inlinePolicies": {"p": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:PassRole", "NotResource": "arn:aws:iam::111122223333:role/admin"}]}}}),
        );
        assert_eq!(violations(&g, &not_resource).len(), 1);
    }

    #[test]
    fn managed_policy_documents_are_checked_like_inline_ones() {
        let g = guardrail("no-iam", json!({"deniedActions": ["iam:*"]}));
        let b = binding(
            json!({"serviceAccounts": ["a"], "managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess", "arn:aws:iam::aws:policy/IAMFullAccess"]}),
        );
        assert!(needs_managed_documents(&b, &[&g]));
        assert!(
            managed_policies_unchecked(&b, &[&g])
                .unwrap()
                .contains("were not checked")
        );
        let docs = [
            ManagedPolicyDocument {
                arn: "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess".into(),
                version_id: "v3".into(),
                document: json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:Get*", "s3:List*"], "Resource": "*"}]}),
            },
            ManagedPolicyDocument {
                arn: "arn:aws:iam::aws:policy/IAMFullAccess".into(),
                version_id: "v2".into(),
                document: json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["iam:*", "organizations:DescribeAccount"], "Resource": "*"}]}),
            },
        ];
        let v = check_managed(&b, &Settings::example(), &[&g], &docs);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].field, "spec.managedPolicyArns[1]");
        assert!(
            v[0].message
                .contains("IAMFullAccess (version v2) Statement[0].Action[0]"),
            "{}",
            v[0].message
        );
        // nothing to read without action rules or managed policies
        let open = guardrail(
            "open",
            json!({"deniedManagedPolicyArns": ["arn:aws:iam::aws:policy/X"]}),
        );
        assert!(!needs_managed_documents(&b, &[&open]));
        assert!(
            managed_policies_unchecked(&binding(json!({"serviceAccounts": ["a"]})), &[&g])
                .is_none()
        );
    }

    #[test]
    fn revoke_is_the_default_and_report_only_when_every_violated_guardrail_says_so() {
        let revoke = guardrail("r", json!({"deniedActions": ["iam:*"]}));
        let report = guardrail(
            "p",
            json!({"deniedActions": ["iam:*"], "enforcement": "Report"}),
        );
        let v = |g: &str| Violation {
            guardrail: g.into(),
            field: "f".into(),
            message: "m".into(),
        };
        assert_eq!(
            enforcement(&[v("r")], &[&revoke, &report]),
            Enforcement::Revoke
        );
        assert_eq!(
            enforcement(&[v("p")], &[&revoke, &report]),
            Enforcement::Report
        );
        assert_eq!(
            enforcement(&[v("p"), v("r")], &[&revoke, &report]),
            Enforcement::Revoke
        );
        assert_eq!(
            enforcement(&[v("p, r")], &[&revoke, &report]),
            Enforcement::Revoke
        );
    }

    #[test]
    fn retain_is_kept_without_trust_by_default_and_the_strictest_guardrail_wins() {
        assert_eq!(retain_policy(&[]), RetainPolicy::WithoutTrust);
        let keep = guardrail("keep", json!({"retain": "WithTrust"}));
        let forbid = guardrail("forbid", json!({"retain": "Forbidden"}));
        assert_eq!(retain_policy(&[&keep]), RetainPolicy::WithTrust);
        assert_eq!(retain_policy(&[&keep, &forbid]), RetainPolicy::Forbidden);
        assert_eq!(
            retain_policy(&[&keep, &guardrail("silent", json!({}))]),
            RetainPolicy::WithoutTrust
        );
        let retained = binding(json!({"serviceAccounts": ["a"], "deletionPolicy": "Retain"}));
        let v = violations(&forbid, &retained);
        assert!(v[0].contains("spec.deletionPolicy"), "{v:?}");
        assert!(violations(&keep, &retained).is_empty());
    }

    #[test]
    fn the_required_boundary_is_set_on_roles_that_name_none() {
        let g = guardrail(
            "g",
            json!({"requiredPermissionsBoundary": "arn:aws:iam::111122223333:policy/hatrack-boundary"}),
        );
        let mut d = crate::role::desired_role(
            &binding(json!({"serviceAccounts": ["x"]})),
            &Settings::example(),
        )
        .unwrap();
        enforce_boundary(&mut d, &[&g]);
        assert_eq!(
            d.role.permissions_boundary.as_deref(),
            Some("arn:aws:iam::111122223333:policy/hatrack-boundary")
        );
    }
}
