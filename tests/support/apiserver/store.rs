//! The stand-in's state and storage semantics: objects by collection, the global
//! resourceVersion, the bounded change history watches replay, fault rules and the request log.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::http::StatusCode;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::RecordedRequest;
use super::handler::{ApiError, Target};

/// How many change events are kept for watches that resume from a resourceVersion.
pub(super) const HISTORY_LIMIT: usize = 1000;

// ---------------------------------------------------------------------------------------
// State

pub(super) struct Shared {
    pub(super) store: Mutex<Store>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Store> {
        // A panicking test thread must not hide the server from the other tests' asserts.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Clone)]
pub(super) enum Signal {
    Change(Arc<Change>),
    DropWatches,
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) enum ChangeKind {
    Added,
    Modified,
}

pub(super) struct Change {
    pub(super) rv: u64,
    pub(super) kind: ChangeKind,
    pub(super) collection: String,
    pub(super) namespace: String,
    pub(super) object: Value,
}

pub(super) struct FaultRule {
    /// Upper-case methods, or "*" for any.
    pub(super) methods: Vec<String>,
    pub(super) path_contains: String,
    pub(super) status_only: bool,
    pub(super) code: u16,
    pub(super) remaining: usize,
}

pub(super) struct Store {
    /// The global resourceVersion counter (etcd's revision).
    pub(super) rv: u64,
    /// collection ("/api/v1/configmaps") -> (namespace or "", name) -> object
    pub(super) objects: BTreeMap<String, BTreeMap<(String, String), Value>>,
    /// collection -> kind, learned from written objects, for list kinds and bookmarks.
    pub(super) kinds: BTreeMap<String, String>,
    pub(super) history: VecDeque<Arc<Change>>,
    /// Watches from a resourceVersion below this one get 410 Gone.
    pub(super) history_floor: u64,
    pub(super) events: broadcast::Sender<Signal>,
    pub(super) faults: Vec<FaultRule>,
    pub(super) requests: Vec<RecordedRequest>,
}

// ---------------------------------------------------------------------------------------
// Storage semantics

pub(super) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub(super) fn new_uid() -> String {
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

pub(super) fn meta(obj: &mut Value) -> &mut Map<String, Value> {
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

pub(super) fn meta_str(obj: &Value, key: &str) -> Option<String> {
    obj["metadata"][key].as_str().map(str::to_string)
}

/// The real server drops empty metadata fields (`omitempty`). kube's finalizer helper
/// relies on that: it tests `/metadata/finalizers` against null once the list is empty.
pub(super) fn tidy_metadata(obj: &mut Value) {
    meta(obj).retain(|_, v| match v {
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    });
}

/// Everything but metadata and status: a change here bumps metadata.generation.
pub(super) fn spec_part(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(o) = obj.as_object_mut() {
        o.remove("metadata");
        o.remove("status");
    }
    obj
}

pub(super) fn set_status(mut obj: Value, status: Option<&Value>) -> Value {
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
    pub(super) fn take_fault(&mut self, method: &str, path: &str, status: bool) -> Option<u16> {
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

    pub(super) fn objects_of(&self, t: &Target) -> Option<&BTreeMap<(String, String), Value>> {
        self.objects.get(&t.collection())
    }

    pub(super) fn get(&self, t: &Target) -> Result<Value, ApiError> {
        self.objects_of(t)
            .and_then(|m| m.get(&(t.ns(), t.name())))
            .cloned()
            .ok_or_else(|| ApiError::not_found(t))
    }

    pub(super) fn matching(&self, t: &Target) -> Vec<Value> {
        let Some(objects) = self.objects_of(t) else {
            return Vec::new();
        };
        objects
            .iter()
            .filter(|((ns, _), _)| t.namespace.as_ref().is_none_or(|want| want == ns))
            .map(|(_, obj)| obj.clone())
            .collect()
    }

    pub(super) fn kind_of(&self, t: &Target) -> String {
        self.kinds.get(&t.collection()).cloned().unwrap_or_default()
    }

    pub(super) fn list(&self, t: &Target) -> Value {
        let kind = self.kind_of(t);
        json!({
            "kind": format!("{kind}List"),
            "apiVersion": t.api_version,
            "metadata": {"resourceVersion": self.rv.to_string()},
            "items": self.matching(t),
        })
    }

    pub(super) fn create(
        &mut self,
        t: &Target,
        mut obj: Value,
    ) -> Result<(StatusCode, Value), ApiError> {
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
    pub(super) fn save(&mut self, t: &Target, mut obj: Value, previous: Option<Value>) -> Value {
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

    pub(super) fn record(&mut self, t: &Target, kind: ChangeKind, object: Value) {
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

    pub(super) fn put(&mut self, t: &Target, mut obj: Value) -> Value {
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
    pub(super) fn update(
        &mut self,
        t: &Target,
        stored: Value,
        mut new: Value,
    ) -> Result<Value, ApiError> {
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

    pub(super) fn check_resource_version(
        t: &Target,
        body: &Value,
        stored: &Value,
    ) -> Result<(), ApiError> {
        match meta_str(body, "resourceVersion") {
            Some(rv)
                if !rv.is_empty() && Some(&rv) != meta_str(stored, "resourceVersion").as_ref() =>
            {
                Err(ApiError::conflict(t))
            }
            _ => Ok(()),
        }
    }

    pub(super) fn replace(
        &mut self,
        t: &Target,
        body: Value,
    ) -> Result<(StatusCode, Value), ApiError> {
        let stored = self.get(t)?;
        if meta_str(&body, "name").is_some_and(|n| n != t.name()) {
            let message = "the name of the object does not match the name on the URL";
            return Err(ApiError::new(400, "BadRequest", message));
        }
        self.write_over(t, stored, body)
    }

    pub(super) fn patch(
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
        self.write_over(t, stored, patched)
    }

    /// The common end of replace and patch: `written` (the whole object as the client would
    /// have it) over `stored`, under its resourceVersion precondition; a status write keeps
    /// the stored spec, any other write the stored status.
    fn write_over(
        &mut self,
        t: &Target,
        stored: Value,
        written: Value,
    ) -> Result<(StatusCode, Value), ApiError> {
        Self::check_resource_version(t, &written, &stored)?;
        let new = if t.status {
            set_status(stored.clone(), written.get("status"))
        } else {
            set_status(written, stored.get("status"))
        };
        Ok((StatusCode::OK, self.update(t, stored, new)?))
    }
}

/// RFC 6902 patch. The real server treats a missing path as null in `test` operations,
/// and kube's finalizer helper relies on it (`test /metadata/finalizers == null`).
pub(super) fn json_patch_with_null_tests(doc: &mut Value, body: Value) -> Result<(), ApiError> {
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
