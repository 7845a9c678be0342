//! The one judge of an IAMRoleBinding: from the binding, the cluster settings and what surrounds
//! it (guardrails, namespace labels, IAMAccounts, the namespace's ServiceAccount claims, the
//! managed policies' documents where known) to one [`Judgement`]: the role it gets, or every
//! reason it cannot, each with the status reason the controller reports.
//!
//! The controller (before any IAM write), the binding webhook, `hatrack plan` and `hatrack
//! check` all call [`judge`]; they differ only in what they know (the webhook and the offline
//! commands never read IAM) and in how they report. Pure: no client, no I/O.
//!
//! ServiceAccount conflicts follow one rule, written in [`crate::claims`]: the oldest live
//! claimant holds the ServiceAccount.

use std::collections::BTreeMap;

use kube_core::ResourceExt;

use crate::account::{self as accounts, AccountRefusal};
use crate::claims::{Age, ClaimIndex, Conflict};
use crate::crd::{IAMAccount, IAMGuardrail, IAMRoleBinding};
use crate::guardrail::{self, ManagedPolicyDocument, Violation};
use crate::policy::wildcard;
use crate::role::{self, DesiredRole, SpecError};
use crate::settings::Settings;

/// The Ready reasons of a binding the judge refuses.
pub mod reason {
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const SERVICE_ACCOUNT_CONFLICT: &str = "ServiceAccountConflict";
    pub const GUARDRAIL_VIOLATION: &str = "GuardrailViolation";
    /// `spec.account` names an IAMAccount that is missing or invalid.
    pub const ACCOUNT_UNAVAILABLE: &str = "AccountUnavailable";
    /// `spec.account` names an IAMAccount that does not select the binding's namespace.
    pub const ACCOUNT_NOT_ALLOWED: &str = "AccountNotAllowed";
    /// What the binding asks for cannot be made in the account it names.
    pub const ACCOUNT_UNSUPPORTED: &str = "AccountUnsupported";
    /// No guardrail allows adopting the role `spec.adoptRole` names.
    pub const ADOPTION_NOT_ALLOWED: &str = "AdoptionNotAllowed";
}

/// What surrounds the binding being judged.
#[derive(Debug, Clone, Copy)]
pub struct Surroundings<'a, 'c> {
    /// Every guardrail known; the judge picks those whose selector matches the namespace.
    pub guardrails: &'a [&'a IAMGuardrail],
    /// Labels of the binding's namespace (empty when unknown).
    pub namespace_labels: &'a BTreeMap<String, String>,
    /// Every IAMAccount known (for `spec.account`).
    pub accounts: &'a [&'a IAMAccount],
    /// The live bindings' ServiceAccount claims (the binding itself may or may not be in it).
    pub claims: &'c ClaimIndex,
    /// The binding's age for the conflict rule: [`Age::of`] in the controller, [`Age::Newest`]
    /// at admission, the input position offline.
    pub age: Age,
    /// The documents of the binding's managed policies, when read from IAM (controller only).
    pub managed_policies: Option<&'c [ManagedPolicyDocument]>,
}

/// One reason a binding cannot have its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// `spec.account` cannot be used here.
    Account(AccountRefusal),
    /// The spec cannot become a valid role.
    Spec(SpecError),
    /// An applicable guardrail forbids it.
    Guardrail(Violation),
    /// An older binding holds one of its ServiceAccounts.
    Conflict(Conflict),
    /// `spec.adoptRole` names a role no guardrail lets it adopt.
    Adoption(String),
}

