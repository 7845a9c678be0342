//! The HTTP face of the stand-in: request paths parsed into [`Target`]s, Status error
//! bodies, and the one handler that logs a request, injects a fault or serves it from the store.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::RecordedRequest;
use super::store::Shared;
use super::watch::start_watch;

/// A parsed resource path.
#[derive(Clone, Debug)]
pub(super) struct Target {
    pub(super) prefix: String,
    pub(super) api_version: String,
    pub(super) plural: String,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) status: bool,
}

impl Target {
    /// `/api/v1/...` or `/apis/{group}/{version}/...`, then
    /// `[namespaces/{ns}/]{plural}[/{name}[/status]]`.
    pub(super) fn parse(path: &str) -> Option<Target> {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (prefix, api_version, mut rest) = match segs.as_slice() {
            ["api", version, rest @ ..] => (format!("/api/{version}"), version.to_string(), rest),
            ["apis", group, version, rest @ ..] => (
                format!("/apis/{group}/{version}"),
                format!("{group}/{version}"),
                rest,
            ),
            _ => return None,
        };
        let mut namespace = None;
        // `/api/v1/namespaces/x/status` is the status of namespace x, not a resource kind.
        if rest.len() >= 3 && rest[0] == "namespaces" && !(rest.len() == 3 && rest[2] == "status") {
            namespace = Some(rest[1].to_string());
            rest = &rest[2..];
        }
        let (plural, name, status) = match rest {
            [plural] => (plural, None, false),
            [plural, name] => (plural, Some(name.to_string()), false),
            [plural, name, "status"] => (plural, Some(name.to_string()), true),
            _ => return None,
        };
        Some(Target {
            prefix,
            api_version,
            plural: plural.to_string(),
            namespace,
            name,
            status,
        })
    }

    pub(super) fn collection(&self) -> String {
        format!("{}/{}", self.prefix, self.plural)
    }

    pub(super) fn ns(&self) -> String {
        self.namespace.clone().unwrap_or_default()
    }

    pub(super) fn name(&self) -> String {
        self.name.clone().unwrap_or_default()
    }

    pub(super) fn with_name(&self, name: &str) -> Target {
        Target {
            name: Some(name.to_string()),
            ..self.clone()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Errors: Status bodies that kube-client turns into `kube::Error::Api`.

#[derive(Debug)]
pub(super) struct ApiError {
    pub(super) code: u16,
    pub(super) reason: &'static str,
    pub(super) message: String,
}

impl ApiError {
    pub(super) fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
        }
    }

    pub(super) fn not_found(t: &Target) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", t.plural, t.name()),
        )
    }

    pub(super) fn conflict(t: &Target) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                t.plural,
                t.name()
            ),
        )
    }

    pub(super) fn injected(code: u16) -> ApiError {
        let reason = match code {
            400 => "BadRequest",
            403 => "Forbidden",
            404 => "NotFound",
            409 => "Conflict",
            410 => "Gone",
            422 => "Invalid",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            500 => "InternalError",
            _ => "Unknown",
        };
        ApiError::new(code, reason, format!("injected fault: {code} {reason}"))
    }

    pub(super) fn status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(code, &self.status())
    }
}

pub(super) fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------
// HTTP

pub(super) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let raw_query = uri.query().unwrap_or("").to_string();
    let query = parse_query(&raw_query);
    let body = parse_body(&bytes);
    let target = Target::parse(&path);
    {
        let mut store = shared.lock();
        store.requests.push(RecordedRequest {
            method: method.to_string(),
            path: path.clone(),
            query: raw_query,
        });
        let status = target.as_ref().is_some_and(|t| t.status);
        if let Some(code) = store.take_fault(method.as_str(), &path, status) {
            return ApiError::injected(code).into_response();
        }
    }
    if path == "/version" {
        let version = json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-standin"});
        return json_response(StatusCode::OK, &version);
    }
    let Some(t) = target else {
        let message = format!("the server could not find the requested resource ({path})");
        return ApiError::new(404, "NotFound", message).into_response();
    };
    if let Some(unserved) = ["labelSelector", "fieldSelector", "sendInitialEvents"]
        .iter()
        .find(|p| query.get(**p).is_some_and(|v| !v.is_empty()))
    {
        let message = format!("{unserved} is not served by the stand-in: use the real API server");
        return ApiError::new(400, "BadRequest", message).into_response();
    }
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    if method == Method::GET && t.name.is_none() && watch {
        return start_watch(&shared, t, &query);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let needs_body = || {
        body.clone()
            .ok_or_else(|| ApiError::new(400, "BadRequest", "body must be JSON"))
    };
    let mut store = shared.lock();
    let result = match (method.as_str(), t.name.is_some()) {
        ("GET", true) => store.get(&t).map(|v| (StatusCode::OK, v)),
        ("GET", false) => Ok((StatusCode::OK, store.list(&t))),
        ("POST", false) => needs_body().and_then(|b| store.create(&t, b)),
        ("PUT", true) => needs_body().and_then(|b| store.replace(&t, b)),
        ("PATCH", true) => needs_body().and_then(|b| store.patch(&t, &content_type, b)),
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on {path} by the stand-in"),
        )),
    };
    drop(store);
    match result {
        Ok((code, value)) => json_response(code, &value),
        Err(err) => err.into_response(),
    }
}

pub(super) fn parse_body(bytes: &[u8]) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    serde_json::from_slice(bytes).ok()
}

pub(super) fn parse_query(query: &str) -> BTreeMap<String, String> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}
