//! The decide step of a reconcile: from the judgement and what gather read (the OIDC
//! provider, the role as IAM has it, the namespace's ServiceAccounts) to one [`Plan`], every
//! write the reconcile will make to the binding's role and ServiceAccounts, or the refusal it
//! reports instead. Pure: the branches are table tests, without IAM or an API server.
//!
//! Pod Identity associations (and, for a role in another account, the chaining role and the
//! external ids in the target's trust) are the one part decided by its own edge: their writes
//! depend on ids only EKS hands out (see [`crate::association`]).

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Annotation, Next, Requeue, annotation};
use crate::controller::status::reason::{
    ADOPTED_ROLE_MISSING, OIDC_PROVIDER_MISSING, ROLE_NOT_OWNED,
};
use crate::crd::{Enforcement, IAMRoleBinding};
use crate::guardrail::{self, Violation};
use crate::judge::{self, Judgement};
use crate::naming;
use crate::role::{ActualRole, Change, DesiredRole, Diff};
use crate::role_sync::{self, Owner, Writes};

/// Tag marking a role hatrack adopted rather than made.
pub const TAG_ADOPTED: &str = "hatrack.dev/adopted";

/// How soon a binding whose cluster lacks its OIDC provider is looked at again.
pub const OIDC_PROVIDER_RETRY: Duration = Duration::from_secs(300);

/// What gather read for the decision. A field is filled only when [`reads`] asked for it.
#[derive(Debug, Clone, Default)]
pub struct Read {
    /// The cluster's OIDC provider ARN and whether IAM has it (IRSA only).
    pub oidc_provider: Option<(String, bool)>,
    /// The role under the name the binding's role goes by (the name `spec.adoptRole` gives,
    /// when adopting), as IAM has it (`None`: no such role).
    pub role: Option<ActualRole>,
    /// The role under this cluster's own name, read when the role under the name in use is
    /// someone else's ([`needs_own_name_read`]): outer `None` when not read.
    pub own_name_role: Option<Option<ActualRole>>,
    /// The binding namespace's ServiceAccounts, with their role ARN annotation.
    pub service_accounts: Vec<(String, Option<String>)>,
}

/// What the decision needs read, known from the judgement alone (so nothing is read that no
/// branch uses: a refused binding reads nothing from IAM).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reads {
    /// The OIDC provider to look up (IRSA with a known provider).
    pub oidc_provider: Option<String>,
    /// The role to read (the adopted role's name when adopting).
    pub role: Option<String>,
    /// The namespace's ServiceAccounts (to annotate).
    pub service_accounts: bool,
    /// The role is to be made: the Pod Identity chaining edge runs first (it does nothing
    /// unless the role is in another account).
    pub chain: bool,
}

/// The reads a judgement needs, given what it means (`next`, [`super::after_judgement`]):
/// none when it refuses, the role only when a guardrail with teeth is violated, and everything
/// when the role is to be made.
pub fn reads(
    binding: &IAMRoleBinding,
    judgement: &Judgement<'_>,
    next: &Next,
    oidc_provider: Option<String>,
) -> Reads {
    let Some(desired) = &judgement.desired else {
        return Reads::default();
    };
    match next {
        Next::Refuse { .. } => Reads::default(),
        Next::Violated(violations) => Reads {
            role: (guardrail::enforcement(violations, &judgement.applicable)
                != Enforcement::Report)
                .then(|| desired.role.role_name.clone()),
            ..Reads::default()
        },
        Next::Proceed => Reads {
            oidc_provider: oidc_provider.filter(|_| desired.uses_irsa()),
            role: Some(
                binding
                    .spec
                    .adopt_role
                    .clone()
                    .unwrap_or_else(|| desired.role.role_name.clone()),
            ),
            service_accounts: true,
            chain: true,
        },
    }
}

