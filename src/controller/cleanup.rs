//! Cleanup of a deleted binding: the pipeline's edges in reverse (annotations, associations,
//! the role, or the role retained as the guardrails allow).

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;

use k8s_openapi::api::core::v1::ServiceAccount;

use super::events::publish;
use super::reconcile::{
    binding_key, namespace_labels, service_accounts_in, set_role_arn_annotation,
};
use super::report::deleting;
use super::status::reason;
use super::{Context, Error, ROLE_ARN_ANNOTATION, accounts, enforce};
use crate::crd::{DeletionPolicy, IAMRoleBinding};
use crate::sync::{CleanupOutcome, Owner, delete_owned_role};

/// Records an AWS failure of a cleanup in an Event (the finalizer retries it; the status is
/// left as it is), and hands the error to the error policy.
pub(super) async fn failure(
    binding: &IAMRoleBinding,
    ctx: &Context,
    e: impl Into<Error> + std::fmt::Display,
) -> Error {
    publish(
        ctx,
        binding,
        EventType::Warning,
        reason::AWS_ERROR,
        "Delete",
        e.to_string(),
    )
    .await;
    e.into()
}

async fn remove_annotations(
    binding: &IAMRoleBinding,
    ctx: &Context,
    arn: &str,
) -> Result<(), Error> {
    let ns = binding.namespace().unwrap_or_default();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
    for sa in service_accounts_in(ctx, &ns) {
        if sa
            .annotations()
            .get(ROLE_ARN_ANNOTATION)
            .map(String::as_str)
            == Some(arn)
        {
            let patch = json!({"metadata": {"annotations": {ROLE_ARN_ANNOTATION: null}}});
            set_role_arn_annotation(&api, &sa.name_any(), patch).await?;
        }
    }
    Ok(())
}

pub(super) async fn cleanup(binding: &IAMRoleBinding, ctx: &Context) -> Result<Action, Error> {
    // The role is removed from the account it was made in, even if the IAMAccount no longer
    // selects the namespace; without the IAMAccount it cannot be reached, and deletion waits.
    let target = match accounts::target(binding, ctx, true).await {
        Ok(t) => t,
        Err(refusal) => {
            deleting(binding, ctx, &refusal.to_string()).await?;
            return Err(refusal.into());
        }
    };
    let settings = &target.settings;
    let ns = binding.namespace().unwrap_or_default();
    let name = binding.name_any();
    // The name depends only on identity (or is the adopted role's), so cleanup works even
    // for an invalid spec.
    let role_name = binding.spec.adopt_role.clone().unwrap_or_else(|| {
        settings.role_name_in_use(
            binding.status.as_ref().and_then(|s| s.role_name.as_deref()),
            &ns,
            &name,
        )
    });
    let arn = match (&binding.spec.adopt_role, binding.status.as_ref()) {
        // An adopted role's path is its own: the ARN is the one status recorded.
        (Some(_), Some(st)) => st.role_arn.clone().unwrap_or_default(),
        _ => settings.role_arn(&role_name),
    };
    remove_annotations(binding, ctx, &arn).await?;
    let owner = Owner::of(settings, &ns, &name);
    if binding.deletion_policy() == DeletionPolicy::Retain {
        let guardrails = ctx.guardrails.state();
        let refs = crate::guardrail::applicable(
            guardrails.iter().map(|g| g.as_ref()),
            &namespace_labels(ctx, &ns),
        );
        // None: Retain is forbidden here, and the role goes like any other.
        if let Some(action) =
            enforce::retain_on_delete(binding, ctx, &target.iam, &role_name, &refs).await?
        {
            // Not an orphan: the sweep leaves roles marked retained alone.
            super::orphans::mark_retained(&target.iam, &role_name, &owner).await?;
            ctx.metrics.binding_ready(&binding_key(binding), None);
            return Ok(action);
        }
    }
    // Associations name the role: they go first.
    Box::pin(super::associations::cleanup_step(binding, ctx)).await?;
    match delete_owned_role(&target.iam, &role_name, &owner).await {
        Ok(CleanupOutcome::Deleted) => {
            publish(
                ctx,
                binding,
                EventType::Normal,
                "RoleDeleted",
                "Delete",
                format!("Deleted IAM role {role_name}"),
            )
            .await;
        }
        Ok(CleanupOutcome::AlreadyGone) => {}
        Ok(CleanupOutcome::NotOwned) => {
            publish(
                ctx,
                binding,
                EventType::Warning,
                reason::ROLE_NOT_OWNED,
                "Delete",
                format!("IAM role {role_name} is not owned by this binding; left in place"),
            )
            .await;
        }
        Ok(CleanupOutcome::HeldBy(holders)) => {
            let err = Error::RoleHeld {
                role: role_name.clone(),
                holders: holders.join(", "),
            };
            publish(
                ctx,
                binding,
                EventType::Warning,
                "DeleteBlocked",
                "Delete",
                err.to_string(),
            )
            .await;
            deleting(binding, ctx, &err.to_string()).await?;
            return Err(err);
        }
        Err(e) => return Err(failure(binding, ctx, e).await),
    }
    ctx.metrics.binding_ready(&binding_key(binding), None);
    Ok(Action::await_change())
}
