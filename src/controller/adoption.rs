//! Adoption: a binding takes over an existing IAM role by name (`spec.adoptRole`), e.g. one
//! made by Terraform, where an IAMGuardrail allows it (`adoptableRoles`; nothing by default:
//! adopting a powerful role is an escalation). The role is tagged as the binding's (one
//! TagRole), then synced like any role hatrack owns: trust, policies, description, tags.
//!
//! Whether a role may be adopted is the judge's ([`crate::judge::adoption_allowed`]);
//! [`prepare`] is the IAM edge, which checks path patterns again once it knows the path.

use std::collections::BTreeMap;

use crate::crd::{IAMGuardrail, IAMRoleBinding};
use crate::iam::{Iam, IamError};
use crate::naming;
use crate::role::DesiredRole;
use crate::sync::Owner;

/// Tag marking a role hatrack adopted rather than made.
pub const TAG_ADOPTED: &str = "hatrack.dev/adopted";

/// Why an adoption does not go ahead (a Ready reason and message; nothing was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

pub use crate::judge::reason::ADOPTION_NOT_ALLOWED;
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
    if let Err(message) = crate::judge::adoption_allowed(applicable, name, Some(&path)) {
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
