//! Guardrails with teeth: the controller's side of enforcement. Managed policies are read
//! from IAM (default version, cached by ARN and version) so `deniedActions` applies to them;
//! a binding that violates a guardrail has its role's permission policies taken away
//! (`enforcement: Revoke`, the default) until it complies, and they are put back then; a role
//! left by `deletionPolicy: Retain` loses its trust unless a guardrail allows it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::{Value, json};

use super::decide::plan::Revocation;
use super::events::publish;
use super::report::{Stop, build_status};
use super::status::reason;
use super::{Context, Error};
use crate::crd::{IAMGuardrail, IAMRoleBinding, IAMRoleBindingStatus, RetainPolicy};
use crate::guardrail::{self, ManagedPolicyDocument};
use crate::iam::{Iam, IamError};
use crate::role::Change;

/// Condition type that says whether the role's grants are revoked.
pub const GRANTS_REVOKED: &str = "GrantsRevoked";

/// How long a managed policy's default version is trusted before GetPolicy asks again.
/// Documents are cached by (ARN, version) for good: a version's document never changes.
pub const POLICY_VERSION_TTL: Duration = Duration::from_secs(60);

struct CachedPolicy {
    version_id: String,
    document: Arc<Value>,
    checked: Instant,
}

/// Managed policy documents by ARN, with the version they were read at.
#[derive(Default)]
pub struct ManagedPolicyCache {
    entries: Mutex<HashMap<String, CachedPolicy>>,
}

impl ManagedPolicyCache {
    /// The default version's document of each policy that exists (a missing one is skipped:
    /// attaching it fails, and that is reported by the sync). GetPolicy at most once per
    /// [`POLICY_VERSION_TTL`] per ARN; GetPolicyVersion only when the version changed.
    pub async fn documents(
        &self,
        iam: &Iam,
        arns: &[String],
    ) -> Result<Vec<ManagedPolicyDocument>, IamError> {
        let mut out = Vec::with_capacity(arns.len());
        for arn in arns {
            let fresh = self.entries.lock().ok().and_then(|e| {
                e.get(arn)
                    .filter(|c| c.checked.elapsed() < POLICY_VERSION_TTL)
                    .map(|c| (c.version_id.clone(), c.document.clone()))
            });
            let (version_id, document) = match fresh {
                Some(hit) => hit,
                None => {
                    let Some(version_id) = iam.policy_default_version(arn).await? else {
                        continue;
                    };
                    let known = self.entries.lock().ok().and_then(|e| {
                        e.get(arn)
                            .filter(|c| c.version_id == version_id)
                            .map(|c| c.document.clone())
                    });
                    let document = match known {
                        Some(d) => d,
                        None => Arc::new(iam.policy_version_document(arn, &version_id).await?),
                    };
                    if let Ok(mut e) = self.entries.lock() {
                        e.insert(
                            arn.clone(),
                            CachedPolicy {
                                version_id: version_id.clone(),
                                document: document.clone(),
                                checked: Instant::now(),
                            },
                        );
                    }
                    (version_id, document)
                }
            };
            out.push(ManagedPolicyDocument {
                arn: arn.clone(),
                version_id,
                document: document.as_ref().clone(),
            });
        }
        Ok(out)
    }
}

/// Takes a violating binding's grants away, as decided ([`super::decide::plan::Revocation`]),
/// and says what the reconcile reports: Ready False with the violation, and GrantsRevoked True
/// naming the binding's grants that are withheld (the same on every pass, so a pass that finds
/// nothing left to remove changes no status). A pass that revoked names what it removed in its
/// GrantsRevoked Event; one that found nothing to remove warns of the violation (when it is
/// news).
pub(super) async fn revoke(
    binding: &IAMRoleBinding,
    ctx: &Context,
    iam: &Iam,
    decided: Revocation,
) -> Result<Stop, Error> {
    let role_name = &decided.desired.role.role_name;
    for change in &decided.changes {
        iam.apply(&decided.desired.role, change).await?;
    }
    let removed = decided.removed();
    let mut message = decided.violations.clone();
    if !removed.is_empty() {
        ctx.metrics.grants_revoked(decided.inline, decided.managed);
        tracing::warn!(role = %role_name, removed = ?removed, "revoked the grants of a role whose binding violates a guardrail");
        publish(
            ctx,
            binding,
            EventType::Warning,
            "GrantsRevoked",
            "Reconcile",
            format!(
                "Revoked the grants of IAM role {role_name} ({}): {message}",
                removed.join(", ")
            ),
        )
        .await;
    }
    message.push_str(&format!(
        "; the permission policies of IAM role {role_name} are revoked until the binding complies"
    ));
    let warning = removed
        .is_empty()
        .then(|| (reason::GUARDRAIL_VIOLATION, message.clone()));
    let mut st = build_status(
        binding,
        false,
        reason::GUARDRAIL_VIOLATION,
        &message,
        Some(&decided.desired),
        false,
    );
    set_condition(
        &mut st,
        binding.metadata.generation,
        true,
        reason::GUARDRAIL_VIOLATION,
        &decided.withheld(),
    );
    Ok(Stop::NotReadyStatus {
        status: Box::new(st),
        warning,
        requeue: Action::requeue(ctx.jittered_resync()),
    })
}

