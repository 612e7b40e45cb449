//! Watches: a chunked stream of `{"type": ..., "object": ...}` lines.

use crate::api::{ApiError, Req};
use crate::meta;
use crate::resources::TYPES;
use crate::selectors::Selector;
use crate::server::Body;
use crate::sim::Shared;
use crate::store::{Change, Event};
use crate::tables;
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(2);

/// How long a watch lasts when the client sets no `timeoutSeconds` (the apiserver picks
/// between 30 and 60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

struct Filter {
    rtype: usize,
    ns: Option<String>,
    labels: Selector,
    fields: Selector,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        self.ns
            .as_deref()
            .is_none_or(|ns| ns == meta::namespace(obj))
            && self.labels.matches_labels(obj)
            && self.fields.matches_fields(obj)
    }

    /// How this watch sees a change: a modification that leaves the selection is DELETED,
    /// one that enters it is ADDED.
    fn view(&self, e: &Event) -> Option<&'static str> {
        if e.rtype != self.rtype {
            return None;
        }
        let now = self.matches(&e.object);
        match e.change {
            Change::Modified => {
                let before = e.old.as_ref().is_some_and(|o| self.matches(o));
                match (before, now) {
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
            c => now.then_some(c.as_str()),
        }
    }
}

/// How event objects are rendered: as stored, or as one-row Tables (`kubectl get -w`).
#[derive(Clone)]
struct Render {
    table: Option<(usize, Arc<Shared>)>,
}

impl Render {
    fn line(&self, kind: &str, obj: &Value) -> Bytes {
        match &self.table {
            Some((rtype, shared)) if kind != "ERROR" && kind != "BOOKMARK" => {
                let rv = meta::path_str(obj, &["metadata", "resourceVersion"])
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                line(
                    kind,
                    &tables::table(
                        *rtype,
                        std::slice::from_ref(obj),
                        rv,
                        shared.clock.now_secs(),
                    ),
                )
            }
            _ => line(kind, obj),
        }
    }
}

fn line(kind: &str, obj: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": obj})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// Starts a watch and returns its response body.
///
/// # Errors
/// When a selector does not parse.
pub fn start(
    shared: &Arc<Shared>,
    r: &Req,
    rtype: usize,
    ns: Option<&str>,
) -> Result<Body, ApiError> {
    let parse = |p: &str| Selector::parse(r.param(p).unwrap_or("")).map_err(ApiError::bad_request);
    let filter = Filter {
        rtype,
        ns: ns.map(String::from),
        labels: parse("labelSelector")?,
        fields: parse("fieldSelector")?,
    };
    let bookmarks = matches!(r.param("allowWatchBookmarks"), Some("1" | "true"));
    let timeout = r
        .param("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let t = &TYPES[rtype];
    let render = Render {
        table: tables::wanted(&r.accept).then(|| (rtype, shared.clone())),
    };
    let (tx, rx) = mpsc::channel::<Option<Bytes>>(1024);
    let mut first: Vec<Bytes> = Vec::new();
    let mut last_rv;
    let mut sub: broadcast::Receiver<Arc<Event>>;
    {
        let state = shared.lock();
        last_rv = state.store.resource_version();
        sub = state.store.subscribe();
        let initial_events = matches!(r.param("sendInitialEvents"), Some("true" | "1"));
        match r
            .param("resourceVersion")
            .filter(|v| !v.is_empty() && *v != "0" && !initial_events)
        {
            None if initial_events => {
                // Streaming list: the current objects, then a bookmark marking their end.
                for o in state.store.list(rtype, ns).filter(|o| filter.matches(o)) {
                    first.push(render.line("ADDED", o));
                }
                first.push(line(
                    "BOOKMARK",
                    &json!({"kind": t.kind, "apiVersion": t.api_version(), "metadata": {"resourceVersion": last_rv.to_string(),
                        "annotations": {"k8s.io/initial-events-end": "true"}}}),
                ));
            }
            None => {
                for o in state.store.list(rtype, ns).filter(|o| filter.matches(o)) {
                    first.push(render.line("ADDED", o));
                }
            }
            Some(v) => {
                let from: u64 = v.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version: {v:?}"))
                })?;
                match state.store.changes_since(from) {
                    Ok(changes) => {
                        for e in changes {
                            if let Some(kind) = filter.view(&e) {
                                first.push(render.line(kind, &e.object));
                            }
                        }
                    }
                    Err(_) => {
                        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": format!("too old resource version: {from} ({last_rv})"), "reason": "Expired", "code": 410});
                        let _ = tx.try_send(Some(line("ERROR", &status)));
                        return Ok(Body::Stream(rx));
                    }
                }
            }
        }
    }
    let mut drop_rx = shared.drop_epoch.subscribe();
    let bookmark = move |rv: u64| {
        line(
            "BOOKMARK",
            &json!({"kind": t.kind, "apiVersion": t.api_version(), "metadata": {"resourceVersion": rv.to_string()}}),
        )
    };
    tokio::spawn(async move {
        for b in first {
            if tx.send(Some(b)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
        ticker.tick().await;
        loop {
            tokio::select! {
                e = sub.recv() => match e {
                    Ok(e) => {
                        last_rv = e.rv;
                        if let Some(kind) = filter.view(&e) {
                            if tx.send(Some(render.line(kind, &e.object))).await.is_err() {
                                return;
                            }
                        }
                    }
                    // Fell behind or the store is gone: end the watch; the client re-lists.
                    Err(_) => return,
                },
                _ = drop_rx.changed() => {
                    let _ = tx.send(None).await;
                    return;
                }
                _ = &mut deadline => return,
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(Some(bookmark(last_rv))).await.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
            }
        }
    });
    Ok(Body::Stream(rx))
}
