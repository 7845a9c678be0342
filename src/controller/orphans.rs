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
//! Judging is pure ([`judge`]); listing and deleting are the I/O edges. Other kinds of AWS
//! objects hatrack tags join by adding an [`OrphanKind`] and a lister that yields
//! [`Candidate`]s.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde::Serialize;
use tracing::Instrument;

use super::Context;
use super::accounts::AccountClients;
use crate::crd::{IAMAccount, IAMRoleBinding};
use crate::eks::{Eks, EksError};
use crate::iam::{DeleteOutcome, Iam, IamError};
use crate::naming;
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

/// What kind of AWS object an orphan is. Ordered as they are deleted: an association names a
/// role, so it goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum OrphanKind {
    /// An EKS Pod Identity association of this cluster (name: its id).
    PodIdentityAssociation,
    /// An IAM role (name: the role name).
    Role,
}

/// An AWS object hatrack tagged as this cluster's, with its ownership tags, as a lister found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub kind: OrphanKind,
    pub account_id: String,
    pub name: String,
    pub arn: String,
    pub tags: BTreeMap<String, String>,
    /// An association's ServiceAccount.
    pub service_account: Option<String>,
    /// The roles an association names (its role, and its target role if any).
    pub role_arns: Vec<String>,
}

/// An object whose binding is gone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Orphan {
    pub kind: OrphanKind,
    pub account_id: String,
    pub name: String,
    pub arn: String,
    /// The binding its tags name.
    pub namespace: String,
    pub binding: String,
    /// An association's ServiceAccount (in `namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

/// Where each live binding's role lives: (namespace, name) → account id, `None` when the
/// binding names an IAMAccount that is not known (its role could be anywhere).
pub type LiveBindings = HashMap<(String, String), Option<String>>;

/// The live bindings, from a fresh list and the known IAMAccounts.
pub fn live_bindings(
    bindings: &[IAMRoleBinding],
    accounts: &[IAMAccount],
    home_account_id: &str,
) -> LiveBindings {
    bindings
        .iter()
        .map(|b| {
            let account = match b.spec.account.as_deref() {
                None => Some(home_account_id.to_string()),
                Some(name) => accounts
                    .iter()
                    .find(|a| a.name_any() == name)
                    .map(|a| a.spec.account_id.clone()),
            };
            ((b.namespace().unwrap_or_default(), b.name_any()), account)
        })
        .collect()
}

/// Whether `live` has a binding whose role may be `(account_id, namespace, name)`.
fn claimed(live: &LiveBindings, account_id: &str, namespace: &str, name: &str) -> bool {
    live.get(&(namespace.to_string(), name.to_string()))
        .is_some_and(|a| a.as_deref().is_none_or(|a| a == account_id))
}

