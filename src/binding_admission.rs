//! Admission of IAMRoleBindings: spec validation, guardrails and ServiceAccount claims, as a
//! pure function the webhook calls with what its watch caches know.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::ResourceExt;

use crate::controller::accounts::{self, AccountRefusal};
use crate::crd::{IAMAccount, IAMGuardrail, IAMRoleBinding};
use crate::guardrail;
use crate::role;
use crate::settings::Settings;

/// What the caches know around one binding. The objects are shared with the caches (`Arc`),
/// so building a context per admission request copies pointers, not guardrails and bindings.
#[derive(Debug, Default, Clone)]
pub struct BindingContext {
    pub guardrails: Vec<Arc<IAMGuardrail>>,
    /// Labels of the binding's namespace (empty when unknown).
    pub namespace_labels: BTreeMap<String, String>,
    /// The other bindings of the binding's namespace.
    pub others_in_namespace: Vec<Arc<IAMRoleBinding>>,
    /// IAMAccounts (for `spec.account`).
    pub accounts: Vec<Arc<IAMAccount>>,
}

/// What admission could not check about an admitted binding (a warning for the user): the
/// contents of managed policies an applicable guardrail's action rules need, which only the
/// controller reads from IAM.
pub fn unchecked(binding: &IAMRoleBinding, ctx: &BindingContext) -> Option<String> {
    let applicable = guardrail::applicable_in(
        ctx.guardrails.iter().map(Arc::as_ref),
        &ctx.namespace_labels,
    );
    guardrail::managed_policies_unchecked(binding, &applicable)
}

