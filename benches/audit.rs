//! Background audit at scale: the real `hatrack auditor` binary (release build, its own
//! process, so its RSS is its own) against a real etcd + kube-apiserver
//! (tests/support/cluster.rs) holding `AUDIT_WORKLOADS` (10,000) workloads and `AUDIT_SECRETS`
//! (10,000) Secrets in `AUDIT_NAMESPACES` (50) namespaces. Every workload reads one Secret
//! (`envFrom`); one Secret in ten holds an AWS key pair, so about one workload in ten has a
//! finding.
//!
//!     scripts/install-test-deps.sh   # once: etcd and kube-apiserver into .tools
//!     cargo bench --bench audit
//!
//! Prints a markdown section: time to the first complete set of reports (the auditor's own
//! `hatrack_audit_first_report_seconds`) and RSS then (VmRSS, VmHWM from /proc); then
//! `AUDIT_EDITS` (100) clean Secrets edited to hold keys → time until their readers are
//! judged again and the reports written, judgements and report writes it took; then an idle
//! window with no changes → judgements and report writes (both should be 0) and RSS.
//!
//! Every wait is bounded in time; nothing here asserts a timing.

#[path = "support/http.rs"]
mod bench_http;
#[path = "support/proc_status.rs"]
mod proc_status;
use hatrack_test_support as support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bench_http::http_get;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use proc_status::rss_kib;
use serde_json::{Value, json};
use support::moto::free_port;

const KEY_ID: &str = "AKIAZ7Q3EXAMPLEK3Y4N";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKE";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

struct Auditor {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Auditor {
    fn start(dir: &Path, kubeconfig: &Path) -> Auditor {
        let port = free_port();
        let log = dir.join("auditor.log");
        let child = Command::new(env!("CARGO_BIN_EXE_hatrack"))
            .args(["auditor", "--flush-seconds", "1"])
            .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
            .env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("AUDIT_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("auditor log"))
            .spawn()
            .expect("start hatrack auditor");
        Auditor { child, port, log }
    }

    /// A metric without labels (or the sum of a family), or 0.
    fn metric(&self, name: &str) -> f64 {
        let text = http_get(self.port, "/metrics").unwrap_or_default();
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Report writes that succeeded.
    fn writes(&self) -> f64 {
        let text = http_get(self.port, "/metrics").unwrap_or_default();
        text.lines()
            .filter(|l| {
                l.starts_with("hatrack_audit_report_writes_total{") && l.contains("result=\"ok\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn failed_writes(&self) -> f64 {
        self.metric("hatrack_audit_report_writes_total") - self.writes()
    }

    /// (VmRSS, VmHWM) in MiB.
    fn rss_mib(&self) -> (f64, f64) {
        let (rss, hwm) = rss_kib(self.child.id());
        (rss as f64 / 1024.0, hwm as f64 / 1024.0)
    }

    /// Waits (at most `secs`) until `done` holds for the scraped metrics.
    fn wait(&self, secs: u64, what: &str, mut done: impl FnMut(&Auditor) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if done(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("timed out after {secs} s waiting for: {what}");
        false
    }
}

impl Drop for Auditor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn secret(i: usize) -> Value {
    let data = if i.is_multiple_of(10) {
        json!({"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_KEY})
    } else {
        json!({"username": format!("user-{i}"), "password": format!("pw-{i}-{}", "x".repeat(24)),
            "url": "postgres://db:5432/app", "ca.crt": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"})
    };
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("s-{i}")}, "stringData": data})
}

fn container(i: usize) -> Value {
    json!({"name": "app", "image": "registry.example.com/app:1.2.3",
        "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "PORT", "value": "8080"}],
        "envFrom": [{"secretRef": {"name": format!("s-{i}")}}],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}})
}

/// Workload `i`: its kind by position, reading Secret `i`.
fn workload(i: usize) -> (&'static str, Value) {
    let name = format!("w-{i}");
    let labels = json!({"app": name});
    let template = json!({"metadata": {"labels": labels},
        "spec": {"restartPolicy": "Always", "containers": [container(i)]}});
    let job_template = json!({"metadata": {"labels": labels},
        "spec": {"restartPolicy": "Never", "containers": [container(i)]}});
    match i % 20 {
        0..=7 => (
            "Deployment",
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name}, "spec": {"selector": {"matchLabels": labels}, "template": template}}),
        ),
        8..=9 => (
            "StatefulSet",
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name}, "spec": {"serviceName": name, "selector": {"matchLabels": labels}, "template": template}}),
        ),
        10 => (
            "DaemonSet",
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": name}, "spec": {"selector": {"matchLabels": labels}, "template": template}}),
        ),
        11 => (
            "CronJob",
            json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": name}, "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": job_template}}}}),
        ),
        12 => (
            "Job",
            json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name}, "spec": {"template": job_template}}),
        ),
        _ => (
            "Pod",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [container(i)]}}),
        ),
    }
}

