use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube_derive::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Binds ServiceAccounts of its own namespace to one AWS IAM role that hatrack creates and keeps
/// correct: a trust policy that lets exactly those ServiceAccounts assume the role (IRSA and/or
/// EKS Pod Identity), its permission policies, permissions boundary and tags.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "hatrack.dev",
    version = "v1alpha1",
    kind = "IAMRoleBinding",
    plural = "iamrolebindings",
    shortname = "irb",
    namespaced,
    status = "IAMRoleBindingStatus",
    doc = "Binds ServiceAccounts of its namespace to an AWS IAM role that hatrack creates and keeps correct.",
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".status.roleName"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"ARN","type":"string","priority":1,"jsonPath":".status.roleArn"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.account) == has(oldSelf.account) && (!has(self.account) || self.account == oldSelf.account)").message("account cannot be changed: a role stays in the account it was made in; make a new IAMRoleBinding for another account"))]
#[x_kube(validation = Rule::new("has(self.adoptRole) == has(oldSelf.adoptRole) && (!has(self.adoptRole) || self.adoptRole == oldSelf.adoptRole)").message("adoptRole cannot be changed: make a new IAMRoleBinding to adopt another role"))]
pub struct IAMRoleBindingSpec {
    /// Names of the ServiceAccounts, in the binding's own namespace, that may assume the role.
    /// ServiceAccounts of other namespaces cannot be named.
    #[x_kube(validation = Rule::new("self.all(sa, sa.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$'))").message("each serviceAccount must be a ServiceAccount name (lower-case DNS subdomain) of this namespace"))]
    #[schemars(length(min = 1, max = 100), inner(length(min = 1, max = 253)), extend("x-kubernetes-list-type" = "set"))]
    pub service_accounts: Vec<String>,

    /// How the ServiceAccounts assume the role. Absent: the controller's default
    /// (`--default-trust`, IRSA unless configured otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<TrustSpec>,

    /// ARNs of managed IAM policies to attach, e.g. `arn:aws:iam::aws:policy/ReadOnlyAccess`.
    /// At most 10 (the IAM default quota; see `--max-managed-policies`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = super::policy_arns_rule())]
    #[schemars(length(max = 20), inner(length(max = 2048)), extend("x-kubernetes-list-type" = "set"))]
    pub managed_policy_arns: Vec<String>,

    /// Inline permission policies: policy name → IAM policy document in AWS's own JSON form
    /// (`Version`, `Statement` with `Effect`, `Action`/`NotAction`, `Resource`/`NotResource`,
    /// optional `Condition`). The aggregate size of all inline policies is limited to 10,240
    /// characters, whitespace not counted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "inline_policies_schema")]
    pub inline_policies: BTreeMap<String, serde_json::Value>,

    /// ARN of a managed policy to set as the role's permissions boundary. hatrack never removes
    /// a boundary once set; an IAMGuardrail may require one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = super::policy_arn_rule("permissionsBoundary"))]
    #[schemars(length(max = 2048))]
    pub permissions_boundary: Option<String>,

    /// Maximum session duration of the role in seconds, 3600 to 43200. Default 3600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 3600, max = 43200))]
    pub max_session_duration: Option<i32>,

    /// Description of the IAM role (at most 1000 characters). Default: says which binding and
    /// cluster own the role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000))]
    pub description: Option<String>,

    /// Extra tags for the IAM role. Keys may not start with `aws:` or `hatrack.dev/` (hatrack's
    /// ownership tags), in any case: IAM compares tag keys case-insensitively. At most 46 (IAM
    /// allows 50 tags; hatrack adds 4: cluster, cluster ARN, namespace, name).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = crate::role::MAX_BINDING_TAGS))]
    #[x_kube(validation = Rule::new("self.all(k, !k.lowerAscii().startsWith('aws:') && !k.lowerAscii().startsWith('hatrack.dev/'))").message("tag keys may not start with aws: or hatrack.dev/ (in any case): those are reserved for AWS and for hatrack's ownership tags"))]
    pub tags: BTreeMap<String, String>,

