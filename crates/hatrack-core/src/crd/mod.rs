//! The custom resources hatrack defines, and the YAML that installs them.

mod account;
mod binding;
mod exemption;
mod guardrail;

pub use account::*;
pub use binding::*;
pub use exemption::*;
pub use guardrail::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube_core::{CustomResourceExt, Message, Rule};

/// API group of every hatrack resource.
pub const GROUP: &str = "hatrack.dev";

/// What the API server takes for an IAM policy ARN (a customer's or AWS's), as a CEL regex.
const POLICY_ARN_PATTERN: &str = "^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/.+$";

/// CEL rule of a field holding one IAM policy ARN (`field` names it in the message).
fn policy_arn_rule(field: &str) -> Rule {
    Rule::new(format!("self.matches('{POLICY_ARN_PATTERN}')")).message(Message::Message(format!(
        "{field} must be an IAM policy ARN"
    )))
}

/// CEL rule of a list of IAM policy ARNs.
fn policy_arns_rule() -> Rule {
    Rule::new(format!("self.all(a, a.matches('{POLICY_ARN_PATTERN}'))")).message(
        "each managedPolicyArn must be an IAM policy ARN (arn:<partition>:iam::<account>:policy/<name>)",
    )
}

/// Every CRD hatrack installs, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        IAMRoleBinding::crd(),
        IAMGuardrail::crd(),
        StaticKeyExemption::crd(),
        IAMAccount::crd(),
    ]
}

/// Every CRD as multi-document YAML: the exact content of `crds/hatrack.dev.yaml`.
pub fn all_yaml() -> String {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        // A CRD built from our own types always serialises.
        out.push_str(&serde_yaml::to_string(&crd).unwrap_or_default());
    }
    out
}
