//! Roles in other AWS accounts: which account a binding's role lives in (its `spec.account`,
//! an [`IAMAccount`]), whether the binding's namespace may use it, and one IAM client per
//! account, with credentials assumed through STS and its own rate limit.
//!
//! The choice of account ([`resolve`]) is pure; [`AccountClients`] is the I/O edge that keeps
//! the clients. Each IAMAccount's status (can the controller act there?) is [`credentials`].

pub mod credentials;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use super::Context;
use super::cache::CachedBinding;
use crate::crd::{IAMAccount, IAMRoleBinding};
use crate::iam::{AssumeRoleTarget, Iam, IamError};
use crate::settings::Settings;

use crate::account::{AccountRefusal, default_session_name, resolve, settings_in};

/// How a client for an account was made: a changed IAMAccount gets a new client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    target: AssumeRoleTarget,
    calls_per_second: u32,
}

/// The IAM clients of the accounts bindings name, made on first use and kept while the
/// IAMAccount is unchanged (the SDK refreshes their assumed credentials before expiry).
pub struct AccountClients {
    home: Iam,
    default_calls_per_second: u32,
    clients: Mutex<HashMap<String, (ClientKey, Iam)>>,
    /// Per account id: when its OIDC provider was last found to exist.
    oidc_found: Mutex<HashMap<String, Instant>>,
}

/// A client for another account cannot be made.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the controller's IAM client has no SDK configuration to assume roles from")]
pub struct NoBaseConfig;

impl AccountClients {
    pub fn new(home: Iam, default_calls_per_second: u32) -> AccountClients {
        AccountClients {
            home,
            default_calls_per_second,
            clients: Mutex::new(HashMap::new()),
            oidc_found: Mutex::new(HashMap::new()),
        }
    }

    /// The IAM client acting in `account` (the controller's own for `None`).
    pub async fn client(
        &self,
        account: Option<&IAMAccount>,
        cluster: &str,
    ) -> Result<Iam, NoBaseConfig> {
        let Some(a) = account else {
            return Ok(self.home.clone());
        };
        let name = a.name_any();
        let key = ClientKey {
            target: AssumeRoleTarget {
                role_arn: a.spec.assume_role.role_arn.clone(),
                external_id: a.spec.assume_role.external_id.clone(),
                session_name: a
                    .spec
                    .assume_role
                    .session_name
                    .clone()
                    .unwrap_or_else(|| default_session_name(cluster)),
            },
            calls_per_second: a
                .spec
                .iam_calls_per_second
                .unwrap_or(self.default_calls_per_second)
                .max(1),
        };
        if let Ok(clients) = self.clients.lock()
            && let Some((k, iam)) = clients.get(&name)
            && *k == key
        {
            return Ok(iam.clone());
        }
        let iam = self
            .home
            .assume_role(&key.target, key.calls_per_second)
            .await
            .ok_or(NoBaseConfig)?;
        tracing::info!(account = %name, account_id = %a.spec.account_id, role = %key.target.role_arn, "IAM client for account");
        if let Ok(mut clients) = self.clients.lock() {
            clients.insert(name, (key, iam.clone()));
        }
        Ok(iam)
    }

    /// Whether the OIDC provider exists in another account, asking at most once per `ttl`
    /// once found.
    pub async fn oidc_provider_exists(
        &self,
        iam: &Iam,
        account_id: &str,
        arn: &str,
        ttl: Duration,
    ) -> Result<bool, IamError> {
        if let Ok(found) = self.oidc_found.lock()
            && found.get(account_id).is_some_and(|at| at.elapsed() < ttl)
        {
            return Ok(true);
        }
        let exists = iam.oidc_provider_exists(arn).await?;
        if let Ok(mut found) = self.oidc_found.lock() {
            if exists {
                found.insert(account_id.to_string(), Instant::now());
            } else {
                found.remove(account_id);
            }
        }
        Ok(exists)
    }
}

/// IAMAccounts, cached in `writer`; yields the watch's events (the webhook only caches them;
/// the controller takes their spec changes, [`crate::watch::spec_changes`], so an account's
/// status writes neither re-queue the bindings naming it nor check it again).
pub fn watch(
    client: kube::Client,
    writer: kube::runtime::reflector::store::Writer<IAMAccount>,
) -> impl futures::Stream<
    Item = Result<kube::runtime::watcher::Event<IAMAccount>, kube::runtime::watcher::Error>,
