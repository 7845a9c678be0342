//! Reporting a reconcile's outcome, the one place that writes a binding's status: [`report`]
//! for a live binding (what [`super::reconcile`]'s steps came to), [`deleting`] for one whose
//! cleanup waits. Status is written only when something a reader cares about changed; the
//! Ready metric and the Warning that goes with a refusal are set here too.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use super::enforce;
use super::events::publish;
use super::reconcile::binding_key;
use super::status::{self, reason};
use super::{Context, Error, MANAGER};
use crate::crd::{IAMRoleBinding, IAMRoleBindingStatus, PodIdentityAssociationStatus};
use crate::eks::EksError;
use crate::iam::IamError;
use crate::role::DesiredRole;

/// What the reconcile of a live binding achieved: the role in sync.
pub(super) struct Synced {
    pub desired: DesiredRole,
    /// Whether IAM was written to this time.
    pub changed: bool,
    pub boundary_kept: Option<String>,
    pub pod_identity_associations: Vec<PodIdentityAssociationStatus>,
}

/// Why the reconcile of a live binding stopped before the role was in sync.
pub(super) enum Stop {
    /// Ready=False with this reason (nothing more to write), then `then`: a requeue, or an
    /// error for the error policy.
    NotReady {
        reason: &'static str,
        message: String,
        desired: Option<Box<DesiredRole>>,
        /// The associations to record, when the step that stopped knows them (else the
        /// status keeps those it had).
        associations: Option<Vec<PodIdentityAssociationStatus>>,
        then: Result<Action, Error>,
    },
    /// Ready=False with a status already built (guardrail enforcement adds its condition),
    /// and the Warning (reason, message) that goes with it when that Ready is new.
    NotReadyStatus {
        status: Box<IAMRoleBindingStatus>,
        warning: Option<(&'static str, String)>,
        requeue: Action,
    },
    /// An AWS call failed: its message in status and a Warning, then the error for the error
    /// policy (which backs off with jitter).
    Failed {
        error: Error,
        message: String,
        desired: Option<Box<DesiredRole>>,
    },
    /// Nothing to report: a failure to write to the API server (handed to the error policy),
    /// or an end without news.
    Unreported(Result<Action, Error>),
}

fn boxed(desired: Option<&DesiredRole>) -> Option<Box<DesiredRole>> {
    desired.map(|d| Box::new(d.clone()))
}

impl Stop {
    /// Ready=False with `reason` and `message`, then `requeue`.
    pub(super) fn ready_false(
        reason: &'static str,
        message: String,
        desired: Option<&DesiredRole>,
        requeue: Action,
    ) -> Stop {
        Stop::NotReady {
            reason,
            message,
            desired: boxed(desired),
            associations: None,
            then: Ok(requeue),
        }
    }

    /// An IAM call failed.
    pub(super) fn aws(e: IamError, desired: Option<&DesiredRole>) -> Stop {
        Stop::Failed {
            message: e.to_string(),
            error: e.into(),
            desired: boxed(desired),
        }
    }

    /// An EKS call failed.
    pub(super) fn eks(e: EksError, desired: Option<&DesiredRole>) -> Stop {
        Stop::Failed {
            message: e.to_string(),
            error: e.into(),
            desired: boxed(desired),
        }
    }

