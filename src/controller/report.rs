//! Reporting a reconcile's outcome: the binding's status (written only when something a
//! reader cares about changed), its Ready metric, and the Warning that goes with a refusal.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::events::publish;
use super::reconcile::binding_key;
use super::status::{self, reason};
use super::{Context, Error, MANAGER};
use crate::crd::{IAMRoleBinding, IAMRoleBindingStatus};
use crate::iam::IamError;
use crate::role::DesiredRole;

/// Records an AWS failure in status and Events, and hands the error to the error policy
/// (which backs off with jitter).
pub(super) async fn aws_failure(
    binding: &IAMRoleBinding,
    ctx: &Context,
    e: IamError,
    desired: Option<&DesiredRole>,
) -> Error {
    let message = e.to_string();
    publish(
        ctx,
        binding,
        EventType::Warning,
        reason::AWS_ERROR,
        "Reconcile",
        message.clone(),
    )
    .await;
    let st = build_status(binding, false, reason::AWS_ERROR, &message, desired, false);
    if let Err(write_err) = write_status(binding, ctx, st).await {
        tracing::warn!(error = %write_err, "cannot write status");
    }
    ctx.metrics
        .binding_ready(&binding_key(binding), Some(false));
    e.into()
}

pub(super) async fn not_ready(
    binding: &IAMRoleBinding,
    ctx: &Context,
    reason: &str,
    message: &str,
    desired: Option<&DesiredRole>,
) -> Result<(), Error> {
    let was = binding.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| (c.reason.clone(), c.message.clone()))
    });
    if was.as_ref() != Some(&(reason.to_string(), message.to_string())) {
        publish(
            ctx,
            binding,
            EventType::Warning,
            reason,
            "Reconcile",
            message.to_string(),
        )
        .await;
    }
    let st = build_status(binding, false, reason, message, desired, false);
    write_status(binding, ctx, st).await?;
    ctx.metrics
        .binding_ready(&binding_key(binding), Some(false));
    Ok(())
}

pub(super) fn build_status(
    binding: &IAMRoleBinding,
    ready: bool,
    reason: &str,
    message: &str,
    desired: Option<&DesiredRole>,
    synced_now: bool,
) -> IAMRoleBindingStatus {
    let old = binding.status.clone().unwrap_or_default();
    let now = Time(jiff::Timestamp::now());
    let condition = status::ready_condition(
        ready,
        reason,
        message,
        binding.metadata.generation,
        &old.conditions,
        now.clone(),
    );
    let conditions = status::with_ready(&old.conditions, condition);
    IAMRoleBindingStatus {
        role_name: desired
            .map(|d| d.role.role_name.clone())
            .or(old.role_name.clone()),
        role_arn: desired.map(|d| d.role.arn.clone()).or(old.role_arn.clone()),
        observed_generation: binding.metadata.generation,
        conditions,
        last_sync_time: if ready
            && (synced_now || old.last_sync_time.is_none() || !is_ready(binding))
        {
            Some(now)
        } else {
            old.last_sync_time
        },
        pod_identity_associations: old.pod_identity_associations,
    }
}

/// Writes status only when something a reader cares about changed: a resync that finds the
/// role in sync writes nothing to the API server either.
pub(super) async fn write_status(
    binding: &IAMRoleBinding,
    ctx: &Context,
    new: IAMRoleBindingStatus,
) -> Result<(), Error> {
    if !status::status_changed(binding.status.as_ref(), &new)
        && binding
            .status
            .as_ref()
            .and_then(|s| s.last_sync_time.clone())
            == new.last_sync_time
    {
        return Ok(());
    }
    let ns = binding.namespace().unwrap_or_default();
    let api: Api<IAMRoleBinding> = Api::namespaced(ctx.client.clone(), &ns);
    let mut patch = json!({"status": new});
    // An empty list is not serialised, and a merge patch keeps what it does not name.
    if new.pod_identity_associations.is_empty() {
        patch["status"]["podIdentityAssociations"] = serde_json::Value::Null;
    }
    api.patch_status(
        &binding.name_any(),
        &PatchParams::apply(MANAGER),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

pub(super) fn is_ready(binding: &IAMRoleBinding) -> bool {
    binding.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}
