//! Managed policies' documents against the action rules: whether they need reading, the
//! check of what the controller read, and what a component that cannot read IAM says.

use kube_core::ResourceExt;
use serde_json::Value;

use super::Violation;
use super::actions::ActionRules;
use crate::crd::{IAMGuardrail, IAMRoleBinding};
use crate::settings::Settings;

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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::*;
    use super::*;

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
}
