//! Rule evaluation time per review versus the bare `serde_json` parse of the same review.
//!
//!     cargo bench --bench detect            # full criterion run, then a summary table
//!     cargo bench --bench detect -- --quick # shorter
//!
//! Fixtures: a small Pod, a typical chart Deployment (benches/data, also used by
//! scripts/bench-webhook.sh) and a large 40-container Deployment. For each:
//! - `parse-value`: `serde_json::from_slice::<Value>` of the review body (the bare parse);
//! - `parse-review`: `AdmissionReview<DynamicObject>` as the webhook parses it;
//! - `parse-skip`: scanning the same bytes without building anything (the floor);
//! - `parse-pruned`: the webhook's pruning parse (only the fields the rules read);
//! - `rules`: `detect::evaluate` + `detect::decide` on the parsed object (the rules);
//! - `review-total`: the whole pure core as the webhook runs it (pruning parse, request
//!   fields, rules, kube `AdmissionResponse`, serialisation).
//!
//! The summary prints `rules / parse-value` (target: at most 25%).

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::Criterion;
use hatrack::detect::{self, InMemoryView, Json, Mode, Target};
use hatrack::webhook::review::{Policy, review};
use kube::core::DynamicObject;
use kube::core::admission::AdmissionReview;
use serde_json::Value;

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{large_deployment, small_pod, typical_deployment, view};

const FUNCTIONS: [&str; 6] = [
    "parse-value",
    "parse-review",
    "rules",
    "review-total",
    "parse-skip",
    "parse-pruned",
];

fn bench_fixture(c: &mut Criterion, name: &str, body: &[u8], view: &Arc<InMemoryView>) {
    let policy = Policy {
        mode: Mode::Enforce,
        exempt_namespaces: Default::default(),
        templates: Default::default(),
    };
    // The rules run on the object as the webhook parses it (pruned, borrowed JSON).
    let arena = bumpalo::Bump::new();
    let pruned = hatrack::webhook::prune::parse(body, &arena).unwrap();
    let req = pruned.get("request").expect("request");
    let obj = req.get("object").expect("object");
    let meta = obj.get("metadata").expect("metadata");
    let target = Target {
        kind: obj.get("kind").and_then(Json::as_str).expect("kind"),
        namespace: meta
            .get("namespace")
            .and_then(Json::as_str)
            .unwrap_or("default"),
        name: meta.get("name").and_then(Json::as_str).unwrap_or(""),
        object: obj,
    };
    // Sanity: the fixture is judged and answered (a clean workload is allowed).
    let eval = detect::evaluate(&target, view.as_ref())
        .unwrap()
        .expect("a workload");
    assert!(eval.findings.is_empty(), "{name}: {:?}", eval.findings);
    let (answer, _) = review(body, &policy, view.as_ref()).unwrap();
    assert!(answer.response.unwrap().allowed);

    let mut g = c.benchmark_group(name);
    g.throughput(criterion::Throughput::Bytes(body.len() as u64));
    g.bench_function(FUNCTIONS[0], |b| {
        b.iter(|| black_box(serde_json::from_slice::<Value>(black_box(body)).unwrap()))
    });
    g.bench_function("parse-skip", |b| {
        b.iter(|| {
            black_box(serde_json::from_slice::<serde::de::IgnoredAny>(black_box(body)).unwrap())
        })
    });
    g.bench_function("parse-pruned", |b| {
        // As the webhook does: a fresh arena per review, dropped with the tree.
        b.iter(|| {
            let arena = bumpalo::Bump::with_capacity(body.len());
            black_box(hatrack::webhook::prune::parse(black_box(body), &arena).is_ok())
        })
    });
    g.bench_function(FUNCTIONS[1], |b| {
        b.iter(|| {
            black_box(
                serde_json::from_slice::<AdmissionReview<DynamicObject>>(black_box(body)).unwrap(),
            )
        })
    });
    g.bench_function(FUNCTIONS[2], |b| {
        b.iter(|| {
            let eval = detect::evaluate(black_box(&target), view.as_ref())
                .unwrap()
                .unwrap();
            black_box(detect::decide(Mode::Enforce, &eval, None))
        })
    });
    g.bench_function(FUNCTIONS[3], |b| {
        b.iter(|| {
            let (answer, outcome) = review(black_box(body), &policy, view.as_ref()).unwrap();
            black_box((serde_json::to_vec(&answer).unwrap(), outcome))
        })
    });
    g.finish();
}

fn criterion_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(PathBuf::from(home));
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(target).join("criterion"));
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "target"))
        .map(|t| t.join("criterion"))
}

fn estimate_ns(dir: &std::path::Path, group: &str, function: &str) -> Option<f64> {
    let path = dir.join(group).join(function).join("new/estimates.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn main() {
    let view = Arc::new(view());
    let fixtures = [
        ("small-pod", small_pod()),
        ("typical-deployment", typical_deployment()),
        ("large-deployment-40", large_deployment()),
    ];
    let mut c = Criterion::default().configure_from_args();
    for (name, body) in &fixtures {
        bench_fixture(&mut c, name, body, &view);
    }
    c.final_summary();

    let Some(dir) = criterion_dir() else {
        println!("(criterion output directory not found; no summary)");
        return;
    };
    println!("\nSummary (criterion medians; rules = detect::evaluate + decide):");
    println!(
        "{:<22} {:>7} {:>12} {:>12} {:>13} {:>13} {:>10} {:>13} {:>12}",
        "fixture",
        "bytes",
        "parse-value",
        "parse-skip",
        "parse-pruned",
        "parse-review",
        "rules",
        "review-total",
        "rules/parse"
    );
    for (name, body) in &fixtures {
        let est: Vec<Option<f64>> = FUNCTIONS
            .iter()
            .map(|f| estimate_ns(&dir, name, f))
            .collect();
        let fmt = |v: Option<f64>| match v {
            Some(ns) if ns >= 1000.0 => format!("{:.1} µs", ns / 1000.0),
            Some(ns) => format!("{ns:.0} ns"),
            None => "-".into(),
        };
        let ratio = match (est[2], est[0]) {
            (Some(r), Some(p)) if p > 0.0 => format!("{:.1}%", 100.0 * r / p),
            _ => "-".into(),
        };
        println!(
            "{:<22} {:>7} {:>12} {:>12} {:>13} {:>13} {:>10} {:>13} {:>12}",
            name,
            body.len(),
            fmt(est[0]),
            fmt(est[4]),
            fmt(est[5]),
            fmt(est[1]),
            fmt(est[2]),
            fmt(est[3]),
            ratio
        );
    }
    println!("rules/parse = rules / parse-value (the bare serde_json parse); target <= 25%");
    println!(
        "parse-review = AdmissionReview<DynamicObject> from the full body (kube types, no pruning)"
    );
}
