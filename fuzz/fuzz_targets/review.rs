//! libFuzzer target: arbitrary bytes as an AdmissionReview body through
//! `hatrack::webhook::review::review`, and (when they are JSON) through rule evaluation as a
//! workload of every kind. The checks live in `harness.rs`, shared with the bounded loop in
//! benches/fuzz_review.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    harness::run(data);
});
