//! Watches: newline-delimited JSON events replayed from the bounded history (or the current
//! state), then live changes, until the timeout, a dropped-watches signal or a lagging reader.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::handler::{ApiError, Target};
use super::store::{Change, ChangeKind, Shared, Signal};

/// Watch duration when the client sends no `timeoutSeconds` (kube sends 290).
pub(super) const DEFAULT_WATCH_SECONDS: u64 = 290;

// ---------------------------------------------------------------------------------------
// Watch

pub(super) struct WatchFilter {
    pub(super) collection: String,
    pub(super) namespace: Option<String>,
}

impl WatchFilter {
    /// The event line a watcher with this filter receives for `change`, if any.
    pub(super) fn line(&self, change: &Change) -> Option<Bytes> {
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

pub(super) fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

pub(super) fn start_watch(
    shared: &Arc<Shared>,
    t: Target,
    query: &BTreeMap<String, String>,
) -> Response {
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
