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
use hatrack::detect::{self, InMemoryView, Json, Mode, RefKind, Target};
use hatrack::webhook::review::{Policy, review};
use kube::core::DynamicObject;
use kube::core::admission::AdmissionReview;
use serde_json::{Value, json};

fn review_of(object: Value) -> Vec<u8> {
    let kind = object["kind"].as_str().unwrap_or("Pod").to_string();
    let group = if kind == "Pod" { "" } else { "apps" };
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "bench", "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": "x"},
            "name": object["metadata"]["name"], "namespace": object["metadata"]["namespace"],
            "operation": "CREATE", "userInfo": {"username": "bench"}, "object": object,
            "dryRun": false
        }
    }))
    .unwrap()
}

fn small_pod() -> Vec<u8> {
    review_of(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "apps", "labels": {"app": "web"}},
        "spec": {"serviceAccountName": "web", "containers": [{
            "name": "web", "image": "nginx:1.27",
            "ports": [{"containerPort": 80}],
            "env": [{"name": "AWS_REGION", "value": "eu-west-1"}, {"name": "LOG_LEVEL", "value": "info"}]
        }]}
    }))
}

fn typical_deployment() -> Vec<u8> {
    let text = include_str!("data/typical-deployment-review.json");
    let v: Value = serde_json::from_str(text).expect("fixture is JSON");
    serde_json::to_vec(&v).unwrap()
}

fn large_deployment() -> Vec<u8> {
    let containers: Vec<Value> = (0..40)
        .map(|i| {
            json!({
                "name": format!("worker-{i}"),
                "image": format!("ghcr.io/example/worker-{i}:1.0.{i}"),
                "command": ["/bin/sh", "-c"],
                "args": [format!("set -eu; exec /app/worker --shard={i} --queue=https://sqs.eu-west-1.amazonaws.com/123456789012/jobs-{i} --bucket=s3://results-bucket/shard-{i}/ --concurrency=8 --log-format=json")],
                "env": [
                    {"name": "AWS_REGION", "value": "eu-west-1"},
                    {"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::123456789012:role/workers"},
                    {"name": "SHARD", "value": i.to_string()},
                    {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                    {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
                    {"name": "FEATURE_FLAGS", "valueFrom": {"configMapKeyRef": {"name": "flags", "key": "flags.json"}}},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel-collector.observability.svc:4317"},
                    {"name": "JAVA_OPTS", "value": "-Xms256m -Xmx512m -XX:+UseG1GC -Daws.region=eu-west-1"},
                    {"name": "LOG_LEVEL", "value": "info"}
                ],
                "envFrom": [{"configMapRef": {"name": "worker-settings"}}],
                "resources": {"limits": {"cpu": "250m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/worker"},
                    {"name": format!("shard-{}", i % 10), "mountPath": "/etc/shard"},
                    {"name": "tmp", "mountPath": "/tmp"}
                ]
            })
        })
        .collect();
    let mut volumes = vec![
        json!({"name": "config", "configMap": {"name": "worker-config"}}),
        json!({"name": "tmp", "emptyDir": {}}),
    ];
    for s in 0..10 {
        volumes.push(json!({"name": format!("shard-{s}"), "projected": {"sources": [
            {"secret": {"name": format!("shard-{s}-tls"), "items": [{"key": "tls.crt", "path": "tls.crt"}]}},
            {"configMap": {"name": format!("shard-{s}-config")}},
            {"serviceAccountToken": {"path": "token", "audience": "sts.amazonaws.com"}}
        ]}}));
    }
    review_of(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "workers", "namespace": "batch"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "workers"}},
            "template": {"metadata": {"labels": {"app": "workers"}},
                "spec": {"serviceAccountName": "workers", "containers": containers, "volumes": volumes}}}
    }))
}

/// The referenced Secrets and ConfigMaps, as the watch cache would hold them (all clean).
fn view() -> InMemoryView {
    let mut v = InMemoryView::new();
    let mut add = |kind, ns: &str, name: &str, data: &[(&str, &str)]| {
        let facts = detect::classify_data(data.iter().map(|(k, v)| (*k, v.as_bytes())));
        v.insert(kind, ns, name, facts);
    };
    add(
        RefKind::Secret,
        "orders",
        "orders-postgresql",
        &[("password", "s3cr3t-db-password")],
    );
    add(
        RefKind::ConfigMap,
        "orders",
        "orders-settings",
        &[("MODE", "prod")],
    );
    add(
        RefKind::ConfigMap,
        "orders",
        "orders-config",
        &[("config.yaml", "listen: :8080\nqueue: orders-events\n")],
    );
    add(RefKind::Secret, "batch", "db", &[("password", "pw")]);
    add(RefKind::Secret, "batch", "api", &[("token", "tok")]);
    add(
        RefKind::ConfigMap,
        "batch",
        "flags",
        &[("flags.json", "{\"a\":true}")],
    );
    add(
        RefKind::ConfigMap,
        "batch",
        "worker-settings",
        &[("MODE", "batch")],
    );
    add(
        RefKind::ConfigMap,
        "batch",
        "worker-config",
        &[("worker.yaml", "concurrency: 8\n")],
    );
    for s in 0..10 {
        add(
            RefKind::Secret,
            "batch",
            &format!("shard-{s}-tls"),
            &[
                (
                    "tls.crt",
                    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                ),
                (
                    "tls.key",
                    "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
                ),
            ],
        );
        add(
            RefKind::ConfigMap,
            "batch",
            &format!("shard-{s}-config"),
            &[("shard.yaml", "replicas: 2\n")],
        );
    }
    v
}

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
    };
    // The rules run on the object as the webhook parses it (pruned, borrowed JSON).
    let pruned = hatrack::webhook::prune::parse(body).unwrap();
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
        b.iter(|| black_box(hatrack::webhook::prune::parse(black_box(body)).unwrap()))
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
