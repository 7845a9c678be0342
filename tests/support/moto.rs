//! A real moto IAM server per test, over HTTP, and an `Iam` client pointed at it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hatrack::iam::Iam;
use hatrack::metrics::Metrics;

/// A running `moto_server`, killed on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

fn moto_binary() -> PathBuf {
    if let Ok(p) = std::env::var("HATRACK_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let venv = crate::repository_root().join(".venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    panic!(
        "moto_server not found: run scripts/test.sh (it installs moto into .venv), or set HATRACK_MOTO_SERVER"
    );
}

/// A TCP port on 127.0.0.1 that is free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        // Tied to the starting thread as well as killed on Drop: a test binary killed from
        // outside (time-out, Ctrl-C) runs no Drop, and moto would outlive it.
        let child = super::cluster::tie_to_this_thread(
            Command::new(moto_binary())
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .spawn()
        .expect("moto_server starts");
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    pub fn sdk_client(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::from_conf(self.sdk_config().build())
    }

    /// SDK config for this server, to add interceptors to.
    pub fn sdk_config(&self) -> aws_sdk_iam::config::Builder {
        aws_sdk_iam::Config::builder()
            .behavior_version_latest()
            .endpoint_url(&self.endpoint)
            .region(aws_sdk_iam::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_iam::config::Credentials::new(
                "testing", "testing", None, None, "static",
            ))
            .http_client(hatrack::iam::http_client())
    }

    /// An IAM client acting in `account` (credentials of a role there, assumed through
    /// moto's STS; moto does not check that the role exists or trusts the caller).
    pub async fn sdk_client_in(&self, account: &str) -> aws_sdk_iam::Client {
        let base = self.shared_config();
        let provider = aws_config::sts::AssumeRoleProvider::builder(format!(
            "arn:aws:iam::{account}:role/hatrack-tests"
        ))
        .configure(&base)
        .session_name("hatrack-tests")
        .build()
        .await;
        let config = base
            .to_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(provider),
            )
            .build();
        aws_sdk_iam::Client::new(&config)
    }

    /// Names of the roles under `path` in `account`.
    pub async fn roles_in(&self, account: &str, path: &str) -> Vec<String> {
        self.sdk_client_in(account)
            .await
            .list_roles()
            .path_prefix(path)
            .max_items(1000)
            .send()
            .await
            .expect("list roles")
            .roles()
            .iter()
            .map(|r| r.role_name().to_string())
            .collect()
    }

    /// Clears all IAM state (moto's reset endpoint), for tests that reuse one server.
    pub fn reset(&self) {
        use std::io::{Read, Write};
        let addr = self.endpoint.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(addr).expect("moto reachable");
        write!(stream, "POST /moto-api/reset HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(
            response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
            "moto reset: {response}"
        );
    }

    /// An `Iam` whose SDK client carries an interceptor (fault injection).
    pub fn iam_with(
        &self,
        interceptor: impl aws_smithy_runtime_api::client::interceptors::Intercept + 'static,
    ) -> (Iam, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        let client =
            aws_sdk_iam::Client::from_conf(self.sdk_config().interceptor(interceptor).build());
        (Iam::new(client, 1000, metrics.clone()), metrics)
    }

    /// An `Iam` as the controller uses it, with its own metrics to count calls; it can
    /// assume roles into other accounts (moto's STS serves them).
    pub fn iam(&self) -> (Iam, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        (
            Iam::from_sdk_config(&self.shared_config(), 1000, metrics.clone()),
            metrics,
        )
    }

    /// An `Iam` (able to reach other accounts) whose HTTP client crashes after `allowed_writes`
    /// IAM writes, in every account (see `faults::crashing_http_client`).
    pub fn iam_crashing(
        &self,
        allowed_writes: usize,
        state: Arc<super::faults::CrashState>,
    ) -> (Iam, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        let config = self
            .shared_config()
            .to_builder()
            .http_client(super::faults::crashing_http_client(
                hatrack::iam::http_client(),
                allowed_writes,
                state,
            ))
            .build();
        (
            Iam::from_sdk_config(&config, 1000, metrics.clone()),
            metrics,
        )
    }

    /// The SDK configuration of every service (IAM, STS) on this server, with the default
    /// account's static test credentials.
    pub fn shared_config(&self) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(
                    aws_credential_types::Credentials::new(
                        "testing", "testing", None, None, "static",
                    ),
                ),
            )
            .http_client(hatrack::iam::http_client())
            .time_source(aws_smithy_async::time::SystemTimeSource::new())
            .sleep_impl(aws_smithy_async::rt::sleep::default_async_sleep().expect("tokio sleep"))
            .identity_cache(aws_config::identity::IdentityCache::lazy().build())
            .build()
    }

    /// Creates the IAM OIDC provider for an issuer URL (IRSA needs it).
    pub async fn create_oidc_provider(&self, issuer_url: &str) {
        create_oidc_provider_with(&self.sdk_client(), issuer_url).await;
    }

    /// [`create_oidc_provider`](Self::create_oidc_provider) in another `account`.
    pub async fn create_oidc_provider_in(&self, account: &str, issuer_url: &str) {
        create_oidc_provider_with(&self.sdk_client_in(account).await, issuer_url).await;
    }
}

async fn create_oidc_provider_with(client: &aws_sdk_iam::Client, issuer_url: &str) {
    client
        .create_open_id_connect_provider()
        .url(issuer_url)
        .client_id_list("sts.amazonaws.com")
        .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
        .send()
        .await
        .expect("create OIDC provider");
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