/// What the reconcile does.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Report Ready=False; write nothing.
    Refuse(Refusal),
    /// A guardrail with teeth is violated: take the role's grants away.
    Revoke(Box<Revocation>),
    /// Make the role: these writes, then the associations' edge, then these annotations.
    Make(Box<Make>),
}

/// A refusal: the Ready reason and message, the role status names (if any), the requeue.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
    pub desired: Option<Box<DesiredRole>>,
    pub requeue: Requeue,
}

/// Taking a violating binding's grants away.
#[derive(Debug, Clone, PartialEq)]
pub struct Revocation {
    pub desired: DesiredRole,
    /// The writes (none when an earlier pass took everything).
    pub changes: Vec<Change>,
    /// Every violation, for status and the Event.
    pub violations: String,
    /// How many inline and managed policies go (for the metric).
    pub inline: usize,
    pub managed: usize,
}

/// Making the role.
#[derive(Debug, Clone, PartialEq)]
pub struct Make {
    /// The role as it is to be (an adopted role's name, path and ARN; this cluster's own name
    /// when the name in use is someone else's).
    pub desired: DesiredRole,
    /// Ownership tags to put on an adopted role first (TagRole), so the sync may take it.
    pub adopt_tags: Option<BTreeMap<String, String>>,
    /// The writes that bring the role to `desired`, in order.
    pub role_writes: Diff,
    /// The role ARN annotation of each ServiceAccount that needs a change.
    pub annotations: Vec<(String, Annotation)>,
}

impl Revocation {
    /// What each write takes away, in words.
    pub fn removed(&self) -> Vec<String> {
        self.changes
            .iter()
            .map(|change| match change {
                Change::DeleteRolePolicy(n) => format!("deleted inline policy {n}"),
                Change::DetachRolePolicy(a) => format!("detached managed policy {a}"),
                other => other.operation().to_string(),
            })
            .collect()
    }

    /// The binding's grants that stay off the role until it complies, in words. Taken from
    /// the desired role, not from what this pass removed, so every pass says the same thing:
    /// a later pass (or one that ran on a stale cache, before the first pass's status was
    /// seen) finds nothing left to remove but withholds the same grants.
    pub fn withheld(&self) -> String {
        let role = &self.desired.role;
        let grants: Vec<String> = (role.inline_policies.keys())
            .map(|n| format!("inline policy {n}"))
            .chain((role.managed_policy_arns.iter()).map(|a| format!("managed policy {a}")))
            .collect();
        if grants.is_empty() {
            "the binding grants no permission policies; none are attached until it complies".into()
        } else {
            format!("withheld until the binding complies: {}", grants.join(", "))
        }
    }
}

/// The writes that take every grant from a role: its inline policies deleted, its managed
/// policies detached. Trust, tags and boundary stay, so the grants can be put back.
pub fn revocation(actual: &ActualRole) -> Vec<Change> {
    let mut changes: Vec<Change> = actual
        .inline_policies
        .keys()
        .map(|n| Change::DeleteRolePolicy(n.clone()))
        .collect();
    changes.extend(
        actual
            .managed_policy_arns
            .iter()
            .map(|a| Change::DetachRolePolicy(a.clone())),
    );
    changes
}

/// Whether the role under this cluster's own name must be read too: the role under the name
/// in use (the one an earlier version named after the cluster's name alone) is someone else's
/// — claimed by a same-named cluster elsewhere — and this binding adopts nothing.
pub fn needs_own_name_read(
    binding: &IAMRoleBinding,
    desired: &DesiredRole,
    actual: Option<&ActualRole>,
    owner: &Owner,
    own_name: &str,
) -> bool {
    // Ownership is all `role_sync::writes` looks at before it refuses: no diff needed here.
    binding.spec.adopt_role.is_none()
        && desired.role.role_name != own_name
        && actual.is_some_and(|a| !owner.owns(&a.tags))
}