> + Send {
    use kube::runtime::{WatchStreamExt, watcher};
    watcher(
        kube::Api::<IAMAccount>::all(client),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(|a: &mut IAMAccount| a.metadata.managed_fields = None)
    .reflect(writer)
}

/// The cached bindings whose `spec.account` is `account`.
pub fn bindings_naming(
    bindings: &Store<CachedBinding>,
    account: &str,
) -> Vec<ObjectRef<CachedBinding>> {
    bindings
        .state()
        .iter()
        .filter(|b| {
            b.to_binding()
                .is_ok_and(|b| b.spec.account.as_deref() == Some(account))
        })
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
}

/// Where one binding's role lives: the settings to build it with and the client to reach it.
pub struct Target {
    pub settings: Settings,
    pub iam: Iam,
    /// The IAMAccount, or `None` for the controller's own account.
    pub account: Option<Arc<IAMAccount>>,
}

impl Target {
    /// Whether the OIDC provider exists in this account.
    pub async fn oidc_provider_exists(&self, ctx: &Context, arn: &str) -> Result<bool, IamError> {
        match &self.account {
            None => ctx.oidc_provider_exists(arn).await,
            Some(_) => {
                ctx.account_clients
                    .oidc_provider_exists(&self.iam, &self.settings.account_id, arn, ctx.resync)
                    .await
            }
        }
    }
}

/// The account of `binding`'s role, from the controller's caches.
pub async fn target(
    binding: &IAMRoleBinding,
    ctx: &Context,
    for_cleanup: bool,
) -> Result<Target, AccountRefusal> {
    if binding.spec.account.is_none() {
        return Ok(Target {
            settings: ctx.settings.clone(),
            iam: ctx.iam.clone(),
            account: None,
        });
    }
    let ns = binding.namespace().unwrap_or_default();
    let labels = ctx
        .namespaces
        .get(&ObjectRef::new(&ns))
        .map(|n| n.labels().clone())
        .unwrap_or_default();
    let all = ctx.accounts.state();
    let account = resolve(binding, all.iter().map(Arc::as_ref), &labels, for_cleanup)?
        .and_then(|a| all.iter().find(|x| x.name_any() == a.name_any()).cloned());
    let iam = ctx
        .account_clients
        .client(account.as_deref(), &ctx.settings.cluster_name)
        .await
        .map_err(|e| AccountRefusal::Invalid {
            account: binding.spec.account.clone().unwrap_or_default(),
            problems: e.to_string(),
        })?;
    Ok(Target {
        settings: settings_in(&ctx.settings, account.as_deref()),
        iam,
        account,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::account_problems;
    use serde_json::{Value, json};
    use std::collections::BTreeMap;

    pub(super) fn account(name: &str, id: &str, selector: Value) -> IAMAccount {
        serde_json::from_value(json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMAccount",
            "metadata": {"name": name},
            "spec": {"accountId": id,
                     "assumeRole": {"roleArn": format!("arn:aws:iam::{id}:role/hatrack")},
                     "namespaceSelector": selector}
        }))
        .unwrap()
    }

    fn binding(spec: Value) -> IAMRoleBinding {
        serde_json::from_value(json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
            "metadata": {"name": "b", "namespace": "team"}, "spec": spec
        }))
        .unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// IAMAccount "data" (222222222222), for namespaces labelled `team=data`.
    fn data_account_for_team_data() -> IAMAccount {
        account(
            "data",
            "222222222222",
            json!({"matchLabels": {"team": "data"}}),
        )
    }

    #[test]
    fn no_account_is_the_controllers_own() {
        let b = binding(json!({"serviceAccounts": ["a"]}));
        assert!(matches!(resolve(&b, [], &labels(&[]), false), Ok(None)));
    }

    #[test]
    fn a_selected_namespace_gets_the_account_and_its_id() {
        let s = Settings::example();
        let accts = [data_account_for_team_data()];
        let b = binding(json!({"serviceAccounts": ["a"], "account": "data"}));
        let got = resolve(&b, &accts, &labels(&[("team", "data")]), false).unwrap();
        assert_eq!(got.map(|a| a.name_any()), Some("data".into()));
        let in_b = settings_in(&s, got);
        assert_eq!(
            in_b.role_arn("r"),
            "arn:aws:iam::222222222222:role/hatrack/r"
        );
        assert!(
            in_b.oidc_provider_arn()
                .unwrap()
                .starts_with("arn:aws:iam::222222222222:oidc-provider/")
        );
    }

    #[test]
    fn a_namespace_the_account_does_not_select_is_refused_but_still_cleaned_up() {
        let accts = [data_account_for_team_data()];
        let b = binding(json!({"serviceAccounts": ["a"], "account": "data"}));
        let err = resolve(&b, &accts, &labels(&[("team", "web")]), false).unwrap_err();
        assert!(
            matches!(err, AccountRefusal::NamespaceNotAllowed { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("222222222222"));
        assert!(resolve(&b, &accts, &labels(&[("team", "web")]), true).is_ok());
    }

    #[test]
    fn an_unknown_or_invalid_account_is_refused() {
        let b = binding(json!({"serviceAccounts": ["a"], "account": "nope"}));
        assert!(matches!(
            resolve(&b, [], &labels(&[]), false),
            Err(AccountRefusal::NotFound(n)) if n == "nope"
        ));
        let mut bad = account("nope", "222222222222", json!({}));
        bad.spec.assume_role.role_arn = "arn:aws:iam::333333333333:role/x".into();
        let err = resolve(&b, [&bad], &labels(&[]), true).unwrap_err();
        assert!(
            err.to_string().contains("role ARN in account 222222222222"),
            "{err}"
        );
    }

    #[test]
    fn pod_identity_in_another_account_resolves_to_it() {
        let s = Settings::example();
        let accts = [account("data", "222222222222", json!({}))];
        let b = binding(
            json!({"serviceAccounts": ["a"], "account": "data", "trust": {"irsa": {}, "podIdentity": {}}}),
        );
        let got = resolve(&b, &accts, &labels(&[]), false).unwrap();
        assert_eq!(
            got.map(|a| a.spec.account_id.clone()),
            Some("222222222222".into())
        );
        // The cluster's own account named through an IAMAccount needs no chaining.
        let home = [account("home", &s.account_id, json!({}))];
        let b = binding(
            json!({"serviceAccounts": ["a"], "account": "home", "trust": {"podIdentity": {}}}),
        );
        assert!(resolve(&b, &home, &labels(&[]), false).is_ok());
    }
    #[test]
    fn session_names_are_valid_for_any_cluster_name() {
        assert_eq!(default_session_name("prod_eu"), "hatrack-prod_eu");
        assert_eq!(default_session_name(&"c".repeat(100)).len(), 64);
        let mut a = account("x", "222222222222", json!({}));
        a.spec.assume_role.session_name = Some("has space".into());
        assert_eq!(account_problems(&a).len(), 1);
    }
}
