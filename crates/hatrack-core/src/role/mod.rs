//! The IAM role a binding asks for (built, pure: `build`), the role AWS has (read by the IAM
//! edge), and the smallest set of IAM calls that takes the second to the first (diffed, pure:
//! `diff`).

mod build;
mod diff;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::crd::TrustMechanism;

pub use build::desired_role;
pub use diff::{Change, Diff, diff};

/// Aggregate size quota of a role's inline policies (characters, whitespace not counted).
pub const INLINE_POLICIES_MAX_CHARS: usize = 10_240;
/// IAM allows 50 tags per role.
pub const MAX_TAGS: usize = 50;
/// hatrack's ownership tags on every role: cluster, cluster ARN, namespace, name.
pub const OWNERSHIP_TAGS: usize = 4;
/// Tags a binding may set (`spec.tags`; the CRD's `maxProperties` says the same): what IAM
/// allows less hatrack's own, so a binding the API server admits can always become a role.
pub const MAX_BINDING_TAGS: usize = MAX_TAGS - OWNERSHIP_TAGS;
/// Default maximum session duration.
pub const DEFAULT_MAX_SESSION_SECONDS: i32 = 3600;

/// A field of the binding that cannot become a valid role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// Path in the object, e.g. `spec.inlinePolicies.put-receipts.Statement[0].Effect`.
    pub field: String,
    pub message: String,
}

/// An IAM role's definition: what a binding wants ([`DesiredRole::role`]) or what IAM has
/// ([`ActualRole`]); [`diff`] compares the two.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    pub role_name: String,
    pub path: String,
    pub arn: String,
    pub assume_role_policy: Value,
    pub inline_policies: BTreeMap<String, Value>,
    pub managed_policy_arns: BTreeSet<String>,
    pub permissions_boundary: Option<String>,
    pub max_session_duration: i32,
    pub description: String,
    pub tags: BTreeMap<String, String>,
}

/// The role as a binding wants it, with the binding it comes from. Serialises to the `plan`
/// output (the role's fields beside `namespace` and `name`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredRole {
    pub namespace: String,
    pub name: String,
    #[serde(flatten)]
    pub role: Role,
    /// The trust mechanisms the role's trust policy admits (the binding's, or the defaults).
    #[serde(skip)]
    pub mechanisms: BTreeSet<TrustMechanism>,
}

impl DesiredRole {
    /// Whether pods reach the role through IRSA (the ServiceAccount annotation and the
    /// cluster's OIDC provider are needed).
    pub fn uses_irsa(&self) -> bool {
        self.mechanisms.contains(&TrustMechanism::Irsa)
    }
}

/// The role as IAM has it.
pub type ActualRole = Role;

/// Fixtures shared by the submodules' tests.
#[cfg(test)]
mod testing {
    use serde_json::{Value, json};

    use crate::crd::IAMRoleBinding;

    pub(super) fn binding(spec: Value) -> IAMRoleBinding {
        serde_json::from_value(json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
            "metadata": {"name": "reader", "namespace": "payments"},
            "spec": spec
        }))
        .unwrap()
    }

    pub(super) fn full() -> IAMRoleBinding {
        binding(json!({
            "serviceAccounts": ["api", "worker"],
            "trust": {"irsa": {"audience": "sts.amazonaws.com"}, "podIdentity": {}},
            "managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"],
            "inlinePolicies": {"put-receipts": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": ["arn:aws:s3:::receipts/*"]}]}},
            "permissionsBoundary": "arn:aws:iam::111122223333:policy/boundary",
            "maxSessionDuration": 7200,
            "tags": {"team": "payments"}
        }))
    }
}
