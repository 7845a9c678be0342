//! Shared helpers for the integration tests and benches: the crate `hatrack-test-support`
//! (a dev-dependency), compiled once for every test binary; each names it
//! `use hatrack_test_support as support;`.
#![allow(dead_code)]

pub mod apiserver;
pub mod cluster;
pub mod controller;
pub mod eks;
pub mod faults;
pub mod moto;
pub mod objects;

/// The repository's root (this crate lives in `tests/support`): where `.venv` and `.tools` are.
pub fn repository_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
