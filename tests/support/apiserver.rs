//! An in-process stand-in for the Kubernetes API server, kept for what a real kube-apiserver
//! cannot do on demand: answer a chosen request with an injected 409, 410 or 500, drop every
//! open watch, expire the watch history (so resuming watchers get `410 Gone`), and log the
//! requests it received. Everything else runs against the real API server
//! (`tests/support/cluster.rs`); `benches/controller.rs` also uses this for its
//! stand-in mode.
//!
//! It serves, over plain HTTP on 127.0.0.1, what hatrack's controller, leader election and
//! certificate flow call, for any resource path:
//!
//! - get, list (one page), watch (newline-delimited JSON events replayed from a bounded
//!   history, `410 Gone` for expired resource versions), create, replace (409 on a stale
//!   `resourceVersion`);
//! - merge and JSON patches (a JSON patch `test` of a missing path against null passes, as
//!   kube's finalizer helper needs);
//! - the `/status` subresource, `metadata.generation` and no-op writes that change nothing;
//! - a request log and fault injection ([`Faults`]).
//!
//! ```ignore
//! mod support;
//! use support::apiserver::ApiServer;
//!
//! let server = ApiServer::start().await;
//! let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
//! server.put_object("/api/v1/namespaces/default/configmaps", json!({"metadata": {"name": "a"}}));
//! server.faults().fail_next_status_writes(1, "/iamrolebindings/", 409);
//! let cm = server.get_object("/api/v1/namespaces/default/configmaps/a").unwrap();
//! let writes = server.requests().iter().filter(|r| r.method == "PATCH").count();
//! ```
//!
//! Not served — answered with an error, so that no test relies on a pretence of them:
//! DELETE, label and field selectors, streaming lists (`sendInitialEvents`), `generateName`,
//! strategic-merge and server-side-apply patches. Nothing is validated against a schema,
//! namespaces need not exist, and every resource behaves like a custom resource with the
//! status subresource: writes to the main resource (and create) keep the stored `.status`;
//! `/status` writes change only `.status`. Objects are keyed by API path prefix and plural
//! (`/apis/hatrack.dev/v1alpha1` + `iamrolebindings`).
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, mpsc};

/// How many change events are kept for watches that resume from a resourceVersion.
const HISTORY_LIMIT: usize = 1000;
/// Watch duration when the client sends no `timeoutSeconds` (kube sends 290).
const DEFAULT_WATCH_SECONDS: u64 = 290;

/// A running stand-in API server. Dropping it stops the listener and ends open watches.
pub struct ApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

/// One request as the server received it, for counting and asserting calls.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Raw (still percent-encoded) query string, "" when absent.
    pub query: String,
}

impl RecordedRequest {
    pub fn is_watch(&self) -> bool {
        self.query
            .split('&')
            .any(|p| p == "watch=true" || p == "watch=1")
    }
}

/// Fault injection, from [`ApiServer::faults`].
#[derive(Clone)]
pub struct Faults {
    shared: Arc<Shared>,
}

impl ApiServer {
    /// Binds 127.0.0.1 on a free port and serves in a background tokio task.
    pub async fn start() -> ApiServer {
        let (events, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store {
                rv: 0,
                objects: BTreeMap::new(),
                kinds: BTreeMap::new(),
                history: VecDeque::new(),
                history_floor: 0,
                events,
                faults: Vec::new(),
                requests: Vec::new(),
            }),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("stand-in API server");
        });
        ApiServer { shared, addr, task }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A `kube::Client` pointed at this server (plain HTTP, no auth, namespace "default").
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().expect("server URL"));
        kube::Client::try_from(config).expect("kube client")
    }

    /// The stored object at an object path such as `/api/v1/namespaces/default/configmaps/x`.
    pub fn get_object(&self, path: &str) -> Option<Value> {
        let t = Target::parse(path).unwrap_or_else(|| panic!("not an API path: {path}"));
        self.shared.lock().get(&t).ok()
    }

    /// The stored objects of a collection path (namespaced, all-namespaces or cluster-scoped).
    pub fn objects(&self, collection_path: &str) -> Vec<Value> {
        let t = Target::parse(collection_path)
            .unwrap_or_else(|| panic!("not an API path: {collection_path}"));
        self.shared.lock().matching(&t)
    }

    /// Stores `object` as given (status included) in a collection path, creating or
    /// replacing it, and fires ADDED or MODIFIED. Missing uid, creationTimestamp, generation
    /// and namespace (from the path) are filled in. Returns the stored object.
    pub fn put_object(&self, collection_path: &str, object: Value) -> Value {
        let t = Target::parse(collection_path)
            .unwrap_or_else(|| panic!("not an API path: {collection_path}"));
        self.shared.lock().put(&t, object)
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many watch streams are open now: wait for it to know a watcher is connected.
    pub fn open_watches(&self) -> usize {
        self.shared.lock().events.receiver_count()
    }

    /// The current (global) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    pub fn faults(&self) -> Faults {
        Faults {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.faults().drop_watches();
        self.task.abort();
    }
}

