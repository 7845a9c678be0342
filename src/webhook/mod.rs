//! `hatrack webhook`: the admission webhook that refuses workloads with static AWS keys.
//!
//! - [`review`]: pure AdmissionReview bytes → answer (modes, exemptions, UPDATE handling).
//! - [`server`]: the axum routers and error mapping; [`metrics`]: Prometheus metrics.
//! - [`tls`]: rustls (ring) configuration from PEM files, reloaded when they change.
//! - [`cache`]: watch caches of Secret/ConfigMap facts and namespace modes, and the one
//!   Namespace watch both caches read; [`bindings`]: guardrails, bindings and accounts.
//!
//! [`start`] binds and serves (used by tests with port 0); [`run`] is the subcommand.

pub mod bindings;
pub mod cache;
pub mod limits;
pub mod live;
pub mod metrics;
pub mod prune;
pub mod review;
pub mod server;
pub mod system;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum_server::Handle;
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::RustlsAcceptor;

use crate::detect::{NoLookups, ReferenceView};
pub use bindings::BindingView;
pub use cache::WatchCache;
pub use metrics::Metrics;
pub use review::{Outcome, Policy, ReviewError};
pub use server::{AppState, metrics_router, router};
pub use tls::{TlsError, TlsFiles};

/// Whether the webhook reads Secrets, ConfigMaps and Namespaces from the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lookups {
    /// Watch Secrets, ConfigMaps and Namespaces (keeping only derived facts).
    On,
    /// No Kubernetes API access at all: references are judged by env var names only, and
    /// namespace labels are not read (the global mode applies everywhere).
    Off,
}

/// Flags of `hatrack webhook`.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookArgs {
    /// Address of the HTTPS server (admission reviews, /healthz, /readyz).
    #[arg(long, default_value = "0.0.0.0:8443", env = "HATRACK_WEBHOOK_LISTEN")]
    pub listen: SocketAddr,

    /// PEM certificate chain; reloaded when the file changes.
    #[arg(long, env = "HATRACK_WEBHOOK_TLS_CERT")]
    pub tls_cert: PathBuf,

    /// PEM private key; reloaded when the file changes.
    #[arg(long, env = "HATRACK_WEBHOOK_TLS_KEY")]
    pub tls_key: PathBuf,

    /// Address of the plain-HTTP Prometheus endpoint (/metrics).
    #[arg(
        long,
        default_value = "0.0.0.0:9090",
        env = "HATRACK_WEBHOOK_METRICS_LISTEN"
    )]
    pub metrics_listen: SocketAddr,

    /// `--mode` and `--exempt-namespaces`.
    #[command(flatten)]
    pub policy: crate::detect::PolicyArgs,

    /// Read referenced Secrets/ConfigMaps and namespace labels from the API (`off`: no API
    /// access at all).
    #[arg(
        long,
        value_enum,
        default_value = "on",
        env = "HATRACK_WEBHOOK_LOOKUPS"
    )]
    pub lookups: Lookups,

    /// Largest AdmissionReview body accepted (bytes); larger ones get HTTP 413. The default
    /// is a review of the largest object etcd stores, old and new (docs/webhook.md, "Slow and
    /// hostile clients").
    #[arg(long, default_value_t = limits::DEFAULT_MAX_BODY_BYTES, env = "HATRACK_WEBHOOK_MAX_BODY_BYTES")]
    pub max_body_bytes: usize,

    /// `--system-namespaces` and `--system-mode`: kube-system and co. judged in warn mode.
    #[command(flatten)]
    pub system: system::SystemArgs,

    /// Timeouts and connection limits against slow clients.
    #[command(flatten)]
    pub limits: limits::LimitArgs,

    /// How often the certificate files are checked for changes (e.g. `10s`, `500ms`).
    #[arg(long, default_value = "10s", value_parser = parse_duration, env = "HATRACK_WEBHOOK_TLS_RELOAD_INTERVAL")]
    pub tls_reload_interval: Duration,

    /// The cluster, as the controller knows it: IAMRoleBindings are validated at admission
    /// exactly as the controller would build their roles.
    #[command(flatten)]
    pub cluster: crate::settings::ClusterArgs,

    /// Self-managed serving certificates (instead of cert-manager).
    #[command(flatten)]
    pub certs: crate::certs::CertArgs,
}

