//! One fuzz execution: `data` must never make the review core or the rules panic, and every
//! answer must be a well-formed review for the request it answers.
//!
//! Shared by the cargo-fuzz target (fuzz_targets/review.rs) and the bounded loop
//! (benches/fuzz_review.rs, `#[path = "../fuzz/fuzz_targets/harness.rs"] mod harness;`).
#![allow(dead_code)]

use hatrack::detect::{self, InMemoryView, Mode, NoLookups};
use hatrack::webhook::review::{Policy, review};
use serde_json::Value;

const KINDS: [&str; 9] = [
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
    "CronJob",
    "ConfigMap",
];

/// Returns how many evaluations ran (for the loop's statistics).
pub fn run(data: &[u8]) -> usize {
    let mut evaluations = 0;
    let view = InMemoryView::new();
    for mode in [Mode::Enforce, Mode::Warn] {
        let policy = Policy {
            mode,
            exempt_namespaces: Default::default(),
            templates: Default::default(),
        };
        evaluations += 1;
        if let Ok((answer, outcome)) = review(data, &policy, &view) {
            let response = answer.response.as_ref().expect("an answer has a response");
            // The answer serialises, and a denial always says why.
            let text = serde_json::to_string(&answer).expect("the answer serialises");
            assert!(!text.is_empty());
            if !response.allowed {
                assert!(
                    !response.result.message.is_empty(),
                    "a denial without a message: {outcome:?}"
                );
            }
        }
    }
    // Rule evaluation on the bytes as a workload object of every kind.
    if let Ok(object) = serde_json::from_slice::<Value>(data) {
        let candidates: Vec<Value> = match object.pointer("/request/object") {
            Some(inner) => vec![inner.clone(), object.clone()],
            None => vec![object.clone()],
        };
        for mut candidate in candidates {
            if !candidate.is_object() {
                continue;
            }
            for kind in KINDS {
                if let Some(map) = candidate.as_object_mut() {
                    map.insert("kind".into(), Value::from(kind));
                }
                evaluations += 1;
                if let Ok(Some(eval)) = detect::evaluate_object(&candidate, "default", &NoLookups) {
                    let _ = detect::decide(Mode::Enforce, &eval, None);
                    for f in &eval.findings {
                        assert!(!f.message.is_empty());
                    }
                }
            }
        }
    }
    // The literal scanners on the bytes as text.
    let text = String::from_utf8_lossy(data);
    let _ = detect::scan::find_access_key_id(&text);
    let _ = detect::scan::find_secret_assignment(&text);
    let _ = detect::scan::find_credentials(&text);
    evaluations
}
