//! What the controller does about a binding under guardrails: revoke or report, what a
//! retained role keeps, the boundary it sets.

use kube_core::ResourceExt;

use super::Violation;
use crate::crd::{Enforcement, IAMGuardrail, RetainPolicy};
use crate::role::DesiredRole;

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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::*;
    use super::*;
    use crate::settings::Settings;

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