/// Decides the reconcile of a binding from its judgement and what it means (`next`,
/// [`super::after_judgement`]), `desired` (the judgement's role, with the trust Pod Identity
/// chaining set) and what gather `read`. `own_name`: the role name this cluster gives the
/// binding now (see [`needs_own_name_read`]).
pub fn plan(
    binding: &IAMRoleBinding,
    judgement: &Judgement<'_>,
    next: Next,
    desired: Option<&DesiredRole>,
    read: &Read,
    owner: &Owner,
    own_name: &str,
) -> Plan {
    let Some(desired) = desired else {
        // A judgement without a role has a spec problem, refused by after_judgement.
        return Plan::Refuse(match next {
            Next::Refuse {
                reason,
                message,
                requeue,
                ..
            } => Refusal {
                reason,
                message,
                desired: None,
                requeue,
            },
            _ => Refusal {
                reason: judge::reason::INVALID_SPEC,
                message: "the spec does not make a role".into(),
                desired: None,
                requeue: Requeue::AwaitChange,
            },
        });
    };
    match next {
        Next::Refuse {
            reason,
            message,
            with_role,
            requeue,
        } => Plan::Refuse(Refusal {
            reason,
            message,
            desired: with_role.then(|| Box::new(desired.clone())),
            requeue,
        }),
        Next::Violated(violations) => violated(judgement, desired, &violations, read, owner),
        Next::Proceed => proceed(binding, judgement, desired, read, owner, own_name),
    }
}

fn violated(
    judgement: &Judgement<'_>,
    desired: &DesiredRole,
    violations: &[Violation],
    read: &Read,
    owner: &Owner,
) -> Plan {
    let mut message = violations
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("; ");
    let refuse = |message: String| {
        Plan::Refuse(Refusal {
            reason: judge::reason::GUARDRAIL_VIOLATION,
            message,
            desired: Some(Box::new(desired.clone())),
            requeue: Requeue::Resync,
        })
    };
    if guardrail::enforcement(violations, &judgement.applicable) == Enforcement::Report {
        message.push_str("; the role is left as it is (enforcement: Report)");
        return refuse(message);
    }
    let Some(actual) = read.role.as_ref().filter(|a| owner.owns(&a.tags)) else {
        // No role of ours: nothing to take away, and none is made.
        message.push_str("; no IAM role is created or changed until the binding complies");
        return refuse(message);
    };
    Plan::Revoke(Box::new(Revocation {
        desired: desired.clone(),
        changes: revocation(actual),
        violations: message,
        inline: actual.inline_policies.len(),
        managed: actual.managed_policy_arns.len(),
    }))
}

fn proceed(
    binding: &IAMRoleBinding,
    judgement: &Judgement<'_>,
    desired: &DesiredRole,
    read: &Read,
    owner: &Owner,
    own_name: &str,
) -> Plan {
    // IRSA needs the cluster's OIDC provider in IAM.
    if let Some((provider, false)) = &read.oidc_provider {
        return Plan::Refuse(Refusal {
            reason: OIDC_PROVIDER_MISSING,
            message: format!(
                "the IAM OIDC provider {provider} does not exist; create it for the cluster's issuer (eksctl utils associate-iam-oidc-provider) or use podIdentity trust"
            ),
            desired: Some(Box::new(desired.clone())),
            requeue: Requeue::Fixed(OIDC_PROVIDER_RETRY),
        });
    }
    let mut desired = desired.clone();
    // An adopted role (spec.adoptRole) is tagged as this binding's first, where allowed.
    let mut actual = read.role.clone();
    let mut adopt_tags = None;
    if let Some(name) = binding.spec.adopt_role.as_deref() {
        match adopt(
            name,
            &judgement.applicable,
            &mut desired,
            actual.as_mut(),
            owner,
        ) {
            Ok(tags) => adopt_tags = tags,
            Err(refusal) => return Plan::Refuse(refusal),
        }
    }
    // Never touch a role hatrack does not own.
    let mut writes = role_sync::writes(actual.as_ref(), &desired.role, owner);
    if let (Writes::NotOwned, Some(own)) = (&writes, &read.own_name_role) {
        // The role an earlier version named after the cluster's name alone was claimed by a
        // same-named cluster elsewhere: this cluster's role is the ARN-keyed one.
        desired.role.role_name = own_name.to_string();
        desired.role.arn = judgement.settings.role_arn(own_name);
        writes = role_sync::writes(own.as_ref(), &desired.role, owner);
    }
    let role_writes = match writes {
        Writes::Make(diff) => diff,
        Writes::NotOwned => return Plan::Refuse(not_owned(&desired, owner)),
    };
    // IRSA reads the role ARN from the ServiceAccount.
    let annotations = read
        .service_accounts
        .iter()
        .filter_map(|(sa, current)| {
            let wears = desired.uses_irsa() && binding.spec.service_accounts.contains(sa);
            match annotation(wears, current.as_deref(), &desired.role.arn) {
                Annotation::Keep => None,
                change => Some((sa.clone(), change)),
            }
        })
        .collect();
    Plan::Make(Box::new(Make {
        desired,
        adopt_tags,
        role_writes,
        annotations,
    }))
}

