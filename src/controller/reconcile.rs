//! One reconcile of one binding: gather what surrounds the binding → decide (pure: judge it,
//! [`crate::judge`], and say what that means, [`super::decide`]) → execute (each edge reads
//! what it changes and asks a pure function for the writes: the role, [`crate::role_sync`];
//! the associations; the annotations) → report ([`super::report`], the one place that writes
//! the binding's status). Each step ends in an outcome ([`Stop`] when it cannot go on).
//! Cleanup on delete runs the same edges in reverse.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::cache::CachedBinding;
use super::cleanup::cleanup;
use super::decide::{self, Next, Requeue};
use super::enforce;
use super::events::publish;
use super::report::{Stop, Synced, is_ready, report};
use super::resync_gate::{Admission, ResyncSlot};
use super::status::reason;
use super::{Context, Error, FINALIZER, ROLE_ARN_ANNOTATION};
use super::{accounts, adoption};
use crate::claims::{Age, ClaimIndex};
use crate::crd::{IAMAccount, IAMGuardrail, IAMRoleBinding};
use crate::guardrail::ManagedPolicyDocument;
use crate::judge::{self, Surroundings};
use crate::naming;
use crate::role::DesiredRole;
use crate::sync::{Owner, SyncOutcome, sync_role};

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

/// The reconcile of a live binding: [`make`] gathers, decides and executes, and says how it
/// ended; [`report`] reports that, the one place that writes its status.
async fn apply(binding: &IAMRoleBinding, ctx: &Context) -> Result<Action, Error> {
    let outcome = make(binding, ctx).await;
    report(binding, ctx, outcome).await
}

/// Makes the role of a live binding: steps 1-8; how they ended is [`report`]ed by [`apply`].
async fn make(binding: &IAMRoleBinding, ctx: &Context) -> Result<Synced, Stop> {
    // 1. The account the role lives in (spec.account) and its IAM client; a refused one waits
    //    for a change of the binding, its IAMAccount or its namespace's labels.
    let target = match accounts::target(binding, ctx, false).await {
        Ok(t) => t,
        Err(refusal) => {
            return Err(Stop::ready_false(
                refusal.reason(),
                refusal.to_string(),
                None,
                Action::requeue(ctx.jittered_resync()),
            ));
        }
    };
    let settings = &target.settings;
    let ns = binding.namespace().unwrap_or_default();
    let name = binding.name_any();

    // 2. Gather what surrounds the binding from the caches (shared, not copied) and judge it
    //    (pure): guardrails are re-checked before any IAM write, as one may have been added
    //    after the binding was admitted. The managed policies' contents are read from IAM only
    //    when they are the one thing left to judge.
    let guardrails = ctx.guardrails.state();
    let guardrail_refs: Vec<&IAMGuardrail> = guardrails.iter().map(|g| g.as_ref()).collect();
    let all_accounts = ctx.accounts.state();
    let account_refs: Vec<&IAMAccount> = all_accounts.iter().map(|a| a.as_ref()).collect();
    let ns_labels = namespace_labels(ctx, &ns);
    let judge_with = |managed_policies: Option<&[ManagedPolicyDocument]>| {
        let claims = ctx.claims.read();
        let none = ClaimIndex::default();
        judge::judge(
            binding,
            &ctx.settings,
            &Surroundings {
                guardrails: &guardrail_refs,
                namespace_labels: &ns_labels,
                accounts: &account_refs,
                claims: claims.as_deref().unwrap_or(&none),
                age: Age::of(binding),
                managed_policies,
            },
        )
    };
    let mut judgement = judge_with(None);
    if judgement.needs_managed_documents() {
        match ctx
            .managed_policies
            .documents(&target.iam, &binding.spec.managed_policy_arns)
            .await
        {
            Ok(docs) => judgement = judge_with(Some(&docs)),
            Err(e) => return Err(Stop::aws(e, judgement.desired.as_ref())),
        }
    }

    // 3. Decide (pure) what the judgement means for this reconcile.
    match decide::after_judgement(&judgement) {
        Next::Proceed => {}
        Next::Refuse {
            reason,
            message,
            with_role,
            requeue,
        } => {
            let desired = judgement.desired.as_ref().filter(|_| with_role);
            let requeue = match requeue {
                Requeue::AwaitChange => Action::await_change(),
                Requeue::Resync => Action::requeue(ctx.jittered_resync()),
                Requeue::ResyncAtMost(most) => Action::requeue(ctx.jittered_resync().min(most)),
            };
            return Err(Stop::ready_false(reason, message, desired, requeue));
        }
        // A violating binding's role loses its grants (see enforce). Spec errors are reported
        // before violations, so a violating binding's spec is a role.
        Next::Violated(violations) => {
            if let Some(desired) = &judgement.desired {
                return Err(enforce::violated(
                    binding,
                    ctx,
                    &target.iam,
                    desired,
                    &violations,
                    &judgement.applicable,
                )
                .await?);
            }
        }
    }
    let Some(mut desired) = judgement.desired.clone() else {
        // Unreachable: a judgement without a role has a problem, handled above.
        return Err(Stop::Unreported(Ok(Action::await_change())));
    };
    let applicable = judgement.applicable.clone();

    // 4. IRSA needs the cluster's OIDC provider in IAM.
    let uses_irsa = desired.uses_irsa();
    let provider = settings.oidc_provider_arn();
    if decide::needs_oidc_provider(&desired, provider.as_deref())
        && let Some(provider) = provider
    {
        match target.oidc_provider_exists(ctx, &provider).await {
            Ok(true) => {}
            Ok(false) => {
                let message = format!(
                    "the IAM OIDC provider {provider} does not exist; create it for the cluster's issuer (eksctl utils associate-iam-oidc-provider) or use podIdentity trust"
                );
                return Err(Stop::ready_false(
                    reason::OIDC_PROVIDER_MISSING,
                    message,
                    Some(&desired),
                    Action::requeue(std::time::Duration::from_secs(300)),
                ));
            }
            Err(e) => return Err(Stop::aws(e, Some(&desired))),
        }
    }

    // 5. Pod Identity in another account: the chaining role at home, the target's trust.
    // Boxed, as the association steps are: kept off the stack of an already deep future.
    let chain = Box::pin(super::associations::chain_step(
        binding,
        ctx,
        &target,
        &mut desired,
    ))
    .await?;

    // 6. Read the role, diff, write; never touch a role hatrack does not own.
    let owner = Owner::of(settings, &ns, &name);
    // An adopted role (spec.adoptRole) is tagged as this binding's first, where allowed.
    match adoption::prepare(&target.iam, binding, &mut desired, &owner, &applicable).await {
        Ok(Ok(())) => {}
        Ok(Err(refusal)) => {
            return Err(Stop::ready_false(
                refusal.reason,
                refusal.message,
                None,
                Action::requeue(ctx.jittered_resync()),
            ));
        }
        Err(e) => return Err(Stop::aws(e, Some(&desired))),
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
            return Err(Stop::ready_false(
                reason::ROLE_NOT_OWNED,
                message,
                Some(&desired),
                Action::requeue(ctx.jittered_resync()),
            ));
        }
        Err(e) => return Err(Stop::aws(e, Some(&desired))),
    };
    if !made.is_empty() {
        let in_sync_before = binding.status.as_ref().and_then(|s| s.observed_generation)
            == binding.metadata.generation
            && is_ready(binding);
        let (reason, verb) = decide::sync_event(created, in_sync_before);
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

    // 7. EKS Pod Identity: one association per ServiceAccount, to the role just synced.
    let pod_identity_associations = Box::pin(super::associations::apply_step(
        binding,
        ctx,
        &desired,
        chain.as_deref(),
    ))
    .await?;
    if let Some(chain) = &chain {
        Box::pin(super::associations::chain_trust_step(
            chain,
            &desired,
            &pod_identity_associations,
        ))
        .await?;
    }

    // 8. IRSA reads the role ARN from the ServiceAccount.
    annotate_service_accounts(binding, ctx, &desired, uses_irsa).await?;

    Ok(Synced {
        desired,
        changed: !made.is_empty(),
        boundary_kept,
        pod_identity_associations,
    })
}

