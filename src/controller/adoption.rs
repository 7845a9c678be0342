//! Adoption: a binding takes over an existing IAM role by name (`spec.adoptRole`), e.g. one
//! made by Terraform, where an IAMGuardrail allows it (`adoptableRoles`; nothing by default:
//! adopting a powerful role is an escalation). The role is tagged as the binding's (one
//! TagRole), then synced like any role hatrack owns: trust, policies, description, tags.
//!
//! Whether a role may be adopted is pure ([`allowed`]); [`prepare`] is the IAM edge.

use std::collections::BTreeMap;

use kube::ResourceExt;

use crate::crd::{IAMGuardrail, IAMRoleBinding};
use crate::iam::{Iam, IamError};
use crate::naming;
use crate::policy::wildcard;
use crate::role::DesiredRole;
use crate::sync::Owner;

/// Tag marking a role hatrack adopted rather than made.
pub const TAG_ADOPTED: &str = "hatrack.dev/adopted";

/// Whether `pattern` admits the role: `/…` patterns see path and name, others the name.
/// `path` unknown (admission, before IAM is read): a path pattern may match.
fn pattern_admits(pattern: &str, name: &str, path: Option<&str>) -> bool {
    if pattern.starts_with('/') {
        path.is_none_or(|p| wildcard::matches(pattern, &format!("{p}{name}"), false))
    } else {
        wildcard::matches(pattern, name, false)
    }
}

/// Whether the applicable guardrails allow adopting role `name` at `path` (`None`: not known
/// yet, so path patterns are given the benefit of the doubt). Some guardrail must allow it,
/// and every guardrail that lists adoptable roles must list this one.
pub fn allowed(applicable: &[&IAMGuardrail], name: &str, path: Option<&str>) -> Result<(), String> {
    let mut allowances = applicable
        .iter()
        .filter_map(|g| g.spec.adoptable_roles.as_ref().map(|p| (g.name_any(), p)))
        .peekable();
    if allowances.peek().is_none() {
        return Err(format!(
            "spec.adoptRole: adopting role {name:?} is not allowed: no IAMGuardrail for this namespace allows adoption (adoptableRoles)"
        ));
    }
    for (guardrail, patterns) in allowances {
        if !patterns.iter().any(|p| pattern_admits(p, name, path)) {
            return Err(format!(
                "spec.adoptRole: IAMGuardrail {guardrail} does not allow adopting role {}{name:?} (adoptableRoles: {})",
                path.unwrap_or(""),
                if patterns.is_empty() {
                    "none".to_string()
                } else {
                    patterns.join(", ")
                }
            ));
        }
    }
    Ok(())
}

/// Why an adoption does not go ahead (a Ready reason and message; nothing was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

/// Ready reason: no guardrail allows adopting the role.
pub const ADOPTION_NOT_ALLOWED: &str = "AdoptionNotAllowed";
/// Ready reason: the role to adopt does not exist.
pub const ADOPTED_ROLE_MISSING: &str = "AdoptedRoleMissing";

/// Points `desired` at the existing role `name` (its name, path and ARN, and the adopted tag)
/// and, when the guardrails allow it and the role is not another owner's, tags it as this
/// binding's so that the usual sync takes it over. A role already owned by this binding needs
/// no write.
pub async fn prepare(
    iam: &Iam,
    binding: &IAMRoleBinding,
    desired: &mut DesiredRole,
    owner: &Owner,
    applicable: &[&IAMGuardrail],
) -> Result<Result<(), Refusal>, IamError> {
    let Some(name) = binding.spec.adopt_role.as_deref() else {
        return Ok(Ok(()));
    };
    let Some((path, arn, tags)) = iam.role_identity(name).await? else {
        return Ok(Err(Refusal {
            reason: ADOPTED_ROLE_MISSING,
            message: format!(
                "spec.adoptRole: IAM role {name:?} does not exist in account {}; adoption takes over an existing role, it makes none",
                desired.role.arn.split(':').nth(4).unwrap_or("?")
            ),
        }));
    };
    if let Err(message) = allowed(applicable, name, Some(&path)) {
        return Ok(Err(Refusal {
            reason: ADOPTION_NOT_ALLOWED,
            message,
        }));
    }
    desired.role.role_name = name.to_string();
    desired.role.path = path;
    desired.role.arn = arn;
    desired
        .role
        .tags
        .insert(TAG_ADOPTED.to_string(), "true".to_string());
    let ours = naming::is_owned_by(&tags, &owner.cluster, &owner.namespace, &owner.name);
    // Tagged by hatrack for someone else: never taken (sync reports RoleNotOwned).
    let someone_elses = tags
        .keys()
        .any(|k| k.to_ascii_lowercase().starts_with(naming::TAG_PREFIX));
    if !ours && !someone_elses {
        let mut mark: BTreeMap<String, String> =
            naming::ownership_tags(&owner.cluster, &owner.namespace, &owner.name);
        mark.insert(TAG_ADOPTED.to_string(), "true".to_string());
        iam.tag_role(name, &mark).await?;
        tracing::info!(role = %name, "adopted IAM role: tagged as this binding's");
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn guardrail(name: &str, adoptable: Option<Vec<&str>>) -> IAMGuardrail {
        let mut spec = json!({});
        if let Some(a) = adoptable {
            spec["adoptableRoles"] = json!(a);
        }
        serde_json::from_value(json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMGuardrail",
            "metadata": {"name": name}, "spec": spec
        }))
        .unwrap()
    }

    #[test]
    fn nothing_is_adoptable_by_default() {
        assert!(allowed(&[], "legacy", Some("/")).is_err());
        let g = guardrail("plain", None);
        assert!(allowed(&[&g], "legacy", Some("/")).is_err());
        let none = guardrail("none", Some(vec![]));
        assert!(allowed(&[&none], "legacy", Some("/")).is_err());
    }

    #[test]
    fn name_and_path_patterns_allow_what_they_match() {
        let g = guardrail("g", Some(vec!["payments-*", "/legacy/*"]));
        assert!(allowed(&[&g], "payments-reader", Some("/")).is_ok());
        assert!(allowed(&[&g], "anything", Some("/legacy/")).is_ok());
        assert!(allowed(&[&g], "anything", Some("/")).is_err());
        assert!(
            allowed(&[&g], "Payments-reader", Some("/")).is_err(),
            "case-sensitive"
        );
        // Before IAM is read (admission), a path pattern may still match.
        assert!(allowed(&[&g], "anything", None).is_ok());
    }

    #[test]
    fn every_guardrail_that_lists_adoptable_roles_must_allow_the_role() {
        let wide = guardrail("wide", Some(vec!["*"]));
        let narrow = guardrail("narrow", Some(vec!["payments-*"]));
        let silent = guardrail("silent", None);
        assert!(allowed(&[&wide, &silent], "admin", Some("/")).is_ok());
        let err = allowed(&[&wide, &narrow], "admin", Some("/")).unwrap_err();
        assert!(err.contains("IAMGuardrail narrow"), "{err}");
    }
}