impl Problem {
    /// The Ready reason the controller reports.
    pub fn reason(&self) -> &'static str {
        match self {
            Problem::Account(r) => r.reason(),
            Problem::Spec(_) => reason::INVALID_SPEC,
            Problem::Guardrail(_) => reason::GUARDRAIL_VIOLATION,
            Problem::Conflict(_) => reason::SERVICE_ACCOUNT_CONFLICT,
            Problem::Adoption(_) => reason::ADOPTION_NOT_ALLOWED,
        }
    }

    /// The field of the binding it concerns.
    pub fn field(&self) -> &str {
        match self {
            Problem::Account(_) => "spec.account",
            Problem::Spec(e) => &e.field,
            Problem::Guardrail(v) => &v.field,
            Problem::Conflict(_) => "spec.serviceAccounts",
            Problem::Adoption(_) => "spec.adoptRole",
        }
    }

    /// The guardrail broken, for a guardrail violation.
    pub fn guardrail(&self) -> Option<&str> {
        match self {
            Problem::Guardrail(v) => Some(&v.guardrail),
            _ => None,
        }
    }

    /// What is wrong, without the field and guardrail.
    pub fn message(&self) -> String {
        let full = match self {
            Problem::Account(r) => r.to_string(),
            Problem::Spec(e) => return e.message.clone(),
            Problem::Guardrail(v) => return v.message.clone(),
            Problem::Conflict(c) => format!(
                "ServiceAccount {:?} is already bound by IAMRoleBinding {:?} in this namespace; a ServiceAccount can wear one role",
                c.service_account, c.holder
            ),
            Problem::Adoption(m) => m.clone(),
        };
        let prefix = format!("{}: ", self.field());
        full.strip_prefix(&prefix)
            .map(str::to_string)
            .unwrap_or(full)
    }
}

impl std::fmt::Display for Problem {
    /// `IAMGuardrail g: field: message` for violations, `field: message` otherwise.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Guardrail(v) => v.fmt(f),
            other => write!(f, "{}: {}", other.field(), other.message()),
        }
    }
}

/// What the judge decided about one binding.
#[derive(Debug, Clone)]
pub struct Judgement<'a> {
    /// The role, with the boundary the guardrails require (present whenever the spec can be a
    /// role, even when another problem keeps it from being made: status names it).
    pub desired: Option<DesiredRole>,
    /// Every reason the binding cannot have its role, in the order the controller reports
    /// them: account, spec, guardrails, ServiceAccount conflicts, adoption.
    pub problems: Vec<Problem>,
    /// The guardrails that apply to the binding's namespace.
    pub applicable: Vec<&'a IAMGuardrail>,
    /// The IAMAccount the role lives in (`None`: the controller's own account).
    pub account: Option<&'a IAMAccount>,
    /// The settings the role is built with (the account's id for a role elsewhere).
    pub settings: Settings,
    /// Set when a guardrail's action rules need the managed policies' documents and they were
    /// not given: what was left unchecked (a warning for components that cannot read IAM).
    pub unchecked: Option<String>,
}

impl Judgement<'_> {
    /// The role, when nothing stands in its way.
    pub fn role(&self) -> Result<&DesiredRole, &[Problem]> {
        match &self.desired {
            Some(d) if self.problems.is_empty() => Ok(d),
            _ => Err(&self.problems),
        }
    }

    /// The problems of the first kind found (the controller reports one reason at a time), with
    /// their reason.
    pub fn first_reason(&self) -> Option<(&'static str, Vec<&Problem>)> {
        let reason = self.problems.first()?.reason();
        Some((
            reason,
            self.problems
                .iter()
                .filter(|p| p.reason() == reason)
                .collect(),
        ))
    }

    /// Whether the controller should read the managed policies' documents and judge again:
    /// only when they are the one thing left unchecked.
    pub fn needs_managed_documents(&self) -> bool {
        self.unchecked.is_some()
            && !self.problems.iter().any(|p| {
                matches!(
                    p,
                    Problem::Account(_) | Problem::Spec(_) | Problem::Guardrail(_)
                )
            })
    }
}

