//! One reconcile of one binding, as a pipeline: read the binding → build the desired role
//! (pure) → read the role from IAM → diff (pure) → make the IAM writes → annotate
//! ServiceAccounts → write status. Cleanup on delete runs the same edges in reverse.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::cache::CachedBinding;
use super::enforce;
use super::resync_gate::{Admission, ResyncSlot};
use super::status::{self, reason};
use super::{Context, Error, FINALIZER, MANAGER, ROLE_ARN_ANNOTATION};
use super::{accounts, adoption};
use crate::crd::{DeletionPolicy, IAMRoleBinding, IAMRoleBindingStatus};
use crate::guardrail;
use crate::iam::IamError;
use crate::naming;
use crate::role::{self, DesiredRole};
use crate::sync::{CleanupOutcome, Owner, SyncOutcome, delete_owned_role, sync_role};

/// Entry point called by the kube-runtime Controller, with the binding from its cache.
#[tracing::instrument(skip_all, fields(binding = %format!("{}/{}", cached.namespace().unwrap_or_default(), cached.name_any()), generation = cached.metadata.generation))]
pub async fn reconcile(cached: Arc<CachedBinding>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Guardrails and namespace labels decide what a binding may hold. Judged before their
    // caches have their first list (right after a start or a leader change), a binding would
    // get a grant a guardrail forbids, so it comes back shortly instead. Not awaited here:
    // kube stops polling the watches (these caches' among them) while every worker is busy,
    // so reconciles waiting for a cache would wait for ever.
    match policy_caches_ready(&ctx) {
        Some(true) => {}
        Some(false) => return Ok(Action::requeue(POLICY_CACHES_RETRY)),
        None => return Err(Error::PolicyCachesGone),
    }
    // A resync past the cap comes back later, so changes always find a free worker.
    let key = ObjectRef::from_obj(cached.as_ref());
    let (admission, epoch) = match ctx.resync_gate.lock() {
        Ok(mut g) => g.begin(&key, rand::random::<f64>()),
        Err(_) => (Admission::Change, 0),
    };
    if let Admission::Defer(wait) = admission {
        ctx.metrics.resync_deferred();
        return Ok(Action::requeue(wait));
    }
    let mut slot = ResyncSlot::new(
        ctx.resync_gate.clone(),
        key,
        epoch,
        admission == Admission::Resync,
    );
    let started = Instant::now();
    let ns = cached.namespace().unwrap_or_default();
    let api: Api<IAMRoleBinding> = Api::namespaced(ctx.client.clone(), &ns);
    let result = match cached.to_binding() {
        Ok(binding) => finalizer(&api, FINALIZER, Arc::new(binding), |event| async {
            match event {
                FinalizerEvent::Apply(b) => apply(&b, &ctx).await,
                FinalizerEvent::Cleanup(b) => cleanup(&b, &ctx).await,
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e))),
        Err(e) => Err(e.into()),
    };
    let label = match &result {
        Ok(_) => "ok".to_string(),
        Err(e) => e.metric_label(),
    };
    ctx.metrics.reconciled(&label, started.elapsed());
    if result.is_ok() {
        ctx.record_success(&ObjectRef::from_obj(cached.as_ref()));
    }
    // A binding whose cleanup ran is gone once its finalizer is off.
    slot.finish(result.is_ok(), cached.metadata.deletion_timestamp.is_some());
    result
}

/// How soon a binding that arrived before the guardrail and namespace caches is looked at again.
const POLICY_CACHES_RETRY: Duration = Duration::from_millis(500);

/// Whether the guardrail and namespace caches hold their first list (`None`: their watches
/// ended, the controller is stopping). Never waits.
fn policy_caches_ready(ctx: &Context) -> Option<bool> {
    use futures::FutureExt;
    let mut ready = true;
    for wait in [
        ctx.guardrails.wait_until_ready().now_or_never(),
        ctx.namespaces.wait_until_ready().now_or_never(),
        ctx.accounts.wait_until_ready().now_or_never(),
    ] {
        match wait {
            Some(Ok(())) => {}
            Some(Err(_)) => return None,
            None => ready = false,
        }
    }
    Some(ready)
}

pub(super) fn binding_key(b: &IAMRoleBinding) -> String {
    format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any())
}

