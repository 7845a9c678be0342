//! The flags that describe the cluster (`--cluster-name`, `--account-id`, trust defaults …),
//! read with their env vars and validated once into [`Settings`].

use super::Settings;
use crate::crd::TrustMechanism;

/// Flags shared by `controller` and `plan`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Name of this cluster. Part of every role's name hash and ownership tags, and of the
    /// Pod Identity trust condition (`aws:RequestTag/eks-cluster-name`).
    #[arg(long, env = "HATRACK_CLUSTER_NAME")]
    pub cluster_name: String,

    /// AWS region of the cluster (e.g. eu-west-1). With it the cluster is known by its ARN,
    /// `arn:<partition>:eks:<region>:<account>:cluster/<name>`: role names, the
    /// `hatrack.dev/cluster-arn` ownership tag and Pod Identity trust
    /// (`aws:RequestTag/eks-cluster-arn`) are keyed on it, so a same-named cluster in another
    /// region or account never shares or takes over a role. Required (`controller` and
    /// `orphans` take `--aws-region`/`AWS_REGION` when it is set and this is not).
    #[arg(long, env = "HATRACK_CLUSTER_REGION")]
    pub cluster_region: Option<String>,

    /// AWS account id (12 digits) the roles are created in.
    #[arg(long, env = "HATRACK_ACCOUNT_ID")]
    pub account_id: String,

    /// AWS partition: aws, aws-cn, aws-us-gov.
    #[arg(long, env = "HATRACK_PARTITION", default_value = "aws")]
    pub partition: String,

    /// The cluster's OIDC issuer URL (https://...), required for IRSA trust.
    #[arg(long, env = "HATRACK_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,

    /// IAM path of every role hatrack manages (`/.../`).
    #[arg(long, env = "HATRACK_ROLE_PATH", default_value = "/hatrack/")]
    pub role_path: String,

    /// Trust used when a binding has no `spec.trust` (comma-separated: irsa, pod-identity).
    #[arg(
        long,
        env = "HATRACK_DEFAULT_TRUST",
        value_enum,
        value_delimiter = ',',
        default_value = "irsa"
    )]
    pub default_trust: Vec<TrustMechanism>,

    /// IRSA audience used when a binding names none.
    #[arg(
        long,
        env = "HATRACK_DEFAULT_AUDIENCE",
        default_value = "sts.amazonaws.com"
    )]
    pub default_audience: String,

    /// The account's trust policy size quota in characters (whitespace not counted).
    #[arg(long, env = "HATRACK_TRUST_POLICY_MAX_CHARS", default_value_t = 2048)]
    pub trust_policy_max_chars: usize,

    /// The account's quota of managed policies attached per role.
    #[arg(long, env = "HATRACK_MAX_MANAGED_POLICIES", default_value_t = 10)]
    pub max_managed_policies: usize,
}

/// What the settings are for. Building roles (`controller`, `webhook`, `plan`, `check`) needs
/// the trust flags, and `--oidc-issuer` when the default trust includes IRSA. Finding the roles
/// hatrack made (`orphans`) needs only who the cluster is and where its roles live: the trust
/// flags are neither required nor read, and the settings' trust fields must not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingsUse {
    BuildRoles,
    FindRoles,
}

/// A flag value that cannot work.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("--{flag}: {message}")]
pub struct SettingsError {
    pub flag: &'static str,
    pub message: String,
}

fn err(flag: &'static str, message: impl Into<String>) -> SettingsError {
    SettingsError {
        flag,
        message: message.into(),
    }
}

impl ClusterArgs {
    /// The validated settings; `--cluster-region` is required.
    pub fn settings(&self) -> Result<Settings, SettingsError> {
        self.settings_with_region(None)
    }

    /// The validated settings, the cluster's region being `--cluster-region` or else
    /// `fallback` (a region the caller was told explicitly, such as `--aws-region`). Without
    /// either it is an error: a cluster known by its name alone can share roles with a
    /// same-named cluster elsewhere.
    pub fn settings_with_region(&self, fallback: Option<&str>) -> Result<Settings, SettingsError> {
        self.settings_for(SettingsUse::BuildRoles, fallback)
    }

