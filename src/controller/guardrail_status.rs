//! The IAMGuardrail status controller: writes each guardrail's `Ready` condition (`Valid`, or
//! `Invalid` with what is wrong) and the generation seen. A kube-runtime `Controller` on the
//! guardrail cache the binding controller keeps, so a failed write is tried again with
//! backoff instead of waiting for the guardrail's next change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};

use super::MANAGER;
use super::requeue::{FailureClass, retry_delay};
use super::status;
use crate::crd::{IAMGuardrail, IAMGuardrailStatus};

/// The status `g` should carry, or `None` when it carries it already (or is being deleted).
pub fn desired_status(g: &IAMGuardrail, now: Time) -> Option<IAMGuardrailStatus> {
    if g.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let problems = crate::guardrail::guardrail_problems(g);
    let (ready, reason, message) = if problems.is_empty() {
        (
            true,
            "Valid",
            "enforced on IAMRoleBindings of the namespaces it selects".to_string(),
        )
    } else {
        (false, status::GUARDRAIL_INVALID, problems.join("; "))
    };
    let old = g.status.clone().unwrap_or_default();
    let current = old.conditions.iter().find(|c| c.type_ == "Ready");
    let stalled = old.conditions.iter().any(|c| c.type_ == "Stalled");
    let unchanged = old.observed_generation == g.metadata.generation
        && stalled != ready
        && current.is_some_and(|c| {
            c.status == if ready { "True" } else { "False" }
                && c.reason == reason
                && c.message == message
        });
    if unchanged {
        return None;
    }
    Some(IAMGuardrailStatus {
        observed_generation: g.metadata.generation,
        conditions: status::with_ready(
            &old.conditions,
            status::ready_condition(
                ready,
                reason,
                &message,
                g.metadata.generation,
                &old.conditions,
                now,
            ),
        ),
    })
}

struct Context {
    api: Api<IAMGuardrail>,
    /// Consecutive failed writes per guardrail, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
}

#[tracing::instrument(skip_all, fields(guardrail = %g.name_any()))]
async fn reconcile(g: Arc<IAMGuardrail>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    if let Some(status) = desired_status(&g, Time(jiff::Timestamp::now())) {
        ctx.api
            .patch_status(
                &g.name_any(),
                &kube::api::PatchParams::apply(MANAGER),
                &kube::api::Patch::Merge(&serde_json::json!({"status": status})),
            )
            .await?;
    }
    if let Ok(mut failures) = ctx.failures.lock() {
        failures.remove(&g.name_any());
    }
    Ok(Action::await_change())
}

fn error_policy(g: Arc<IAMGuardrail>, error: &kube::Error, ctx: Arc<Context>) -> Action {
    let failures = ctx
        .failures
        .lock()
        .map(|mut f| {
            let n = f.entry(g.name_any()).or_default();
            *n = n.saturating_add(1);
            *n
        })
        .unwrap_or(1);
    let wait = retry_delay(FailureClass::Transient, failures, rand::random::<f64>());
    tracing::warn!(guardrail = %g.name_any(), %error, retry_in = ?wait, "cannot write guardrail status");
    Action::requeue(wait)
}

/// Runs the status controller on `changes` (the guardrails as the binding controller's watch
/// sees them) and `store` (their cache), until the stream ends or the task is aborted.
pub async fn run(
    client: Client,
    changes: impl Stream<Item = Arc<IAMGuardrail>> + Send + 'static,
    store: Store<IAMGuardrail>,
) {
    let ctx = Arc::new(Context {
        api: Api::all(client),
        failures: Mutex::default(),
    });
    Controller::for_shared_stream(changes, store)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn guardrail(spec: serde_json::Value) -> IAMGuardrail {
        serde_json::from_value(json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMGuardrail",
            "metadata": {"name": "g", "generation": 2},
            "spec": spec
        }))
        .unwrap()
    }

    fn now() -> Time {
        Time("2026-01-01T00:00:00Z".parse().unwrap())
    }

    #[test]
    fn a_valid_guardrail_is_ready_and_written_once() {
        let mut g = guardrail(json!({"deniedActions": ["iam:*"]}));
        let status = desired_status(&g, now()).expect("first write");
        assert_eq!(status.observed_generation, Some(2));
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Valid")
        );
        g.status = Some(status);
        assert!(desired_status(&g, now()).is_none(), "nothing changed");
        g.metadata.generation = Some(3);
        assert!(desired_status(&g, now()).is_some(), "a new generation");
    }

    #[test]
    fn an_invalid_guardrail_says_why_and_a_deleted_one_is_left_alone() {
        let mut g = guardrail(json!({"deniedActions": ["not an action"]}));
        let status = desired_status(&g, now()).expect("written");
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason, status::GUARDRAIL_INVALID);
        assert!(!ready.message.is_empty());
        g.metadata.deletion_timestamp = Some(now());
        assert!(desired_status(&g, now()).is_none());
    }
}