    /// Name of the IAMAccount (cluster-scoped) whose AWS account the role is made in; the
    /// account must select this namespace. Absent: the controller's own account. Cannot be
    /// changed once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub account: Option<String>,

    /// Name of an existing IAM role to take over instead of making one (e.g. a role made by
    /// Terraform). Only where an IAMGuardrail's `adoptableRoles` allows it for this namespace.
    /// The role gets hatrack's ownership tags and this binding's trust, policies, description
    /// and tags (tags and policies the spec does not name are removed); its path stays. On
    /// delete it is kept by default (`deletionPolicy` defaults to `Retain` for an adopted
    /// role). Cannot be changed once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[\w+=,.@-]+$"))]
    pub adopt_role: Option<String>,

    /// What happens to the IAM role when this binding is deleted: `Delete` (default; `Retain`
    /// for an adopted role) removes the role and its policies; `Retain` leaves the role in AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

/// Which mechanisms may assume the role. At least one must be set.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.irsa) || has(self.podIdentity)").message("trust must enable irsa, podIdentity or both"))]
pub struct TrustSpec {
    /// IAM Roles for Service Accounts: web identity federation with the cluster's OIDC issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irsa: Option<IrsaTrust>,
    /// EKS Pod Identity: the `pods.eks.amazonaws.com` service principal, limited to this
    /// cluster, namespace and ServiceAccounts by session tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_identity: Option<PodIdentityTrust>,
}

/// IRSA trust settings.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IrsaTrust {
    /// Audience the projected token must carry. Default: `--default-audience`
    /// (`sts.amazonaws.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub audience: Option<String>,
}

/// EKS Pod Identity trust settings (none yet; the presence of the field enables it).
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
pub struct PodIdentityTrust {}

/// What happens to the IAM role when the binding is deleted.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    /// Delete the role, its inline policies and managed policy attachments.
    #[default]
    Delete,
    /// Leave the role in AWS; only the binding goes.
    Retain,
}

/// Observed state of an IAMRoleBinding.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IAMRoleBindingStatus {
    /// Name of the IAM role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_name: Option<String>,
    /// ARN of the IAM role; what `eks.amazonaws.com/role-arn` points at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// The `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` says whether the role in AWS matches the spec; its reason says why not
    /// (`InvalidSpec`, `RoleNotOwned`, `ServiceAccountConflict`, `OidcProviderMissing`,
    /// `GuardrailViolation`, `AwsError`, `Deleting`, `ForeignPodIdentityAssociation`). `Stalled`
    /// (True, same reason) is present while a change, not a retry, is needed (kstatus reads it
    /// as Failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the role was last found or made in sync with the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// The EKS Pod Identity associations hatrack keeps for this binding, one per bound
    /// ServiceAccount (podIdentity trust only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pod_identity_associations: Vec<PodIdentityAssociationStatus>,
}

/// One EKS Pod Identity association of a binding.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodIdentityAssociationStatus {
    /// The ServiceAccount the association is for.
    pub service_account: String,
    /// The association's id (`a-...`).
    pub association_id: String,
    /// The association's ARN.
    pub association_arn: String,
    /// The binding's role in another account that EKS chains to (`spec.account` with
    /// podIdentity trust); the association's role is then the chaining role in the cluster's
    /// account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_role_arn: Option<String>,
    /// The external id EKS made for the association, which the target role's trust requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

fn inline_policies_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "Inline permission policies: policy name → IAM policy document.",
        "maxProperties": 50,
        "propertyNames": {"pattern": "^[\\w+=,.@-]{1,128}$"},
        "additionalProperties": {
            "type": "object",
            "required": ["Statement"],
            "x-kubernetes-preserve-unknown-fields": true
        }
    })
}

impl IAMRoleBinding {
    /// The deletion policy in force (default `Delete`; `Retain` for an adopted role).
    pub fn deletion_policy(&self) -> DeletionPolicy {
        match (self.spec.deletion_policy, &self.spec.adopt_role) {
            (Some(p), _) => p,
            (None, Some(_)) => DeletionPolicy::Retain,
            (None, None) => DeletionPolicy::default(),
        }
    }
}