/// The labels of a namespace, from the cache (empty when unknown).
pub(super) fn namespace_labels(
    ctx: &Context,
    namespace: &str,
) -> std::collections::BTreeMap<String, String> {
    ctx.namespaces
        .get(&ObjectRef::new(namespace))
        .map(|n| n.labels().clone())
        .unwrap_or_default()
}

async fn annotate_service_accounts(
    binding: &IAMRoleBinding,
    ctx: &Context,
    desired: &DesiredRole,
    uses_irsa: bool,
) -> Result<(), Error> {
    let ns = binding.namespace().unwrap_or_default();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
    for sa in service_accounts_in(ctx, &ns) {
        let bound = binding.spec.service_accounts.contains(&sa.name_any());
        let current = sa
            .annotations()
            .get(ROLE_ARN_ANNOTATION)
            .map(String::as_str);
        let value = match decide::annotation(bound && uses_irsa, current, &desired.role.arn) {
            decide::Annotation::Keep => continue,
            decide::Annotation::Set => json!(desired.role.arn),
            decide::Annotation::Remove => serde_json::Value::Null,
        };
        let patch = json!({"metadata": {"annotations": {ROLE_ARN_ANNOTATION: value}}});
        set_role_arn_annotation(&api, &sa.name_any(), patch).await?;
    }
    Ok(())
}

/// The cached ServiceAccounts of `namespace`, found through the namespace index.
pub(super) fn service_accounts_in(
    ctx: &Context,
    namespace: &str,
) -> Vec<Arc<super::CachedServiceAccount>> {
    let names = ctx
        .service_accounts_by_namespace
        .read()
        .map(|i| i.names(namespace))
        .unwrap_or_default();
    names
        .iter()
        .filter_map(|n| {
            ctx.service_accounts
                .get(&ObjectRef::new(n).within(namespace))
        })
        .collect()
}

/// Applies an annotation patch to a ServiceAccount; one deleted since the cache saw it needs
/// nothing.
pub(super) async fn set_role_arn_annotation(
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
