//! Memory of the webhook's Secret cache at startup, on a real kube-apiserver: many Secrets of
//! about 1 MiB each exist when `hatrack webhook --lookups on` starts (a restarting pod); its
//! peak RSS while it lists them must stay far under the chart's memory limit, because the
//! cache lists in small pages and keeps facts, not values.
//!
//! A measurement as much as a test (it stores ~200 MiB in etcd), so it is ignored by default:
//!
//!   cargo test --test real_secret_cache -- --ignored --nocapture
//!   SECRETS=300 HATRACK_SECRET_CACHE_BIN=/path/to/old/hatrack cargo test ...   # compare a build
//!
//! scripts/bench.sh runs it (part `secret-cache`) and puts the printed table in BENCHMARKS.md.

use hatrack_test_support as support;

use std::io::{Read, Write};

use futures::StreamExt;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use support::cluster::{cluster, spawn_tied_to_this_thread};
use support::moto::free_port;

/// The chart's webhook memory limit (values.yaml: webhook.resources.limits.memory).
const CHART_LIMIT_MIB: f64 = 256.0;

fn status_kib(pid: u32, field: &str) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Bytes that neither compress nor look like a key: a counter through a cheap mixer.
fn filler(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect()
}

#[tokio::test]
#[ignore = "a measurement: stores ~200 MiB of Secrets; run with --ignored --nocapture"]
async fn secret_cache_startup_memory_stays_bounded_by_facts() {
    let count: usize = std::env::var("SECRETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let cluster = cluster().await;
    let ns = cluster.namespace("big-secrets").await;
    let secrets: Api<Secret> = Api::namespaced(cluster.client().await, &ns);
    // Just under the API server's 1 MiB limit on a Secret's data.
    let size = 1024 * 1024 - 4096;
    let created = Instant::now();
    let mut pending = futures::stream::iter(0..count)
        .map(|i| {
            let secrets = secrets.clone();
            async move {
                let mut secret = Secret::default();
                secret.metadata.name = Some(format!("blob-{i}"));
                secret.data =
                    Some([("blob".to_string(), ByteString(filler(i as u64 + 1, size)))].into());
                secrets
                    .create(&PostParams::default(), &secret)
                    .await
                    .unwrap_or_else(|e| panic!("create blob-{i}: {e}"));
            }
        })
        .buffer_unordered(4);
    while pending.next().await.is_some() {}
    eprintln!(
        "created {count} Secrets of {size} bytes in {:?}",
        created.elapsed()
    );

    let bin = std::env::var("HATRACK_SECRET_CACHE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_hatrack").to_string());
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(dir.path().join("tls.crt"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), cert.signing_key.serialize_pem()).unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let log = dir.path().join("webhook.log");
    let mut cmd = Command::new(&bin);
    cmd.args(["webhook", "--lookups", "on", "--mode", "enforce"])
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--metrics-listen=127.0.0.1:{metrics_port}"))
        .arg(format!(
            "--tls-cert={}",
            dir.path().join("tls.crt").display()
        ))
        .arg(format!(
            "--tls-key={}",
            dir.path().join("tls.key").display()
        ))
        .args(["--cluster-name", "bench", "--account-id", "123456789012"])
        .args(["--cluster-region", "eu-west-1"])
        .args(["--default-trust", "pod-identity"])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("RUST_LOG", "warn,hatrack=info");
    let mut child = spawn_tied_to_this_thread(&mut cmd, &log);
    let pid = child.id();
    let started = Instant::now();
    let mut peak_sampled: f64 = 0.0;
    // Synced once the Secret and ConfigMap caches say so in the log.
    loop {
        let mut text = String::new();
        let _ = std::fs::File::open(&log).and_then(|mut f| f.read_to_string(&mut text));
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the webhook exited with {status} (killed for memory?): {text}");
        }
        peak_sampled = peak_sampled.max(status_kib(pid, "VmRSS:"));
        if text.matches("cache synced").count() >= 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "caches not synced after 600 s: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let synced_after = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let hwm = status_kib(pid, "VmHWM:") / 1024.0;
    let settled = status_kib(pid, "VmRSS:") / 1024.0;
    let _ = child.kill();
    let _ = child.wait();
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "| binary | Secrets × size | synced after | peak RSS (VmHWM) | RSS 2 s after sync | chart limit |\n|---|---|---|---|---|---|\n| {bin} | {count} × {size} B | {:.1} s | {hwm:.1} MiB | {settled:.1} MiB | {CHART_LIMIT_MIB} MiB |",
        synced_after.as_secs_f64()
    );
    assert!(
        hwm < CHART_LIMIT_MIB / 2.0,
        "peak RSS {hwm:.1} MiB while listing {count} Secrets of 1 MiB: more than half the chart's limit"
    );
    eprintln!(
        "peak RSS sampled every 50 ms: {:.1} MiB",
        peak_sampled / 1024.0
    );
}
