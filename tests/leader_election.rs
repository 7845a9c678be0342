//! Leader election on the real Lease API (the real test API server, a fresh namespace per
//! test): one leader at a time, hand-over on graceful stop and after a crash, a lease taken
//! away. A renew conflict needs an injected 409: that one test runs against the stand-in.

use hatrack_test_support as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hatrack::leader::{LeaseConfig, run_as_leader};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::apiserver::ApiServer;
use support::cluster::cluster;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The Lease API of a fresh namespace of the real test API server, and its client.
async fn leases() -> (kube::Client, Api<Lease>) {
    let cluster = cluster().await;
    let ns = cluster.namespace("leader").await;
    let client = cluster.client().await;
    (client.clone(), Api::namespaced(client, &ns))
}

fn config(leases: &Api<Lease>, identity: &str, lease_secs: u64) -> LeaseConfig {
    let lease_duration = Duration::from_secs(lease_secs);
    LeaseConfig {
        namespace: leases.namespace().unwrap_or("default").into(),
        name: "hatrack".into(),
        identity: identity.into(),
        lease_duration,
        renew_every: lease_duration / 4,
    }
}

/// Counts how many instances work at once, the most ever seen, and starts per identity.
#[derive(Default)]
struct Probe {
    active: AtomicUsize,
    max_active: AtomicUsize,
    starts: std::sync::Mutex<Vec<String>>,
}

impl Probe {
    fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }
    fn starts(&self) -> Vec<String> {
        self.starts.lock().expect("lock").clone()
    }
}

/// Decrements the active count when the work future is dropped or finishes.
struct Working(Arc<Probe>);

impl Drop for Working {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Instance {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<Option<()>, hatrack::leader::LeaderError>>,
}

impl Instance {
    fn start(client: &kube::Client, config: LeaseConfig, probe: &Arc<Probe>) -> Instance {
        let (tx, rx) = oneshot::channel::<()>();
        let probe = probe.clone();
        let identity = config.identity.clone();
        let task = tokio::spawn(run_as_leader(
            client.clone(),
            config,
            async {
                let _ = rx.await;
            },
            move |stop| {
                let probe = probe.clone();
                let identity = identity.clone();
                async move {
                    let now = probe.active.fetch_add(1, Ordering::SeqCst) + 1;
                    probe.max_active.fetch_max(now, Ordering::SeqCst);
                    probe.starts.lock().expect("lock").push(identity);
                    let _working = Working(probe);
                    // Works until told to stop (or dropped when leadership is lost).
                    stop.cancelled().await
                }
            },
        ));
        Instance {
            stop: Some(tx),
            task,
        }
    }

    /// Graceful stop: returns once run_as_leader returned.
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("run_as_leader returns after shutdown")
            .expect("task did not panic");
        assert!(matches!(result, Ok(None)), "{result:?}");
    }

