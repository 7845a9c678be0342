#![allow(dead_code)]
pub mod moto;
pub mod controller;
