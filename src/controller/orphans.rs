//! Orphans: roles tagged as this cluster's whose IAMRoleBinding no longer exists (its
//! finalizer removed by force, the cluster rebuilt, the binding deleted while the controller
//! was away for good). A periodic sweep finds them in every account hatrack uses, reports them
//! (log, the `hatrack_orphaned_roles` metric, `hatrack orphans`) and deletes them only when
//! configured to (`--delete-orphans`), and then only when found in two sweeps in a row and
//! still orphaned when checked again right before the delete.
//!
//! EKS Pod Identity associations of this cluster tagged as a binding's that is gone are
//! orphans too, swept the same way and deleted before roles; an association naming a role
//! kept on purpose (`deletionPolicy: Retain`) is kept with it.
//!
//! Judging is pure (the core's [`crate::orphan::judge`]); listing and deleting are the I/O
//! edges here. `hatrack orphans` (`src/orphans_cli.rs`) lists with [`find`] too.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kube::api::ListParams;
use kube::{Api, ResourceExt};
use tracing::Instrument;

use super::Context;
use super::accounts::AccountClients;
use crate::crd::{IAMAccount, IAMRoleBinding};
use crate::eks::{Eks, EksError};
use crate::iam::{DeleteOutcome, Iam, IamError};
use crate::naming;
use crate::orphan::{Candidate, Orphan, OrphanKind, judge, live_bindings, recorded_associations};
use crate::settings::Settings;
use crate::sync::Owner;

/// Flags of the orphan sweep.
#[derive(Debug, Clone, clap::Args)]
pub struct OrphanArgs {
    /// How often the controller looks for orphaned roles (seconds; 0 turns the sweep off).
    #[arg(long, env = "HATRACK_ORPHAN_SWEEP_SECONDS", default_value_t = 3600)]
    pub orphan_sweep_seconds: u64,
    /// Delete orphaned roles (found in two sweeps in a row). Default: only report them.
    #[arg(long, env = "HATRACK_DELETE_ORPHANS", default_value_t = false)]
    pub delete_orphans: bool,
}

impl OrphanArgs {
    pub fn sweep_options(&self) -> Option<SweepOptions> {
        (self.orphan_sweep_seconds > 0).then(|| SweepOptions {
            interval: Duration::from_secs(self.orphan_sweep_seconds),
            delete: self.delete_orphans,
        })
    }
}

/// How the controller sweeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepOptions {
    pub interval: Duration,
    /// Delete what two sweeps in a row found orphaned.
    pub delete: bool,
}

/// A sweep cannot finish.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("IAM in account {account_id}: {source}")]
    Iam {
        account_id: String,
        #[source]
        source: IamError,
    },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("IAMAccount {0}: {1}")]
    Account(String, String),
    #[error("EKS: {0}")]
    Eks(#[from] EksError),
}

/// One account to look in.
#[derive(Clone)]
pub struct AccountToSweep {
    pub account_id: String,
    pub iam: Iam,
}

/// The accounts hatrack uses: its own and every valid IAMAccount's, once per account id.
pub async fn accounts_to_sweep(
    home_account_id: &str,
    home: &Iam,
    accounts: &[IAMAccount],
    clients: &AccountClients,
    cluster: &str,
) -> Vec<AccountToSweep> {
    let mut seen = HashSet::from([home_account_id.to_string()]);
    let mut out = vec![AccountToSweep {
        account_id: home_account_id.to_string(),
        iam: home.clone(),
    }];
    for a in accounts {
        if !crate::account::account_problems(a).is_empty()
            || !seen.insert(a.spec.account_id.clone())
        {
            continue;
        }
        match clients.client(Some(a), cluster).await {
            Ok(iam) => out.push(AccountToSweep {
                account_id: a.spec.account_id.clone(),
                iam,
            }),
            Err(e) => {
                tracing::warn!(account = %a.name_any(), error = %e, "orphan sweep skips account")
            }
        }
    }
    out
}

/// The roles under `role_path` in `account` that may be orphans, with their tags. Roles named
/// as a live binding's role in that account are certainly not (names are deterministic), so
/// only the others cost a ListRoleTags.
async fn role_candidates(
    account: &AccountToSweep,
    role_path: &str,
    expected_names: &HashSet<String>,
) -> Result<Vec<Candidate>, SweepError> {
    let err = |source| SweepError::Iam {
        account_id: account.account_id.clone(),
        source,
    };
    let mut out = Vec::new();
    for (name, arn) in account.iam.list_roles(role_path).await.map_err(err)? {
        if expected_names.contains(&name) {
            continue;
        }
        if let Some(tags) = account.iam.role_tags(&name).await.map_err(err)? {
            out.push(Candidate {
                kind: OrphanKind::Role,
                account_id: account.account_id.clone(),
                name,
                arn,
                tags,
                service_account: None,
                role_arns: Vec::new(),
            });
        }
    }
    Ok(out)
}

