//! Controller at scale: the real `hatrack controller` binary (release build, its own process,
//! so its RSS is its own) against a Kubernetes API and a moto IAM server. The API is either the
//! in-process stand-in (tests/support/apiserver.rs, over a kubeconfig file; the default) or,
//! with `CONTROLLER_API=real`, a real etcd + kube-apiserver (tests/support/cluster.rs), where
//! the controller acts as its own ServiceAccount and the API server's audit log counts its
//! requests.
//!
//!     scripts/install-test-deps.sh   # once: moto into .venv, etcd and kube-apiserver into .tools
//!     cargo bench --bench controller
//!     CONTROLLER_API=real cargo bench --bench controller
//!
//! With the real API each phase runs in a process of its own (the bench re-executes itself),
//! so that bindings of one phase are not reconciled by the next phase's controller.
//! Phases (each prints a markdown section):
//! 1. `CONTROLLER_BINDINGS` (1,000) IAMRoleBindings stored at once → time until all are
//!    Ready=True/Synced; IAM calls by operation per binding (the controller's own
//!    `hatrack_iam_calls_total`, scraped from its /metrics); controller RSS.
//! 2. One resync window with no changes (resync period `CONTROLLER_RESYNC` = 20 s; the
//!    window is that period plus 5 s) → IAM write and read calls, reconciles.
//!    `CONTROLLER_RESYNC_WINDOW=0` skips it: with a long `CONTROLLER_RESYNC` (say 3600), phase
//!    1 then counts creation calls without resyncs mixed in, and phase 3 follows at once.
//! 3. Up to `CONTROLLER_HOLD` (10,000) bindings held → controller RSS (VmRSS and VmHWM from
//!    /proc), with how many were Ready when measured (bounded by `CONTROLLER_HOLD_SECONDS`).
//! 4. Throttling: an HTTP proxy in front of a fresh moto answers 50% of IAM requests (seeded
//!    random) with HTTP 400 `Throttling` → time until `CONTROLLER_THROTTLE_BINDINGS` (200)
//!    bindings are Ready, SDK attempts vs hatrack's calls, reconcile errors.
//!
//! `CONTROLLER_WRAPPER` runs the controller under a command (a heap profiler, say:
//! `CONTROLLER_WRAPPER="heaptrack -o /tmp/ht"`); its RSS figures are then not the controller's.
//!
//! Every wait is bounded in time; nothing here asserts a timing.

#[path = "support/http.rs"]
mod bench_http;
#[path = "controller/kube_api.rs"]
mod kube_api;
#[path = "support/proc_status.rs"]
mod proc_status;
#[path = "controller/process.rs"]
mod process;
use hatrack_test_support as support;
#[path = "controller/throttle.rs"]
mod throttle;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kube_api::{KubeApi, count_synced, print_requests, wait_synced};
use process::{ControllerProcess, Scrape, mib, print_calls};
use serde_json::{Value, json};
use support::controller::{ACCOUNT, ISSUER_HOST_PATH};
use support::moto::Moto;
use throttle::{ProxyStats, start_throttling_proxy};

const ALL_BINDINGS: &str = "/apis/hatrack.dev/v1alpha1/iamrolebindings";
const NAMESPACES: usize = 20;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------