    /// The validated settings for `purpose`, the region as in [`Self::settings_with_region`].
    pub fn settings_for(
        &self,
        purpose: SettingsUse,
        fallback: Option<&str>,
    ) -> Result<Settings, SettingsError> {
        let cluster_name = self.cluster_name.trim().to_string();
        if cluster_name.is_empty()
            || cluster_name.len() > 100
            || !cluster_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(err(
                "cluster-name",
                format!(
                    "must be 1-100 characters of letters, digits, - and _, got {cluster_name:?}"
                ),
            ));
        }
        if self.account_id.len() != 12 || !self.account_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(err(
                "account-id",
                format!("must be 12 digits, got {:?}", self.account_id),
            ));
        }
        if !matches!(
            self.partition.as_str(),
            "aws" | "aws-cn" | "aws-us-gov" | "aws-iso" | "aws-iso-b"
        ) {
            return Err(err(
                "partition",
                format!(
                    "must be aws, aws-cn, aws-us-gov, aws-iso or aws-iso-b, got {:?}",
                    self.partition
                ),
            ));
        }
        // Finding the roles hatrack made needs no trust: its flags are not read.
        let oidc_issuer_host_path = match purpose {
            SettingsUse::BuildRoles => self.oidc_issuer_host_path()?,
            SettingsUse::FindRoles => None,
        };
        crate::validate::role_path(&self.role_path).map_err(|m| err("role-path", m))?;
        if purpose == SettingsUse::BuildRoles {
            self.check_trust_flags(oidc_issuer_host_path.is_some())?;
        }
        let given = self
            .cluster_region
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .or(fallback.map(str::trim).filter(|r| !r.is_empty()));
        let cluster_region = match given {
            None => {
                return Err(err(
                    "cluster-region",
                    "is required (HATRACK_CLUSTER_REGION; the chart's cluster.region): the cluster is known by its ARN, so a same-named cluster in another region or account never shares its roles; roles of an earlier install known by name alone are kept and migrated",
                ));
            }
            Some(r) if is_region(r) => Some(r.to_string()),
            Some(r) => {
                return Err(err(
                    "cluster-region",
                    format!("must be an AWS region such as eu-west-1, got {r:?}"),
                ));
            }
        };
        let mut default_trust = self.default_trust.clone();
        default_trust.sort();
        default_trust.dedup();
        Ok(Settings {
            cluster_name,
            cluster_region,
            account_id: self.account_id.clone(),
            cluster_account_id: self.account_id.clone(),
            partition: self.partition.clone(),
            oidc_issuer_host_path,
            role_path: self.role_path.clone(),
            default_trust,
            default_audience: self.default_audience.clone(),
            trust_policy_max_chars: self.trust_policy_max_chars,
            max_managed_policies: self.max_managed_policies,
        })
    }

    /// `--oidc-issuer` as IAM condition keys use it (`None`: not given).
    fn oidc_issuer_host_path(&self) -> Result<Option<String>, SettingsError> {
        Ok(match &self.oidc_issuer {
            None => None,
            Some(url) if url.trim().is_empty() => None,
            Some(url) => Some(parse_issuer(url)?),
        })
    }

    /// The flags of the trust a role is built with.
    fn check_trust_flags(&self, has_oidc_issuer: bool) -> Result<(), SettingsError> {
        if self.default_trust.is_empty() {
            return Err(err("default-trust", "must name irsa, pod-identity or both"));
        }
        if self.default_trust.contains(&TrustMechanism::Irsa) && !has_oidc_issuer {
            return Err(err(
                "oidc-issuer",
                "is required when the default trust includes irsa (or set --default-trust pod-identity)",
            ));
        }
        if self.default_audience.is_empty() {
            return Err(err("default-audience", "must not be empty"));
        }
        if self.trust_policy_max_chars < 2048 || self.trust_policy_max_chars > 8192 {
            return Err(err(
                "trust-policy-max-chars",
                "must be between 2048 (the IAM default) and 8192 (the IAM maximum)",
            ));
        }
        if self.max_managed_policies == 0 || self.max_managed_policies > 20 {
            return Err(err(
                "max-managed-policies",
                "must be between 1 and 20 (the IAM maximum)",
            ));
        }
        Ok(())
    }
}

/// `eu-west-1`, `us-gov-west-1`, `ap-southeast-3`: lower-case words joined by `-`, ending in a
/// number.
pub fn is_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts.len() <= 5
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|n| !n.is_empty() && n.len() <= 2 && n.chars().all(|c| c.is_ascii_digit()))
}

/// `https://oidc.eks.us-east-1.amazonaws.com/id/ABC/` → `oidc.eks.us-east-1.amazonaws.com/id/ABC`.
fn parse_issuer(url: &str) -> Result<String, SettingsError> {
    let rest = url.strip_prefix("https://").ok_or_else(|| {
        err(
            "oidc-issuer",
            format!("must be an https:// URL, got {url:?}"),
        )
    })?;
    let rest = rest.trim_end_matches('/');
    let valid = !rest.is_empty()
        && !rest.starts_with('/')
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/:".contains(c))
        && !rest.contains('?')
        && !rest.contains('#');
    if !valid {
        return Err(err(
            "oidc-issuer",
            format!("must be an https URL with a host and optional path, got {url:?}"),
        ));
    }
    Ok(rest.to_string())
}
