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

mod handler;
mod store;
mod watch;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use serde_json::Value;
use tokio::sync::broadcast;

use handler::{Target, handle};
use store::{FaultRule, Shared, Signal, Store};

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

    /// How many of the requests received so far are `which`.
    pub fn count_requests(&self, which: impl Fn(&RecordedRequest) -> bool) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| which(r))
            .count()
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
