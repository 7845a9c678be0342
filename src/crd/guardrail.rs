use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Bounds what IAMRoleBindings in the selected namespaces may grant. Cluster-scoped, written
/// by the platform team. Every guardrail whose selector matches a binding's namespace applies;
/// a binding must satisfy all of them. An absent field means no restriction; an empty list
/// means nothing is allowed.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "hatrack.dev",
    version = "v1alpha1",
    kind = "IAMGuardrail",
    plural = "iamguardrails",
    shortname = "igr",
    status = "IAMGuardrailStatus",
    doc = "Bounds what IAMRoleBindings in the selected namespaces may grant.",
    printcolumn = r#"{"name":"Boundary","type":"string","jsonPath":".spec.requiredPermissionsBoundary"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IAMGuardrailSpec {
    /// Namespaces this guardrail applies to, by their labels (a standard label selector).
    /// Absent or empty: every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Managed policy ARNs a binding may attach, as patterns with IAM's `*` and `?` wildcards
    /// (case-sensitive, as ARNs are). Absent: any; empty: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200), inner(length(min = 1, max = 2048)))]
    pub allowed_managed_policy_arns: Option<Vec<String>>,

    /// Actions no Allow statement of a binding's inline policies may grant, as patterns with
    /// `*` and `?` (compared case-insensitively, as IAM does). A statement violates when its
    /// actions could include a denied action (`"*"`, `"iam:*"`, `"IAM:createrole"` and
    /// `"i*:Create*"` all intersect `"iam:*"`); an Allow with `NotAction` always violates.
    /// Deny statements never violate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200), inner(length(min = 1, max = 256)))]
    pub denied_actions: Option<Vec<String>>,

    /// ARN of the permissions boundary every role in scope gets. The controller sets it on
    /// bindings that name none; a binding naming another boundary violates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/.+$')").message("requiredPermissionsBoundary must be an IAM policy ARN"))]
    #[schemars(length(max = 2048))]
    pub required_permissions_boundary: Option<String>,

    /// Largest `maxSessionDuration` a binding may ask for, in seconds (3600..43200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 3600, max = 43200))]
    pub max_session_duration: Option<i32>,

    /// Most IAMRoleBindings one namespace may hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_bindings_per_namespace: Option<u32>,

    /// Trust mechanisms a binding may use (`irsa`, `podIdentity`). Absent: any; empty: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_trust: Option<Vec<TrustMechanism>>,
}

/// A trust mechanism, as named in `allowedTrust`.
#[derive(
    JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase")]
pub enum TrustMechanism {
    Irsa,
    PodIdentity,
}

/// Observed state of an IAMGuardrail.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IAMGuardrailStatus {
    /// The `metadata.generation` last seen by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` says whether the guardrail is well-formed and enforced; `Stalled` (True) is
    /// present while it is not (kstatus reads it as Failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