/// Every reason to deny a CREATE or UPDATE of `binding`. An UPDATE that leaves the spec as it
/// was (finalizer removal, labels, a binding being deleted) is always admitted, so a guardrail
/// added later can never wedge deletion or the controller's own writes.
pub fn admit(
    binding: &IAMRoleBinding,
    old: Option<&IAMRoleBinding>,
    settings: &Settings,
    ctx: &BindingContext,
) -> Vec<String> {
    if let Some(old) = old
        && (old.spec == binding.spec || binding.metadata.deletion_timestamp.is_some())
    {
        return Vec::new();
    }
    let mut problems: Vec<String> = match role::desired_role(binding, settings) {
        Ok(_) => Vec::new(),
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    };
    let name = binding.name_any();
    let others: Vec<&IAMRoleBinding> = ctx
        .others_in_namespace
        .iter()
        .map(Arc::as_ref)
        .filter(|b| b.name_any() != name && b.metadata.deletion_timestamp.is_none())
        .collect();
    for sa in &binding.spec.service_accounts {
        if let Some(other) = others.iter().find(|b| b.spec.service_accounts.contains(sa)) {
            problems.push(format!(
                "spec.serviceAccounts: ServiceAccount {sa:?} is already bound by IAMRoleBinding {:?}; a ServiceAccount can wear one role",
                other.name_any()
            ));
        }
    }
    // An account its IAMAccount does not allow this namespace, or cannot serve: refused. One not
    // known (yet) is left to the controller, which reports it: GitOps may apply the binding
    // before the IAMAccount.
    match accounts::resolve(
        binding,
        settings,
        ctx.accounts.iter().map(Arc::as_ref),
        &ctx.namespace_labels,
        false,
    ) {
        Ok(_) | Err(AccountRefusal::NotFound(_)) => {}
        Err(refusal) => problems.push(refusal.to_string()),
    }
    let applicable = guardrail::applicable_in(
        ctx.guardrails.iter().map(Arc::as_ref),
        &ctx.namespace_labels,
    );
    // Adoption needs a guardrail's allowance; the role's path is not known here, so only the
    // controller judges path patterns.
    if let Some(role) = binding.spec.adopt_role.as_deref()
        && let Err(message) = crate::controller::adoption::allowed(&applicable, role, None)
    {
        problems.push(message);
    }
    let count = others.len() + 1;
    problems.extend(
        guardrail::check(binding, settings, &applicable, count)
            .iter()
            .map(ToString::to_string),
    );
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn binding(name: &str, spec: Value) -> IAMRoleBinding {
        serde_json::from_value(json!({"apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding", "metadata": {"name": name, "namespace": "ns"}, "spec": spec})).unwrap()
    }

    fn guardrail(spec: Value) -> IAMGuardrail {
        serde_json::from_value(json!({"apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMGuardrail", "metadata": {"name": "g"}, "spec": spec})).unwrap()
    }

    #[test]
    fn admits_a_valid_binding() {
        assert!(
            admit(
                &binding("a", json!({"serviceAccounts": ["api"]})),
                None,
                &Settings::example(),
                &BindingContext::default()
            )
            .is_empty()
        );
    }

    #[test]
    fn denies_invalid_specs_claimed_service_accounts_and_guardrail_violations() {
        let ctx = BindingContext {
            guardrails: vec![Arc::new(guardrail(
                json!({"deniedActions": ["iam:*"], "maxBindingsPerNamespace": 1}),
            ))],
            namespace_labels: BTreeMap::new(),
            others_in_namespace: vec![Arc::new(binding(
                "first",
                json!({"serviceAccounts": ["api"]}),
            ))],
            ..Default::default()
        };
        let b = binding(
            "second",
            json!({"serviceAccounts": ["api"], "maxSessionDuration": 60, "inlinePolicies": {"p": {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}}}}),
        );
        let problems = admit(&b, None, &Settings::example(), &ctx).join("\n");
        assert!(problems.contains("spec.maxSessionDuration"), "{problems}");
        assert!(
            problems.contains(r#"ServiceAccount "api" is already bound by IAMRoleBinding "first""#),
            "{problems}"
        );
        assert!(
            problems.contains("IAMGuardrail g: spec.inlinePolicies.p.Statement[0].Action[0]"),
            "{problems}"
        );
        assert!(problems.contains("at most 1 are allowed"), "{problems}");
    }

    #[test]
    fn an_account_that_does_not_select_the_namespace_is_refused_an_unknown_one_is_not() {
        let account: IAMAccount = serde_json::from_value(json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMAccount",
            "metadata": {"name": "data"},
            "spec": {"accountId": "222222222222",
                     "assumeRole": {"roleArn": "arn:aws:iam::222222222222:role/hatrack"},
                     "namespaceSelector": {"matchLabels": {"team": "data"}}}
        }))
        .unwrap();
        let mut ctx = BindingContext {
            accounts: vec![Arc::new(account)],
            ..Default::default()
        };
        let b = binding("b", json!({"serviceAccounts": ["api"], "account": "data"}));
        let problems = admit(&b, None, &Settings::example(), &ctx).join("\n");
        assert!(
            problems.contains("does not select namespace \"ns\""),
            "{problems}"
        );
        ctx.namespace_labels = BTreeMap::from([("team".into(), "data".into())]);
        assert!(admit(&b, None, &Settings::example(), &ctx).is_empty());
        let unknown = binding("u", json!({"serviceAccounts": ["web"], "account": "later"}));
        assert!(admit(&unknown, None, &Settings::example(), &ctx).is_empty());
    }

    #[test]
    fn updates_that_keep_the_spec_are_always_admitted() {
        let ctx = BindingContext {
            guardrails: vec![Arc::new(guardrail(json!({"allowedManagedPolicyArns": []})))],
            ..Default::default()
        };
        let old = binding(
            "a",
            json!({"serviceAccounts": ["api"], "managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}),
        );
        let mut new = old.clone();
        new.metadata.finalizers = Some(vec![]);
        assert!(admit(&new, Some(&old), &Settings::example(), &ctx).is_empty());
        new.spec.description = Some("changed".into());
        assert!(!admit(&new, Some(&old), &Settings::example(), &ctx).is_empty());
    }
}