async fn scale(dir: &Path) {
    let n = env_num("CONTROLLER_BINDINGS", 1000) as usize;
    let hold = env_num("CONTROLLER_HOLD", 10_000) as usize;
    let hold_limit = Duration::from_secs(env_num("CONTROLLER_HOLD_SECONDS", 300));
    let resync = env_num("CONTROLLER_RESYNC", 20);

    let moto = Moto::start();
    moto.create_oidc_provider(&format!("https://{ISSUER_HOST_PATH}"))
        .await;
    let api = KubeApi::start("scale").await;
    let kubeconfig = api.kubeconfig(dir).await;
    let controller = ControllerProcess::start(dir, &kubeconfig, &moto.endpoint, resync);
    // Wait for the controller's watches before storing anything.
    api.wait_watches(&controller).await;
    let (idle_rss, _) = controller.rss_kib();
    let before = controller.metrics();
    let requests_before = api.controller_requests();

    println!(
        "## Controller: {n} IAMRoleBindings applied at once ({})\n",
        api.label()
    );
    let start = Instant::now();
    api.add_bindings(0, n).await;
    let stored = start.elapsed();
    let synced = wait_synced(&api, n, start, Duration::from_secs(600)).await;
    let took = start.elapsed();
    let after = controller.metrics();
    let calls = after.minus(&before);
    let (rss, hwm) = controller.rss_kib();
    println!(
        "- {synced}/{n} Ready=True (Synced) after **{:.1} s** ({:.0} bindings/s); storing them in {} took {:.0} ms",
        took.as_secs_f64(),
        synced as f64 / took.as_secs_f64(),
        api.label(),
        stored.as_secs_f64() * 1000.0
    );
    println!(
        "- reconciles: {} ({:?})",
        calls.total_reconciles(),
        calls.reconciles
    );
    println!(
        "- controller RSS: idle {} → {} after {n} bindings (peak {})\n",
        mib(idle_rss),
        mib(rss),
        mib(hwm)
    );
    print_calls("IAM operation (creation)", &calls, synced.max(1));
    if let (Some(b), Some(a)) = (&requests_before, api.controller_requests()) {
        println!("\nThe controller's requests to kube-apiserver (its audit log), creation:\n");
        print_requests("API verb (creation)", b, &a, synced.max(1));
    }

    if env_num("CONTROLLER_RESYNC_WINDOW", 1) == 0 {
        println!("\n(resync window skipped: CONTROLLER_RESYNC_WINDOW=0; resync period {resync} s)");
    } else {
        resync_window(&api, &controller, resync, n).await;
    }
    hold_bindings(&api, &controller, &before, n, hold, hold_limit, idle_rss).await;
    drop(controller);
}

async fn resync_window(api: &KubeApi, controller: &ControllerProcess, resync: u64, n: usize) {
    println!("\n## Controller: one resync window with no changes\n");
    // Let in-flight work settle, then measure one resync period plus 5 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r0 = controller.metrics();
    let q0 = api.controller_requests();
    let window = Duration::from_secs(resync + 5);
    tokio::time::sleep(window).await;
    let r1 = controller.metrics();
    if let (Some(b), Some(a)) = (&q0, api.controller_requests()) {
        println!("The controller's requests to kube-apiserver in the window:\n");
        print_requests("API verb (resync window)", b, &a, n);
    }
    let d = r1.minus(&r0);
    println!(
        "- resync period {resync} s, window measured {} s, {n} bindings",
        window.as_secs()
    );
    println!(
        "- IAM **write** calls: **{}**; read calls: {} ({:.2} per reconcile); reconciles in the window: {} ({:?})\n",
        d.writes(),
        d.reads(),
        d.reads() as f64 / d.total_reconciles().max(1) as f64,
        d.total_reconciles(),
        d.reconciles
    );
    print_calls("IAM operation (resync window)", &d, n);
}

async fn hold_bindings(
    api: &KubeApi,
    controller: &ControllerProcess,
    before: &Scrape,
    n: usize,
    hold: usize,
    hold_limit: Duration,
    idle_rss: u64,
) {
    println!("\n## Controller: {hold} IAMRoleBindings held\n");
    let start = Instant::now();
    api.add_bindings(n, hold).await;
    let synced = wait_synced(api, hold, start, hold_limit).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss, hwm) = controller.rss_kib();
    let (synced_now, total) = count_synced(api).await;
    println!(
        "- added {} bindings; {synced}/{hold} Ready after {:.0} s (limit {} s); at measurement {synced_now}/{total} Ready",
        hold - n,
        start.elapsed().as_secs_f64(),
        hold_limit.as_secs()
    );
    println!(
        "- controller RSS with {total} bindings held: **{}** (VmRSS), peak {} (VmHWM); idle was {}",
        mib(rss),
        mib(hwm),
        mib(idle_rss)
    );
    let total_calls = controller.metrics().minus(before);
    println!(
        "- IAM calls in all phases: {} ({} writes)\n",
        total_calls.reads() + total_calls.writes(),
        total_calls.writes()
    );
}

