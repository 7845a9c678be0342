//! Guardrails: what a namespace may grant through its IAMRoleBindings. One pure
//! implementation, called by the admission webhook, the controller (before any IAM write) and
//! the offline commands.
//!
//! Split by job: which guardrails apply (`select`), checking a binding against them (`check`,
//! with the action rules in `actions` and managed policies' documents in `managed`), what the
//! controller does about it (`enforce`), and what is wrong with a guardrail itself (`problems`).

mod actions;
mod check;
mod enforce;
mod managed;
mod problems;
mod select;

pub use check::{check, trust_mechanisms};
pub use enforce::{enforce_boundary, enforcement, retain_policy};
pub use managed::{
    ManagedPolicyDocument, check_managed, managed_policies_unchecked, needs_managed_documents,
};
pub use problems::guardrail_problems;
pub use select::{applicable, selector_matches};

/// One way a binding breaks a guardrail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("IAMGuardrail {guardrail}: {field}: {message}")]
pub struct Violation {
    pub guardrail: String,
    /// Where in the binding, e.g. `spec.inlinePolicies.admin.Statement[0].Action[1]`.
    pub field: String,
    pub message: String,
}

/// Fixtures shared by the submodules' tests.
#[cfg(test)]
mod testing {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};

    use super::check;
    use crate::crd::{IAMGuardrail, IAMRoleBinding};
    use crate::settings::Settings;

    pub(super) fn guardrail(name: &str, spec: Value) -> IAMGuardrail {
        serde_json::from_value(json!({"apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMGuardrail", "metadata": {"name": name}, "spec": spec})).unwrap()
    }

    pub(super) fn binding(spec: Value) -> IAMRoleBinding {
        serde_json::from_value(json!({"apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding", "metadata": {"name": "b", "namespace": "ns"}, "spec": spec})).unwrap()
    }

    pub(super) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub(super) fn violations(g: &IAMGuardrail, b: &IAMRoleBinding) -> Vec<String> {
        check(b, &Settings::example(), &[g], 1)
            .iter()
            .map(|v| v.to_string())
            .collect()
    }

    pub(super) fn inline(actions: Value) -> Value {
        json!({"serviceAccounts": ["api"], "inlinePolicies": {"p": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}}})
    }
}