async fn fill(client: &kube::Client, namespaces: &[String], workloads: usize, secrets: usize) {
    // Blocks of ten consecutive objects per namespace: every namespace gets workloads with keys.
    let per_ns = |i: usize| &namespaces[(i / 10) % namespaces.len()];
    let secret_stream = futures::stream::iter(0..secrets).map(|i| {
        let api: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            per_ns(i),
            &kube::core::ApiResource::erase::<Secret>(&()),
        );
        async move {
            let obj: DynamicObject = serde_json::from_value(secret(i)).unwrap();
            api.create(&PostParams::default(), &obj).await.map(|_| ())
        }
    });
    let failed = secret_stream
        .buffer_unordered(16)
        .filter(|r| futures::future::ready(r.is_err()))
        .count()
        .await;
    assert_eq!(failed, 0, "Secrets not created");
    let workload_stream = futures::stream::iter(0..workloads).map(|i| {
        let (kind, manifest) = workload(i);
        let ar = hatrack::audit::kinds::WorkloadKind::from_kind(kind)
            .unwrap()
            .api_resource();
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), per_ns(i), &ar);
        async move {
            let obj: DynamicObject = serde_json::from_value(manifest).unwrap();
            api.create(&PostParams::default(), &obj).await.map(|_| ())
        }
    });
    let failed = workload_stream
        .buffer_unordered(16)
        .filter(|r| futures::future::ready(r.is_err()))
        .count()
        .await;
    assert_eq!(failed, 0, "workloads not created");
}

