//! hatrack: gives Kubernetes workloads AWS IAM roles instead of static keys.
//!
//! The crate is split between a pure core that needs neither a cluster nor AWS (CRD types,
//! role naming, trust and permission policy documents, validation, diffs, static-key
//! detection rules) and thin I/O edges (the IAM client, the controller, the webhook server,
//! the offline CLI commands) that call it.
#![forbid(unsafe_code)]
// Input from the cluster, AWS or a user must never panic the process.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod association;
pub mod audit;
pub mod backoff;
pub mod binding_admission;
pub mod certs;
pub mod check;
pub mod check_formats;
pub mod claims;
pub mod controller;
pub mod crd;
pub mod detect;
pub mod eks;
pub mod exemption;
pub mod guardrail;
pub mod iam;
pub mod judge;
pub mod leader;
pub mod manifest;
pub mod metrics;
pub mod naming;
pub mod plan;
pub mod policy;
pub mod role;
pub mod settings;
pub mod sync;
pub mod telemetry;
pub mod throttle;
pub mod trust;
pub mod validate;
pub mod watch;
pub mod webhook;
pub mod yaml_positions;
