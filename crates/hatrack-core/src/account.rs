//! Which AWS account a binding's role lives in: its `spec.account` (an [`IAMAccount`]), whether
//! the binding's namespace may use it, and the settings the role is built with there. Pure: the
//! controller's IAM clients per account are its own (`controller::accounts`).

use std::collections::BTreeMap;

use kube_core::ResourceExt;

use crate::crd::{IAMAccount, IAMRoleBinding};
use crate::settings::Settings;

/// Why a binding cannot have its role in the account it names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountRefusal {
    #[error("spec.account: IAMAccount {0:?} does not exist")]
    NotFound(String),
    #[error(
        "spec.account: IAMAccount {account:?} does not select namespace {namespace:?} (its spec.namespaceSelector); this namespace may not make roles in account {account_id}"
    )]
    NamespaceNotAllowed {
        account: String,
        account_id: String,
        namespace: String,
    },
    #[error("spec.account: IAMAccount {account:?} is invalid: {problems}")]
    Invalid { account: String, problems: String },
    #[error(
        "spec.account: EKS Pod Identity trust in another account (IAMAccount {account:?}, account {account_id}) needs the controller to manage EKS Pod Identity associations (a chaining role's association with targetRoleArn), and --pod-identity-associations is off; use irsa trust (with the cluster's OIDC provider in account {account_id}), or no spec.account"
    )]
    PodIdentityUnsupported { account: String, account_id: String },
}

impl AccountRefusal {
    /// The Ready reason of a binding refused this way.
    pub fn reason(&self) -> &'static str {
        match self {
            AccountRefusal::NotFound(_) | AccountRefusal::Invalid { .. } => {
                crate::judge::reason::ACCOUNT_UNAVAILABLE
            }
            AccountRefusal::NamespaceNotAllowed { .. } => crate::judge::reason::ACCOUNT_NOT_ALLOWED,
            AccountRefusal::PodIdentityUnsupported { .. } => {
                crate::judge::reason::ACCOUNT_UNSUPPORTED
            }
        }
    }
}

/// What is wrong with an IAMAccount (the API server's schema checks most of it; the controller
/// checks again, as for any input).
pub fn account_problems(a: &IAMAccount) -> Vec<String> {
    let mut out = Vec::new();
    let id = &a.spec.account_id;
    if id.len() != 12 || !id.chars().all(|c| c.is_ascii_digit()) {
        out.push(format!("spec.accountId must be 12 digits, got {id:?}"));
    }
    let arn = &a.spec.assume_role.role_arn;
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let arn_ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4] == id
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|r| !r.is_empty());
    if !arn_ok {
        out.push(format!(
            "spec.assumeRole.roleArn must be an IAM role ARN in account {id}, got {arn:?}"
        ));
    }
    let name_chars = |s: &str, extra: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) || extra.contains(c))
    };
    if let Some(s) = &a.spec.assume_role.session_name
        && (s.len() < 2 || s.len() > 64 || !name_chars(s, ""))
    {
        out.push(format!(
            "spec.assumeRole.sessionName must be 2-64 characters of letters, digits and _+=,.@-, got {s:?}"
        ));
    }
    if let Some(e) = &a.spec.assume_role.external_id
        && (e.len() < 2 || e.len() > 1224 || !name_chars(e, ":/"))
    {
        out.push(
            "spec.assumeRole.externalId must be 2-1224 characters of letters, digits and _+=,.@:/-"
                .into(),
        );
    }
    out
}

/// Which account a binding's role lives in: `None` for the controller's own.
/// `for_cleanup` skips the namespace and trust checks: a role made while they allowed it is
/// still removed after they changed.
pub fn resolve<'a>(
    binding: &IAMRoleBinding,
    accounts: impl IntoIterator<Item = &'a IAMAccount>,
    namespace_labels: &BTreeMap<String, String>,
    for_cleanup: bool,
) -> Result<Option<&'a IAMAccount>, AccountRefusal> {
    let Some(name) = binding.spec.account.as_deref() else {
        return Ok(None);
    };
    let account = accounts
        .into_iter()
        .find(|a| a.name_any() == name)
        .ok_or_else(|| AccountRefusal::NotFound(name.to_string()))?;
    let problems = account_problems(account);
    if !problems.is_empty() {
        return Err(AccountRefusal::Invalid {
            account: name.into(),
            problems: problems.join("; "),
        });
    }
    if for_cleanup {
        return Ok(Some(account));
    }
    if !crate::guardrail::selector_matches(Some(&account.spec.namespace_selector), namespace_labels)
    {
        return Err(AccountRefusal::NamespaceNotAllowed {
            account: name.into(),
            account_id: account.spec.account_id.clone(),
            namespace: binding.namespace().unwrap_or_default(),
        });
    }
    // Pod Identity in another account is reached through a chaining role in the cluster's
    // account (controller::associations::chain_step); without associations it is refused there.
    Ok(Some(account))
}

/// The settings a binding's role is built with in `account`: the same cluster, path and trust
/// defaults, another account id (role ARN and IRSA's OIDC provider ARN follow from it).
pub fn settings_in(settings: &Settings, account: Option<&IAMAccount>) -> Settings {
    let mut s = settings.clone();
    if let Some(a) = account {
        s.account_id = a.spec.account_id.clone();
    }
    s
}

/// The session name used when an IAMAccount names none.
pub fn default_session_name(cluster: &str) -> String {
    let mut s: String = format!("hatrack-{cluster}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(64);
    s
}