/// Judges `binding` in its surroundings. Every problem is reported, not only the first.
pub fn judge<'a>(
    binding: &IAMRoleBinding,
    settings: &Settings,
    around: &Surroundings<'a, '_>,
) -> Judgement<'a> {
    let mut problems = Vec::new();
    let account = match accounts::resolve(
        binding,
        around.accounts.iter().copied(),
        around.namespace_labels,
        false,
    ) {
        Ok(a) => a,
        Err(refusal) => {
            problems.push(Problem::Account(refusal));
            None
        }
    };
    let settings = accounts::settings_in(settings, account);
    let applicable =
        guardrail::applicable(around.guardrails.iter().copied(), around.namespace_labels);

    let mut desired = match role::desired_role(binding, &settings) {
        Ok(d) => Some(d),
        Err(errors) => {
            problems.extend(errors.into_iter().map(Problem::Spec));
            None
        }
    };

    let in_namespace = around.claims.live_with(binding);
    let violations = guardrail::check(binding, &settings, &applicable, in_namespace);
    let mut unchecked = None;
    if violations.is_empty() {
        // Managed policies' contents are judged only when the spec itself passes (the
        // controller reads them from IAM only then).
        match around.managed_policies {
            Some(docs) => problems.extend(
                guardrail::check_managed(binding, &settings, &applicable, docs)
                    .into_iter()
                    .map(Problem::Guardrail),
            ),
            None => unchecked = guardrail::managed_policies_unchecked(binding, &applicable),
        }
    }
    problems.extend(violations.into_iter().map(Problem::Guardrail));

    problems.extend(
        around
            .claims
            .conflicts(binding, around.age)
            .into_iter()
            .map(Problem::Conflict),
    );

    // The role's path is not known before IAM is read: path patterns are checked again by the
    // controller when it reads the role (its decide step, `controller::decide::plan`).
    if let Some(role) = binding.spec.adopt_role.as_deref()
        && let Err(message) = adoption_allowed(&applicable, role, None)
    {
        problems.push(Problem::Adoption(message));
    }

    if let Some(d) = desired.as_mut() {
        guardrail::enforce_boundary(d, &applicable);
    }
    Judgement {
        desired,
        problems,
        applicable,
        account,
        settings,
        unchecked,
    }
}

/// Whether `pattern` admits the role: `/…` patterns see path and name, others the name.
/// `path` unknown (before IAM is read): a path pattern may match.
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
pub fn adoption_allowed(
    applicable: &[&IAMGuardrail],
    name: &str,
    path: Option<&str>,
) -> Result<(), String> {
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
        assert!(adoption_allowed(&[], "legacy", Some("/")).is_err());
        let g = guardrail("plain", None);
        assert!(adoption_allowed(&[&g], "legacy", Some("/")).is_err());
        let none = guardrail("none", Some(vec![]));
        assert!(adoption_allowed(&[&none], "legacy", Some("/")).is_err());
    }

    #[test]
    fn name_and_path_patterns_allow_what_they_match() {
        let g = guardrail("g", Some(vec!["payments-*", "/legacy/*"]));
        assert!(adoption_allowed(&[&g], "payments-reader", Some("/")).is_ok());
        assert!(adoption_allowed(&[&g], "anything", Some("/legacy/")).is_ok());
        assert!(adoption_allowed(&[&g], "anything", Some("/")).is_err());
        assert!(
            adoption_allowed(&[&g], "Payments-reader", Some("/")).is_err(),
            "case-sensitive"
        );
        // Before IAM is read (admission), a path pattern may still match.
        assert!(adoption_allowed(&[&g], "anything", None).is_ok());
    }

    #[test]
    fn every_guardrail_that_lists_adoptable_roles_must_allow_the_role() {
        let wide = guardrail("wide", Some(vec!["*"]));
        let narrow = guardrail("narrow", Some(vec!["payments-*"]));
        let silent = guardrail("silent", None);
        assert!(adoption_allowed(&[&wide, &silent], "admin", Some("/")).is_ok());
        let err = adoption_allowed(&[&wide, &narrow], "admin", Some("/")).unwrap_err();
        assert!(err.contains("IAMGuardrail narrow"), "{err}");
    }
}
