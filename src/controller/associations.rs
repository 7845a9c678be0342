//! The EKS Pod Identity association step of a reconcile: after the role exists, make one
//! association per bound ServiceAccount point at it (read from EKS, pure diff in
//! [`crate::association`], minimal writes); on cleanup, delete the binding's own associations
//! before its role. An association hatrack does not own is never written, only reported.
//! Pod Identity for a role in another account chains through a role at home: `chain`.

mod chain;

use std::collections::BTreeSet;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::events::publish;
use super::report::Stop;
use super::status::reason;
use super::{Context, Error};
use crate::association::{self, ActualAssociation, Change, Plan};
use crate::crd::{IAMRoleBinding, PodIdentityAssociationStatus};
use crate::eks::{Eks, EksError};
use crate::role::DesiredRole;

use self::chain::cleanup_chaining_role;
pub(super) use self::chain::{Chain, chain_step, chain_trust_step};

/// Whether the spec changed since the status was written.
fn spec_changed(binding: &IAMRoleBinding) -> bool {
    binding.status.as_ref().and_then(|s| s.observed_generation) != binding.metadata.generation
}

/// Whether a binding without Pod Identity may still have associations of its own, so that
/// its reconcile must read EKS: its status records some, or its spec changed since its first
/// generation and that change is not yet reconciled — an earlier generation may have wanted
/// Pod Identity, and the status write that recorded its associations may not have landed (a
/// pass on a stale copy is refused with 409; a crash). A binding that never changed costs no
/// EKS call.
fn may_have_own_associations(binding: &IAMRoleBinding) -> bool {
    !recorded(binding).is_empty()
        || (spec_changed(binding) && binding.metadata.generation.is_some_and(|g| g > 1))
}

/// How soon a binding blocked by a foreign association looks again (EKS is not watched).
const FOREIGN_RETRY: Duration = Duration::from_secs(60);