async fn apply(binding: &IAMRoleBinding, ctx: &Context) -> Result<Action, Error> {
    // 0. The account the role lives in (spec.account); a refused one waits for a change of
    //    the binding, its IAMAccount or its namespace's labels.
    let target = match accounts::target(binding, ctx, false).await {
        Ok(t) => t,
        Err(refusal) => {
            not_ready(binding, ctx, refusal.reason(), &refusal.to_string(), None).await?;
            return Ok(Action::requeue(ctx.jittered_resync()));
        }
    };
    let settings = &target.settings;
    let ns = binding.namespace().unwrap_or_default();
    let name = binding.name_any();

    // 1. Build the desired role; a spec that cannot be one waits for a spec change.
    let desired = match role::desired_role(binding, settings) {
        Ok(d) => d,
        Err(errors) => {
            let message = errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            not_ready(binding, ctx, reason::INVALID_SPEC, &message, None).await?;
            return Ok(Action::await_change());
        }
    };

    // 2. Guardrails, re-checked before any IAM write (one may have been added after the
    //    binding was admitted). A violating binding's role loses its grants (see enforce).
    //    The cache's guardrails are shared, not copied.
    let guardrails = ctx.guardrails.state();
    let ns_labels = ctx
        .namespaces
        .get(&ObjectRef::new(&ns))
        .map(|n| n.labels().clone())
        .unwrap_or_default();
    let applicable = guardrail::applicable(guardrails.iter().map(|g| g.as_ref()), &ns_labels);
    let in_namespace = ctx
        .claims
        .read()
        .map(|c| c.live_in_namespace(&ns))
        .unwrap_or(0)
        .max(1);
    let mut violations = guardrail::check(binding, settings, &applicable, in_namespace);
    // The managed policies' contents are read from IAM only when the spec itself passes.
    if violations.is_empty() {
        match enforce::managed_policy_violations(binding, ctx, &target.iam, &applicable).await {
            Ok(v) => violations = v,
            Err(e) => return Err(aws_failure(binding, ctx, e, &desired).await),
        }
    }
    if !violations.is_empty() {
        return enforce::violated(
            binding,
            ctx,
            &target.iam,
            &desired,
            &violations,
            &applicable,
        )
        .await;
    }
    let mut desired = desired;
    guardrail::enforce_boundary(&mut desired, &applicable);

    // 3. A ServiceAccount belongs to the oldest binding that claims it.
    let conflict = ctx
        .claims
        .read()
        .ok()
        .and_then(|c| c.conflicting_claim(binding));
    if let Some((other, sa)) = conflict {
        let message = format!(
            "ServiceAccount {sa:?} is already bound by IAMRoleBinding {other:?} in this namespace; a ServiceAccount can wear one role"
        );
        not_ready(
            binding,
            ctx,
            reason::SERVICE_ACCOUNT_CONFLICT,
            &message,
            Some(&desired),
        )
        .await?;
        return Ok(Action::requeue(
            ctx.jittered_resync()
                .min(std::time::Duration::from_secs(60)),
        ));
    }

    // 3. IRSA needs the cluster's OIDC provider in IAM.
    let uses_irsa = desired
        .role
        .assume_role_policy
        .to_string()
        .contains("AssumeRoleWithWebIdentity");
    if uses_irsa && let Some(provider) = settings.oidc_provider_arn() {
        match target.oidc_provider_exists(ctx, &provider).await {
            Ok(true) => {}
            Ok(false) => {
                let message = format!(
                    "the IAM OIDC provider {provider} does not exist; create it for the cluster's issuer (eksctl utils associate-iam-oidc-provider) or use podIdentity trust"
                );
                not_ready(
                    binding,
                    ctx,
                    reason::OIDC_PROVIDER_MISSING,
                    &message,
                    Some(&desired),
                )
                .await?;
                return Ok(Action::requeue(std::time::Duration::from_secs(300)));
            }
            Err(e) => return Err(aws_failure(binding, ctx, e, &desired).await),
        }
    }

    // 4. Read the role, diff, write; never touch a role hatrack does not own.
    let owner = Owner::of(settings, &ns, &name);
    // An adopted role (spec.adoptRole) is tagged as this binding's first, where allowed.
    match adoption::prepare(&target.iam, binding, &mut desired, &owner, &applicable).await {
        Ok(Ok(())) => {}
        Ok(Err(refusal)) => {
            not_ready(binding, ctx, refusal.reason, &refusal.message, None).await?;
            return Ok(Action::requeue(ctx.jittered_resync()));
        }
        Err(e) => return Err(aws_failure(binding, ctx, e, &desired).await),
    }
    let mut outcome = sync_role(&target.iam, &desired, &owner).await;
    let current = naming::role_name(&settings.cluster_identity(), &ns, &name);
    if binding.spec.adopt_role.is_none()
        && matches!(outcome, Ok(SyncOutcome::NotOwned))
        && desired.role.role_name != current
    {
        // The role an earlier version named after the cluster's name alone was claimed by a
        // same-named cluster elsewhere: this cluster's role is the ARN-keyed one.
        desired.role.role_name = current.clone();
        desired.role.arn = settings.role_arn(&current);
        outcome = sync_role(&target.iam, &desired, &owner).await;
    }
    let (made, created, boundary_kept) = match outcome {
        Ok(SyncOutcome::Synced {
            writes,
            created,
            boundary_kept,
        }) => (writes, created, boundary_kept),
        Ok(SyncOutcome::NotOwned) => {
            let message = format!(
                "IAM role {} exists but is not owned by this binding (its {} tags do not name cluster {:?}, namespace {ns:?}, name {name:?}); hatrack will not modify or delete it. Delete or retag the role, or rename the binding.",
                desired.role.role_name,
                naming::TAG_PREFIX,
                settings.cluster_name
            );
            not_ready(
                binding,
                ctx,
                reason::ROLE_NOT_OWNED,
                &message,
                Some(&desired),
            )
            .await?;
            return Ok(Action::requeue(ctx.jittered_resync()));
        }
        Err(e) => return Err(aws_failure(binding, ctx, e, &desired).await),
    };
    if !made.is_empty() {
        let in_sync_before = binding.status.as_ref().and_then(|s| s.observed_generation)
            == binding.metadata.generation
            && is_ready(binding);
        let (reason, verb) = if created {
            ("RoleCreated", "Created")
        } else if in_sync_before {
            ("DriftCorrected", "Corrected drift in")
        } else {
            ("RoleUpdated", "Updated")
        };
        tracing::info!(role = %desired.role.role_name, calls = ?made, "{verb} IAM role");
        publish(
            ctx,
            binding,
            EventType::Normal,
            reason,
            "Reconcile",
            format!(
                "{verb} IAM role {} ({})",
                desired.role.role_name,
                made.join(", ")
            ),
        )
        .await;
    }
    if let Some(kept) = &boundary_kept {
        tracing::info!(role = %desired.role.role_name, boundary = %kept, "spec has no permissions boundary; the role keeps its boundary");
    }

    // 5b. EKS Pod Identity: one association per ServiceAccount, to the role just synced.
    let pod_identity_associations =
        match super::associations::apply_step(binding, ctx, &desired).await? {
            super::associations::Step::Synced(a) => a,
            super::associations::Step::Reported(action) => return Ok(action),
        };

    // 6. IRSA reads the role ARN from the ServiceAccount.
    annotate_service_accounts(binding, ctx, &desired, uses_irsa).await?;

    // 7. Status.
    let mut message = format!("IAM role {} is in sync", desired.role.role_name);
    if let Some(kept) = &boundary_kept {
        message.push_str(&format!(
            "; it keeps permissions boundary {kept} (hatrack never removes a boundary)"
        ));
    }
    let mut new_status = build_status(
        binding,
        true,
        reason::SYNCED,
        &message,
        Some(&desired),
        !made.is_empty(),
    );
    enforce::restored(binding, ctx, &mut new_status).await;
    new_status.pod_identity_associations = pod_identity_associations;
    write_status(binding, ctx, new_status).await?;
    ctx.metrics.binding_ready(&binding_key(binding), Some(true));
    Ok(Action::requeue(ctx.jittered_resync()))
}

