//! One reconcile of one binding: gather (the account, what surrounds the binding from the
//! caches, the judgement [`crate::judge`], and what the decision needs read from IAM) → decide
//! ([`super::decide::plan`], pure: every write to the role and the ServiceAccounts, or the
//! refusal) → execute → report ([`super::report`], the one place that writes the binding's
//! status). The Pod Identity associations are an edge of their own inside execute, as their
//! writes depend on ids EKS hands out. Each step ends in an outcome ([`Stop`] when it cannot
//! go on). Cleanup on delete runs the edges in reverse.

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

use super::accounts;
use super::cache::CachedBinding;
use super::cleanup::cleanup;
use super::decide::plan::{self, Make, Plan, Read, Refusal};
use super::decide::{self, Requeue};
use super::enforce;
use super::events::publish;
use super::report::{Stop, Synced, is_ready, report};
use super::resync_gate::{Admission, ResyncSlot};
use super::{Context, Error, FINALIZER, ROLE_ARN_ANNOTATION};
use crate::claims::{Age, ClaimIndex};
use crate::crd::{IAMAccount, IAMGuardrail, IAMRoleBinding};
use crate::guardrail::ManagedPolicyDocument;
use crate::judge::{self, Surroundings};
use crate::naming;
use crate::role::DesiredRole;
use crate::sync::{Owner, SyncOutcome, make_writes};

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
    let outcome = Box::pin(make(binding, ctx)).await;
    report(binding, ctx, outcome).await
}

/// Makes the role of a live binding: gather (the account, the judgement, the reads it needs)
/// → decide ([`plan::plan`], pure) → execute ([`execute`]); how it ended is [`report`]ed by
/// [`apply`].
async fn make(binding: &IAMRoleBinding, ctx: &Context) -> Result<Synced, Stop> {
    // Gather 1. The account the role lives in (spec.account) and its IAM client; a refused one
    //    waits for a change of the binding, its IAMAccount or its namespace's labels.
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

    // Gather 2. What surrounds the binding, from the caches (shared, not copied), judged
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

    // Gather 3. What the decision needs read (known from the judgement: a refused binding
    //    reads nothing): the OIDC provider, the Pod Identity chaining edge, the role, the
    //    ServiceAccounts.
    let owner = Owner::of(settings, &ns, &name);
    let own_name = naming::role_name(&settings.cluster_identity(), &ns, &name);
    let next = decide::after_judgement(&judgement);
    let reads = plan::reads(binding, &judgement, &next, settings.oidc_provider_arn());
    let mut desired = judgement.desired.clone();
    let mut read = Read::default();
    if let Some(provider) = reads.oidc_provider {
        let exists = target.oidc_provider_exists(ctx, &provider).await;
        let exists = exists.map_err(|e| Stop::aws(e, desired.as_ref()))?;
        read.oidc_provider = Some((provider, exists));
    }
    let provider_missing = matches!(read.oidc_provider, Some((_, false)));
    let mut chain = None;
    if !provider_missing {
        // Pod Identity in another account: the chaining role at home, the target's trust.
        // Boxed, as the association steps are: kept off the stack of an already deep future.
        if reads.chain
            && let Some(d) = desired.as_mut()
        {
            chain = Box::pin(super::associations::chain_step(binding, ctx, &target, d)).await?;
        }
        if let Some(role_name) = &reads.role {
            let role = target.iam.get_role(role_name).await;
            read.role = role.map_err(|e| Stop::aws(e, desired.as_ref()))?;
            if reads.chain
                && let Some(d) = &desired
                && plan::needs_own_name_read(binding, d, read.role.as_ref(), &owner, &own_name)
            {
                let own = target.iam.get_role(&own_name).await;
                read.own_name_role = Some(own.map_err(|e| Stop::aws(e, Some(d)))?);
            }
        }
    }
    if reads.service_accounts {
        read.service_accounts = service_accounts_in(ctx, &ns)
            .iter()
            .map(|sa| {
                let current = sa.annotations().get(ROLE_ARN_ANNOTATION).cloned();
                (sa.name_any(), current)
            })
            .collect();
    }

    // Decide (pure), then execute.
    match plan::plan(
        binding,
        &judgement,
        next,
        desired.as_ref(),
        &read,
        &owner,
        &own_name,
    ) {
        Plan::Refuse(refusal) => Err(refused(ctx, refusal)),
        Plan::Revoke(revocation) => {
            Err(enforce::revoke(binding, ctx, &target.iam, *revocation).await?)
        }
        // Boxed: the gathered state stays on the heap, not on a deep future's stack.
        Plan::Make(make) => Box::pin(execute(binding, ctx, &target, *make, chain, &owner)).await,
    }
}