/// ServiceAccounts the binding's status records associations for.
fn recorded(binding: &IAMRoleBinding) -> BTreeSet<String> {
    binding
        .status
        .as_ref()
        .map(|s| {
            s.pod_identity_associations
                .iter()
                .map(|a| a.service_account.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a binding other than `me` in `namespace` claims `sa`.
fn claimed_by_another(ctx: &Context, namespace: &str, me: &str, sa: &str) -> bool {
    ctx.claims
        .read()
        .map(|c| c.claimants(namespace, sa).iter().any(|b| b != me))
        // Without the index, assume claimed: that association is then not ours to look at.
        .unwrap_or(true)
}

/// Lists the namespace's associations and describes the ones this binding must judge
/// (`unclaimed`: also those of ServiceAccounts no other binding claims, see
/// [`association::to_describe`]).
async fn read_actual(
    eks: &Eks,
    ctx: &Context,
    binding: &IAMRoleBinding,
    wanted: &BTreeSet<String>,
    unclaimed: bool,
) -> Result<Vec<ActualAssociation>, EksError> {
    let ns = binding.namespace().unwrap_or_default();
    let name = binding.name_any();
    let listed = eks.list(&ns).await?;
    let recorded = recorded(binding);
    let mut actual = Vec::new();
    for summary in association::to_describe(&listed, wanted, &recorded, unclaimed, |sa| {
        claimed_by_another(ctx, &ns, &name, sa)
    }) {
        // Gone between the listing and now: nothing to judge.
        if let Some(a) = eks.describe(&summary.id).await? {
            actual.push(a);
        }
    }
    Ok(actual)
}

/// Makes the plan's writes; `Ok(false)` when EKS changed under us (a create found the
/// ServiceAccount taken, an update or delete found the association gone) and the plan must be
/// made again from a fresh read.
async fn write(
    eks: &Eks,
    want: Option<&association::DesiredAssociations>,
    ns: &str,
    plan: &Plan,
    made: &mut Vec<ActualAssociation>,
    done: &mut Vec<String>,
) -> Result<bool, EksError> {
    for change in &plan.changes {
        let result = match (change, want) {
            (Change::Create { service_account }, Some(w)) => eks
                .create(
                    ns,
                    service_account,
                    &w.role_arn,
                    w.target_role_arn.as_deref(),
                    &w.tags,
                )
                .await
                .map(|a| made.push(a)),
            (
                Change::UpdateRole {
                    id, from_target, ..
                },
                Some(w),
            ) => eks
                .update_role(
                    id,
                    &w.role_arn,
                    w.target_role_arn.as_deref(),
                    from_target.is_some(),
                )
                .await
                .map(|a| made.push(a)),
            (Change::Delete { id, .. }, _) => eks.delete(id).await,
            // Creates and updates come only from a desired set.
            (_, None) => Ok(()),
        };
        match result {
            Ok(()) => done.push(format!(
                "{} {}",
                change.operation(),
                match change {
                    Change::Create { service_account }
                    | Change::UpdateRole {
                        service_account, ..
                    }
                    | Change::Delete {
                        service_account, ..
                    } => service_account,
                }
            )),
            Err(EksError::InUse { .. }) | Err(EksError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Reads, diffs and writes until the associations match (at most twice: a second race is an
/// error, retried with backoff). Returns the final plan and the associations made or updated.
/// `first_read`: what an earlier step of this reconcile read, used in place of the first read.
async fn converge(
    eks: &Eks,
    ctx: &Context,
    binding: &IAMRoleBinding,
    want: Option<&association::DesiredAssociations>,
    mut first_read: Option<Vec<ActualAssociation>>,
) -> Result<(Plan, Vec<ActualAssociation>, Vec<String>), EksError> {
    let ns = binding.namespace().unwrap_or_default();
    let name = binding.name_any();
    let wanted = want.map(|w| w.service_accounts.clone()).unwrap_or_default();
    let mut made = Vec::new();
    let mut done = Vec::new();
    let spec_changed = spec_changed(binding);
    for _ in 0..2 {
        let actual = match first_read.take() {
            Some(read) => read,
            None => read_actual(eks, ctx, binding, &wanted, spec_changed).await?,
        };
        let plan = association::diff(want, &actual, &ctx.settings.cluster_name, &ns, &name);
        made.clear();
        if write(eks, want, &ns, &plan, &mut made, &mut done).await? {
            return Ok((plan, made, done));
        }
    }
    Err(EksError::InUse {
        operation: "CreatePodIdentityAssociation",
        message: "the namespace's associations kept changing while being synced".into(),
    })
}

/// The association step of an apply, after the role is in sync: the associations as the
/// binding wants them (or not hatrack's to manage), which go into the status. Someone else
/// holding an association the binding wants stops the reconcile, with the associations found.
#[tracing::instrument(skip_all, fields(role = %desired.role.role_name))]
pub(super) async fn apply_step(
    binding: &IAMRoleBinding,
    ctx: &Context,
    desired: &DesiredRole,
    chain: Option<&Chain>,
) -> Result<Vec<PodIdentityAssociationStatus>, Stop> {
    let Some(eks) = &ctx.eks else {
        return Ok(Vec::new());
    };
    let want = match chain {
        // Chained: the association names the chaining role, EKS goes on to the target.
        Some(c) => association::desired(binding, &ctx.settings, &c.chaining_arn).map(|mut w| {
            w.target_role_arn = Some(desired.role.arn.clone());
            w
        }),
        None => association::desired(binding, &ctx.settings, &desired.role.arn),
    };
    if want.is_none() && !may_have_own_associations(binding) {
        return Ok(Vec::new());
    }
    let (plan, made, done) = match converge(
        eks,
        ctx,
        binding,
        want.as_ref(),
        chain.map(|c| c.read.clone()),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return Err(Stop::eks(e, Some(desired))),
    };
    if !done.is_empty() {
        tracing::info!(writes = ?done, "synced EKS Pod Identity associations");
        publish(
            ctx,
            binding,
            EventType::Normal,
            "PodIdentityAssociationsSynced",
            "Reconcile",
            format!(
                "EKS Pod Identity associations in cluster {}: {}",
                eks.cluster(),
                done.join(", ")
            ),
        )
        .await;
    }
    let mut current: Vec<PodIdentityAssociationStatus> = plan
        .kept
        .iter()
        .chain(made.iter())
        .map(|a| PodIdentityAssociationStatus {
            service_account: a.service_account.clone(),
            association_id: a.id.clone(),
            association_arn: a.arn.clone(),
            target_role_arn: a.target_role_arn.clone(),
            external_id: a.external_id.clone(),
        })
        .collect();
    current.sort_by(|a, b| a.service_account.cmp(&b.service_account));
    let Some(message) = association::foreign_message(&plan.foreign) else {
        return Ok(current);
    };
    Err(Stop::NotReady {
        reason: reason::FOREIGN_POD_IDENTITY_ASSOCIATION,
        message,
        desired: Some(Box::new(desired.clone())),
        associations: Some(current),
        then: Ok(Action::requeue(ctx.jittered_resync().min(FOREIGN_RETRY))),
    })
}

/// The association step of a cleanup, before the role is deleted: the binding's own
/// associations go; anyone else's stay.
#[tracing::instrument(skip_all)]
pub(super) async fn cleanup_step(binding: &IAMRoleBinding, ctx: &Context) -> Result<(), Error> {
    cleanup_associations(binding, ctx).await?;
    // Associations name the chaining role: it goes after them.
    cleanup_chaining_role(binding, ctx).await
}

async fn cleanup_associations(binding: &IAMRoleBinding, ctx: &Context) -> Result<(), Error> {
    let Some(eks) = &ctx.eks else {
        return Ok(());
    };
    let spec_sas: BTreeSet<String> = if association::uses_pod_identity(binding, &ctx.settings) {
        binding.spec.service_accounts.iter().cloned().collect()
    } else {
        BTreeSet::new()
    };
    if spec_sas.is_empty() && recorded(binding).is_empty() {
        return Ok(());
    }
    let ns = binding.namespace().unwrap_or_default();
    let name = binding.name_any();
    let result = async {
        // Only the spec's and the status's: in a namespace being emptied every deleting
        // binding's ServiceAccounts are unclaimed, and each cleanup would read them all. An own
        // association that neither names (a crash between its creation and the status, then
        // the ServiceAccount unbound, then the binding deleted) is left to the orphan sweep.
        let actual = read_actual(eks, ctx, binding, &spec_sas, false).await?;
        let plan = association::diff(None, &actual, &ctx.settings.cluster_name, &ns, &name);
        let mut deleted = Vec::new();
        for change in &plan.changes {
            if let Change::Delete {
                id,
                service_account,
            } = change
            {
                eks.delete(id).await?;
                deleted.push(format!("{service_account} ({id})"));
            }
        }
        Ok::<_, EksError>(deleted)
    }
    .await;
    match result {
        Ok(deleted) if deleted.is_empty() => Ok(()),
        Ok(deleted) => {
            publish(
                ctx,
                binding,
                EventType::Normal,
                "PodIdentityAssociationsDeleted",
                "Delete",
                format!(
                    "Deleted EKS Pod Identity associations in cluster {}: {}",
                    eks.cluster(),
                    deleted.join(", ")
                ),
            )
            .await;
            Ok(())
        }
        Err(e) => Err(super::cleanup::failure(binding, ctx, e).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn binding(generation: i64, status: serde_json::Value) -> IAMRoleBinding {
        serde_json::from_value(json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
            "metadata": {"name": "app", "namespace": "team", "generation": generation},
            "spec": {"serviceAccounts": ["api"], "trust": {"irsa": {}}},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn a_binding_without_pod_identity_reads_eks_only_when_it_may_have_associations() {
        // Never changed: no EKS call, whatever its status says of generation 1.
        assert!(!may_have_own_associations(&binding(1, json!(null))));
        assert!(!may_have_own_associations(&binding(
            1,
            json!({"observedGeneration": 1})
        )));
        // Reconciled at its generation, nothing recorded: none.
        assert!(!may_have_own_associations(&binding(
            3,
            json!({"observedGeneration": 3})
        )));
        // Recorded: read.
        let recorded = json!({"observedGeneration": 3, "podIdentityAssociations": [
            {"serviceAccount": "api", "associationId": "a-1", "associationArn": "arn:a"}]});
        assert!(may_have_own_associations(&binding(3, recorded)));
        // Edited and not reconciled since (the status that recorded Pod Identity associations
        // of generation 2 may have been refused): read.
        assert!(may_have_own_associations(&binding(
            3,
            json!({"observedGeneration": 1})
        )));
        assert!(may_have_own_associations(&binding(2, json!(null))));
    }
}
