//! HTTP side of the webhook: the router (`/validate/workloads`, `/healthz`, `/readyz`), the
//! metrics router, and error-to-response mapping.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower_http::timeout::TimeoutLayer;

use super::bindings::{BindingView, review_binding};
use super::limits::{self, LimitArgs};
use super::live::{self, LiveLookups, WithFetched};
use super::metrics::Metrics;
use super::review::{self, Policy, ReviewError};
use crate::detect::{Recording, ReferenceView};
use crate::settings::Settings;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub policy: Arc<Policy>,
    pub refs: Arc<dyn ReferenceView>,
    pub metrics: Arc<Metrics>,
    /// Cluster settings and caches for `/validate/iamrolebindings`.
    pub bindings: Arc<BindingAdmission>,
    /// Reads what the caches lack from the API server (`--lookups on`).
    pub live: Option<Arc<LiveLookups>>,
}

/// What IAMRoleBinding admission needs.
pub struct BindingAdmission {
    pub settings: Settings,
    pub view: Arc<dyn BindingView>,
}

/// Errors answered before a decision.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Review(#[from] ReviewError),
    #[error("request body too large or unreadable: {0}")]
    Body(String),
    #[error("cannot serialise the response: {0}")]
    Serialise(String),
}

impl ApiError {
    fn metric_label(&self) -> &'static str {
        match self {
            ApiError::Review(e) => e.metric_label(),
            ApiError::Body(_) => "body",
            ApiError::Serialise(_) => "serialise",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Review(_) => StatusCode::BAD_REQUEST,
            ApiError::Body(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Serialise(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = serde_json::json!({"error": self.to_string()}).to_string();
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

/// The webhook's router: `POST /validate/workloads`, `GET /healthz`, `GET /readyz`. Bodies
/// over `max_body_bytes` are refused with 413 (at once when `content-length` says so); a
/// request not answered within `limits.request_timeout` (a body still arriving) gets 408;
/// large bodies are read `limits.large_bodies` at a time ([`super::limits`]).
pub fn router(state: AppState, max_body_bytes: usize, limits: &LimitArgs) -> Router {
    let body_limits = Arc::new(limits::BodyLimits {
        max_body_bytes: max_body_bytes as u64,
        large_bodies: Arc::new(Semaphore::new(limits.large_bodies.max(1))),
        metrics: state.metrics.clone(),
    });
    Router::new()
        .route("/validate/workloads", post(validate))
        .route("/validate/iamrolebindings", post(validate_binding))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        // Outermost first: the timeout covers waiting for a large-body slot and reading.
        .layer(
            ServiceBuilder::new()
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    limits.request_timeout,
                ))
                .layer(middleware::from_fn_with_state(
                    body_limits,
                    limits::body_limits,
                )),
        )
        .with_state(state)
}

/// The metrics router: `GET /metrics`.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }
        }),
    )
}

async fn validate_binding(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return ApiError::Body(e.to_string()).into_response(),
    };
    match review_binding(
        &body,
        &state.bindings.settings,
        state.bindings.view.as_ref(),
    ) {
        Ok(review) => match serde_json::to_vec(&review) {
            Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
            Err(e) => ApiError::Serialise(e.to_string()).into_response(),
        },
        Err(reason) => {
            state.metrics.bad_request("binding_review");
            let body = serde_json::json!({"error": reason}).to_string();
            (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.refs.ready() && state.bindings.view.ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced").into_response()
    }
}

async fn validate(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let result = answer(&state, body).await;
    match &result {
        Ok(_) => {}
        Err(e) => {
            state.metrics.bad_request(e.metric_label());
            tracing::warn!(error = %e, "refused a request that is not a readable AdmissionReview");
        }
    }
    let (bytes, outcome) = result?;
    state
        .metrics
        .record(&outcome, started.elapsed().as_secs_f64());
    let span = tracing::info_span!("review", uid = %outcome.uid, kind = %outcome.kind,
        namespace = %outcome.namespace, name = %outcome.name);
    let _guard = span.enter();
    if let Some(why) = &outcome.unreadable {
        tracing::warn!(
            mode = outcome.mode,
            verdict = outcome.verdict.as_str(),
            "{why}"
        );
    } else if outcome.findings > 0 {
        tracing::info!(
            mode = outcome.mode,
            verdict = outcome.verdict.as_str(),
            findings = outcome.findings,
            "static AWS keys: {}",
            outcome.summaries.join(" | ")
        );
    } else {
        tracing::debug!(
            mode = outcome.mode,
            verdict = outcome.verdict.as_str(),
            "no static keys"
        );
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}

async fn answer(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Vec<u8>, review::Outcome), ApiError> {
    let body = body.map_err(|e| ApiError::Body(e.body_text()))?;
    let refs = state.refs.as_ref();
    let (review, outcome) = match &state.live {
        None => review::review(&body, &state.policy, refs)?,
        Some(live) => {
            // Judged once; only when the caches lacked a referenced object is it read from
            // the API server and the review judged again with it.
            let recording = Recording::new(refs);
            let first = review::review(&body, &state.policy, &recording)?;
            let missing = live::missing(recording);
            let fetched = if missing.is_empty() {
                Default::default()
            } else {
                live.fetch(&missing).await
            };
            if fetched.is_empty() {
                first
            } else {
                let view = WithFetched {
                    inner: refs,
                    fetched,
                };
                review::review(&body, &state.policy, &view)?
            }
        }
    };
    // Room for most answers (a denial with its message is a few hundred bytes) so the buffer
    // is not grown and copied from 8 bytes up.
    let mut bytes = Vec::with_capacity(1024);
    serde_json::to_writer(&mut bytes, &review).map_err(|e| ApiError::Serialise(e.to_string()))?;
    Ok((bytes, outcome))
}
