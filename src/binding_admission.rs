//! Admission of IAMRoleBindings: the judge ([`crate::judge`]) with what the webhook's watch
//! caches know, as a pure function.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::account::AccountRefusal;
use crate::claims::{Age, ClaimIndex};
use crate::crd::{IAMAccount, IAMGuardrail, IAMRoleBinding};
use crate::judge::{self, Problem, Surroundings};
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

/// What admission decides about one binding.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Admission {
    /// Every reason to deny it (empty: admitted).
    pub problems: Vec<String>,
    /// What could not be checked here (a warning for the user): the contents of managed
    /// policies an applicable guardrail's action rules need, which only the controller reads.
    pub unchecked: Option<String>,
}

/// The judge's decision on a CREATE or UPDATE of `binding` ([`crate::judge::judge`]), as the
/// newest claimant of its ServiceAccounts (see [`crate::claims`]). An UPDATE that leaves the
/// spec as it was (finalizer removal, labels, a binding being deleted) is always admitted, so
/// a guardrail added later can never wedge deletion or the controller's own writes. An
/// IAMAccount not known (yet) is left to the controller, which reports it: GitOps may apply
/// the binding before the IAMAccount.
pub fn admit(
    binding: &IAMRoleBinding,
    old: Option<&IAMRoleBinding>,
    settings: &Settings,
    ctx: &BindingContext,
) -> Admission {
    if let Some(old) = old
        && (old.spec == binding.spec || binding.metadata.deletion_timestamp.is_some())
    {
        return Admission::default();
    }
    let mut claims = ClaimIndex::default();
    for other in &ctx.others_in_namespace {
        claims.upsert(other);
    }
    let guardrails: Vec<&IAMGuardrail> = ctx.guardrails.iter().map(Arc::as_ref).collect();
    let accounts: Vec<&IAMAccount> = ctx.accounts.iter().map(Arc::as_ref).collect();
    let judgement = judge::judge(
        binding,
        settings,
        &Surroundings {
            guardrails: &guardrails,
            namespace_labels: &ctx.namespace_labels,
            accounts: &accounts,
            claims: &claims,
            age: Age::Newest,
            managed_policies: None,
        },
    );
    Admission {
        problems: judgement
            .problems
            .iter()
            .filter(|p| !matches!(p, Problem::Account(AccountRefusal::NotFound(_))))
            .map(ToString::to_string)
            .collect(),
        unchecked: judgement.unchecked,
    }
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
            .problems
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
        let problems = admit(&b, None, &Settings::example(), &ctx)
            .problems
            .join("\n");
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
        let problems = admit(&b, None, &Settings::example(), &ctx)
            .problems
            .join("\n");
        assert!(
            problems.contains("does not select namespace \"ns\""),
            "{problems}"
        );
        ctx.namespace_labels = BTreeMap::from([("team".into(), "data".into())]);
        assert!(
            admit(&b, None, &Settings::example(), &ctx)
                .problems
                .is_empty()
        );
        let unknown = binding("u", json!({"serviceAccounts": ["web"], "account": "later"}));
        assert!(
            admit(&unknown, None, &Settings::example(), &ctx)
                .problems
                .is_empty()
        );
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
        assert!(
            admit(&new, Some(&old), &Settings::example(), &ctx)
                .problems
                .is_empty()
        );
        new.spec.description = Some("changed".into());
        assert!(
            !admit(&new, Some(&old), &Settings::example(), &ctx)
                .problems
                .is_empty()
        );
    }
}