async fn throttling(dir: &Path) {
    let n = env_num("CONTROLLER_THROTTLE_BINDINGS", 200) as usize;
    println!("## Controller: 50% of IAM requests throttled\n");
    let moto = Moto::start();
    moto.create_oidc_provider(&format!("https://{ISSUER_HOST_PATH}"))
        .await;
    let stats = Arc::new(ProxyStats::default());
    let proxy = start_throttling_proxy(moto.endpoint.clone(), stats.clone()).await;
    let api = KubeApi::start("throttled").await;
    let kubeconfig = api.kubeconfig(dir).await;
    let controller = ControllerProcess::start(dir, &kubeconfig, &proxy, 600);
    api.wait_watches(&controller).await;
    let before = controller.metrics();
    let start = Instant::now();
    api.add_bindings(0, n).await;
    let synced = wait_synced(&api, n, start, Duration::from_secs(600)).await;
    let took = start.elapsed();
    let calls = controller.metrics().minus(&before);
    let requests = stats.requests.load(Ordering::Relaxed);
    let throttled = stats.throttled.load(Ordering::Relaxed);
    let logical: u64 = calls.by_operation().values().sum();
    let throttled_calls: u64 = calls
        .iam
        .iter()
        // not_found is GetRole's expected answer before a role exists, not a failure.
        .filter(|((_, o), _)| o != "success" && o != "not_found")
        .map(|(_, n)| n)
        .sum();
    println!(
        "- {synced}/{n} bindings Ready=True (Synced) after **{:.1} s** (all converged: {})",
        took.as_secs_f64(),
        synced == n
    );
    println!(
        "- HTTP requests reaching the proxy: {requests}, answered Throttling: {throttled} ({:.1}%)",
        100.0 * throttled as f64 / requests.max(1) as f64
    );
    println!(
        "- hatrack IAM calls (after the SDK's retries): {logical}; SDK attempts per call: {:.2}; retries (attempts - calls): {}",
        requests as f64 / logical.max(1) as f64,
        requests.saturating_sub(logical)
    );
    println!(
        "- calls that still failed after the SDK's attempts (requeued by the controller): {throttled_calls}"
    );
    println!(
        "- reconciles: {} ({:?})\n",
        calls.total_reconciles(),
        calls.reconciles
    );
    print_calls("IAM operation (throttled run)", &calls, n);
    drop(controller);
}