/// The cluster's associations (of `scope`'s namespace, or all) that may be orphans, with their
/// tags. Those a live binding's status records are certainly not, so only the others cost a
/// DescribePodIdentityAssociation.
async fn association_candidates(
    eks: &Eks,
    home_account_id: &str,
    scope: Option<&str>,
    recorded: &HashSet<String>,
) -> Result<Vec<Candidate>, SweepError> {
    let mut out = Vec::new();
    for summary in eks.list_in(scope).await? {
        if recorded.contains(&summary.id) {
            continue;
        }
        // Gone since the listing: nothing to judge.
        let Some(a) = eks.describe(&summary.id).await? else {
            continue;
        };
        out.push(Candidate {
            kind: OrphanKind::PodIdentityAssociation,
            account_id: home_account_id.to_string(),
            name: a.id,
            arn: a.arn,
            tags: a.tags,
            service_account: Some(a.service_account),
            role_arns: std::iter::once(a.role_arn)
                .chain(a.target_role_arn)
                .filter(|r| !r.is_empty())
                .collect(),
        });
    }
    Ok(out)
}

/// Which cluster's roles a sweep looks for: its name and, when its region is known, its ARN.
#[derive(Debug, Clone, Copy)]
pub struct ClusterId<'a> {
    pub name: &'a str,
    pub arn: Option<&'a str>,
}

/// Finds the orphans: roles and (with `eks`) the cluster's associations first, then a fresh
/// list of bindings, so a binding that made an object seen here is in the list (a binding is
/// created before its role and associations).
#[allow(clippy::too_many_arguments)]
pub async fn find(
    client: &kube::Client,
    cluster: ClusterId<'_>,
    home_account_id: &str,
    role_path: &str,
    accounts: &[AccountToSweep],
    known_accounts: &[IAMAccount],
    eks: Option<&Eks>,
    scope: Option<&str>,
) -> Result<Vec<Orphan>, SweepError> {
    let bindings_api: Api<IAMRoleBinding> = match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // The names of roles live bindings own, per account: from a first list, to save
    // ListRoleTags calls only; the judging uses the second list.
    let before = bindings_api.list(&ListParams::default()).await?.items;
    let live_before = live_bindings(&before, known_accounts, home_account_id);
    let mut candidates = Vec::new();
    for account in accounts {
        let expected: HashSet<String> = live_before
            .iter()
            .filter(|(_, a)| a.as_deref().is_none_or(|a| a == account.account_id))
            .map(|((ns, name), _)| naming::role_name(cluster.arn.unwrap_or(cluster.name), ns, name))
            .collect();
        candidates.extend(role_candidates(account, role_path, &expected).await?);
    }
    if let Some(eks) = eks {
        let recorded = recorded_associations(&before);
        candidates.extend(association_candidates(eks, home_account_id, scope, &recorded).await?);
    }
    let after = bindings_api.list(&ListParams::default()).await?.items;
    let live = live_bindings(&after, known_accounts, home_account_id);
    Ok(judge(cluster.name, cluster.arn, &candidates, &live, scope))
}

/// [`find`] for the cluster `settings` describe (the sweep's and `hatrack orphans`').
pub async fn find_for(
    client: &kube::Client,
    settings: &Settings,
    accounts: &[AccountToSweep],
    known_accounts: &[IAMAccount],
    eks: Option<&Eks>,
    scope: Option<&str>,
) -> Result<Vec<Orphan>, SweepError> {
    let cluster_arn = settings.cluster_arn();
    let cluster = ClusterId {
        name: &settings.cluster_name,
        arn: cluster_arn.as_deref(),
    };
    let (home, role_path) = (&settings.account_id, &settings.role_path);
    find(
        client,
        cluster,
        home,
        role_path,
        accounts,
        known_accounts,
        eks,
        scope,
    )
    .await
}

/// Deletes an orphaned association after checking again that its binding is still absent and
/// the association still tagged as that binding's. Returns whether it was deleted.
async fn delete_orphaned_association(
    client: &kube::Client,
    cluster: &str,
    orphan: &Orphan,
    eks: &Eks,
) -> Result<bool, SweepError> {
    let api: Api<IAMRoleBinding> = Api::namespaced(client.clone(), &orphan.namespace);
    if api.get_opt(&orphan.binding).await?.is_some() {
        return Ok(false);
    }
    let Some(a) = eks.describe(&orphan.name).await? else {
        return Ok(false);
    };
    if !naming::is_owned_by(&a.tags, cluster, &orphan.namespace, &orphan.binding)
        || a.tags.contains_key(naming::TAG_RETAINED)
    {
        return Ok(false);
    }
    eks.delete(&orphan.name).await?;
    Ok(true)
}

/// Deletes an orphaned role after checking again that its binding is still absent and the
/// role still tagged as an orphan. Returns whether it was deleted.
async fn delete_orphan(
    client: &kube::Client,
    cluster: &str,
    orphan: &Orphan,
    iam: &Iam,
) -> Result<bool, SweepError> {
    let api: Api<IAMRoleBinding> = Api::namespaced(client.clone(), &orphan.namespace);
    if api.get_opt(&orphan.binding).await?.is_some() {
        return Ok(false);
    }
    let err = |source| SweepError::Iam {
        account_id: orphan.account_id.clone(),
        source,
    };
    let Some(tags) = iam.role_tags(&orphan.name).await.map_err(err)? else {
        return Ok(false);
    };
    if !naming::is_owned_by(&tags, cluster, &orphan.namespace, &orphan.binding)
        || tags.contains_key(naming::TAG_RETAINED)
    {
        return Ok(false);
    }
    Ok(match iam.delete_role(&orphan.name).await.map_err(err)? {
        DeleteOutcome::Deleted => true,
        DeleteOutcome::AlreadyGone => false,
        DeleteOutcome::HeldBy(holders) => {
            tracing::warn!(role = %orphan.name, account_id = %orphan.account_id, holders = ?holders, "orphaned role is held by something hatrack does not own; left in place");
            false
        }
    })
}

