use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube_derive::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Exempts one workload, or every workload of a namespace, from the static-key admission
/// rules until a deadline, naming who granted it and why. Cluster-scoped: only who may write
/// cluster-scoped hatrack resources (the platform team's RBAC) can grant one; an annotation on
/// the workload could be set by whoever creates the workload. The IAMRoleBinding and
/// IAMGuardrail admission checks are never exempt.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "hatrack.dev",
    version = "v1alpha1",
    kind = "StaticKeyExemption",
    plural = "statickeyexemptions",
    shortname = "ske",
    doc = "Exempts a workload or a namespace from the static-key admission rules until a deadline.",
    printcolumn = r#"{"name":"Namespace","type":"string","jsonPath":".spec.namespace"}"#,
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.kind"}"#,
    printcolumn = r#"{"name":"Workload","type":"string","jsonPath":".spec.name"}"#,
    printcolumn = r#"{"name":"Expires","type":"date","jsonPath":".spec.expires"}"#,
    printcolumn = r#"{"name":"GrantedBy","type":"string","jsonPath":".spec.grantedBy"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct StaticKeyExemptionSpec {
    /// The namespace whose workloads are exempt.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,

    /// The workload's kind (`Deployment`, `CronJob`, `Pod`, …). Absent: any kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub kind: Option<String>,

    /// The workload's name. Absent: every workload of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,

    /// Who granted the exemption (a person or team), shown in every warning it causes.
    #[schemars(length(min = 1, max = 256))]
    pub granted_by: String,

    /// Why (a ticket, the migration plan), shown in every warning it causes.
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,

    /// When the exemption ends (RFC 3339). From then on the workload is judged again.
    pub expires: Time,
}
