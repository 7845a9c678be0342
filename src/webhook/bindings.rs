//! `POST /validate/iamrolebindings`: spec validation, ServiceAccount claims and guardrails for
//! CREATE and UPDATE of IAMRoleBindings, with what watch caches know of guardrails, bindings
//! and namespace labels. The decision itself is [`crate::binding_admission::admit`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::binding_admission::{BindingContext, admit};
use crate::crd::{IAMGuardrail, IAMRoleBinding};
use crate::settings::Settings;

/// What the webhook knows around a binding.
pub trait BindingView: Send + Sync {
    fn context(&self, namespace: &str) -> BindingContext;

    /// Whether the view is complete (watch caches listed): `/readyz` waits for it, so a new
    /// replica never admits a binding before it knows the guardrails.
    fn ready(&self) -> bool {
        true
    }
}

/// A fixed view: tests, and `--lookups off` (no guardrails or other bindings known, so only
/// the spec is checked at admission; the controller still enforces guardrails).
#[derive(Debug, Default, Clone)]
pub struct StaticBindingView(pub BindingContext);

impl BindingView for StaticBindingView {
    fn context(&self, _namespace: &str) -> BindingContext {
        self.0.clone()
    }
}

/// Watch caches of IAMGuardrails, IAMRoleBindings, IAMAccounts and Namespace labels.
pub struct BindingCache {
    accounts: Store<crate::crd::IAMAccount>,
    guardrails: Store<IAMGuardrail>,
    bindings: Store<IAMRoleBinding>,
    namespaces: Store<Namespace>,
    synced: Arc<AtomicBool>,
}

impl BindingCache {
    /// Starts the caches, a Namespace watch included; spawn the returned future. Needs
    /// get/list/watch on iamguardrails, iamrolebindings, iamaccounts and namespaces.
    pub fn start(
        client: kube::Client,
    ) -> (Arc<BindingCache>, impl Future<Output = ()> + Send + 'static) {
        let (namespaces, namespace_watch) = crate::webhook::cache::namespace_watch(client.clone());
        let (cache, run) = Self::start_with(client, namespaces);
        (cache, async move {
            futures::join!(run, namespace_watch);
        })
    }

    /// Starts the guardrail, binding and account caches; namespace labels come from
    /// `namespaces`, which another watch fills.
    pub fn start_with(
        client: kube::Client,
        namespaces: Store<Namespace>,
    ) -> (Arc<BindingCache>, impl Future<Output = ()> + Send + 'static) {
        let (guardrails, gw) = reflector::store();
        let (bindings, bw) = reflector::store();
        let (accounts, aw) = reflector::store();
        let g = crate::watch::guardrails(client.clone(), gw).for_each(|_| async {});
        let a = crate::controller::accounts::watch(client.clone(), aw).for_each(|_| async {});
        let b = watcher(
            Api::<IAMRoleBinding>::all(client),
            watcher::Config::default().any_semantic(),
        )
        .default_backoff()
        .modify(|b: &mut IAMRoleBinding| {
            // Claims and counts need names and ServiceAccounts only.
            b.metadata.managed_fields = None;
            b.metadata.annotations = None;
            b.spec.inline_policies.clear();
            b.status = None;
        })
        .reflect(bw)
        .for_each(|_| async {});
        let synced = Arc::new(AtomicBool::new(false));
        let stores = (
            guardrails.clone(),
            bindings.clone(),
            namespaces.clone(),
            accounts.clone(),
        );
        let flag = synced.clone();
        let ready = async move {
            let (g, b, n, a) = futures::join!(
                stores.0.wait_until_ready(),
                stores.1.wait_until_ready(),
                stores.2.wait_until_ready(),
                stores.3.wait_until_ready()
            );
            if g.is_ok() && b.is_ok() && n.is_ok() && a.is_ok() {
                flag.store(true, Ordering::Release);
                tracing::info!("binding caches synced");
            }
        };
        let cache = Arc::new(BindingCache {
            accounts,
            guardrails,
            bindings,
            namespaces,
            synced,
        });
        (cache, async move {
            futures::join!(g, b, a, ready);
        })
    }
}

impl BindingView for BindingCache {
    /// Pointers into the caches: guardrails (few, all needed for selector matching), this
    /// namespace's labels by key, and only this namespace's bindings.
    fn context(&self, namespace: &str) -> BindingContext {
        BindingContext {
            guardrails: self.guardrails.state(),
            namespace_labels: self
                .namespaces
                .get(&ObjectRef::new(namespace))
                .map(|n| n.labels().clone())
                .unwrap_or_default(),
            others_in_namespace: self
                .bindings
                .state_filter(|b| b.metadata.namespace.as_deref() == Some(namespace)),
            accounts: self.accounts.state(),
        }
    }

    fn ready(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }
}

/// Answers one AdmissionReview of an IAMRoleBinding. `Err` is a body that is not an
/// AdmissionReview (HTTP 400).
pub fn review_binding(
    body: &[u8],
    settings: &Settings,
    view: &dyn BindingView,
) -> Result<AdmissionReview<DynamicObject>, String> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(|e| format!("not an AdmissionReview: {e}"))?;
    let request: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|e| format!("AdmissionReview without a request: {e}"))?;
    let response = AdmissionResponse::from(&request);
    let span = tracing::info_span!("binding_review", uid = %request.uid, namespace = request.namespace.as_deref().unwrap_or(""), name = %request.name);
    let _guard = span.enter();
    let read = |o: &Option<DynamicObject>| -> Result<Option<IAMRoleBinding>, String> {
        match o {
            None => Ok(None),
            Some(obj) => {
                let value = serde_json::to_value(obj).map_err(|e| e.to_string())?;
                serde_path_to_error::deserialize(&value)
                    .map(Some)
                    .map_err(|e| format!("{}: {}", e.path(), e.inner()))
            }
        }
    };
    let answer = match (read(&request.object), read(&request.old_object)) {
        (Ok(Some(mut binding)), Ok(old)) => {
            if binding.metadata.namespace.is_none() {
                binding.metadata.namespace = request.namespace.clone();
            }
            let ns = binding.namespace().unwrap_or_default();
            let context = view.context(&ns);
            let admission = admit(&binding, old.as_ref(), settings, &context);
            let problems = admission.problems;
            if problems.is_empty() {
                let mut response = response;
                if let Some(note) = admission.unchecked {
                    response.warnings = Some(vec![note]);
                }
                response
            } else {
                tracing::info!(problems = problems.len(), "denied IAMRoleBinding");
                // 403 Forbidden, as for workloads: a bare deny carries code 400 and no
                // reason, which kubectl shows as a reason-less "Error from server".
                with_status(
                    response.deny(format!(
                        "IAMRoleBinding {ns}/{} denied by hatrack:\n- {}",
                        binding.name_any(),
                        problems.join("\n- ")
                    )),
                    403,
                    "Forbidden",
                )
            }
        }
        // DELETE and CONNECT carry no new object: nothing to judge.
        (Ok(None), _) => response,
        (Err(e), _) | (_, Err(e)) => with_status(
            response.deny(format!("cannot read the IAMRoleBinding: {e}")),
            400,
            "BadRequest",
        ),
    };
    Ok(answer.into_review())
}

fn with_status(mut response: AdmissionResponse, code: u16, reason: &str) -> AdmissionResponse {
    response.result.code = code;
    response.result.reason = reason.into();
    response
}