/// Phase `accounts`: `CONTROLLER_ACCOUNT_BINDINGS` (1,000) bindings spread round-robin over
/// `CONTROLLER_ACCOUNTS` (4) AWS accounts — the controller's own and IAMAccounts for the
/// others, whose roles moto makes with assumed-role credentials — each limited to
/// `CONTROLLER_ACCOUNT_RATE` (50) IAM calls per second; then the same bindings all in the
/// controller's account under the same one limit. Time until all are Ready, calls per binding.
async fn accounts(dir: &Path) {
    let n = env_num("CONTROLLER_ACCOUNT_BINDINGS", 1000) as usize;
    let k = env_num("CONTROLLER_ACCOUNTS", 4).max(1) as usize;
    let rate = env_num("CONTROLLER_ACCOUNT_RATE", 50);
    let ids: Vec<String> = (0..k)
        .map(|i| {
            if i == 0 {
                ACCOUNT.to_string()
            } else {
                format!("{}", 200_000_000_000u64 + 11_111_111_111 * i as u64)
            }
        })
        .collect();
    // With the real API each run is a process of its own (its own API server): two
    // controllers over all namespaces one after the other would share one server.
    let runs: Vec<bool> = match std::env::var("CONTROLLER_ACCOUNTS_RUN").as_deref() {
        Ok("spread") => vec![true],
        Ok("one") => vec![false],
        _ if KubeApi::is_real() => {
            for run in ["spread", "one"] {
                let status = Command::new(std::env::current_exe().expect("bench binary"))
                    .args(std::env::args().skip(1))
                    .env("CONTROLLER_PHASES", "accounts")
                    .env("CONTROLLER_ACCOUNTS_RUN", run)
                    .status()
                    .expect("run accounts run");
                assert!(status.success(), "accounts run {run} failed");
            }
            return;
        }
        _ => vec![true, false],
    };
    println!(
        "## Controller: {n} IAMRoleBindings over {k} AWS accounts, {rate} IAM calls/s per account\n"
    );
    for spread in runs {
        let moto = Moto::start();
        moto.create_oidc_provider(&format!("https://{ISSUER_HOST_PATH}"))
            .await;
        for id in &ids[1..] {
            moto.create_oidc_provider_in(id, &format!("https://{ISSUER_HOST_PATH}"))
                .await;
        }
        let phase = if spread { "accounts" } else { "oneaccount" };
        let api = KubeApi::start(phase).await;
        let accounts: Vec<Value> = ids[1..]
            .iter()
            .enumerate()
            .map(|(i, id)| {
                json!({"apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMAccount",
                    "metadata": {"name": format!("acct-{}", i + 1)},
                    "spec": {"accountId": id,
                             "assumeRole": {"roleArn": format!("arn:aws:iam::{id}:role/hatrack-operator")},
                             "namespaceSelector": {},
                             "iamCallsPerSecond": rate}})
            })
            .collect();
        api.add_accounts(&accounts).await;
        let kubeconfig = api.kubeconfig(dir).await;
        let controller =
            ControllerProcess::start_limited(dir, &kubeconfig, &moto.endpoint, 3600, rate);
        api.wait_watches(&controller).await;
        let before = controller.metrics();
        let start = Instant::now();
        if spread {
            api.add_bindings_in(0, n, |i| (i % k != 0).then(|| format!("acct-{}", i % k)))
                .await;
        } else {
            api.add_bindings(0, n).await;
        }
        let synced = wait_synced(&api, n, start, Duration::from_secs(900)).await;
        let took = start.elapsed();
        let calls = controller.metrics().minus(&before);
        let total: u64 = calls.by_operation().values().sum();
        let mut per_account = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let roles = moto.roles_in(id, "/hatrack/").await.len();
            // The controller's own account is counted as `controller`.
            let key = if i == 0 { "controller" } else { id.as_str() };
            let made = calls.by_account.get(key).copied().unwrap_or(0);
            per_account.push(format!(
                "{id}: {roles} roles, {made} IAM calls ({:.1} calls/s, limit {rate})",
                made as f64 / took.as_secs_f64()
            ));
        }
        println!(
            "- {}{}: {synced}/{n} Ready=True (Synced) after **{:.1} s** ({:.1} bindings/s); {total} IAM calls ({:.2} per binding, {:.0} calls/s overall); per account: {}",
            if KubeApi::is_real() {
                "real kube-apiserver, "
            } else {
                ""
            },
            if spread {
                format!("spread over {k} accounts (each its own limit)")
            } else {
                "all in the controller's account (one limit)".to_string()
            },
            took.as_secs_f64(),
            synced as f64 / took.as_secs_f64(),
            total as f64 / synced.max(1) as f64,
            total as f64 / took.as_secs_f64(),
            per_account.join(", ")
        );
        drop(controller);
    }
    println!();
}

fn main() {
    let only = std::env::var("CONTROLLER_PHASES").unwrap_or_else(|_| "scale,throttling".into());
    let phases: Vec<&str> = ["scale", "throttling", "accounts"]
        .into_iter()
        .filter(|p| only.contains(p))
        .collect();
    if KubeApi::is_real() && phases.len() > 1 {
        // One real API server per process: run each phase in a process of its own.
        let t0 = Instant::now();
        for phase in phases {
            let status = Command::new(std::env::current_exe().expect("bench binary"))
                .args(std::env::args().skip(1))
                .env("CONTROLLER_PHASES", phase)
                .status()
                .expect("run phase");
            assert!(status.success(), "phase {phase} failed");
        }
        println!("controller bench took {:.0} s", t0.elapsed().as_secs_f64());
        return;
    }
    if KubeApi::is_real() {
        // SAFETY: set before the runtime starts, while this is the only thread.
        unsafe { std::env::set_var("HATRACK_TEST_AUDIT", "1") };
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            // reqwest (the throttling proxy's client) needs a process-wide rustls provider.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let dir = tempfile::tempdir().expect("temp dir");
            let t0 = Instant::now();
            if phases.contains(&"scale") {
                scale(dir.path()).await;
            }
            if phases.contains(&"throttling") {
                throttling(dir.path()).await;
            }
            if phases.contains(&"accounts") {
                accounts(dir.path()).await;
            }
            println!("controller bench took {:.0} s", t0.elapsed().as_secs_f64());
        });
}
