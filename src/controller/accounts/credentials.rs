//! Whether the controller can act in each IAMAccount (its spec is valid and `sts:AssumeRole`
//! into its role works), written to the account's Ready condition as accounts are added or
//! changed, and checked again while it fails.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use tracing::Instrument;

use super::AccountClients;
use crate::account::account_problems;
use crate::controller::Context;
use crate::crd::IAMAccount;

/// Ready reasons of an IAMAccount.
pub const CREDENTIALS_OBTAINED: &str = "CredentialsObtained";
pub const ASSUME_ROLE_FAILED: &str = "AssumeRoleFailed";
pub const ACCOUNT_INVALID: &str = "InvalidAccount";
pub const NO_BASE_CREDENTIALS: &str = "NoBaseCredentials";

/// What checking an account's credentials found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsCheck {
    Obtained,
    /// The spec is wrong: these problems ([`account_problems`]).
    Invalid(Vec<String>),
    /// The controller has no credentials of its own to assume from.
    NoBase,
    /// `sts:AssumeRole` failed: the SDK's message.
    Failed(String),
}

/// The Ready condition's (status, reason, message) for a check of `a`.
pub fn account_ready(a: &IAMAccount, check: &CredentialsCheck) -> (bool, &'static str, String) {
    let role = &a.spec.assume_role.role_arn;
    let id = &a.spec.account_id;
    match check {
        CredentialsCheck::Obtained => (
            true,
            CREDENTIALS_OBTAINED,
            format!("credentials in account {id} obtained through sts:AssumeRole into {role}"),
        ),
        CredentialsCheck::Invalid(problems) => (false, ACCOUNT_INVALID, problems.join("; ")),
        CredentialsCheck::NoBase => (
            false,
            NO_BASE_CREDENTIALS,
            "the controller has no AWS credentials of its own to assume the role with".into(),
        ),
        CredentialsCheck::Failed(e) => (
            false,
            ASSUME_ROLE_FAILED,
            format!(
                "sts:AssumeRole into {role}{} failed: {e}; the role must exist, trust the controller's own role{} and allow it sts:AssumeRole",
                a.spec
                    .assume_role
                    .external_id
                    .as_ref()
                    .map(|_| " (with the external id)")
                    .unwrap_or(""),
                a.spec
                    .assume_role
                    .external_id
                    .as_ref()
                    .map(|_| " with sts:ExternalId")
                    .unwrap_or("")
            ),
        ),
    }
}

/// Checks that the controller can act in `a`: the spec, then the credentials (assumed now,
/// or still valid from before).
pub async fn check_account(
    clients: &AccountClients,
    a: &IAMAccount,
    cluster: &str,
) -> CredentialsCheck {
    let problems = account_problems(a);
    if !problems.is_empty() {
        return CredentialsCheck::Invalid(problems);
    }
    let Ok(iam) = clients.client(Some(a), cluster).await else {
        return CredentialsCheck::NoBase;
    };
    match iam.check_credentials().await {
        Some(Ok(())) => CredentialsCheck::Obtained,
        Some(Err(e)) => CredentialsCheck::Failed(e.to_string()),
        None => CredentialsCheck::NoBase,
    }
}

/// Writes each IAMAccount's status as it is added or its spec changes: whether the controller
/// obtains credentials there. An account that fails, or whose status write fails, is checked
/// again every `retry` until it works or changes. Its own status writes do not come back here
/// (the watch passes spec changes only), and the status says the same of the same failure
/// ([`crate::aws::error_text`]), so a failing account costs one STS call per `retry`.
pub async fn status_writer(
    ctx: Arc<Context>,
    retry: Duration,
    tx: tokio::sync::mpsc::UnboundedSender<IAMAccount>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<IAMAccount>,
) {
    use crate::crd::IAMAccountStatus;
    use kube::api::{Patch, PatchParams};
    let api: kube::Api<IAMAccount> = kube::Api::all(ctx.client.clone());
    // Accounts with a check already scheduled: at most one each.
    let pending: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
    while let Some(a) = rx.recv().await {
        let name = a.name_any();
        // Deleted (or a stale copy): the cache has the latest.
        let Some(a) = ctx.accounts.get(&ObjectRef::new(&name)) else {
            continue;
        };
        if a.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let check = check_account(&ctx.account_clients, &a, &ctx.settings.cluster_name)
            .instrument(tracing::info_span!("account_check", account = %name))
            .await;
        let (ready, reason, message) = account_ready(&a, &check);
        let check_again = |a: &IAMAccount| {
            if pending.lock().is_ok_and(|mut p| p.insert(a.name_any())) {
                let (tx, pending, again) = (tx.clone(), pending.clone(), a.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(retry).await;
                    if let Ok(mut p) = pending.lock() {
                        p.remove(&again.name_any());
                    }
                    let _ = tx.send(again);
                });
            }
        };
        if !ready && reason != ACCOUNT_INVALID {
            check_again(&a);
        }
        let old = a.status.clone().unwrap_or_default();
        let current = old.conditions.iter().find(|c| c.type_ == "Ready");
        let unchanged = old.observed_generation == a.metadata.generation
            && current.is_some_and(|c| {
                c.status == if ready { "True" } else { "False" }
                    && c.reason == reason
                    && c.message == message
            });
        if unchanged {
            continue;
        }
        if ready {
            tracing::info!(account = %name, account_id = %a.spec.account_id, "credentials obtained in account");
        } else {
            tracing::warn!(account = %name, account_id = %a.spec.account_id, reason, message = %message, "cannot act in account");
        }
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
        let status = IAMAccountStatus {
            observed_generation: a.metadata.generation,
            conditions: crate::controller::status::with_ready(
                &old.conditions,
                crate::controller::status::ready_condition(
                    ready,
                    reason,
                    &message,
                    a.metadata.generation,
                    &old.conditions,
                    now,
                ),
            ),
        };
        if let Err(e) = api
            .patch_status(
                &name,
                &PatchParams::apply(crate::controller::MANAGER),
                &Patch::Merge(&serde_json::json!({"status": status})),
            )
            .await
        {
            tracing::warn!(account = %name, error = %e, "cannot write IAMAccount status");
            check_again(&a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::account;
    use super::*;
    use serde_json::json;

    #[test]
    fn account_status_says_why_credentials_are_missing() {
        let a = account("data", "222222222222", json!({}));
        let (ready, reason, message) = account_ready(&a, &CredentialsCheck::Obtained);
        assert!(ready);
        assert_eq!(reason, CREDENTIALS_OBTAINED);
        assert!(message.contains("222222222222"), "{message}");
        let (ready, reason, message) = account_ready(
            &a,
            &CredentialsCheck::Failed("AccessDenied: not trusted".into()),
        );
        assert!(!ready);
        assert_eq!(reason, ASSUME_ROLE_FAILED);
        assert!(
            message.contains("arn:aws:iam::222222222222:role/hatrack")
                && message.contains("AccessDenied: not trusted"),
            "{message}"
        );
        assert!(crate::controller::status::is_stalled(ACCOUNT_INVALID));
        assert!(!crate::controller::status::is_stalled(ASSUME_ROLE_FAILED));
    }
}
