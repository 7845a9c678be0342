//! hatrack's pure core: everything that decides, nothing that calls out. CRD types, role
//! naming, trust and permission policy documents, validation, role build and diff, guardrails,
//! static-key detection rules. It has no Kubernetes client, AWS SDK or async runtime among its
//! dependencies, so none of it can do I/O; the `hatrack` crate's edges (IAM and EKS clients,
//! the controller, the webhook server, the CLI) call into it.
#![forbid(unsafe_code)]
// Input from the cluster, AWS or a user must never panic the process.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod account;
pub mod association;
pub mod backoff;
pub mod claims;
pub mod crd;
pub mod detect;
pub mod exemption;
pub mod guardrail;
pub mod json_type;
pub mod judge;
pub mod manifest;
pub mod naming;
pub mod orphan;
pub mod policy;
pub mod role;
pub mod role_sync;
pub mod settings;
pub mod trust;
pub mod validate;
pub mod yaml_positions;
