//! EKS Pod Identity for a role in another account (role chaining): a chaining role in the
//! cluster's account that the associations name, and the target role's trust in it with the
//! associations' external ids. The steps a reconcile runs around the association step, and the
//! chaining role's cleanup.

use std::collections::BTreeSet;

use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::{read_actual, spec_changed};
use crate::account::{self as accounts, AccountRefusal};
use crate::association::{self, ActualAssociation, chain};
use crate::controller::accounts::Target;
use crate::controller::report::Stop;
use crate::controller::status::reason;
use crate::controller::{Context, Error};
use crate::crd::{IAMRoleBinding, PodIdentityAssociationStatus};
use crate::iam::Iam;
use crate::role::DesiredRole;
use crate::sync::{CleanupOutcome, Owner, SyncOutcome, delete_owned_role, sync_role};

/// EKS Pod Identity for a role in another account, as the apply set it up: the chaining role
/// in the cluster's account is in sync, and the target role's trust names these external ids.
pub(in crate::controller) struct Chain {
    pub(super) chaining_arn: String,
    /// The target account's client, and the owner the target role is synced as.
    iam: Iam,
    owner: Owner,
    /// The target role's trust as built for the binding (before [`chain::target_trust`]).
    base_trust: serde_json::Value,
    ids_in_trust: BTreeSet<String>,
    /// The associations read to find those ids: the association step's first read.
    pub(super) read: Vec<ActualAssociation>,
}

/// External ids of associations (as the association step made or kept them) for
/// `target_role_arn`.
fn external_ids_of<'a>(
    associations: impl IntoIterator<Item = &'a PodIdentityAssociationStatus>,
    target_role_arn: &str,
) -> BTreeSet<String> {
    associations
        .into_iter()
        .filter(|a| a.target_role_arn.as_deref() == Some(target_role_arn))
        .filter_map(|a| a.external_id.clone())
        .collect()
}

/// Pod Identity in another account, before the target role is synced: makes the chaining
/// role in the cluster's account (first: the target role's trust names it, and IAM checks
/// that a principal exists) and sets the target role's trust to the chaining role with the
/// external ids of the binding's associations as EKS has them now (never the status's, which
/// may lag them: the role step would drop a live id until the association step put it back).
/// Associations still to be made are added by [`chain_trust_step`]. `None`: not Pod Identity
/// in another account, nothing to chain.
#[tracing::instrument(skip_all, fields(role = %desired.role.role_name))]
pub(in crate::controller) async fn chain_step(
    binding: &IAMRoleBinding,
    ctx: &Context,
    target: &Target,
    desired: &mut DesiredRole,
) -> Result<Option<Box<Chain>>, Stop> {
    let home = &ctx.settings;
    if target.account.is_none()
        || target.settings.account_id == home.account_id
        || !association::uses_pod_identity(binding, home)
    {
        return Ok(None);
    }
    let Some(eks) = &ctx.eks else {
        let refusal = AccountRefusal::PodIdentityUnsupported {
            account: binding.spec.account.clone().unwrap_or_default(),
            account_id: target.settings.account_id.clone(),
        };
        return Err(Stop::ready_false(
            refusal.reason(),
            refusal.to_string(),
            None,
            Action::requeue(ctx.jittered_resync()),
        ));
    };
    let ns = binding.namespace().unwrap_or_default();
    let name = binding.name_any();
    let trust = match crate::trust::trust_policy(
        home,
        &crate::trust::TrustInputs {
            namespace: &ns,
            service_accounts: &binding.spec.service_accounts,
            irsa_audience: None,
            pod_identity: true,
        },
    ) {
        Ok(t) => t,
        Err(e) => {
            return Err(Stop::ready_false(
                reason::INVALID_SPEC,
                e.to_string(),
                None,
                Action::await_change(),
            ));
        }
    };
    let chaining = chain::chaining_role(desired, home, trust);
    let home_owner = Owner::of(home, &ns, &name);
    match sync_role(&ctx.iam, &chaining, &home_owner).await {
        Ok(SyncOutcome::Synced { writes, .. }) => {
            if !writes.is_empty() {
                tracing::info!(role = %chaining.role.arn, calls = ?writes, "synced EKS Pod Identity chaining role");
            }
        }
        Ok(SyncOutcome::NotOwned) => {
            let message = format!(
                "IAM role {} (the EKS Pod Identity chaining role in the cluster's account {}) exists but is not owned by this binding; hatrack will not modify or delete it",
                chaining.role.arn, home.account_id
            );
            return Err(Stop::ready_false(
                reason::ROLE_NOT_OWNED,
                message,
                None,
                Action::requeue(ctx.jittered_resync()),
            ));
        }
        Err(e) => return Err(Stop::chain_aws(e, None)),
    }
    let wanted: BTreeSet<String> = binding.spec.service_accounts.iter().cloned().collect();
    let read = match read_actual(eks, ctx, binding, &wanted, spec_changed(binding)).await {
        Ok(r) => r,
        Err(e) => return Err(Stop::eks(e, Some(desired))),
    };
    let ids = chain::live_external_ids(
        &read,
        &chaining.role.arn,
        &desired.role.arn,
        (&home.cluster_name, &ns, &name),
    );
    let base_trust = std::mem::take(&mut desired.role.assume_role_policy);
    desired.role.assume_role_policy = chain::target_trust(&base_trust, &chaining.role.arn, &ids);
    Ok(Some(Box::new(Chain {
        chaining_arn: chaining.role.arn,
        iam: target.iam.clone(),
        owner: Owner::of(&target.settings, &ns, &name),
        base_trust,
        ids_in_trust: ids,
        read,
    })))
}

