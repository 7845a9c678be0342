//! Cluster-wide settings shared by the controller and the offline commands: who the cluster is
//! in AWS, where roles live, and the trust defaults. Parsed from flags (with env vars, in
//! `flags`) and validated once, so everything downstream can rely on them.

use crate::crd::TrustMechanism;

mod flags;
#[cfg(test)]
mod tests;

pub use flags::{ClusterArgs, SettingsError, SettingsUse, is_region};

/// Validated settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub cluster_name: String,
    /// The cluster's region: with it, the cluster's identity is its ARN ([`Settings::cluster_arn`]).
    /// Always set from flags; `None` only in fixtures standing in for an install made before
    /// issue 14, which knew the cluster by its name alone.
    pub cluster_region: Option<String>,
    /// The account roles are made in (an IAMAccount's for a binding that names one).
    pub account_id: String,
    /// The account the cluster itself is in: part of its ARN, whichever account a role is in.
    pub cluster_account_id: String,
    pub partition: String,
    /// Issuer without the `https://` scheme and trailing slash, as IAM condition keys use it.
    pub oidc_issuer_host_path: Option<String>,
    pub role_path: String,
    pub default_trust: Vec<TrustMechanism>,
    pub default_audience: String,
    pub trust_policy_max_chars: usize,
    pub max_managed_policies: usize,
}

impl Settings {
    /// ARN of the IAM OIDC provider for the issuer, if IRSA is configured.
    pub fn oidc_provider_arn(&self) -> Option<String> {
        self.oidc_issuer_host_path.as_ref().map(|issuer| {
            format!(
                "arn:{}:iam::{}:oidc-provider/{}",
                self.partition, self.account_id, issuer
            )
        })
    }

    /// The cluster's ARN, when its region is known.
    pub fn cluster_arn(&self) -> Option<String> {
        self.cluster_region.as_ref().map(|region| {
            crate::naming::cluster_arn(
                &self.partition,
                region,
                &self.cluster_account_id,
                &self.cluster_name,
            )
        })
    }

    /// What role names are keyed on: the cluster's ARN, or its name when the region is unknown
    /// (the scheme of hatrack before issue 14).
    pub fn cluster_identity(&self) -> String {
        self.cluster_arn()
            .unwrap_or_else(|| self.cluster_name.clone())
    }

    /// The name of the role of binding `namespace/name` in this cluster (keyed on
    /// [`Settings::cluster_identity`]), or the legacy name `status_role_name` records (see
    /// [`crate::naming::role_name_in_use`]).
    pub fn role_name_in_use(
        &self,
        status_role_name: Option<&str>,
        namespace: &str,
        name: &str,
    ) -> String {
        crate::naming::role_name_in_use(
            &self.cluster_identity(),
            self.cluster_region
                .is_some()
                .then_some(self.cluster_name.as_str()),
            status_role_name,
            namespace,
            name,
        )
    }

    /// ARN of a role with this name under the configured path.
    pub fn role_arn(&self, role_name: &str) -> String {
        format!(
            "arn:{}:iam::{}:role{}{}",
            self.partition, self.account_id, self.role_path, role_name
        )
    }

    /// Settings for tests and examples.
    pub fn example() -> Settings {
        Settings {
            cluster_name: "prod-eu".into(),
            cluster_region: None,
            account_id: "111122223333".into(),
            cluster_account_id: "111122223333".into(),
            partition: "aws".into(),
            oidc_issuer_host_path: Some(
                "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE".into(),
            ),
            role_path: "/hatrack/".into(),
            default_trust: vec![TrustMechanism::Irsa],
            default_audience: "sts.amazonaws.com".into(),
            trust_policy_max_chars: 2048,
            max_managed_policies: 10,
        }
    }
}