/// Parses `500ms`, `10s`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (expected e.g. 500ms, 10s, 2m)"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(format!("invalid duration unit in {s:?} (use ms, s or m)")),
    };
    if d.is_zero() {
        return Err("duration must be greater than zero".into());
    }
    Ok(d)
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create a Kubernetes client (use --lookups off to run without API access): {0}")]
    Client(#[source] kube::Error),
    #[error("server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error(transparent)]
    Settings(crate::settings::SettingsError),
    #[error("self-managed certificates: {0}")]
    Certs(String),
    #[error("--pod-templates: {0}")]
    Templates(#[from] crate::detect::TemplatesError),
}

impl WebhookArgs {
    pub fn policy(&self) -> Policy {
        Policy {
            mode: self.policy.mode,
            exempt_namespaces: self.policy.exempt_namespace_set(),
            templates: Default::default(),
        }
    }
}

/// A running webhook.
pub struct Running {
    /// Where the HTTPS server listens (the real port when `--listen` used port 0).
    pub addr: SocketAddr,
    /// Where /metrics is served.
    pub metrics_addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    handle: Handle<SocketAddr>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, lets open requests finish (up to `grace`), and waits for the server.
    pub async fn shutdown(self, grace: Duration) -> Result<(), WebhookError> {
        self.handle.graceful_shutdown(Some(grace));
        for task in &self.background {
            task.abort();
        }
        match self.server.await {
            Ok(result) => result.map_err(WebhookError::Serve),
            Err(join) => Err(WebhookError::Serve(std::io::Error::other(join))),
        }
    }
}

/// Clients past `--max-connections` wait in the kernel's listen backlog; std's is 128.
const LISTEN_BACKLOG: u32 = 1024;

fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, WebhookError> {
    let err = |source| WebhookError::Bind { addr, source };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    let listener = socket.listen(LISTEN_BACKLOG).map_err(err)?;
    // Non-blocking already (tokio's); axum-server and axum take it back as a std listener.
    listener.into_std().map_err(err)
}

/// How long one review may spend reading from the API server the Secrets and ConfigMaps its
/// caches lack ([`live`]).
pub const LIVE_LOOKUP_BUDGET: Duration = Duration::from_secs(2);

/// Binds both listeners, loads the certificate and serves, with `refs` as the view of the
/// cluster. Returns once listening.
pub async fn start(
    args: &WebhookArgs,
    refs: Arc<dyn ReferenceView>,
    binding_view: Arc<dyn BindingView>,
) -> Result<Running, WebhookError> {
    start_with_live(args, refs, binding_view, None).await
}

/// As [`start`]; with `live_client`, what `refs` lacks is read from the API server before a
/// review is answered ([`live`]).
pub async fn start_with_live(
    args: &WebhookArgs,
    refs: Arc<dyn ReferenceView>,
    binding_view: Arc<dyn BindingView>,
    live_client: Option<kube::Client>,
) -> Result<Running, WebhookError> {
    let settings = args.cluster.settings().map_err(WebhookError::Settings)?;
    let templates = args.policy.pod_templates()?;
    let files = TlsFiles {
        cert: args.tls_cert.clone(),
        key: args.tls_key.clone(),
    };
    let (tls_config, loaded) = files.load().await?;
    let metrics = Arc::new(Metrics::new());
    metrics.served_certificate(loaded.cert());
    // Exemptions expire without an event: their gauges are recomputed on a timer.
    let exemption_gauges = {
        let (refs, metrics) = (refs.clone(), metrics.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                if let Some((active, expired)) = refs.exemption_counts(jiff::Timestamp::now()) {
                    metrics.exemption_objects(active, expired);
                }
            }
        })
    };
    let state = AppState {
        policy: Arc::new(Policy {
            templates: Arc::new(templates),
            ..args.policy()
        }),
        refs: system::SystemNamespaces::wrap(refs, &args.system),
        metrics: metrics.clone(),
        bindings: Arc::new(server::BindingAdmission {
            settings,
            view: binding_view,
        }),
        live: live_client.map(|client| {
            Arc::new(live::LiveLookups::new(
                client,
                LIVE_LOOKUP_BUDGET,
                metrics.clone(),
            ))
        }),
    };

    let listener = bind(args.listen)?;
    let addr = listener.local_addr().map_err(|source| WebhookError::Bind {
        addr: args.listen,
        source,
    })?;
    let metrics_listener = bind(args.metrics_listen)?;
    let metrics_addr = metrics_listener
        .local_addr()
        .map_err(|source| WebhookError::Bind {
            addr: args.metrics_listen,
            source,
        })?;
    let metrics_listener =
        tokio::net::TcpListener::from_std(metrics_listener).map_err(|source| {
            WebhookError::Bind {
                addr: metrics_addr,
                source,
            }
        })?;

    let handle = Handle::new();
    let limits = &args.limits;
    let app = router(state, args.max_body_bytes, limits);
    // TCP_NODELAY: a response is one TLS record written at once; Nagle would only hold back
    // a short tail segment until the API server ACKs, which shows up in p99.
    let acceptor = RustlsAcceptor::new(tls_config.clone())
        .handshake_timeout(limits.tls_handshake_timeout)
        .acceptor(NoDelayAcceptor::new());
    let mut server = axum_server::from_tcp(listener)
        .map_err(|source| WebhookError::Bind { addr, source })?
        .acceptor(acceptor)
        .handle(handle.clone())
        // A connection that never sends a request (HTTP/2 included) is closed.
        .first_request_timeout(limits.header_read_timeout);
    let http = server.http_builder();
    http.http1().header_read_timeout(limits.header_read_timeout);
    // What an HTTP/2 client may make the server buffer unread: 64 KiB per connection (the
    // protocol's default; hyper's is 1 MiB per stream and connection), and few streams.
    http.http2()
        .initial_connection_window_size(64 * 1024)
        .initial_stream_window_size(64 * 1024)
        .max_concurrent_streams(32);
    let make_service =
        limits::LimitConnections::new(app.into_make_service(), limits.max_connections);
    let server = tokio::spawn(server.serve(make_service));

    let metrics_app = metrics_router(metrics.clone());
    let metrics_task = tokio::spawn(async move {
        if let Err(e) = axum::serve(metrics_listener, metrics_app).await {
            tracing::error!(error = %e, "metrics server failed");
        }
    });
    let reload = tokio::spawn(files.watch(
        tls_config,
        loaded,
        args.tls_reload_interval,
        metrics.clone(),
    ));
    tracing::info!(%addr, %metrics_addr, mode = %args.policy.mode, lookups = ?args.lookups, "webhook listening");
    Ok(Running {
        addr,
        metrics_addr,
        metrics,
        handle,
        server,
        background: vec![metrics_task, reload, exemption_gauges],
    })
}