impl Faults {
    /// The next `times` requests whose method is `method` ("*" for any) and whose path
    /// contains `path_contains` fail with HTTP `code` and a matching Status body.
    pub fn fail_next(&self, times: usize, method: &str, path_contains: &str, code: u16) {
        self.add(times, &[method], path_contains, false, code);
    }

    /// Like [`Faults::fail_next`], for writes (PUT or PATCH) to the `/status` subresource.
    pub fn fail_next_status_writes(&self, times: usize, path_contains: &str, code: u16) {
        self.add(times, &["PUT", "PATCH"], path_contains, true, code);
    }

    fn add(
        &self,
        times: usize,
        methods: &[&str],
        path_contains: &str,
        status_only: bool,
        code: u16,
    ) {
        self.shared.lock().faults.push(FaultRule {
            methods: methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            path_contains: path_contains.to_string(),
            status_only,
            code,
            remaining: times,
        });
    }

    /// Ends every open watch stream now; clients see the stream end and reconnect.
    pub fn drop_watches(&self) {
        let _ = self.shared.lock().events.send(Signal::DropWatches);
    }

    /// Compacts the event history: a watch resuming from any resourceVersion issued so far
    /// gets a `410 Gone` (Expired) ERROR event, so the client must re-list. Open watches keep
    /// running; call [`Faults::drop_watches`] afterwards to make connected watchers resume.
    pub fn expire_history(&self) {
        let mut store = self.shared.lock();
        // Bump the counter so that a fresh list has a resourceVersion that is still valid.
        store.rv += 1;
        store.history.clear();
        store.history_floor = store.rv;
    }
}

// ---------------------------------------------------------------------------------------
// State

struct Shared {
    store: Mutex<Store>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panicking test thread must not hide the server from the other tests' asserts.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Clone)]
enum Signal {
    Change(Arc<Change>),
    DropWatches,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum ChangeKind {
    Added,
    Modified,
}

struct Change {
    rv: u64,
    kind: ChangeKind,
    collection: String,
    namespace: String,
    object: Value,
}

struct FaultRule {
    /// Upper-case methods, or "*" for any.
    methods: Vec<String>,
    path_contains: String,
    status_only: bool,
    code: u16,
    remaining: usize,
}

struct Store {
    /// The global resourceVersion counter (etcd's revision).
    rv: u64,
    /// collection ("/api/v1/configmaps") -> (namespace or "", name) -> object
    objects: BTreeMap<String, BTreeMap<(String, String), Value>>,
    /// collection -> kind, learned from written objects, for list kinds and bookmarks.
    kinds: BTreeMap<String, String>,
    history: VecDeque<Arc<Change>>,
    /// Watches from a resourceVersion below this one get 410 Gone.
    history_floor: u64,
    events: broadcast::Sender<Signal>,
    faults: Vec<FaultRule>,
    requests: Vec<RecordedRequest>,
}

/// A parsed resource path.
#[derive(Clone, Debug)]
struct Target {
    prefix: String,
    api_version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

impl Target {
    /// `/api/v1/...` or `/apis/{group}/{version}/...`, then
    /// `[namespaces/{ns}/]{plural}[/{name}[/status]]`.
    fn parse(path: &str) -> Option<Target> {
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

    fn collection(&self) -> String {
        format!("{}/{}", self.prefix, self.plural)
    }

    fn ns(&self) -> String {
        self.namespace.clone().unwrap_or_default()
    }

    fn name(&self) -> String {
        self.name.clone().unwrap_or_default()
    }

    fn with_name(&self, name: &str) -> Target {
        Target {
            name: Some(name.to_string()),
            ..self.clone()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Errors: Status bodies that kube-client turns into `kube::Error::Api`.

#[derive(Debug)]
struct ApiError {
    code: u16,
    reason: &'static str,
    message: String,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
        }
    }

    fn not_found(t: &Target) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", t.plural, t.name()),
        )
    }

