use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube_derive::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An AWS account other than the controller's own that IAMRoleBindings may create their roles
/// in, how the controller reaches it (a role there that it assumes through STS), and which
/// namespaces may use it. Cluster-scoped, written by the platform team. A binding names it in
/// `spec.account`; a binding naming none gets its role in the controller's own account.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "hatrack.dev",
    version = "v1alpha1",
    kind = "IAMAccount",
    plural = "iamaccounts",
    shortname = "iacct",
    status = "IAMAccountStatus",
    doc = "An AWS account IAMRoleBindings may create their roles in, and how hatrack reaches it.",
    printcolumn = r#"{"name":"Account","type":"string","jsonPath":".spec.accountId"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Role","type":"string","priority":1,"jsonPath":".spec.assumeRole.roleArn"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.assumeRole.roleArn.contains(':iam::' + self.accountId + ':role/')").message("assumeRole.roleArn must be a role of accountId"))]
pub struct IAMAccountSpec {
    /// The AWS account id (12 digits) the roles are made in.
    #[schemars(length(min = 12, max = 12), regex(pattern = r"^[0-9]{12}$"))]
    pub account_id: String,

    /// The role in that account that the controller assumes (`sts:AssumeRole`) to manage roles
    /// there. It must trust the controller's own role and allow what
    /// `docs/operator-iam-policy.json` allows.
    pub assume_role: AssumeRoleSpec,

    /// Namespaces whose IAMRoleBindings may use this account, by their labels (a standard
    /// label selector; `{}` selects every namespace). A binding of another namespace naming
    /// this account is refused.
    pub namespace_selector: LabelSelector,

    /// Client-side limit on IAM calls per second in this account (IAM throttles per
    /// account). Absent: the controller's `--iam-calls-per-second`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub iam_calls_per_second: Option<u32>,
}

/// How the controller assumes its role in the account.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[serde(rename_all = "camelCase")]
pub struct AssumeRoleSpec {
    /// ARN of the role to assume, in `accountId`.
    #[schemars(length(min = 20, max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$')").message("roleArn must be an IAM role ARN"))]
    pub role_arn: String,
    /// External id the role's trust policy asks for (`sts:ExternalId`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1224), regex(pattern = r"^[\w+=,.@:/-]+$"))]
    pub external_id: Option<String>,
    /// Session name of the assumed role (seen in CloudTrail). Default: `hatrack-<cluster>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 64), regex(pattern = r"^[\w+=,.@-]+$"))]
    pub session_name: Option<String>,
}

/// Observed state of an IAMAccount, written by the controller.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IAMAccountStatus {
    /// The `metadata.generation` last checked by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` says whether the controller holds credentials in the account: True
    /// (`CredentialsObtained`) once `sts:AssumeRole` into `spec.assumeRole.roleArn` succeeded;
    /// False with `AssumeRoleFailed` (STS refused or could not be reached; the message says
    /// why), `InvalidAccount` (the spec is wrong) or `NoBaseCredentials` (the controller has no
    /// credentials of its own to assume the role with). `Stalled` (True) is present while a
    /// change to the spec is needed (kstatus reads it as Failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