fn was_revoked(binding: &IAMRoleBinding) -> bool {
    binding.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == GRANTS_REVOKED && c.status == "True")
    })
}

/// Called when a binding is in sync again: if its grants had been revoked, says in `st` that
/// they are back, and returns whether it did (the caller announces it once the status is
/// written: [`announce_restored`]).
pub(super) fn restored(binding: &IAMRoleBinding, st: &mut IAMRoleBindingStatus) -> bool {
    if !was_revoked(binding) {
        return false;
    }
    set_condition(
        st,
        binding.metadata.generation,
        false,
        "Compliant",
        "the binding complies with its guardrails; its grants are in place",
    );
    true
}

/// The Event and metric of grants put back.
pub(super) async fn announce_restored(ctx: &Context, binding: &IAMRoleBinding, role: &str) {
    ctx.metrics.grants_restored();
    publish(
        ctx,
        binding,
        EventType::Normal,
        "GrantsRestored",
        "Reconcile",
        format!("The binding complies with its guardrails again; the grants of IAM role {role} are restored"),
    )
    .await;
}

fn set_condition(
    st: &mut IAMRoleBindingStatus,
    generation: Option<i64>,
    revoked: bool,
    reason: &str,
    message: &str,
) {
    let status = if revoked { "True" } else { "False" };
    let now = Time(jiff::Timestamp::now());
    let last_transition_time = st
        .conditions
        .iter()
        .find(|c| c.type_ == GRANTS_REVOKED && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(now);
    st.conditions.retain(|c| c.type_ != GRANTS_REVOKED);
    st.conditions.push(Condition {
        type_: GRANTS_REVOKED.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.chars().take(32_000).collect(),
        observed_generation: generation,
        last_transition_time,
    });
}

/// The trust policy of a role left by `deletionPolicy: Retain` without trust: nobody may
/// assume it: no Allow at all, and a Deny of every assume action for every principal (IAM
/// wants at least one statement, and only assume actions in a trust policy).
pub fn untrusted_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "RetainedWithoutTrust",
            "Effect": "Deny",
            "Principal": "*",
            "Action": ["sts:AssumeRole", "sts:AssumeRoleWithWebIdentity", "sts:AssumeRoleWithSAML"]
        }]
    })
}

/// Cleanup of a binding with `deletionPolicy: Retain`, as the applicable guardrails allow:
/// `None` when Retain is forbidden (the caller deletes the role); otherwise the role stays,
/// with its trust replaced by [`untrusted_policy`] unless a guardrail allows `WithTrust`.
pub async fn retain_on_delete(
    binding: &IAMRoleBinding,
    ctx: &Context,
    iam: &Iam,
    role_name: &str,
    applicable: &[&IAMGuardrail],
) -> Result<Option<Action>, Error> {
    let policy = guardrail::retain_policy(applicable);
    if policy == RetainPolicy::Forbidden {
        publish(
            ctx,
            binding,
            EventType::Warning,
            "RetainForbidden",
            "Delete",
            format!("deletionPolicy: Retain is forbidden by an IAMGuardrail here; IAM role {role_name} is deleted"),
        )
        .await;
        return Ok(None);
    }
    let mut note =
        format!("Binding deleted; IAM role {role_name} retained (deletionPolicy: Retain)");
    if policy == RetainPolicy::WithoutTrust {
        let ns = binding.namespace().unwrap_or_default();
        let actual = iam.get_role(role_name).await?;
        let owner = crate::sync::Owner::of(&ctx.settings, &ns, &binding.name_any());
        if let Some(actual) = actual.filter(|a| owner.owns(&a.tags)) {
            let untrusted = untrusted_policy();
            if !crate::policy::equivalent(&actual.assume_role_policy, &untrusted) {
                iam.apply(&actual, &Change::UpdateAssumeRolePolicy(untrusted))
                    .await?;
            }
        }
        note.push_str(" without trust: nobody may assume it (an IAMGuardrail with retain: WithTrust keeps the trust)");
    }
    publish(
        ctx,
        binding,
        EventType::Normal,
        "RoleRetained",
        "Delete",
        note,
    )
    .await;
    Ok(Some(Action::await_change()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use iam_eval::{Decision, Principal, Request, evaluate};

    #[test]
    fn a_retained_role_without_trust_admits_nobody() {
        let doc = untrusted_policy();
        for request in [
            Request {
                principal: Some(Principal::Service("pods.eks.amazonaws.com".into())),
                action: "sts:AssumeRole".into(),
                ..Request::default()
            },
            Request {
                principal: Some(Principal::Federated(
                    "arn:aws:iam::111122223333:oidc-provider/x".into(),
                )),
                action: "sts:AssumeRoleWithWebIdentity".into(),
                ..Request::default()
            },
        ] {
            assert_ne!(evaluate(&doc, &request).unwrap(), Decision::Allow);
        }
    }
}