    /// A crash: the task is gone without releasing anything.
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// Waits until the lease's holder is `want`; returns how long that took.
async fn wait_holder(leases: &Api<Lease>, want: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let now = holder(leases).await;
        if now.as_deref() == Some(want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for holder {want}; holder: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn lease(leases: &Api<Lease>) -> Option<Lease> {
    leases.get_opt("hatrack").await.expect("get lease")
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    lease(leases).await.and_then(|l| l.spec?.holder_identity)
}

#[tokio::test]
async fn exactly_one_of_two_instances_leads() {
    let (client, leases) = leases().await;
    let probe = Arc::new(Probe::default());
    // A 4 s lease, renewed every second: a loaded machine may delay one renewal by a second or
    // two without the lease changing hands.
    let a = Instance::start(&client, config(&leases, "a", 4), &probe);
    let b = Instance::start(&client, config(&leases, "b", 4), &probe);
    wait_for("a leader", Duration::from_secs(10), || probe.active() == 1).await;
    // Over several renew periods, the second never starts working too.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(probe.max_active.load(Ordering::SeqCst), 1);
    let starts = probe.starts();
    assert_eq!(starts.len(), 1, "leadership changed hands: {starts:?}");
    assert_eq!(holder(&leases).await.as_deref(), Some(starts[0].as_str()));
    let spec = lease(&leases).await.expect("lease").spec.expect("spec");
    assert_eq!(spec.lease_duration_seconds, Some(4));
    assert!(spec.renew_time.is_some());
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_gracefully_stopped_leader_hands_over_at_once() {
    let (client, leases) = leases().await;
    let probe = Arc::new(Probe::default());
    // A long lease: a hand-over well before it expires can only come from the release.
    let a = Instance::start(&client, config(&leases, "a", 20), &probe);
    wait_holder(&leases, "a", Duration::from_secs(5)).await;
    let b = Instance::start(&client, config(&leases, "b", 20), &probe);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(probe.starts(), ["a"]);

    a.stop().await;
    assert_eq!(
        probe.active(),
        0,
        "a's work stopped before the lease was released"
    );
    let took = wait_holder(&leases, "b", Duration::from_secs(10)).await;
    // b retries every 5 s (a quarter of 20 s): it must not have waited for expiry.
    assert!(took < Duration::from_secs(8), "hand-over took {took:?}");
    wait_for("b works", Duration::from_secs(2), || probe.active() == 1).await;
    assert_eq!(probe.starts(), ["a", "b"]);
    let spec = lease(&leases).await.expect("lease").spec.expect("spec");
    assert_eq!(spec.lease_transitions, Some(1));
    b.stop().await;
    assert_eq!(
        holder(&leases).await,
        None,
        "b released the lease on shutdown"
    );
}

#[tokio::test]
async fn a_crashed_leader_is_replaced_after_the_lease_expires() {
    let (client, leases) = leases().await;
    let probe = Arc::new(Probe::default());
    let a = Instance::start(&client, config(&leases, "a", 2), &probe);
    wait_holder(&leases, "a", Duration::from_secs(5)).await;
    let b = Instance::start(&client, config(&leases, "b", 2), &probe);
    tokio::time::sleep(Duration::from_millis(200)).await;

    a.kill().await;
    assert_eq!(
        holder(&leases).await.as_deref(),
        Some("a"),
        "a crash releases nothing"
    );
    let took = wait_holder(&leases, "b", Duration::from_secs(8)).await;
    // Not before the lease (2 s) has gone unrenewed, as b observed it.
    assert!(
        took >= Duration::from_millis(1500),
        "b took over too early: {took:?}"
    );
    assert_eq!(probe.starts(), ["a", "b"]);
    b.stop().await;
}

#[tokio::test]
async fn a_renew_conflict_does_not_cost_leadership() {
    // An injected 409 on one renewal: the stand-in.
    const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/default/leases/hatrack";
    let server = ApiServer::start().await;
    let stand_in_leases: Api<Lease> = Api::namespaced(server.client(), "default");
    let probe = Arc::new(Probe::default());
    let a = Instance::start(&server.client(), config(&stand_in_leases, "a", 2), &probe);
    wait_for("a leads", Duration::from_secs(5), || probe.active() == 1).await;
    let puts_before = server
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .count();
    server.faults().fail_next(1, "PUT", "/leases/hatrack", 409);
    // Several renewals (every 500 ms; 3 at least in 3 s on a loaded machine), the first of
    // which conflicts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let requests = server.requests();
    let puts = requests.iter().filter(|r| r.method == "PUT").count();
    assert!(
        puts >= puts_before + 3,
        "renewals went on: {puts_before} -> {puts}"
    );
    assert_eq!(probe.starts(), ["a"], "work was not restarted");
    assert_eq!(probe.active(), 1);
    let holder = server
        .get_object(LEASE)
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned));
    assert_eq!(holder.as_deref(), Some("a"));
    a.stop().await;
}

#[tokio::test]
async fn a_leader_whose_lease_was_taken_stops_working() {
    let (client, leases) = leases().await;
    let probe = Arc::new(Probe::default());
    let a = Instance::start(&client, config(&leases, "a", 2), &probe);
    wait_for("a leads", Duration::from_secs(5), || probe.active() == 1).await;
    leases
        .patch(
            "hatrack",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"holderIdentity": "intruder"}})),
        )
        .await
        .expect("take the lease");
    wait_for("a stops working", Duration::from_secs(3), || {
        probe.active() == 0
    })
    .await;
    assert_eq!(holder(&leases).await.as_deref(), Some("intruder"));
    a.stop().await;
    assert_eq!(
        holder(&leases).await.as_deref(),
        Some("intruder"),
        "a must not release a lease it does not hold"
    );
}

#[tokio::test]
async fn work_that_ends_returns_its_output_and_releases_the_lease() {
    let (client, leases) = leases().await;
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        run_as_leader(
            client,
            config(&leases, "a", 2),
            std::future::pending::<()>(),
            |_stop| async { 42 },
        ),
    )
    .await
    .expect("returns");
    assert!(matches!(result, Ok(Some(42))), "{result:?}");
    assert!(lease(&leases).await.is_some(), "the lease was taken");
    assert_eq!(holder(&leases).await, None);
}

#[tokio::test]
async fn shutdown_cancels_the_work_token_and_waits_for_the_work() {
    let (client, leases) = leases().await;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let finished = Arc::new(AtomicUsize::new(0));
    let seen = finished.clone();
    let task = tokio::spawn(run_as_leader(
        client,
        config(&leases, "a", 4),
        async {
            let _ = stop_rx.await;
        },
        move |stop| {
            let seen = seen.clone();
            async move {
                stop.cancelled().await;
                // In-flight work finishing after the stop signal.
                tokio::time::sleep(Duration::from_millis(200)).await;
                seen.fetch_add(1, Ordering::SeqCst);
            }
        },
    ));
    wait_holder(&leases, "a", Duration::from_secs(5)).await;
    stop_tx.send(()).expect("send");
    let result = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("returns")
        .expect("no panic");
    assert!(matches!(result, Ok(None)), "{result:?}");
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "work finished before release"
    );
    assert_eq!(holder(&leases).await, None);
}

#[tokio::test]
async fn a_renew_interval_too_close_to_the_lease_duration_is_refused() {
    let (client, leases) = leases().await;
    let mut bad = config(&leases, "a", 2);
    bad.renew_every = Duration::from_secs(2);
    let result = run_as_leader(client, bad, std::future::pending::<()>(), |_| async {}).await;
    assert!(result.is_err());
    assert!(lease(&leases).await.is_none(), "nothing was written");
}
