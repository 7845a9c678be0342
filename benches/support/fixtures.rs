//! The review fixtures shared by the bench targets (`#[path = "support/fixtures.rs"] mod
//! fixtures;`): a small Pod, a typical chart Deployment (benches/data) and a large
//! 40-container Deployment, plus the referenced Secrets and ConfigMaps as the webhook's watch
//! cache would hold them (all clean). The webhook load test (scripts/bench-webhook.sh) posts
//! the same bodies from benches/data; `large-deployment-review.json` there is
//! `large_deployment()` written out (benches/peers.rs checks that they agree).
#![allow(dead_code)]

use hatrack::detect::{self, InMemoryView, RefKind};
use serde_json::{Value, json};

pub fn review_of(object: Value) -> Vec<u8> {
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

pub fn small_pod() -> Vec<u8> {
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

pub fn typical_deployment() -> Vec<u8> {
    let text = include_str!("../data/typical-deployment-review.json");
    let v: Value = serde_json::from_str(text).expect("fixture is JSON");
    serde_json::to_vec(&v).unwrap()
}

pub fn large_deployment() -> Vec<u8> {
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
pub fn view() -> InMemoryView {
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