/// The caches of `--lookups on`: Secret/ConfigMap facts, namespace modes and exemptions for
/// workloads; guardrails, bindings and accounts for IAMRoleBindings. One Namespace watch
/// serves both. `/readyz` answers 200 only once all but the exemptions have listed. Spawn the
/// returned future.
pub fn start_caches(
    client: kube::Client,
) -> (
    Arc<WatchCache>,
    Arc<bindings::BindingCache>,
    impl Future<Output = ()> + Send + 'static,
) {
    let (namespaces, namespace_watch) = cache::namespace_watch(client.clone());
    let (refs, ref_watches) = WatchCache::start_with(client.clone(), namespaces.clone());
    let (bindings, binding_watches) = bindings::BindingCache::start_with(client, namespaces);
    (refs, bindings, async move {
        futures::join!(namespace_watch, ref_watches, binding_watches);
    })
}

/// Runs `hatrack webhook` until SIGTERM or Ctrl-C.
pub async fn run(args: WebhookArgs) -> Result<(), WebhookError> {
    let mut background = Vec::new();
    let needs_client = args.lookups == Lookups::On || args.certs.self_managed_certs;
    let client = if needs_client {
        Some(
            kube::Client::try_default()
                .await
                .map_err(WebhookError::Client)?,
        )
    } else {
        None
    };
    let (refs, binding_view): (Arc<dyn ReferenceView>, Arc<dyn BindingView>) =
        match (&client, args.lookups) {
            (Some(client), Lookups::On) => {
                let (cache, bindings, watches) = start_caches(client.clone());
                background.push(tokio::spawn(watches));
                (cache, bindings)
            }
            _ => (
                Arc::new(NoLookups),
                Arc::new(bindings::StaticBindingView::default()),
            ),
        };
    if let (Some(client), true) = (&client, args.certs.self_managed_certs) {
        // The Secret, the caBundle and the files must exist before TLS can start.
        let config = args.certs.config();
        crate::certs::prepare(client, &config, &args.certs.cert_dir)
            .await
            .map_err(|e| WebhookError::Certs(e.to_string()))?;
        background.push(tokio::spawn(crate::certs::run(
            client.clone(),
            config,
            args.certs.cert_dir.clone(),
            args.certs.check_every(),
            std::future::pending::<()>(),
        )));
    }
    let live_client = client.clone().filter(|_| args.lookups == Lookups::On);
    let running = start_with_live(&args, refs, binding_view, live_client).await?;
    crate::signal::shutdown_signal().await;
    for task in background {
        task.abort();
    }
    running.shutdown(Duration::from_secs(10)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("1h").is_err());
        assert!(parse_duration("abc").is_err());
    }
}
