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
use kube_core::CustomResourceExt;

/// API group of every hatrack resource.
pub const GROUP: &str = "hatrack.dev";

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
