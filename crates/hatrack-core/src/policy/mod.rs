//! IAM policy documents: reading and checking them in AWS's own JSON form (`parse`) and
//! putting them in a canonical form for comparison (`canonical`). Guardrails match action
//! patterns with [`wildcard`] and [`intersect`]; the IAM evaluator tests use to say who may
//! assume a role is the dev-only crate `iam-eval`, not part of this one.

mod canonical;
pub mod intersect;
mod parse;
pub mod wildcard;

pub use canonical::{canonical, decode_document, equivalent};
pub use parse::{DocumentKind, PolicyError, Statement, parse};
