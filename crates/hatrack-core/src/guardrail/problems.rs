//! What is wrong with a guardrail itself, for its status.

use crate::crd::IAMGuardrail;

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
    arn_pattern_problems(
        "allowedManagedPolicyArns",
        &g.spec.allowed_managed_policy_arns,
        &mut out,
    );
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
    arn_pattern_problems(
        "deniedManagedPolicyArns",
        &g.spec.denied_managed_policy_arns,
        &mut out,
    );
    if let Some(b) = &g.spec.required_permissions_boundary
        && let Err(m) = crate::validate::policy_arn(b)
    {
        out.push(format!("spec.requiredPermissionsBoundary: {m}"));
    }
    out
}

/// Entries of a list of managed policy ARN patterns that are not ARN patterns.
fn arn_pattern_problems(field: &str, patterns: &Option<Vec<String>>, out: &mut Vec<String>) {
    for (i, p) in patterns.iter().flatten().enumerate() {
        if !p.starts_with("arn:") && p != "*" {
            out.push(format!(
                "spec.{field}[{i}]: {p:?} is not an ARN pattern (arn:...)"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::*;
    use super::*;

    #[test]
    fn malformed_guardrails_are_reported() {
        let g = guardrail(
            "bad",
            json!({
                "namespaceSelector": {"matchExpressions": [{"key": "tier", "operator": "In"}]},
                "allowedManagedPolicyArns": ["ReadOnlyAccess"],
                "deniedActions": ["iam"],
                "deniedManagedPolicyArns": ["AdministratorAccess"],
                "requiredPermissionsBoundary": "arn:aws:s3:::bucket"
            }),
        );
        let p = guardrail_problems(&g).join("\n");
        for field in [
            "matchExpressions[0]",
            "allowedManagedPolicyArns[0]",
            "deniedActions[0]",
            "deniedManagedPolicyArns[0]",
            "requiredPermissionsBoundary",
        ] {
            assert!(p.contains(field), "{field} missing in {p}");
        }
        assert!(guardrail_problems(&guardrail("ok", json!({"deniedActions": ["iam:*"], "allowedManagedPolicyArns": ["arn:aws:iam::aws:policy/*"]}))).is_empty());
    }
}
