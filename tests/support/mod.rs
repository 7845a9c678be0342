//! Shared helpers for the integration tests. Each test crate includes this with `mod support;`.
#![allow(dead_code)]

pub mod apiserver;
pub mod cluster;
pub mod controller;
pub mod eks;
pub mod faults;
pub mod moto;
pub mod objects;