/// After the associations are in sync (`current`): the target role trusts exactly their
/// external ids. A step of its own, not inside [`super::apply_step`]: the reconcile's future is deep
/// enough already.
#[tracing::instrument(skip_all, fields(role = %desired.role.role_name))]
pub(in crate::controller) async fn chain_trust_step(
    chain: &Chain,
    desired: &DesiredRole,
    current: &[PodIdentityAssociationStatus],
) -> Result<(), Stop> {
    chain_trust(chain, desired, current)
        .await
        .map_err(|e| Stop::chain_aws(e, Some(desired)))
}

async fn chain_trust(
    chain: &Chain,
    desired: &DesiredRole,
    current: &[PodIdentityAssociationStatus],
) -> Result<(), crate::iam::IamError> {
    let ids = external_ids_of(current, &desired.role.arn);
    if ids == chain.ids_in_trust {
        return Ok(());
    }
    let mut d = desired.clone();
    d.role.assume_role_policy = chain::target_trust(&chain.base_trust, &chain.chaining_arn, &ids);
    match sync_role(&chain.iam, &d, &chain.owner).await? {
        SyncOutcome::Synced { writes, .. } => {
            tracing::info!(role = %d.role.arn, calls = ?writes, external_ids = ?ids, "target role trusts the chaining role with the associations' external ids");
        }
        // Checked by the role step just before; taken over since: the next apply reports it.
        SyncOutcome::NotOwned => {}
    }
    Ok(())
}

/// The cleanup of a chained binding, after its associations: its chaining role in the
/// cluster's account goes (its own only). Nothing for a binding whose role is at home.
pub(super) async fn cleanup_chaining_role(
    binding: &IAMRoleBinding,
    ctx: &Context,
) -> Result<(), Error> {
    let home = &ctx.settings;
    let ns = binding.namespace().unwrap_or_default();
    let labels = ctx
        .namespaces
        .get(&kube::runtime::reflector::ObjectRef::new(&ns))
        .map(|n| n.labels().clone())
        .unwrap_or_default();
    let all = ctx.accounts.state();
    let elsewhere = matches!(
        accounts::resolve(binding, all.iter().map(|a| a.as_ref()), &labels, true),
        Ok(Some(a)) if a.spec.account_id != home.account_id
    );
    if !elsewhere {
        return Ok(());
    }
    let name = binding.name_any();
    let role_name = binding
        .status
        .as_ref()
        .and_then(|s| s.role_name.clone())
        .unwrap_or_else(|| crate::naming::role_name(&home.cluster_identity(), &ns, &name));
    match delete_owned_role(&ctx.iam, &role_name, &Owner::of(home, &ns, &name)).await? {
        CleanupOutcome::Deleted => {
            tracing::info!(role = %role_name, "deleted EKS Pod Identity chaining role");
        }
        CleanupOutcome::AlreadyGone | CleanupOutcome::NotOwned => {}
        CleanupOutcome::HeldBy(holders) => {
            tracing::warn!(role = %role_name, holders = ?holders, "chaining role is held by something hatrack does not own; left in place");
        }
    }
    Ok(())
}
