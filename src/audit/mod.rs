//! Background audit: judges every running workload with the webhook's rules
//! ([`crate::detect`]) and the webhook's Secret/ConfigMap fact cache
//! ([`crate::webhook::cache::WatchCache`]), keeps the judgements current as workloads,
//! Secrets and ConfigMaps change, and publishes them as PolicyReports
//! (`wgpolicyk8s.io/v1alpha2`, one per namespace with findings) and Prometheus metrics.
//!
//! It runs as its own command and Deployment, `hatrack auditor` (chart value `audit.enabled`):
//! it needs to read every Secret, which the controller (which holds AWS credentials) does
//! not, and its memory grows with the cluster's workloads, which neither the controller's nor
//! the webhook's should. With several replicas, leader election on its own Lease lets one
//! write reports. `hatrack audit` is the same judgement once, printed like `hatrack check`.
//!
//! Pure parts: [`kinds`] (what is judged), `judgement` (one judgement and what it read),
//! [`state`] (judgements, dependencies, exemptions, what is out of date), [`report`] (the
//! PolicyReport of a namespace). I/O: [`live`] (the loop), `watches`, `writer` (the
//! PolicyReports), [`oneshot`] (`hatrack audit`).

mod judgement;
pub mod kinds;
pub mod live;
pub mod metrics;
pub mod oneshot;
pub mod report;
pub mod state;
mod watches;
mod writer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;

pub use live::{AuditError, AuditorOptions};
pub use metrics::AuditMetrics;
pub use oneshot::AuditArgs;
pub use state::AuditPolicy;

use crate::detect::PolicyArgs;

/// Flags of `hatrack auditor`.
#[derive(Debug, Clone, clap::Args)]
#[command(mut_arg("lease_name", |a| a.default_value("hatrack-audit")))]
pub struct AuditorArgs {
    /// `--exempt-namespaces` as the webhook's (`--mode` is not used: findings are reported
    /// whatever the mode).
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub leader: crate::leader::LeaderArgs,
    /// Seconds between report writes (changes within them are written together).
    #[arg(long, env = "HATRACK_AUDIT_FLUSH_SECONDS", default_value_t = 5)]
    pub flush_seconds: u64,
    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "HATRACK_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    pub metrics_listen: SocketAddr,
}

impl AuditorArgs {
    pub fn options(&self) -> AuditorOptions {
        AuditorOptions {
            policy: AuditPolicy {
                exempt_namespaces: self.policy.exempt_namespace_set(),
            },
            flush_every: Duration::from_secs(self.flush_seconds.max(1)),
        }
    }
}

/// `hatrack auditor`.
pub async fn run_auditor(args: AuditorArgs) -> Result<(), String> {
    let metrics = Arc::new(AuditMetrics::new());
    let client = Client::try_default()
        .await
        .map_err(|e| format!("cannot reach the Kubernetes API: {e}"))?;
    let server = {
        let m = metrics.clone();
        crate::metrics::serve(args.metrics_listen, move || m.encode()).await?
    };
    let options = args.options();
    let shutdown = crate::controller::shutdown_signal;
    let result = if args.leader.leader_election {
        // Only the replica holding the Lease watches and writes; the others wait.
        crate::leader::run_as_leader(
            client.clone(),
            args.leader.lease_config(),
            shutdown(),
            |stop| {
                live::run(
                    client.clone(),
                    options.clone(),
                    metrics.clone(),
                    stop.cancelled_owned(),
                )
            },
        )
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or(Ok(()))
    } else {
        live::run(client, options, metrics, shutdown()).await
    };
    server.abort();
    result.map_err(|e| e.to_string())
}

/// `hatrack audit`.
pub fn run_audit(args: AuditArgs) -> std::process::ExitCode {
    use std::io::IsTerminal;
    let stdout = std::io::stdout();
    let color = stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hatrack audit: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut out = stdout.lock();
    let mut err = std::io::stderr().lock();
    let code = runtime.block_on(oneshot::run_to(&args, &mut out, &mut err, color));
    std::process::ExitCode::from(code)
}
