//! IAM and EKS calls per binding with EKS Pod Identity associations: hatrack's controller
//! in-process against the real test kube-apiserver (tests/support/cluster.rs), moto for IAM
//! and the EKS stand-in (tests/support/eks.rs) over HTTP, counted by the controller's own
//! metrics (the same counters as `hatrack_iam_calls_total` and `hatrack_eks_calls_total`).
//!
//!     scripts/install-test-deps.sh      # once: moto, etcd and kube-apiserver
//!     cargo bench --bench associations  # or --profile dev: the counts do not depend on it
//!
//! `ASSOC_BINDINGS` (100) Pod Identity bindings with `ASSOC_SERVICE_ACCOUNTS` (2)
//! ServiceAccounts each, spread over `ASSOC_NAMESPACES` (10) namespaces, one managed policy.
//! Phases, each a markdown table of calls per binding by operation:
//! 1. all created at once → until every one is Ready (Synced), by a controller with a 1-hour
//!    resync (as are phases 4 and 5, so no resync is mixed into their counts);
//! 2. a controller with a short resync (`ASSOC_RESYNC` = 15 s) starts with every binding in
//!    sync → until its calls stop (3 s without one);
//! 3. that controller's next resync window with no changes (1.1 × the resync + 3 s);
//! 4. one ServiceAccount removed from every binding → Ready at generation 2;
//! 5. all deleted → until gone.
//!
//! Every wait is bounded in time; nothing here asserts a timing.

use hatrack_test_support as support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hatrack::crd::IAMRoleBinding;
use kube::api::{Api, ListParams};
use serde_json::json;
use support::cluster::cluster_with_crds;
use support::controller::*;
use support::moto::Moto;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

type Counts = BTreeMap<(String, String), u64>;

/// Calls made between two snapshots: (service, operation) → count (every outcome).
fn delta(before: &(Counts, Counts), after: &(Counts, Counts)) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for (service, b, a) in [("IAM", &before.0, &after.0), ("EKS", &before.1, &after.1)] {
        for ((op, outcome), n) in a {
            let was = b.get(&(op.clone(), outcome.clone())).copied().unwrap_or(0);
            if *n > was {
                *out.entry((service.to_string(), op.clone())).or_default() += n - was;
            }
        }
    }
    out
}

fn table(title: &str, calls: &BTreeMap<(String, String), u64>, bindings: u64, took: Duration) {
    println!("### {title}\n");
    println!("{bindings} bindings, {:.1} s.\n", took.as_secs_f64());
    println!("| service | operation | calls | per binding |");
    println!("|---|---|---:|---:|");
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for ((service, op), n) in calls {
        println!(
            "| {service} | {op} | {n} | {:.2} |",
            *n as f64 / bindings as f64
        );
        *totals.entry(service.as_str()).or_default() += n;
    }
    for (service, n) in totals {
        println!(
            "| {service} | **all** | {n} | **{:.2}** |",
            n as f64 / bindings as f64
        );
    }
    println!();
}

async fn all_ready(client: &kube::Client, generation: i64, n: usize) -> bool {
    let api: Api<IAMRoleBinding> = Api::all(client.clone());
    let Ok(list) = api.list(&ListParams::default()).await else {
        return false;
    };
    list.items.len() == n
        && list.items.iter().all(|b| {
            b.metadata.generation == Some(generation)
                && ready(b).is_some_and(|r| r.0 == "True" && r.1 == "Synced")
        })
}

fn snapshot(c: &RunningController) -> (Counts, Counts) {
    (c.metrics.iam_call_counts(), c.metrics.eks_call_counts())
}

