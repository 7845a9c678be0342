//! Limits that keep the webhook alive under slow and hostile clients: how long a client may
//! take to handshake, send its headers and send its body, how many connections are served at
//! once, how large a body may be, and how many large bodies are read at once (memory).
//!
//! The numbers and their reasons are in docs/webhook.md, "Slow and hostile clients".

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::PollSemaphore;

/// etcd's default `--max-request-bytes` (1.5 MiB): no stored object is larger.
pub const ETCD_MAX_REQUEST_BYTES: usize = 1024 * 1024 * 3 / 2;

/// The largest AdmissionReview the API server sends for an object etcd can store: the object
/// and its old version (UPDATE), each at most etcd's limit in its stored (protobuf) form and
/// allowed twice that as JSON (field names instead of field numbers, quoting), plus 256 KiB
/// for the review's envelope (request fields, userInfo, options).
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 2 * ETCD_MAX_REQUEST_BYTES + 256 * 1024;

/// Bodies up to this size are read without taking a large-body slot: every honest review of
/// an ordinary workload (a few KiB) stays out of the queue that slow large bodies form.
pub const SMALL_BODY_BYTES: u64 = 64 * 1024;

/// Flags of the limits (`hatrack webhook`).
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Connections served at once; further ones wait in the listen backlog until one closes.
    #[arg(long, default_value_t = 1024, env = "HATRACK_WEBHOOK_MAX_CONNECTIONS")]
    pub max_connections: usize,

    /// Time for a client to complete the TLS handshake.
    #[arg(long, default_value = "2s", value_parser = super::parse_duration, env = "HATRACK_WEBHOOK_TLS_HANDSHAKE_TIMEOUT")]
    pub tls_handshake_timeout: Duration,

    /// Time for a client to send a request's headers (HTTP/1.1; also how long an idle
    /// keep-alive connection stays open), and to send the first request of a connection.
    #[arg(long, default_value = "2s", value_parser = super::parse_duration, env = "HATRACK_WEBHOOK_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Duration,

    /// Time from a request's headers to its answer, body included: a body still arriving
    /// then gets 408 and the connection is closed. Well under the API server's
    /// `timeoutSeconds` (5 s in the chart), which an honest API server never gets near.
    #[arg(long, default_value = "3s", value_parser = super::parse_duration, env = "HATRACK_WEBHOOK_REQUEST_TIMEOUT")]
    pub request_timeout: Duration,

    /// Bodies over 64 KiB (or of unknown length) read at once; more wait (within the request
    /// timeout). Bounds the memory of large bodies to this many times `--max-body-bytes`.
    #[arg(long, default_value_t = 4, env = "HATRACK_WEBHOOK_LARGE_BODIES")]
    pub large_bodies: usize,
}

impl Default for LimitArgs {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            tls_handshake_timeout: Duration::from_secs(2),
            header_read_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(3),
            large_bodies: 4,
        }
    }
}

/// Whether a request's body must take a large-body slot: over [`SMALL_BODY_BYTES`], or of
/// unknown length (chunked, or HTTP/2 without `content-length`).
pub fn is_large(content_length: Option<&str>) -> bool {
    match content_length.and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(n) => n > SMALL_BODY_BYTES,
        None => true,
    }
}

/// What [`body_limits`] enforces.
pub struct BodyLimits {
    pub max_body_bytes: u64,
    /// One permit per large body being read.
    pub large_bodies: Arc<Semaphore>,
    pub metrics: Arc<super::Metrics>,
}

/// Middleware: a body whose `content-length` is over `max` gets 413 before it is read (one
/// without a length is cut off at `max` by axum's `DefaultBodyLimit`); a large body is read
/// only while holding one of the large-body slots.
pub async fn body_limits(
    State(limits): State<Arc<BodyLimits>>,
    request: Request,
    next: Next,
) -> Response {
    let max = limits.max_body_bytes;
    let length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok());
    if length
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > max)
    {
        limits.metrics.bad_request("body");
        return too_large(max);
    }
    if !is_large(length) {
        return next.run(request).await;
    }
    // The semaphore is never closed; if it were, reading without a slot is still bounded by
    // the connection limit.
    let _slot = limits.large_bodies.clone().acquire_owned().await.ok();
    next.run(request).await
}

fn too_large(max: u64) -> Response {
    let body = serde_json::json!({
        "error": format!("request body too large or unreadable: over the limit of {max} bytes")
    })
    .to_string();
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// A make-service that serves at most `limit` connections at once: `poll_ready` waits for a
/// free slot, and the accept loop of axum-server calls it before accepting the next
/// connection, so further clients wait in the kernel's listen backlog instead of holding
/// memory here. The slot is released when the connection's service (and every clone hyper
/// made of it) is dropped, i.e. when the connection ends.
#[derive(Clone)]
pub struct LimitConnections<M> {
    inner: M,
    slots: PollSemaphore,
    permit: Option<Arc<OwnedSemaphorePermit>>,
}

impl<M> LimitConnections<M> {
    pub fn new(inner: M, limit: usize) -> Self {
        Self {
            inner,
            slots: PollSemaphore::new(Arc::new(Semaphore::new(limit.max(1)))),
            permit: None,
        }
    }
}

impl<M, T> tower::Service<T> for LimitConnections<M>
where
    M: tower::Service<T>,
    M::Future: Send + 'static,
{
    type Response = Connection<M::Response>;
    type Error = M::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.permit.is_none() {
            match self.slots.poll_acquire(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(permit) => self.permit = permit.map(Arc::new),
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, target: T) -> Self::Future {
        let permit = self.permit.take();
        let future = self.inner.call(target);
        Box::pin(async move {
            let inner = future.await?;
            Ok(Connection {
                inner,
                _permit: permit,
            })
        })
    }
}

/// One connection's service, holding its connection slot.
#[derive(Clone)]
pub struct Connection<S> {
    inner: S,
    _permit: Option<Arc<OwnedSemaphorePermit>>,
}

impl<S, R> tower::Service<R> for Connection<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bodies_with_a_length_skip_the_large_body_slots() {
        assert!(!is_large(Some("1200")));
        assert!(!is_large(Some("65536")));
        assert!(is_large(Some("65537")));
        assert!(is_large(Some("8388607")));
        // Unknown or unreadable length: as large as it may get.
        assert!(is_large(None));
        assert!(is_large(Some("lots")));
    }

    #[test]
    fn default_body_limit_is_two_objects_etcd_can_store_as_json_plus_an_envelope() {
        assert_eq!(ETCD_MAX_REQUEST_BYTES, 1_572_864);
        assert_eq!(DEFAULT_MAX_BODY_BYTES, 6_553_600);
    }

    #[tokio::test]
    async fn a_connection_holds_its_slot_until_its_service_is_dropped() {
        use std::future::poll_fn;
        use tower::Service;
        let make = tower::service_fn(|_: ()| async { Ok::<_, std::convert::Infallible>(()) });
        let mut limited = LimitConnections::new(make, 1);
        poll_fn(|cx| limited.poll_ready(cx)).await.unwrap();
        let first = limited.call(()).await.unwrap();
        let copy = first.clone();
        // The only slot is taken: the next connection is not accepted.
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(limited.poll_ready(&mut cx).is_pending());
        drop(first);
        // A clone (hyper keeps one per request) still holds it.
        assert!(limited.poll_ready(&mut cx).is_pending());
        drop(copy);
        assert!(limited.poll_ready(&mut cx).is_ready());
    }
}