/// The candidates that are orphans: tagged with this cluster, not retained on purpose, of a
/// namespace in `scope` (`None`: all), and with no live binding that owns them there.
/// An association is not an orphan while a role it names is retained (a role candidate
/// carrying the retained mark): the binding was deleted with `deletionPolicy: Retain`.
pub fn judge(
    cluster: &str,
    cluster_arn: Option<&str>,
    candidates: &[Candidate],
    live: &LiveBindings,
    scope: Option<&str>,
) -> Vec<Orphan> {
    let retained_roles: HashSet<&str> = candidates
        .iter()
        .filter(|c| c.kind == OrphanKind::Role && c.tags.contains_key(naming::TAG_RETAINED))
        .map(|c| c.arn.as_str())
        .collect();
    let mut out: Vec<Orphan> = candidates
        .iter()
        .filter_map(|c| {
            let association = c.kind == OrphanKind::PodIdentityAssociation;
            // The cluster ARN tag must match too (both absent, or equal): a same-named
            // cluster in another region or account keeps its roles, even legacy ones. An
            // association is listed from this very cluster: its name tag is enough.
            if c.tags.get(naming::TAG_CLUSTER).map(String::as_str) != Some(cluster)
                || (!association
                    && c.tags.get(naming::TAG_CLUSTER_ARN).map(String::as_str) != cluster_arn)
                || c.tags.contains_key(naming::TAG_RETAINED)
                || c.role_arns
                    .iter()
                    .any(|r| retained_roles.contains(r.as_str()))
            {
                return None;
            }
            let namespace = c.tags.get(naming::TAG_NAMESPACE)?;
            let binding = c.tags.get(naming::TAG_NAME)?;
            // An association lives in the cluster's account whichever account its binding's
            // role is in: any live binding of that name owns it.
            let owned = if association {
                live.contains_key(&(namespace.clone(), binding.clone()))
            } else {
                claimed(live, &c.account_id, namespace, binding)
            };
            if scope.is_some_and(|s| s != namespace) || owned {
                return None;
            }
            Some(Orphan {
                kind: c.kind,
                account_id: c.account_id.clone(),
                name: c.name.clone(),
                arn: c.arn.clone(),
                namespace: namespace.clone(),
                binding: binding.clone(),
                service_account: c.service_account.clone(),
            })
        })
        .collect();
    out.sort();
    out
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

/// The association ids live bindings' statuses record.
fn recorded_associations(bindings: &[IAMRoleBinding]) -> HashSet<String> {
    bindings
        .iter()
        .filter_map(|b| b.status.as_ref())
        .flat_map(|s| s.pod_identity_associations.iter())
        .map(|a| a.association_id.clone())
        .collect()
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
    let cluster_arn = settings.cluster_arn();
    let orphans = find(
        &ctx.client,
        ClusterId {
            name: &settings.cluster_name,
            arn: cluster_arn.as_deref(),
        },
        &settings.account_id,
        &settings.role_path,
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

/// Output of `hatrack orphans`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Flags of `hatrack orphans`: the controller's identity flags (same environment variables),
/// AWS credentials from the default chain, the cluster from the kubeconfig.
#[derive(Debug, Clone, clap::Args)]
pub struct OrphansCliArgs {
    /// Name of the cluster whose orphans to list (the `hatrack.dev/cluster` tag).
    #[arg(long, env = "HATRACK_CLUSTER_NAME")]
    pub cluster_name: String,
    /// The cluster's region, as the controller's `--cluster-region` (required; taken from
    /// `--aws-region`/`AWS_REGION` when only that is set): only roles tagged with the cluster's
    /// ARN are this cluster's.
    #[arg(long, env = "HATRACK_CLUSTER_REGION")]
    pub cluster_region: Option<String>,
    /// The controller's own AWS account id.
    #[arg(long, env = "HATRACK_ACCOUNT_ID")]
    pub account_id: String,
    /// AWS partition: aws, aws-cn, aws-us-gov.
    #[arg(long, env = "HATRACK_PARTITION", default_value = "aws")]
    pub partition: String,
    /// IAM path of hatrack's roles.
    #[arg(long, env = "HATRACK_ROLE_PATH", default_value = "/hatrack/")]
    pub role_path: String,
    #[command(flatten)]
    pub iam: crate::iam::IamArgs,
    /// The cluster's EKS Pod Identity associations are listed too (in `--aws-region`, as the
    /// controller does), unless `--pod-identity-associations=false`.
    #[command(flatten)]
    pub eks: crate::eks::EksArgs,
    /// Only roles and associations of bindings of this namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
}

/// `hatrack orphans`: lists the orphaned roles in every account hatrack uses (its own and the
/// IAMAccounts') and the cluster's orphaned Pod Identity associations; deletes nothing.
pub async fn run_cli(args: OrphansCliArgs) -> Result<(), String> {
    crate::validate::role_path(&args.role_path).map_err(|e| format!("--role-path: {e}"))?;
    if args.account_id.len() != 12 || !args.account_id.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "--account-id: must be 12 digits, got {:?}",
            args.account_id
        ));
    }
    // The controller's rule: a region is required, the cluster being known by its ARN.
    let region = args
        .cluster_region
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .or(args.iam.explicit_region())
        .ok_or("--cluster-region: is required (HATRACK_CLUSTER_REGION), as the controller's")?
        .to_string();
    if !crate::settings::is_region(&region) {
        return Err(format!(
            "--cluster-region: must be an AWS region such as eu-west-1, got {region:?}"
        ));
    }
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("cannot reach the Kubernetes API: {e}"))?;
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let home = Iam::from_args(&args.iam, metrics.clone()).await;
    // As the controller: the cluster's associations are in the cluster's region.
    let eks = Eks::from_args(
        &args.eks,
        &region,
        args.iam.iam_max_attempts,
        &args.cluster_name,
        metrics,
    )
    .await;
    let known: Vec<IAMAccount> = Api::<IAMAccount>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("cannot list IAMAccounts: {e}"))?
        .items;
    let clients = AccountClients::new(home.clone(), args.iam.iam_calls_per_second);
    let accounts = accounts_to_sweep(
        &args.account_id,
        &home,
        &known,
        &clients,
        &args.cluster_name,
    )
    .await;
    let cluster_arn = Some(naming::cluster_arn(
        &args.partition,
        &region,
        &args.account_id,
        &args.cluster_name,
    ));
    let orphans = find(
        &client,
        ClusterId {
            name: &args.cluster_name,
            arn: cluster_arn.as_deref(),
        },
        &args.account_id,
        &args.role_path,
        &accounts,
        &known,
        eks.as_ref(),
        args.namespace.as_deref(),
    )
    .await
    .map_err(|e| e.to_string())?;
    match args.output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&orphans).map_err(|e| e.to_string())?
        ),
        OutputFormat::Text => {
            if orphans.is_empty() {
                eprintln!("no orphaned roles or associations");
            }
            for o in &orphans {
                match &o.service_account {
                    Some(sa) => println!(
                        "{}\tassociation {} (ServiceAccount {sa})\t{}/{}\t{}",
                        o.account_id, o.name, o.namespace, o.binding, o.arn
                    ),
                    None => println!(
                        "{}\t{}\t{}/{}\t{}",
                        o.account_id, o.name, o.namespace, o.binding, o.arn
                    ),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(account: &str, tags: &[(&str, &str)]) -> Candidate {
        Candidate {
            kind: OrphanKind::Role,
            account_id: account.into(),
            name: "r".into(),
            arn: format!("arn:aws:iam::{account}:role/hatrack/r"),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            service_account: None,
            role_arns: Vec::new(),
        }
    }

    fn association(ns: &str, binding: &str, role: &str) -> Candidate {
        Candidate {
            kind: OrphanKind::PodIdentityAssociation,
            account_id: "111".into(),
            name: format!("a-{binding}"),
            arn: format!("arn:aws:eks:eu-west-1:111:podidentityassociation/prod/a-{binding}"),
            tags: naming::ownership_tags("prod", ns, binding),
            service_account: Some("sa".into()),
            role_arns: vec![role.into()],
        }
    }

    fn owned(account: &str, cluster: &str, ns: &str, name: &str) -> Candidate {
        let mut c = candidate(account, &[]);
        c.tags = naming::ownership_tags(cluster, ns, name);
        c
    }

    fn live(entries: &[(&str, &str, Option<&str>)]) -> LiveBindings {
        entries
            .iter()
            .map(|(ns, n, a)| ((ns.to_string(), n.to_string()), a.map(str::to_string)))
            .collect()
    }

    #[test]
    fn a_role_without_its_binding_is_an_orphan() {
        let c = [owned("111", "prod", "team", "gone")];
        let found = judge(
            "prod",
            None,
            &c,
            &live(&[("team", "kept", Some("111"))]),
            None,
        );
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].namespace.as_str(), found[0].binding.as_str()),
            ("team", "gone")
        );
    }

    #[test]
    fn a_role_with_its_binding_in_that_account_is_not() {
        let c = [owned("111", "prod", "team", "b")];
        assert!(judge("prod", None, &c, &live(&[("team", "b", Some("111"))]), None).is_empty());
        // The binding's IAMAccount is unknown: its role could be anywhere, so never an orphan.
        assert!(judge("prod", None, &c, &live(&[("team", "b", None)]), None).is_empty());
        // The binding lives in another account now: the role left here is an orphan.
        assert_eq!(
            judge("prod", None, &c, &live(&[("team", "b", Some("222"))]), None).len(),
            1
        );
    }

    #[test]
    fn other_clusters_retained_roles_and_untagged_roles_are_never_orphans() {
        let mut retained = owned("111", "prod", "team", "gone");
        retained
            .tags
            .insert(naming::TAG_RETAINED.into(), "true".into());
        let c = [
            owned("111", "staging", "team", "gone"),
            retained,
            candidate("111", &[("team", "x")]),
            candidate("111", &[(naming::TAG_CLUSTER, "prod")]),
        ];
        assert!(judge("prod", None, &c, &live(&[]), None).is_empty());
    }

    #[test]
    fn a_same_named_cluster_elsewhere_keeps_its_roles() {
        let ours = "arn:aws:eks:eu-west-1:111:cluster/prod";
        let theirs = "arn:aws:eks:us-east-1:111:cluster/prod";
        let tagged = |arn: Option<&str>| {
            let mut c = owned("111", "prod", "team", "gone");
            if let Some(arn) = arn {
                c.tags.insert(naming::TAG_CLUSTER_ARN.into(), arn.into());
            }
            c
        };
        let c = [tagged(Some(theirs)), tagged(None)];
        // Neither the other region's role nor a legacy role without the ARN tag is ours.
        assert!(judge("prod", Some(ours), &c, &live(&[]), None).is_empty());
        assert_eq!(
            judge("prod", Some(ours), &[tagged(Some(ours))], &live(&[]), None).len(),
            1
        );
        // A cluster without a region owns only roles without an ARN tag.
        assert_eq!(judge("prod", None, &c, &live(&[]), None).len(), 1);
    }

    #[test]
    fn a_namespace_scoped_sweep_judges_only_its_namespace() {
        let c = [
            owned("111", "prod", "a", "x"),
            owned("111", "prod", "b", "x"),
        ];
        let found = judge("prod", None, &c, &live(&[]), Some("b"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].namespace, "b");
    }

    #[test]
    fn an_association_without_its_binding_is_an_orphan_and_goes_before_roles() {
        let role = owned("111", "prod", "team", "gone");
        let c = [
            role.clone(),
            association("team", "gone", &role.arn),
            association("team", "kept", "arn:aws:iam::222:role/hatrack/k"),
        ];
        // The cluster has an ARN: associations carry no ARN tag and are still judged (they
        // were listed from this cluster); the role without one is a legacy role, not ours.
        let found = judge(
            "prod",
            Some("arn:aws:eks:eu-west-1:111:cluster/prod"),
            &c,
            &live(&[("team", "kept", Some("222"))]),
            None,
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, OrphanKind::PodIdentityAssociation);
        assert_eq!(found[0].service_account.as_deref(), Some("sa"));
        let found = judge("prod", None, &c, &live(&[]), None);
        let kinds: Vec<OrphanKind> = found.iter().map(|o| o.kind).collect();
        assert_eq!(
            kinds,
            [
                OrphanKind::PodIdentityAssociation,
                OrphanKind::PodIdentityAssociation,
                OrphanKind::Role
            ]
        );
    }

    #[test]
    fn an_association_of_a_retained_role_or_another_cluster_is_not_an_orphan() {
        let mut role = owned("111", "prod", "team", "gone");
        role.tags.insert(naming::TAG_RETAINED.into(), "true".into());
        let mut other = association("team", "x", "arn:aws:iam::111:role/x");
        other.tags = naming::ownership_tags("staging", "team", "x");
        let c = [role.clone(), association("team", "gone", &role.arn), other];
        assert!(judge("prod", None, &c, &live(&[]), None).is_empty());
    }

    #[test]
    fn live_bindings_know_their_account() {
        let b: IAMRoleBinding = serde_json::from_value(serde_json::json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
            "metadata": {"name": "b", "namespace": "t"},
            "spec": {"serviceAccounts": ["a"], "account": "missing"}
        }))
        .unwrap();
        let home: IAMRoleBinding = serde_json::from_value(serde_json::json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
            "metadata": {"name": "h", "namespace": "t"},
            "spec": {"serviceAccounts": ["a"]}
        }))
        .unwrap();
        let l = live_bindings(&[b, home], &[], "111");
        assert_eq!(l[&("t".to_string(), "b".to_string())], None);
        assert_eq!(l[&("t".to_string(), "h".to_string())], Some("111".into()));
    }
}
