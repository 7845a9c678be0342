//! Shared helpers for the integration tests. Each test crate includes this with `mod support;`.
#![allow(dead_code)]

pub mod apiserver;
pub mod moto;
pub mod controller;