    /// An IAM call of the Pod Identity chaining steps failed: reported as Ready=False
    /// AwsError like a refusal (the Warning only when it is new, and a failed status write
    /// is the error), then the error.
    pub(super) fn chain_aws(e: IamError, desired: Option<&DesiredRole>) -> Stop {
        Stop::NotReady {
            reason: reason::AWS_ERROR,
            message: e.to_string(),
            desired: boxed(desired),
            associations: None,
            then: Err(e.into()),
        }
    }
}

impl From<Error> for Stop {
    fn from(e: Error) -> Stop {
        Stop::Unreported(Err(e))
    }
}

/// Reports how the reconcile of a live binding ended: its status, its Ready metric, the
/// Events that go with it; returns what the controller does next.
pub(super) async fn report(
    binding: &IAMRoleBinding,
    ctx: &Context,
    outcome: Result<Synced, Stop>,
) -> Result<Action, Error> {
    match outcome {
        Ok(synced) => {
            let desired = &synced.desired;
            let mut message = format!("IAM role {} is in sync", desired.role.role_name);
            if let Some(kept) = &synced.boundary_kept {
                message.push_str(&format!(
                    "; it keeps permissions boundary {kept} (hatrack never removes a boundary)"
                ));
            }
            let mut new_status = build_status(
                binding,
                true,
                reason::SYNCED,
                &message,
                Some(desired),
                synced.changed,
            );
            let restored = enforce::restored(binding, &mut new_status);
            new_status.pod_identity_associations = synced.pod_identity_associations;
            let written = write_status(binding, ctx, new_status).await?;
            ctx.metrics.binding_ready(&binding_key(binding), Some(true));
            match written {
                Written::Stale => return Ok(Action::requeue(STALE_COPY_RETRY)),
                // Announced once: only the pass whose status says so first.
                Written::Taken if restored => {
                    enforce::announce_restored(ctx, binding, &desired.role.role_name).await
                }
                _ => {}
            }
            Ok(Action::requeue(ctx.jittered_resync()))
        }
        Err(Stop::NotReady {
            reason,
            message,
            desired,
            associations,
            then,
        }) => {
            let written = not_ready(
                binding,
                ctx,
                reason,
                &message,
                desired.as_deref(),
                associations,
            )
            .await?;
            match (written, then) {
                (Written::Stale, Ok(_)) => Ok(Action::requeue(STALE_COPY_RETRY)),
                (_, then) => then,
            }
        }
        Err(Stop::NotReadyStatus {
            status,
            warning,
            requeue,
        }) => {
            let written = write_status(binding, ctx, *status).await?;
            ctx.metrics
                .binding_ready(&binding_key(binding), Some(false));
            match (written, warning) {
                (Written::Stale, _) => return Ok(Action::requeue(STALE_COPY_RETRY)),
                (Written::Taken, Some((reason, message))) => {
                    warn_if_new(binding, ctx, reason, message).await
                }
                _ => {}
            }
            Ok(requeue)
        }
        Err(Stop::Failed {
            error,
            message,
            desired,
        }) => {
            failed(binding, ctx, &message, desired.as_deref()).await;
            Err(error)
        }
        Err(Stop::Unreported(result)) => result,
    }
}

/// Ready=False while a deleted binding's cleanup waits (`message` says for what).
pub(super) async fn deleting(
    binding: &IAMRoleBinding,
    ctx: &Context,
    message: &str,
) -> Result<(), Error> {
    let st = build_status(binding, false, reason::DELETING, message, None, false);
    write_status(binding, ctx, st).await.map(|_| ())
}

/// Records an AWS failure in status and Events; a failure to write the status is only logged,
/// as the AWS error is the one the error policy needs.
async fn failed(
    binding: &IAMRoleBinding,
    ctx: &Context,
    message: &str,
    desired: Option<&DesiredRole>,
) {
    publish(
        ctx,
        binding,
        EventType::Warning,
        reason::AWS_ERROR,
        "Reconcile",
        message.to_string(),
    )
    .await;
    let st = build_status(binding, false, reason::AWS_ERROR, message, desired, false);
    if let Err(write_err) = write_status(binding, ctx, st).await {
        tracing::warn!(error = %write_err, "cannot write status");
    }
    ctx.metrics
        .binding_ready(&binding_key(binding), Some(false));
}

/// The Warning of a Ready=False, published only when its reason or message is new (the
/// Recorder folds repeats, but a resync that finds the same refusal says nothing new). Called
/// after the status write was taken: the binding's status compared with is then the one the
/// write replaced, not a stale copy.
async fn warn_if_new(binding: &IAMRoleBinding, ctx: &Context, reason: &str, message: String) {
    let was = binding.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| (c.reason.as_str(), c.message.as_str()))
    });
    if was != Some((reason, message.as_str())) {
        publish(
            ctx,
            binding,
            EventType::Warning,
            reason,
            "Reconcile",
            message,
        )
        .await;
    }
}

/// Ready=False with `reason`; the Warning only when the reason or message is new.
async fn not_ready(
    binding: &IAMRoleBinding,
    ctx: &Context,
    reason: &str,
    message: &str,
    desired: Option<&DesiredRole>,
    associations: Option<Vec<PodIdentityAssociationStatus>>,
) -> Result<Written, Error> {
    let mut st = build_status(binding, false, reason, message, desired, false);
    if let Some(associations) = associations {
        st.pod_identity_associations = associations;
    }
    let written = write_status(binding, ctx, st).await?;
    ctx.metrics
        .binding_ready(&binding_key(binding), Some(false));
    if written == Written::Taken {
        warn_if_new(binding, ctx, reason, message.to_string()).await;
    }
    Ok(written)
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

/// How a status write went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    /// Nothing a reader cares about changed: nothing was sent.
    Unchanged,
    /// The API server took it.
    Taken,
    /// The binding changed after the copy this pass worked from was cached (409 on its
    /// resourceVersion): nothing was written, and the pass runs again on the newer copy.
    Stale,
}

/// How soon a pass whose status write met a newer binding runs again. Status-only changes
/// trigger no reconcile (`watches::reconcile_inputs`), so this requeue is the one that comes.
const STALE_COPY_RETRY: Duration = Duration::from_secs(1);

/// Writes status only when something a reader cares about changed: a resync that finds the
/// role in sync writes nothing to the API server either.
///
/// The patch carries the resourceVersion of the copy the pass worked from. Everything the
/// status says that the pass did not work out itself (conditions of other types, associations,
/// transition times) is carried over from that copy, and the Events that depend on what the
/// status said before are published only after a taken write: a pass on a copy older than the
/// last status write (a second pass queued by a guardrail's or ServiceAccount's event before
/// the first pass's status reached the cache) must not overwrite that status or repeat its
/// Events.
async fn write_status(
    binding: &IAMRoleBinding,
    ctx: &Context,
    new: IAMRoleBindingStatus,
) -> Result<Written, Error> {
    if !status::status_changed(binding.status.as_ref(), &new)
        && binding
            .status
            .as_ref()
            .and_then(|s| s.last_sync_time.clone())
            == new.last_sync_time
    {
        return Ok(Written::Unchanged);
    }
    let ns = binding.namespace().unwrap_or_default();
    let api: Api<IAMRoleBinding> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = status::merge_patch(binding.metadata.resource_version.as_deref(), &new);
    match api
        .patch_status(
            &binding.name_any(),
            &PatchParams::apply(MANAGER),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(Written::Taken),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            tracing::debug!("the binding changed since this pass's copy; status not written");
            Ok(Written::Stale)
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) fn is_ready(binding: &IAMRoleBinding) -> bool {
    binding.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}
