//! `hatrack orphans`: lists, from a workstation, what the controller's orphan sweep would
//! report (roles tagged as this cluster's whose IAMRoleBinding is gone, in every account
//! hatrack uses, and the cluster's orphaned Pod Identity associations). It finds them with the
//! sweep's own code ([`crate::controller::orphans::find`]) and deletes nothing.

use std::sync::Arc;

use kube::Api;
use kube::api::ListParams;

use crate::controller::accounts::AccountClients;
use crate::controller::orphans::{accounts_to_sweep, find_for};
use crate::crd::IAMAccount;
use crate::eks::Eks;
use crate::iam::Iam;
use crate::settings::{ClusterArgs, SettingsUse};

/// Output of `hatrack orphans`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Flags of `hatrack orphans`: the controller's cluster flags (same environment variables; the
/// trust flags among them are not read), AWS credentials from the default chain, the cluster
/// from the kubeconfig.
#[derive(Debug, Clone, clap::Args)]
pub struct OrphansCliArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
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
pub async fn run(args: OrphansCliArgs) -> Result<(), String> {
    // The controller's rules for who the cluster is (a region is required, `--aws-region`
    // standing in for `--cluster-region`); no trust is built, so no issuer is needed.
    let settings = args
        .cluster
        .settings_for(SettingsUse::FindRoles, args.iam.explicit_region())
        .map_err(|e| e.to_string())?;
    let region = settings.cluster_region.as_deref().unwrap_or_default();
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("cannot reach the Kubernetes API: {e}"))?;
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let home = Iam::from_args(&args.iam, metrics.clone()).await;
    // As the controller: the cluster's associations are in the cluster's region.
    let eks = Eks::from_args(
        &args.eks,
        region,
        args.iam.iam_max_attempts,
        &settings.cluster_name,
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
        &settings.account_id,
        &home,
        &known,
        &clients,
        &settings.cluster_name,
    )
    .await;
    let orphans = find_for(
        &client,
        &settings,
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