/// The refusal of a role that exists without this binding's ownership tags.
pub fn not_owned(desired: &DesiredRole, owner: &Owner) -> Refusal {
    Refusal {
        reason: ROLE_NOT_OWNED,
        message: format!(
            "IAM role {} exists but is not owned by this binding (its {} tags do not name cluster {:?}, namespace {:?}, name {:?}); hatrack will not modify or delete it. Delete or retag the role, or rename the binding.",
            desired.role.role_name,
            naming::TAG_PREFIX,
            owner.cluster,
            owner.namespace,
            owner.name
        ),
        desired: Some(Box::new(desired.clone())),
        requeue: Requeue::Resync,
    }
}

/// Points `desired` at the existing role `name` (its name, path and ARN, and the adopted tag)
/// and, when the guardrails allow it and the role is not another owner's, returns the tags
/// that mark it as this binding's (and puts them on `actual`, as the TagRole will). A role
/// already this binding's needs none; one tagged by hatrack for someone else is never taken
/// (the sync's ownership check refuses it).
fn adopt(
    name: &str,
    applicable: &[&crate::crd::IAMGuardrail],
    desired: &mut DesiredRole,
    actual: Option<&mut ActualRole>,
    owner: &Owner,
) -> Result<Option<BTreeMap<String, String>>, Refusal> {
    let Some(actual) = actual else {
        return Err(Refusal {
            reason: ADOPTED_ROLE_MISSING,
            message: format!(
                "spec.adoptRole: IAM role {name:?} does not exist in account {}; adoption takes over an existing role, it makes none",
                desired.role.arn.split(':').nth(4).unwrap_or("?")
            ),
            desired: None,
            requeue: Requeue::Resync,
        });
    };
    if let Err(message) = judge::adoption_allowed(applicable, name, Some(&actual.path)) {
        return Err(Refusal {
            reason: judge::reason::ADOPTION_NOT_ALLOWED,
            message,
            desired: None,
            requeue: Requeue::Resync,
        });
    }
    desired.role.role_name = name.to_string();
    desired.role.path = actual.path.clone();
    desired.role.arn = actual.arn.clone();
    desired
        .role
        .tags
        .insert(TAG_ADOPTED.to_string(), "true".to_string());
    let ours = naming::is_owned_by(&actual.tags, &owner.cluster, &owner.namespace, &owner.name);
    let someone_elses = actual
        .tags
        .keys()
        .any(|k| k.to_ascii_lowercase().starts_with(naming::TAG_PREFIX));
    if ours || someone_elses {
        return Ok(None);
    }
    let mut mark = naming::ownership_tags(&owner.cluster, &owner.namespace, &owner.name);
    mark.insert(TAG_ADOPTED.to_string(), "true".to_string());
    actual
        .tags
        .extend(mark.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(Some(mark))
}

#[cfg(test)]
mod tests;