fn main() {
    let workloads = env_num("AUDIT_WORKLOADS", 10_000);
    let secrets = env_num("AUDIT_SECRETS", 10_000).max(workloads);
    let namespaces = env_num("AUDIT_NAMESPACES", 50);
    let edits = env_num("AUDIT_EDITS", 100);
    let idle = env_num("AUDIT_IDLE_SECONDS", 20) as u64;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let dir = tempfile::tempdir().expect("temp dir");
            let t0 = Instant::now();
            // hatrack's CRDs as the chart installs them: the auditor watches StaticKeyExemptions.
            let c = support::cluster::cluster_with_crds().await;
            let client = c.client().await;
            let crd = Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/charts/hatrack/crds/wgpolicyk8s.io.yaml"
            ));
            let (ok, out, err) = support::cluster::run(
                support::cluster::kubectl(c)
                    .args(["apply", "--server-side", "-f"])
                    .arg(crd),
            );
            assert!(ok, "PolicyReport CRD: {out}{err}");
            let mut names = Vec::new();
            for _ in 0..namespaces {
                names.push(c.namespace("bench").await);
            }
            fill(&client, &names, workloads, secrets).await;
            let filled = t0.elapsed();

            let started = Instant::now();
            let auditor = Auditor::start(dir.path(), &c.kubeconfig);
            let mut peak_during_list = 0.0f64;
            let first = auditor.wait(900, "the first complete set of reports", |a| {
                peak_during_list = peak_during_list.max(a.rss_mib().0);
                a.metric("hatrack_audit_first_report_seconds") > 0.0
            });
            let wall = started.elapsed().as_secs_f64();
            let first_report = auditor.metric("hatrack_audit_first_report_seconds");
            let (rss_first, hwm_first) = auditor.rss_mib();
            let judged = auditor.metric("hatrack_audit_judgements_total");
            let held = auditor.metric("hatrack_audit_workloads");
            let with_findings = auditor.metric("hatrack_audit_workloads_with_findings");
            let writes_first = auditor.writes();

            // Clean Secrets edited to hold keys: their readers are fetched and judged again.
            let judged_before = auditor.metric("hatrack_audit_judgements_total");
            let writes_before = auditor.writes();
            let edit_start = Instant::now();
            let mut edited = 0;
            for i in (0..secrets).filter(|i| i % 10 == 1).take(edits) {
                let api: Api<Secret> = Api::namespaced(client.clone(), &names[(i / 10) % names.len()]);
                api.patch(
                    &format!("s-{i}"),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"stringData": {"AWS_ACCESS_KEY_ID": KEY_ID}})),
                )
                .await
                .expect("edit Secret");
                edited += 1;
            }
            let readers = (0..workloads)
                .filter(|i| i % 10 == 1 && (i / 10) < edits)
                .count() as f64;
            // Judged first, then two whole report rounds after that (the round that judged
            // them writes their reports).
            let readers_judged = auditor.wait(300, "the edited Secrets' readers judged", |a| {
                a.metric("hatrack_audit_judgements_total") >= judged_before + readers
            });
            let flushes_at = auditor.metric("hatrack_audit_flushes_total");
            let edits_done = readers_judged
                && auditor.wait(300, "two report rounds", |a| {
                    a.metric("hatrack_audit_flushes_total") >= flushes_at + 2.0
                });
            let edit_time = edit_start.elapsed().as_secs_f64();
            let edit_judged = auditor.metric("hatrack_audit_judgements_total") - judged_before;
            let edit_writes = auditor.writes() - writes_before;

            // Idle: nothing changes.
            let judged_idle = auditor.metric("hatrack_audit_judgements_total");
            let writes_idle = auditor.writes();
            std::thread::sleep(Duration::from_secs(idle));
            let idle_judged = auditor.metric("hatrack_audit_judgements_total") - judged_idle;
            let idle_writes = auditor.writes() - writes_idle;
            let (rss_end, hwm_end) = auditor.rss_mib();
            let failed_writes = auditor.failed_writes();
            let log = std::fs::read_to_string(&auditor.log).unwrap_or_default();
            let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
            if let Ok(keep) = std::env::var("AUDIT_KEEP_LOG") {
                let _ = std::fs::write(keep, &log);
            }
            for w in warnings.iter().take(5) {
                eprintln!("auditor: {w}");
            }

            println!(
                "## Background audit: {workloads} workloads and {secrets} Secrets in {namespaces} namespaces (kube-apiserver)\n"
            );
            println!("| measure | value |\n|---|---|");
            println!("| objects created (Secrets, then workloads) | {:.0} s |", filled.as_secs_f64());
            println!(
                "| time to first complete set of reports (auditor's own metric; wall from process start) | **{first_report:.1} s** ({wall:.1} s){} |",
                if first { "" } else { " TIMED OUT" }
            );
            println!("| workloads judged / held | {judged:.0} / {held:.0} |");
            println!("| workloads with findings (sum over namespaces and rules) | {with_findings:.0} |");
            println!("| report writes to the first complete set | {writes_first:.0} |");
            println!("| RSS at the first complete set (VmRSS / VmHWM) | **{rss_first:.1} MiB** / {hwm_first:.1} MiB |");
            println!(
                "| {edited} clean Secrets edited to hold keys → readers judged again and reports written | {edit_time:.1} s{}; {edit_judged:.0} judgements (readers: {readers:.0}); {edit_writes:.0} report writes |",
                if edits_done { "" } else { " TIMED OUT" }
            );
            println!("| {idle} s idle: judgements / report writes | {idle_judged:.0} / {idle_writes:.0} |");
            println!("| RSS at the end (VmRSS / VmHWM) | {rss_end:.1} MiB / {hwm_end:.1} MiB |");
            println!("| failed report writes (retried), auditor warnings | {failed_writes:.0}, {} |", warnings.len());
            println!("\naudit bench took {:.0} s", t0.elapsed().as_secs_f64());
        });
}