/// Waits until the controller has made no call for 3 s (at most 10 minutes); the calls from
/// the start of the wait and how long it took.
async fn settle(c: &RunningController) -> (BTreeMap<(String, String), u64>, Duration) {
    let before = snapshot(c);
    let started = Instant::now();
    let mut last = before.clone();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(3)
        && started.elapsed() < Duration::from_secs(600)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = snapshot(c);
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
    (delta(&before, &last), started.elapsed())
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let bindings = env_num("ASSOC_BINDINGS", 100) as usize;
    let sas = env_num("ASSOC_SERVICE_ACCOUNTS", 2).max(2) as usize;
    let namespaces = env_num("ASSOC_NAMESPACES", 10).max(1) as usize;
    let resync = Duration::from_secs(env_num("ASSOC_RESYNC", 15));

    let cluster = cluster_with_crds().await;
    let client = cluster.client().await;
    let moto = Moto::start();
    let eks = eks_for_test_cluster().await;
    let start = |resync: Duration| {
        RunningController::builder(client.clone(), &moto)
            .eks(&eks)
            .resync(resync)
            .start()
    };
    let controller = start(Duration::from_secs(3600));
    let mut nss = Vec::new();
    for _ in 0..namespaces {
        nss.push(cluster.namespace("bench-assoc").await);
    }
    let names: Vec<(String, String)> = (0..bindings)
        .map(|i| (nss[i % namespaces].clone(), format!("app-{i}")))
        .collect();
    // A ServiceAccount wears one role: each binding binds its own.
    let sa_names =
        |name: &str| -> Vec<String> { (0..sas).map(|j| format!("{name}-sa-{j}")).collect() };

    println!(
        "## Pod Identity associations: IAM and EKS calls per binding (cargo bench --bench associations)\n"
    );
    println!(
        "hatrack's controller in-process (concurrency 4), the real kube-apiserver, moto (IAM) and the EKS stand-in; {bindings} bindings with {sas} ServiceAccounts and one managed policy each, over {namespaces} namespaces ({} associations per namespace). Calls counted by the controller's metrics, every outcome.\n",
        bindings * sas / namespaces
    );

    // 1. Creation.
    let before = snapshot(&controller);
    let started = Instant::now();
    for (ns, name) in &names {
        create_binding(
            &client,
            ns,
            name,
            json!({
                "serviceAccounts": sa_names(name),
                "trust": {"podIdentity": {}},
                "managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
            }),
        )
        .await;
    }
    wait_for(600, "all Ready", || async {
        all_ready(&client, 1, bindings).await.then_some(())
    })
    .await;
    let took = started.elapsed();
    table(
        "Created at once, until all Ready",
        &delta(&before, &snapshot(&controller)),
        bindings as u64,
        took,
    );
    assert_eq!(eks.associations().len(), bindings * sas);

    // 2. A controller start with every binding in sync.
    controller.stop().await;
    let controller = start(resync);
    let (calls, took) = settle(&controller).await;
    table(
        "A controller start with every binding in sync (until 3 s without a call)",
        &calls,
        bindings as u64,
        took,
    );

    // 3. One resync window.
    let before = snapshot(&controller);
    let window = resync.mul_f64(1.1) + Duration::from_secs(3);
    tokio::time::sleep(window).await;
    table(
        &format!(
            "One resync window without changes ({} s resync, {:.1} s window)",
            resync.as_secs(),
            window.as_secs_f64()
        ),
        &delta(&before, &snapshot(&controller)),
        bindings as u64,
        window,
    );

    // Back to a 1-hour resync; its start-up reads are not counted.
    controller.stop().await;
    let controller = start(Duration::from_secs(3600));
    settle(&controller).await;

    // 4. One ServiceAccount leaves every binding.
    let before = snapshot(&controller);
    let started = Instant::now();
    for (ns, name) in &names {
        patch_spec(
            &client,
            ns,
            name,
            json!({"serviceAccounts": sa_names(name)[1..].to_vec()}),
        )
        .await;
    }
    wait_for(600, "all Ready at generation 2", || async {
        all_ready(&client, 2, bindings).await.then_some(())
    })
    .await;
    table(
        "One ServiceAccount removed from every binding, until all Ready",
        &delta(&before, &snapshot(&controller)),
        bindings as u64,
        started.elapsed(),
    );
    assert_eq!(eks.associations().len(), bindings * (sas - 1));

    // 5. Deletion.
    let before = snapshot(&controller);
    let started = Instant::now();
    for (ns, name) in &names {
        delete_binding(&client, ns, name).await;
    }
    let api: Api<IAMRoleBinding> = Api::all(client.clone());
    wait_for(600, "all gone", || async {
        api.list(&ListParams::default())
            .await
            .ok()
            .filter(|l| l.items.is_empty())
            .map(drop)
    })
    .await;
    table(
        "All deleted, until gone",
        &delta(&before, &snapshot(&controller)),
        bindings as u64,
        started.elapsed(),
    );
    assert!(eks.associations().is_empty());
    assert!(hatrack_roles(&moto).await.is_empty());
    controller.stop().await;
}