    fn conflict(t: &Target) -> ApiError {
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

    fn injected(code: u16) -> ApiError {
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

    fn status(&self) -> Value {
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

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------
// HTTP

async fn handle(
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

fn parse_body(bytes: &[u8]) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    serde_json::from_slice(bytes).ok()
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
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

// ---------------------------------------------------------------------------------------
// Storage semantics

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn new_uid() -> String {
    let h = format!("{:032x}", rand::random::<u128>());
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn meta(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let root = obj.as_object_mut().expect("object");
    let m = root.entry("metadata").or_insert_with(|| json!({}));
    if !m.is_object() {
        *m = json!({});
    }
    m.as_object_mut().expect("metadata object")
}

fn meta_str(obj: &Value, key: &str) -> Option<String> {
    obj["metadata"][key].as_str().map(str::to_string)
}

/// The real server drops empty metadata fields (`omitempty`). kube's finalizer helper
/// relies on that: it tests `/metadata/finalizers` against null once the list is empty.
fn tidy_metadata(obj: &mut Value) {
    meta(obj).retain(|_, v| match v {
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    });
}

/// Everything but metadata and status: a change here bumps metadata.generation.
fn spec_part(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(o) = obj.as_object_mut() {
        o.remove("metadata");
        o.remove("status");
    }
    obj
}

fn set_status(mut obj: Value, status: Option<&Value>) -> Value {
    if let Some(o) = obj.as_object_mut() {
        match status {
            Some(s) if !s.is_null() => {
                o.insert("status".to_string(), s.clone());
            }
            _ => {
                o.remove("status");
            }
        }
    }
    obj
}

impl Store {
    fn take_fault(&mut self, method: &str, path: &str, status: bool) -> Option<u16> {
        let rule = self.faults.iter_mut().find(|f| {
            f.remaining > 0
                && f.methods.iter().any(|m| m == "*" || m == method)
                && path.contains(&f.path_contains)
                && (!f.status_only || status)
        })?;
        rule.remaining -= 1;
        let code = rule.code;
        self.faults.retain(|f| f.remaining > 0);
        Some(code)
    }

    fn objects_of(&self, t: &Target) -> Option<&BTreeMap<(String, String), Value>> {
        self.objects.get(&t.collection())
    }

    fn get(&self, t: &Target) -> Result<Value, ApiError> {
        self.objects_of(t)
            .and_then(|m| m.get(&(t.ns(), t.name())))
            .cloned()
            .ok_or_else(|| ApiError::not_found(t))
    }

    fn matching(&self, t: &Target) -> Vec<Value> {
        let Some(objects) = self.objects_of(t) else {
            return Vec::new();
        };
        objects
            .iter()
            .filter(|((ns, _), _)| t.namespace.as_ref().is_none_or(|want| want == ns))
            .map(|(_, obj)| obj.clone())
            .collect()
    }

    fn kind_of(&self, t: &Target) -> String {
        self.kinds.get(&t.collection()).cloned().unwrap_or_default()
    }

    fn list(&self, t: &Target) -> Value {
        let kind = self.kind_of(t);
        json!({
            "kind": format!("{kind}List"),
            "apiVersion": t.api_version,
            "metadata": {"resourceVersion": self.rv.to_string()},
            "items": self.matching(t),
        })
    }

    fn create(&mut self, t: &Target, mut obj: Value) -> Result<(StatusCode, Value), ApiError> {
        let body_ns = meta_str(&obj, "namespace");
        if let (Some(path_ns), Some(body_ns)) = (&t.namespace, &body_ns)
            && path_ns != body_ns
        {
            let message = "the namespace of the object does not match the namespace on the request";
            return Err(ApiError::new(400, "BadRequest", message));
        }
        let name = match meta_str(&obj, "name") {
            Some(name) if !name.is_empty() => name,
            _ => {
                let message = "metadata.name: Required value: name is required (generateName \
                               is not served by the stand-in)";
                return Err(ApiError::new(422, "Invalid", message));
            }
        };
        if t.name.as_ref().is_some_and(|n| *n != name) {
            let message = "the name of the object does not match the name on the URL";
            return Err(ApiError::new(400, "BadRequest", message));
        }
        let t = t.with_name(&name);
        if self.get(&t).is_ok() {
            let message = format!("{} \"{name}\" already exists", t.plural);
            return Err(ApiError::new(409, "AlreadyExists", message));
        }
        let m = meta(&mut obj);
        m.insert("name".into(), json!(name));
        for key in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
        ] {
            m.remove(key);
        }
        // Status is set through the status subresource, never on create.
        let obj = set_status(obj, None);
        Ok((StatusCode::CREATED, self.save(&t, obj, None)))
    }

    /// Writes a new or changed object: fills server-set metadata, bumps the
    /// resourceVersion, stores it and records the watch event.
    fn save(&mut self, t: &Target, mut obj: Value, previous: Option<Value>) -> Value {
        self.rv += 1;
        let rv = self.rv;
        if let Some(kind) = obj["kind"].as_str() {
            self.kinds.insert(t.collection(), kind.to_string());
        }
        let kind = self.kind_of(t);
        if let Some(o) = obj.as_object_mut() {
            o.entry("apiVersion")
                .or_insert_with(|| json!(t.api_version));
            if !kind.is_empty() {
                o.entry("kind").or_insert_with(|| json!(kind));
            }
        }
        let m = meta(&mut obj);
        m.insert("name".into(), json!(t.name()));
        match &t.namespace {
            Some(ns) => m.insert("namespace".into(), json!(ns)),
            None => m.remove("namespace"),
        };
        m.entry("uid").or_insert_with(|| json!(new_uid()));
        m.entry("creationTimestamp").or_insert_with(|| json!(now()));
        m.entry("generation").or_insert(json!(1));
        m.insert("resourceVersion".into(), json!(rv.to_string()));
        tidy_metadata(&mut obj);
        self.objects
            .entry(t.collection())
            .or_default()
            .insert((t.ns(), t.name()), obj.clone());
        let kind = if previous.is_some() {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        };
        self.record(t, kind, obj.clone());
        obj
    }

    fn record(&mut self, t: &Target, kind: ChangeKind, object: Value) {
        let change = Arc::new(Change {
            rv: self.rv,
            kind,
            collection: t.collection(),
            namespace: t.ns(),
            object,
        });
        self.history.push_back(change.clone());
        while self.history.len() > HISTORY_LIMIT {
            if let Some(old) = self.history.pop_front() {
                self.history_floor = old.rv;
            }
        }
        // No receivers (no open watch) is fine.
        let _ = self.events.send(Signal::Change(change));
    }

    fn put(&mut self, t: &Target, mut obj: Value) -> Value {
        let name = meta_str(&obj, "name").expect("put_object needs metadata.name");
        let mut t = t.with_name(&name);
        if t.namespace.is_none() {
            t.namespace = meta_str(&obj, "namespace");
        }
        let previous = self.get(&t).ok();
        if let Some(prev) = &previous {
            let m = meta(&mut obj);
            for key in ["uid", "creationTimestamp", "generation"] {
                if let (false, Some(v)) = (m.contains_key(key), prev["metadata"].get(key)) {
                    m.insert(key.to_string(), v.clone());
                }
            }
        }
        self.save(&t, obj, previous)
    }

    /// The common end of replace and patch: enforce what clients may not change, skip
    /// no-op writes (no new resourceVersion, no event), bump generation on spec changes.
    fn update(&mut self, t: &Target, stored: Value, mut new: Value) -> Result<Value, ApiError> {
        let m = meta(&mut new);
        for key in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            match stored["metadata"].get(key) {
                Some(v) => m.insert(key.to_string(), v.clone()),
                None => m.remove(key),
            };
        }
        tidy_metadata(&mut new);
        if new == stored {
            return Ok(stored);
        }
        if spec_part(&new) != spec_part(&stored) {
            let generation = stored["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            meta(&mut new).insert("generation".into(), json!(generation));
        }
        Ok(self.save(t, new, Some(stored)))
    }

    fn check_resource_version(t: &Target, body: &Value, stored: &Value) -> Result<(), ApiError> {
        match meta_str(body, "resourceVersion") {
            Some(rv)
                if !rv.is_empty() && Some(&rv) != meta_str(stored, "resourceVersion").as_ref() =>
            {
                Err(ApiError::conflict(t))
            }
            _ => Ok(()),
        }
    }

    fn replace(&mut self, t: &Target, body: Value) -> Result<(StatusCode, Value), ApiError> {
        let stored = self.get(t)?;
        if meta_str(&body, "name").is_some_and(|n| n != t.name()) {
            let message = "the name of the object does not match the name on the URL";
            return Err(ApiError::new(400, "BadRequest", message));
        }
        Self::check_resource_version(t, &body, &stored)?;
        let new = if t.status {
            set_status(stored.clone(), body.get("status"))
        } else {
            set_status(body, stored.get("status"))
        };
        Ok((StatusCode::OK, self.update(t, stored, new)?))
    }

    fn patch(
        &mut self,
        t: &Target,
        content_type: &str,
        body: Value,
    ) -> Result<(StatusCode, Value), ApiError> {
        let stored = self.get(t)?;
        let mut patched = stored.clone();
        match content_type {
            "application/json-patch+json" => json_patch_with_null_tests(&mut patched, body)?,
            "application/merge-patch+json" => json_patch::merge(&mut patched, &body),
            _ => {
                let message = format!(
                    "patch type {content_type} is not served by the stand-in (merge and JSON \
                     patches are): use the real API server"
                );
                return Err(ApiError::new(415, "UnsupportedMediaType", message));
            }
        }
        Self::check_resource_version(t, &patched, &stored)?;
        let new = if t.status {
            set_status(stored.clone(), patched.get("status"))
        } else {
            set_status(patched, stored.get("status"))
        };
        Ok((StatusCode::OK, self.update(t, stored, new)?))
    }
}

/// RFC 6902 patch. The real server treats a missing path as null in `test` operations,
/// and kube's finalizer helper relies on it (`test /metadata/finalizers == null`).
fn json_patch_with_null_tests(doc: &mut Value, body: Value) -> Result<(), ApiError> {
    let invalid = |e: String| ApiError::new(422, "Invalid", format!("json patch failed: {e}"));
    let ops: Vec<Value> = serde_json::from_value::<Vec<Value>>(body)
        .map_err(|e| ApiError::new(400, "BadRequest", e.to_string()))?
        .into_iter()
        .filter(|op| {
            let path = op["path"].as_str().unwrap_or("");
            !(op["op"] == "test" && op["value"].is_null() && doc.pointer(path).is_none())
        })
        .collect();
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops))
        .map_err(|e| ApiError::new(400, "BadRequest", e.to_string()))?;
    json_patch::patch(doc, &patch).map_err(|e| invalid(e.to_string()))
}

// ---------------------------------------------------------------------------------------
// Watch

struct WatchFilter {
    collection: String,
    namespace: Option<String>,
}

impl WatchFilter {
    /// The event line a watcher with this filter receives for `change`, if any.
    fn line(&self, change: &Change) -> Option<Bytes> {
        if change.collection != self.collection
            || self
                .namespace
                .as_ref()
                .is_some_and(|ns| *ns != change.namespace)
        {
            return None;
        }
        let kind = match change.kind {
            ChangeKind::Added => "ADDED",
            ChangeKind::Modified => "MODIFIED",
        };
        Some(event_line(kind, &change.object))
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn start_watch(shared: &Arc<Shared>, t: Target, query: &BTreeMap<String, String>) -> Response {
    let filter = WatchFilter {
        collection: t.collection(),
        namespace: t.namespace.clone(),
    };
    let seconds = query
        .get("timeoutSeconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_WATCH_SECONDS);
    let from = query
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or("");
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (Ok::<_, Infallible>(line), rx))
    });
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(body))
        .expect("watch response");

    // Subscribe and replay under one lock, so no event falls between the two.
    let store = shared.lock();
    let mut events = store.events.subscribe();
    let replay: Vec<Bytes> = if from.is_empty() || from == "0" {
        // No resourceVersion: the current state as ADDED events, then changes.
        store
            .matching(&t)
            .iter()
            .map(|obj| event_line("ADDED", obj))
            .collect()
    } else {
        match from.parse::<u64>() {
            Ok(rv) if rv >= store.history_floor => store
                .history
                .iter()
                .filter(|c| c.rv > rv)
                .filter_map(|c| filter.line(c))
                .collect(),
            _ => {
                // What a real server sends when etcd has compacted past `from`.
                let gone = ApiError::new(
                    410,
                    "Expired",
                    format!("too old resource version: {from} ({})", store.history_floor),
                );
                let _ = tx.send(event_line("ERROR", &gone.status()));
                return response;
            }
        }
    };
    drop(store);
    for line in replay {
        let _ = tx.send(line);
    }

    tokio::spawn(async move {
        let deadline = tokio::time::sleep(Duration::from_secs(seconds));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = tx.closed() => break,
                signal = events.recv() => match signal {
                    Ok(Signal::Change(change)) => {
                        if let Some(line) = filter.line(&change)
                            && tx.send(line).is_err()
                        {
                            break;
                        }
                    }
                    // Dropped on purpose, or this watcher lagged behind: end the stream;
                    // the client resumes from the last resourceVersion it saw.
                    Ok(Signal::DropWatches) | Err(_) => break,
                },
            }
        }
    });
    response
}
