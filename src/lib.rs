//! hatrack: gives Kubernetes workloads AWS IAM roles instead of static keys.
//!
//! This crate holds the I/O edges (the IAM and EKS clients, the controller, the webhook
//! server, the background audit, the CLI commands). The pure core they call (CRD types, role
//! naming, trust and permission policy documents, validation, diffs, guardrails, static-key
//! detection rules) is the `hatrack-core` crate, re-exported here under the same module names
//! so `hatrack::naming` and `crate::naming` read the same everywhere.
#![forbid(unsafe_code)]
// Input from the cluster, AWS or a user must never panic the process.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod audit;
pub mod aws;
pub mod binding_admission;
pub mod certs;
pub mod check;
pub mod check_formats;
pub mod controller;
pub mod eks;
pub mod iam;
pub mod leader;
pub mod metrics;
pub mod orphans_cli;
pub mod plan;
pub mod signal;
pub mod sync;
pub mod telemetry;
pub mod throttle;
pub mod watch;
pub mod webhook;

pub use hatrack_core::{
    account, association, backoff, claims, crd, detect, exemption, guardrail, json_type, judge,
    manifest, naming, orphan, policy, role, role_sync, settings, trust, validate, yaml_positions,
};
