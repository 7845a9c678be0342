//! Checking a binding against the guardrails that apply: managed policies, inline policies
//! (the action rules, in `actions`), retention, boundary, session length, bindings per
//! namespace and trust mechanisms.

use kube_core::ResourceExt;

use super::Violation;
use super::actions::ActionRules;
use crate::crd::{DeletionPolicy, IAMGuardrail, IAMRoleBinding, RetainPolicy, TrustMechanism};
use crate::policy::wildcard;
use crate::role::DEFAULT_MAX_SESSION_SECONDS;
use crate::settings::Settings;

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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::*;
    use super::*;

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
}