/// One sweep of the controller: finds, reports, and (when configured) deletes what the previous
/// sweep found too. Returns this sweep's orphans.
pub async fn sweep_once(
    ctx: &Context,
    options: &SweepOptions,
    scope: Option<&str>,
    previous: &BTreeSet<Orphan>,
) -> Result<Vec<Orphan>, SweepError> {
    let settings = &ctx.settings;
    let known: Vec<IAMAccount> = ctx
        .accounts
        .state()
        .iter()
        .map(|a| a.as_ref().clone())
        .collect();
    let accounts = accounts_to_sweep(
        &settings.account_id,
        &ctx.iam,
        &known,
        &ctx.account_clients,
        &settings.cluster_name,
    )
    .await;
    let orphans = find_for(
        &ctx.client,
        settings,
        &accounts,
        &known,
        ctx.eks.as_ref(),
        scope,
    )
    .await?;
    let (associations, roles): (Vec<&Orphan>, Vec<&Orphan>) = orphans
        .iter()
        .partition(|o| o.kind == OrphanKind::PodIdentityAssociation);
    ctx.metrics.orphans_found(roles.len());
    ctx.metrics.orphaned_associations_found(associations.len());
    for o in &associations {
        tracing::warn!(association = %o.name, arn = %o.arn, service_account = ?o.service_account, binding = %format!("{}/{}", o.namespace, o.binding), "orphaned EKS Pod Identity association: tagged as this cluster's, its IAMRoleBinding is gone");
    }
    for o in &roles {
        tracing::warn!(role = %o.name, arn = %o.arn, account_id = %o.account_id, binding = %format!("{}/{}", o.namespace, o.binding), "orphaned IAM role: tagged as this cluster's, its IAMRoleBinding is gone");
    }
    if options.delete {
        // Associations first (sorted by kind): they name the roles.
        for o in orphans.iter().filter(|o| previous.contains(*o)) {
            if o.kind == OrphanKind::PodIdentityAssociation {
                let Some(eks) = &ctx.eks else { continue };
                match delete_orphaned_association(&ctx.client, &settings.cluster_name, o, eks).await
                {
                    Ok(true) => {
                        ctx.metrics.orphaned_association_deleted();
                        tracing::info!(association = %o.name, service_account = ?o.service_account, "deleted orphaned EKS Pod Identity association");
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(association = %o.name, error = %e, "cannot delete orphaned EKS Pod Identity association")
                    }
                }
                continue;
            }
            let Some(a) = accounts.iter().find(|a| a.account_id == o.account_id) else {
                continue;
            };
            match delete_orphan(&ctx.client, &settings.cluster_name, o, &a.iam).await {
                Ok(true) => {
                    ctx.metrics.orphan_deleted();
                    tracing::info!(role = %o.name, account_id = %o.account_id, "deleted orphaned IAM role");
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(role = %o.name, error = %e, "cannot delete orphaned IAM role")
                }
            }
        }
    }
    Ok(orphans)
}

/// Sweeps every `options.interval` (the first after one interval, once the caches are filled)
/// until aborted.
pub async fn sweep_periodically(ctx: Arc<Context>, options: SweepOptions, scope: Option<String>) {
    let mut previous = BTreeSet::new();
    loop {
        tokio::time::sleep(options.interval).await;
        if ctx.accounts.wait_until_ready().await.is_err() {
            return;
        }
        let sweep = sweep_once(&ctx, &options, scope.as_deref(), &previous)
            .instrument(tracing::info_span!("orphan_sweep"));
        match sweep.await {
            Ok(found) => previous = found.into_iter().collect(),
            Err(e) => tracing::warn!(error = %e, "orphan sweep failed"),
        }
    }
}

/// Marks a role its binding leaves behind on purpose (`deletionPolicy: Retain`) so the sweep
/// never takes it for an orphan; a role this owner does not own is left untouched. A binding
/// made again under the same name takes the role back and the diff removes the mark.
pub async fn mark_retained(iam: &Iam, role_name: &str, owner: &Owner) -> Result<(), IamError> {
    match iam.role_tags(role_name).await? {
        Some(tags)
            if naming::is_owned_by(&tags, &owner.cluster, &owner.namespace, &owner.name)
                && !tags.contains_key(naming::TAG_RETAINED) =>
        {
            let mark = BTreeMap::from([(naming::TAG_RETAINED.to_string(), "true".to_string())]);
            iam.tag_role(role_name, &mark).await
        }
        _ => Ok(()),
    }
}