/// A refusal's report: Ready=False, then its requeue.
fn refused(ctx: &Context, refusal: Refusal) -> Stop {
    let requeue = match refusal.requeue {
        Requeue::AwaitChange => Action::await_change(),
        Requeue::Resync => Action::requeue(ctx.jittered_resync()),
        Requeue::ResyncAtMost(most) => Action::requeue(ctx.jittered_resync().min(most)),
        Requeue::Fixed(after) => Action::requeue(after),
    };
    Stop::ready_false(
        refusal.reason,
        refusal.message,
        refusal.desired.as_deref(),
        requeue,
    )
}

/// Makes the writes decided for a role: an adopted role's ownership tags, the role's writes
/// (with their Event), the Pod Identity associations' edge, the ServiceAccount annotations.
async fn execute(
    binding: &IAMRoleBinding,
    ctx: &Context,
    target: &accounts::Target,
    make: Make,
    chain: Option<Box<super::associations::Chain>>,
    owner: &Owner,
) -> Result<Synced, Stop> {
    let Make {
        desired,
        adopt_tags,
        role_writes,
        annotations,
    } = make;
    let role_name = &desired.role.role_name;
    if let Some(tags) = &adopt_tags {
        if let Err(e) = target.iam.tag_role(role_name, tags).await {
            return Err(Stop::aws(e, Some(&desired)));
        }
        tracing::info!(role = %role_name, "adopted IAM role: tagged as this binding's");
    }
    let (made, created, boundary_kept) =
        match make_writes(&target.iam, &desired, owner, role_writes).await {
            Ok(SyncOutcome::Synced {
                writes,
                created,
                boundary_kept,
            }) => (writes, created, boundary_kept),
            // A create that found the role made meanwhile, by someone else.
            Ok(SyncOutcome::NotOwned) => {
                return Err(refused(ctx, plan::not_owned(&desired, owner)));
            }
            Err(e) => return Err(Stop::aws(e, Some(&desired))),
        };
    if !made.is_empty() {
        let in_sync_before = binding.status.as_ref().and_then(|s| s.observed_generation)
            == binding.metadata.generation
            && is_ready(binding);
        let (reason, verb) = decide::sync_event(created, in_sync_before);
        tracing::info!(role = %role_name, calls = ?made, "{verb} IAM role");
        publish(
            ctx,
            binding,
            EventType::Normal,
            reason,
            "Reconcile",
            format!("{verb} IAM role {role_name} ({})", made.join(", ")),
        )
        .await;
    }
    if let Some(kept) = &boundary_kept {
        tracing::info!(role = %role_name, boundary = %kept, "spec has no permissions boundary; the role keeps its boundary");
    }

    // EKS Pod Identity: one association per ServiceAccount, to the role just synced.
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

    // IRSA reads the role ARN from the ServiceAccount.
    annotate_service_accounts(binding, ctx, &desired, &annotations).await?;

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

/// Sets or takes back the role ARN annotation of each ServiceAccount as decided.
async fn annotate_service_accounts(
    binding: &IAMRoleBinding,
    ctx: &Context,
    desired: &DesiredRole,
    annotations: &[(String, decide::Annotation)],
) -> Result<(), Error> {
    let ns = binding.namespace().unwrap_or_default();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
    for (sa, change) in annotations {
        let value = match change {
            decide::Annotation::Keep => continue,
            decide::Annotation::Set => json!(desired.role.arn),
            decide::Annotation::Remove => serde_json::Value::Null,
        };
        let patch = json!({"metadata": {"annotations": {ROLE_ARN_ANNOTATION: value}}});
        set_role_arn_annotation(&api, sa, patch).await?;
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
