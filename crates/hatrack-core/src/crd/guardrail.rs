use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube_derive::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Bounds what IAMRoleBindings in the selected namespaces may grant. Cluster-scoped, written
/// by the platform team. Every guardrail whose selector matches a binding's namespace applies;
/// a binding must satisfy all of them. An absent field means no restriction; an empty list
/// means nothing is allowed.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[kube(
    crates(kube_core = "::kube_core"),
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

    /// Managed policy ARNs a binding may not attach, as patterns with `*` and `?`
    /// (case-sensitive, as ARNs are). Checked wherever the binding is (admission, controller,
    /// offline), before anything is read from IAM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200), inner(length(min = 1, max = 2048)))]
    pub denied_managed_policy_arns: Option<Vec<String>>,

    /// Actions no Allow statement of a binding's policies may grant, as patterns with `*` and
    /// `?` (compared case-insensitively, as IAM does): its inline policies everywhere, and the
    /// default version of every attached managed policy in the controller (which reads them
    /// from IAM; the webhook and the offline commands cannot, and say so). A statement violates
    /// when its actions could include a denied action (`"*"`, `"iam:*"`, `"IAM:createrole"` and
    /// `"i*:Create*"` all intersect `"iam:*"`); an Allow with `NotAction` always violates.
    /// Deny statements never violate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200), inner(length(min = 1, max = 256)))]
    pub denied_actions: Option<Vec<String>>,

    /// Actions no Allow statement may grant on every resource, patterns as in `deniedActions`:
    /// a statement violates when its actions could include one of these and one of its
    /// `Resource` patterns is `*` or matches any role of the account (`arn:aws:iam::*:role/*`,
    /// `arn:aws:iam::<account>:role/*`), or it has `NotResource`. For actions whose resource is
    /// a role (`iam:PassRole`, `sts:AssumeRole`): granting them on named roles stays allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200), inner(length(min = 1, max = 256)))]
    pub denied_actions_on_all_resources: Option<Vec<String>>,

    /// What the controller does when a binding violates this guardrail: `Revoke` (default)
    /// removes every permission policy from the binding's role (inline policies deleted,
    /// managed policies detached) until the binding complies, then puts them back; `Report`
    /// only reports the violation and leaves the role as it is. Admission refuses violating
    /// bindings either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<Enforcement>,

    /// What `deletionPolicy: Retain` may keep when a binding in scope is deleted. `Forbidden`:
    /// bindings may not ask for Retain, and a role that a binding with Retain leaves anyway
    /// is deleted; `WithoutTrust` (default): the role stays, its trust policy replaced by one
    /// that lets nobody assume it; `WithTrust`: the role stays as it is. The strictest of the
    /// applicable guardrails wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<RetainPolicy>,

    /// ARN of the permissions boundary every role in scope gets. The controller sets it on
    /// bindings that name none; a binding naming another boundary violates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = super::policy_arn_rule("requiredPermissionsBoundary"))]
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

    /// Existing IAM roles a binding may adopt (`spec.adoptRole`), as patterns with `*` and `?`
    /// (case-sensitive): one starting with `/` is matched against the role's path and name
    /// (`/legacy/payments-*`), any other against its name (`payments-*`). Adopting a powerful
    /// role is an escalation, so nothing is adoptable unless a guardrail says so; when several
    /// applicable guardrails set this field, each must allow the role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 600)))]
    pub adoptable_roles: Option<Vec<String>>,
}

// One type for guardrails' `allowedTrust` (serialized `irsa`, `podIdentity`) and the
// controller's `--default-trust` (values `irsa`, `pod-identity`). Its doc comment is the CRD's
// description, and variants carry none (schemars would turn the enum into a `oneOf`): the
// flag's help is given with `value(help)`.
/// A trust mechanism, as named in `allowedTrust`.
#[derive(
    JsonSchema,
    Deserialize,
    Serialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    clap::ValueEnum,
)]
#[serde(rename_all = "camelCase")]
pub enum TrustMechanism {
    // IAM Roles for Service Accounts (web identity on the cluster's OIDC issuer).
    #[value(help = "IAM Roles for Service Accounts (web identity on the cluster's OIDC issuer)")]
    Irsa,
    // EKS Pod Identity (`pods.eks.amazonaws.com`).
    #[value(help = "EKS Pod Identity (pods.eks.amazonaws.com)")]
    PodIdentity,
}

impl std::fmt::Display for TrustMechanism {
    /// The name guardrails and status messages use.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TrustMechanism::Irsa => "irsa",
            TrustMechanism::PodIdentity => "podIdentity",
        })
    }
}

/// What the controller does about a binding that violates a guardrail.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Enforcement {
    /// Remove the role's permission policies until the binding complies.
    #[default]
    Revoke,
    /// Report the violation (status, Event, metric); leave the role as it is.
    Report,
}

/// What a role left by `deletionPolicy: Retain` may keep, from strictest to loosest.
#[derive(
    JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default,
)]
pub enum RetainPolicy {
    /// Retain may not be asked for; the role is deleted all the same.
    Forbidden,
    /// The role stays, but nobody may assume it (its trust policy denies everyone).
    #[default]
    WithoutTrust,
    /// The role stays as it is, trust included.
    WithTrust,
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