fn is_ready(binding: &IAMRoleBinding) -> bool {
    binding.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

async fn annotate_service_accounts(
    binding: &IAMRoleBinding,
    ctx: &Context,
    desired: &DesiredRole,
    uses_irsa: bool,
) -> Result<(), Error> {
    let ns = binding.namespace().unwrap_or_default();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
    for sa in ctx.service_accounts.state() {
        if sa.namespace().as_deref() != Some(ns.as_str()) {
            continue;
        }
        let current = sa.annotations().get(ROLE_ARN_ANNOTATION);
        let bound = binding.spec.service_accounts.contains(&sa.name_any());
        let patch = if bound && uses_irsa && current != Some(&desired.role.arn) {
            json!({"metadata": {"annotations": {ROLE_ARN_ANNOTATION: desired.role.arn}}})
        } else if (!bound || !uses_irsa) && current == Some(&desired.role.arn) {
            // No longer bound: take our annotation back, but never someone else's.
            json!({"metadata": {"annotations": {ROLE_ARN_ANNOTATION: null}}})
        } else {
            continue;
        };
        set_role_arn_annotation(&api, &sa.name_any(), patch).await?;
    }
    Ok(())
}

/// Applies an annotation patch to a ServiceAccount; one deleted since the cache saw it needs
/// nothing.
async fn set_role_arn_annotation(
    api: &Api<ServiceAccount>,
    name: &str,
    patch: serde_json::Value,
) -> Result<(), Error> {
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn remove_annotations(
    binding: &IAMRoleBinding,
    ctx: &Context,
    arn: &str,
) -> Result<(), Error> {
    let ns = binding.namespace().unwrap_or_default();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
    for sa in ctx.service_accounts.state() {
        if sa.namespace().as_deref() == Some(ns.as_str())
            && sa
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

async fn cleanup(binding: &IAMRoleBinding, ctx: &Context) -> Result<Action, Error> {
    // The role is removed from the account it was made in, even if the IAMAccount no longer
    // selects the namespace; without the IAMAccount it cannot be reached, and deletion waits.
    let target = match accounts::target(binding, ctx, true).await {
        Ok(t) => t,
        Err(refusal) => {
            let st = build_status(
                binding,
                false,
                reason::DELETING,
                &refusal.to_string(),
                None,
                false,
            );
            write_status(binding, ctx, st).await?;
            return Err(refusal.into());
        }
    };
    let settings = &target.settings;
    let ns = binding.namespace().unwrap_or_default();
    let name = binding.name_any();
    // The name depends only on identity (or is the adopted role's), so cleanup works even
    // for an invalid spec.
    let role_name = binding.spec.adopt_role.clone().unwrap_or_else(|| {
        naming::role_name_in_use(
            &settings.cluster_identity(),
            settings
                .cluster_region
                .is_some()
                .then_some(settings.cluster_name.as_str()),
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
        let applicable = enforce::applicable_guardrails(ctx, binding);
        let refs: Vec<&crate::crd::IAMGuardrail> = applicable.iter().map(|g| g.as_ref()).collect();
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
    super::associations::cleanup_step(binding, ctx).await?;
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
            let st = build_status(
                binding,
                false,
                reason::DELETING,
                &err.to_string(),
                None,
                false,
            );
            write_status(binding, ctx, st).await?;
            return Err(err);
        }
        Err(e) => {
            publish(
                ctx,
                binding,
                EventType::Warning,
                reason::AWS_ERROR,
                "Delete",
                e.to_string(),
            )
            .await;
            return Err(e.into());
        }
    }
    ctx.metrics.binding_ready(&binding_key(binding), None);
    Ok(Action::await_change())
}

/// Records an AWS failure in status and Events, and hands the error to the error policy
/// (which backs off with jitter).
async fn aws_failure(
    binding: &IAMRoleBinding,
    ctx: &Context,
    e: IamError,
    desired: &DesiredRole,
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
    let st = build_status(
        binding,
        false,
        reason::AWS_ERROR,
        &message,
        Some(desired),
        false,
    );
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

pub(super) async fn publish(
    ctx: &Context,
    binding: &IAMRoleBinding,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let reference = binding.object_ref(&());
    let note = status::event_note(note);
    // The Recorder names its Events `<binding>.<hex time>`, which for the longest binding
    // names exceeds the 253 characters an Event name may have (the API server rejects it):
    // those bindings' Warnings are written one-off, under a shortened name, like Normal ones.
    let recorder_can_name = reference
        .name
        .as_deref()
        .is_some_and(|n| n.len() <= EVENT_NAME_OBJECT_MAX);
    let result = match type_ {
        // Warnings repeat while a problem lasts: the Recorder folds repeats into one Event
        // with a count. Normal events are one-off outcomes (created, updated, deleted), written
        // directly: the Recorder would keep each in its cache for 6 minutes and rescan the whole
        // cache on every publish, which a burst of thousands of creations makes large.
        EventType::Warning if recorder_can_name => {
            let event = Event {
                type_,
                reason: reason.into(),
                note: Some(note),
                action: action.into(),
                secondary: None,
            };
            ctx.recorder.publish(&event, &reference).await
        }
        _ => {
            let event = one_off_event(&reference, type_, reason, action, note, &ctx.event_instance);
            let api: Api<K8sEvent> = Api::namespaced(
                ctx.client.clone(),
                reference.namespace.as_deref().unwrap_or("default"),
            );
            api.create(&PostParams::default(), &event).await.map(drop)
        }
    };
    if let Err(e) = result {
        // Events are best effort; never fail a reconcile over one.
        tracing::warn!(error = %e, "cannot publish event");
    }
}

/// The longest object name that still leaves room for `.<16 hex digits>` in an Event name
/// (at most 253 characters, a DNS subdomain).
const EVENT_NAME_OBJECT_MAX: usize = 253 - 17;

/// `<object>.<hex time>` as the Recorder names Events, the object's name cut short when
/// needed so the whole stays a valid Event name (no label may end in `-` or `.`).
fn event_name(object: &str, nanos: i128) -> String {
    let mut end = object.len().min(EVENT_NAME_OBJECT_MAX);
    while !object.is_char_boundary(end) {
        end -= 1;
    }
    let prefix = object[..end].trim_end_matches(['-', '.']);
    format!("{prefix}.{nanos:x}")
}

/// An Event as the Recorder would write it the first time (events.k8s.io/v1).
fn one_off_event(
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
    instance: &str,
) -> K8sEvent {
    let now = jiff::Timestamp::now();
    K8sEvent {
        action: Some(action.into()),
        reason: Some(reason.into()),
        event_time: Some(MicroTime(now)),
        regarding: Some(reference.clone()),
        note: Some(note),
        metadata: kube::api::ObjectMeta {
            namespace: reference.namespace.clone(),
            name: Some(event_name(
                reference.name.as_deref().unwrap_or(MANAGER),
                now.as_nanosecond(),
            )),
            ..Default::default()
        },
        reporting_controller: Some(MANAGER.into()),
        reporting_instance: Some(instance.into()),
        type_: Some(
            match type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .into(),
        ),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_off_events_name_the_binding_and_the_reporter() {
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            name: Some("app".into()),
            namespace: Some("team".into()),
            ..Default::default()
        };
        let e = one_off_event(
            &reference,
            EventType::Normal,
            "RoleCreated",
            "Reconcile",
            "made".into(),
            "pod-1",
        );
        assert_eq!(e.metadata.namespace.as_deref(), Some("team"));
        assert!(e.metadata.name.unwrap().starts_with("app."));
        assert_eq!(e.regarding, Some(reference));
        assert_eq!(e.type_.as_deref(), Some("Normal"));
        assert_eq!(e.reason.as_deref(), Some("RoleCreated"));
        assert_eq!(e.reporting_controller.as_deref(), Some(MANAGER));
        assert_eq!(e.reporting_instance.as_deref(), Some("pod-1"));
        assert!(e.series.is_none() && e.event_time.is_some());
    }

    #[test]
    fn event_names_stay_valid_for_the_longest_object_names() {
        let nanos = 0x18ec_8b2d_849c_5a0e_i128;
        assert_eq!(event_name("app", nanos), "app.18ec8b2d849c5a0e");
        for object in [
            "a".repeat(253),
            format!(
                "{}-{}",
                "a".repeat(EVENT_NAME_OBJECT_MAX - 1),
                "b".repeat(20)
            ),
            format!(
                "{}.{}",
                "a".repeat(EVENT_NAME_OBJECT_MAX - 1),
                "b".repeat(20)
            ),
        ] {
            let name = event_name(&object, nanos);
            assert!(name.len() <= 253, "{} characters", name.len());
            assert!(!name.contains("-.") && !name.contains(".."), "{name}");
            assert!(name.ends_with(".18ec8b2d849c5a0e"));
        }
    }
}
