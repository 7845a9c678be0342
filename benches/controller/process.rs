//! The controller under measure: the release `hatrack controller` binary as a process of its
//! own, its /metrics scraped (IAM calls by operation and outcome, reconciles, SDK attempts) and
//! its memory read from /proc.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bench_http::http_get;
use crate::support::controller::{ACCOUNT, ISSUER_HOST_PATH};
use crate::support::moto::free_port;

// ---------------------------------------------------------------------------------------
// The controller process

pub(super) struct ControllerProcess {
    pub(super) child: Child,
    pub(super) metrics_port: u16,
    pub(super) log: PathBuf,
}

impl ControllerProcess {
    pub(super) fn start(
        dir: &Path,
        kubeconfig: &Path,
        iam_endpoint: &str,
        resync_secs: u64,
    ) -> Self {
        Self::start_limited(dir, kubeconfig, iam_endpoint, resync_secs, 2000)
    }

    /// With `--iam-calls-per-second` (the controller's own account's limit).
    pub(super) fn start_limited(
        dir: &Path,
        kubeconfig: &Path,
        iam_endpoint: &str,
        resync_secs: u64,
        calls_per_second: u64,
    ) -> Self {
        let metrics_port = free_port();
        let log = dir.join(format!("controller-{metrics_port}.log"));
        // `CONTROLLER_WRAPPER` (e.g. "heaptrack -o /tmp/ht") runs the binary under a profiler;
        // the RSS figures are then the wrapper's, not the controller's.
        let wrapper = std::env::var("CONTROLLER_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(words).arg(env!("CARGO_BIN_EXE_hatrack"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_hatrack")),
        };
        let child = command
            .arg("controller")
            .args(["--cluster-name", "bench", "--account-id", ACCOUNT])
            .args(["--cluster-region", "eu-west-1"])
            .args(["--oidc-issuer", &format!("https://{ISSUER_HOST_PATH}")])
            .args(["--iam-endpoint", iam_endpoint])
            .args(["--iam-calls-per-second", &calls_per_second.to_string()])
            .args(["--concurrency", "16"])
            .args(["--resync-seconds", &resync_secs.to_string()])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .env("KUBECONFIG", kubeconfig)
            // moto's dummy credentials; the SDK needs some to sign requests.
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("controller log"))
            .spawn()
            .expect("start hatrack controller");
        let p = ControllerProcess {
            child,
            metrics_port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(metrics_port, "/metrics").is_none() {
            assert!(
                Instant::now() < deadline,
                "controller metrics did not come up; log: {}",
                std::fs::read_to_string(&p.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// (VmRSS, VmHWM) in KiB.
    pub(super) fn rss_kib(&self) -> (u64, u64) {
        crate::proc_status::rss_kib(self.child.id())
    }

    pub(super) fn metrics(&self) -> Scrape {
        Scrape::parse(&http_get(self.metrics_port, "/metrics").unwrap_or_default())
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// hatrack's own metrics, from its Prometheus text.
#[derive(Default, Clone)]
pub(super) struct Scrape {
    /// (operation, outcome) → count
    pub(super) iam: BTreeMap<(String, String), u64>,
    /// result → count
    pub(super) reconciles: BTreeMap<String, u64>,
    /// account (an id, or `controller`) → IAM calls made in it
    pub(super) by_account: BTreeMap<String, u64>,
}

pub(super) fn label<'a>(labels: &'a str, name: &str) -> &'a str {
    labels
        .split(',')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix("=\""))
        .map(|v| v.trim_end_matches('"'))
        .unwrap_or("")
}

impl Scrape {
    pub(super) fn parse(text: &str) -> Scrape {
        let mut s = Scrape::default();
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let value = value as u64;
            if let Some(labels) = series.strip_prefix("hatrack_iam_calls_total{") {
                let labels = labels.trim_end_matches('}');
                s.iam.insert(
                    (
                        label(labels, "operation").to_string(),
                        label(labels, "outcome").to_string(),
                    ),
                    value,
                );
            } else if let Some(labels) = series.strip_prefix("hatrack_iam_calls_by_account_total{")
            {
                s.by_account.insert(
                    label(labels.trim_end_matches('}'), "account").to_string(),
                    value,
                );
            } else if let Some(labels) = series.strip_prefix("hatrack_reconciles_total{") {
                s.reconciles.insert(
                    label(labels.trim_end_matches('}'), "result").to_string(),
                    value,
                );
            }
        }
        s
    }

    pub(super) fn minus(&self, before: &Scrape) -> Scrape {
        let mut d = self.clone();
        for (k, v) in d.iam.iter_mut() {
            *v -= before.iam.get(k).copied().unwrap_or(0);
        }
        for (k, v) in d.by_account.iter_mut() {
            *v -= before.by_account.get(k).copied().unwrap_or(0);
        }
        for (k, v) in d.reconciles.iter_mut() {
            *v -= before.reconciles.get(k).copied().unwrap_or(0);
        }
        d
    }

    pub(super) fn by_operation(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for ((op, _), n) in &self.iam {
            *m.entry(op.clone()).or_default() += n;
        }
        m
    }

    pub(super) fn writes(&self) -> u64 {
        self.by_operation()
            .iter()
            .filter(|(op, _)| !is_read(op))
            .map(|(_, n)| n)
            .sum()
    }

    pub(super) fn reads(&self) -> u64 {
        self.by_operation()
            .iter()
            .filter(|(op, _)| is_read(op))
            .map(|(_, n)| n)
            .sum()
    }

    pub(super) fn total_reconciles(&self) -> u64 {
        self.reconciles.values().sum()
    }
}

pub(super) fn is_read(op: &str) -> bool {
    op.starts_with("Get") || op.starts_with("List")
}

pub(super) fn print_calls(title: &str, calls: &Scrape, per: usize) {
    println!("| {title} | calls | per binding |");
    println!("|---|---|---|");
    for (op, n) in calls.by_operation() {
        println!("| {op} | {n} | {:.2} |", n as f64 / per as f64);
    }
    let total: u64 = calls.by_operation().values().sum();
    println!("| **total** | {total} | {:.2} |", total as f64 / per as f64);
    let failed: Vec<String> = calls
        .iam
        .iter()
        .filter(|((_, outcome), n)| outcome != "success" && **n > 0)
        .map(|((op, outcome), n)| format!("{op} {outcome}: {n}"))
        .collect();
    println!(
        "\nCalls with an outcome other than success: {}",
        if failed.is_empty() {
            "none".to_string()
        } else {
            failed.join(", ")
        }
    );
}

pub(super) fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
