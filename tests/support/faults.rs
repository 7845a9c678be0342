//! Fault injection for IAM and EKS: an SDK interceptor that lets the first N writes through and
//! then fails every call, as if the controller process had died at that step boundary.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// Shared view of a crash point.
#[derive(Debug, Default)]
pub struct CrashState {
    pub writes_done: AtomicUsize,
    pub crashed: AtomicBool,
    /// Every IAM operation attempted, in order, for failure messages.
    pub operations: std::sync::Mutex<Vec<String>>,
}

impl CrashState {
    /// The writes attempted so far, in order, as the crash counts them: neither reads nor
    /// STS AssumeRole (credentials for another account).
    pub fn writes(&self) -> Vec<String> {
        self.operations
            .lock()
            .map(|ops| {
                ops.iter()
                    .filter(|op| is_write(op) && *op != "AssumeRole")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct CrashAfterWrites {
    pub allowed_writes: usize,
    pub state: Arc<CrashState>,
}

fn is_write(op: &str) -> bool {
    !(op.starts_with("Get") || op.starts_with("List") || op.starts_with("Describe"))
}

impl Intercept for CrashAfterWrites {
    fn name(&self) -> &'static str {
        "CrashAfterWrites"
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.state.crashed.load(Ordering::SeqCst) {
            return Err("simulated crash: this controller is dead".into());
        }
        // The IAM query protocol names the operation in the form body: `Action=CreateRole&...`.
        let body = ctx
            .request()
            .body()
            .bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        // REST protocols (EKS) name it only in the operation's metadata.
        let op = body
            .split('&')
            .find_map(|kv| kv.strip_prefix("Action="))
            .map(str::to_string)
            .or_else(|| {
                _cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
                    .map(|m| m.name().to_string())
            })
            .unwrap_or_default();
        if let Ok(mut ops) = self.state.operations.lock() {
            ops.push(op.clone());
        }
        if is_write(&op) {
            if self.state.writes_done.load(Ordering::SeqCst) >= self.allowed_writes {
                self.state.crashed.store(true, Ordering::SeqCst);
                return Err(format!("simulated crash before {op}").into());
            }
            self.state.writes_done.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// The same crash one layer down, in the HTTP client of an SDK configuration: every client
/// made from it dies at once, the controller's own IAM client and the clients of other
/// accounts (whose credentials are assumed through STS with the same HTTP client). STS's
/// AssumeRole changes nothing in IAM, so it is not counted as a write.
pub fn crashing_http_client(
    inner: aws_smithy_runtime_api::client::http::SharedHttpClient,
    allowed_writes: usize,
    state: Arc<CrashState>,
) -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_runtime_api::client::http::{HttpClient, SharedHttpConnector, http_client_fn};
    http_client_fn(move |settings, components| {
        SharedHttpConnector::new(CrashingConnector {
            inner: inner.http_connector(settings, components),
            allowed_writes,
            state: state.clone(),
        })
    })
}

#[derive(Debug)]
struct CrashingConnector {
    inner: aws_smithy_runtime_api::client::http::SharedHttpConnector,
    allowed_writes: usize,
    state: Arc<CrashState>,
}

impl aws_smithy_runtime_api::client::http::HttpConnector for CrashingConnector {
    fn call(
        &self,
        request: aws_smithy_runtime_api::client::orchestrator::HttpRequest,
    ) -> aws_smithy_runtime_api::client::http::HttpConnectorFuture {
        use aws_smithy_runtime_api::client::http::HttpConnectorFuture;
        use aws_smithy_runtime_api::client::result::ConnectorError;
        let crash =
            |why: String| HttpConnectorFuture::ready(Err(ConnectorError::other(why.into(), None)));
        if self.state.crashed.load(Ordering::SeqCst) {
            return crash("simulated crash: this controller is dead".into());
        }
        let body = request
            .body()
            .bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let op = body
            .split('&')
            .find_map(|kv| kv.strip_prefix("Action="))
            .unwrap_or("")
            .to_string();
        if let Ok(mut ops) = self.state.operations.lock() {
            ops.push(op.clone());
        }
        if is_write(&op) && op != "AssumeRole" {
            if self.state.writes_done.load(Ordering::SeqCst) >= self.allowed_writes {
                self.state.crashed.store(true, Ordering::SeqCst);
                return crash(format!("simulated crash before {op}"));
            }
            self.state.writes_done.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.call(request)
    }
}
