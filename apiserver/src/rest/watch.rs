//! `?watch=true`: a chunked stream of `{"type": ..., "object": ...}` lines.
//!
//! - `resourceVersion=R` (R > 0): every change after R, in revision order, none twice.
//! - no resourceVersion or `0`: the current objects as ADDED, then every change after them.
//! - `sendInitialEvents=true` (with `resourceVersionMatch=NotOlderThan` and bookmarks, kube's
//!   streaming list): the current objects as ADDED, a BOOKMARK annotated
//!   `k8s.io/initial-events-end: "true"`, then every change; a resourceVersion the cache has not
//!   reached within 3 s is an ERROR (504 ResourceVersionTooLarge). Without a resourceVersion
//!   the initial objects are read from the store (kube's consistent read), so an object
//!   created before the watch is among them however far the cache is.
//! - Selectors apply to events: an object that stops matching is sent as DELETED, one that
//!   starts matching as ADDED.
//! - `allowWatchBookmarks=true`: the cache's progress (the store's progress notifications, and
//!   its own every `bookmark_interval`, a minute by default) becomes BOOKMARKs, so a watch whose
//!   selector sees nothing still learns recent resourceVersions and can resume after a restart.
//! - A revision older than the watch cache's window: one ERROR event (410 Expired), then the
//!   end; so when the cache itself had to list again after a compaction.
//! - `timeoutSeconds` (default: the server's watch timeout) ends the stream; so does the client,
//!   and so does a client too slow to keep up with the cache's broadcast (it watches again from
//!   its last revision).
//!
//! Events come from [`crate::storage::cache`], one store watch per resource for all clients.
//! The stream runs in the server's task set, so it ends with the server.

use crate::error::ApiError;
use crate::http::request::{Call, Output};
use crate::http::table;
use crate::registry::selector::Selector;
use crate::rest::Api;
use crate::storage::cache::Change;
use crate::storage::cache::Start;
use crate::storage::keys;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The annotation of the bookmark that ends a streaming list's initial events.
pub const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// How long a streaming list waits for the watch cache to reach the revision asked for.
const CATCH_UP: Duration = Duration::from_secs(3);

/// Watch event types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The object appeared (or started matching).
    Added,
    /// The object changed and matches before and after.
    Modified,
    /// The object is gone (or stopped matching).
    Deleted,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Added => "ADDED",
            Kind::Modified => "MODIFIED",
            Kind::Deleted => "DELETED",
        }
    }
}

/// The event a client with selector `sel` sees for one change, if any: `new` None is a
/// delete, `prev` None a create.
///
/// The object is borrowed from the cache's change (shared by every watcher), except for a
/// delete, whose object carries the deletion's revision.
pub fn translate<'a>(revision: i64, new: Option<&'a Value>, prev: Option<&'a Value>, sel: &Selector) -> Option<(Kind, Cow<'a, Value>)> {
    let was = prev.is_some_and(|p| sel.matches(p));
    let Some(obj) = new else {
        let mut obj = prev.filter(|_| was)?.clone();
        crate::registry::meta::set_resource_version(&mut obj, revision);
        return Some((Kind::Deleted, Cow::Owned(obj)));
    };
    let kind = match (prev.is_none(), was, sel.matches(obj)) {
        (_, true, false) => Kind::Deleted,
        (_, false, false) => return None,
        (true, _, true) | (false, false, true) => Kind::Added,
        (false, true, true) => Kind::Modified,
    };
    Some((kind, Cow::Borrowed(obj)))
}

/// One event line, written straight from the object (no copy of it).
fn line(kind: &str, obj: &Value) -> bytes::Bytes {
    format!("{{\"type\":\"{kind}\",\"object\":{obj}}}\n").into()
}

/// What became of a change.
enum Forwarded {
    /// The client got it.
    Sent,
    /// Not the client's (another namespace, or outside its selector).
    Skipped,
    /// The client is gone.
    Gone,
}

struct Stream {
    api: Arc<Api>,
    call: Call,
    sel: Selector,
    /// Key prefix of the watched namespace (or of every namespace).
    scope: String,
    out: mpsc::Sender<bytes::Bytes>,
    first: bool,
}

impl Stream {
    /// Sends one event; false once the client is gone.
    async fn send(&mut self, kind: &str, obj: &Value) -> bool {
        let res = self.call.target.res;
        let bytes = match (self.call.output, kind) {
            (Output::Table, "ADDED" | "MODIFIED" | "DELETED") => {
                let rv = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("");
                let now = self.api.clock.now().as_second();
                let mut t = table::table(res, std::slice::from_ref(obj), rv, None, now);
                if !self.first {
                    t["columnDefinitions"] = json!([]);
                }
                self.first = false;
                line(kind, &t)
            }
            _ => line(kind, obj),
        };
        self.out.send(bytes).await.is_ok()
    }

    async fn expired(&mut self, message: String) {
        let status = ApiError::Gone(message).status();
        let _ = self.send("ERROR", &status).await;
    }

    /// Whether a change to `key` is in this watch's namespace.
    fn in_scope(&self, key: &str) -> bool {
        key.starts_with(&self.scope)
    }

    /// Sends `change` if the client sees it.
    async fn forward(&mut self, change: &Change) -> Forwarded {
        let Change::Event { revision, new, prev } = change else { return Forwarded::Skipped };
        let key = new.as_deref().or(prev.as_ref()).map_or("", |o| o.key.as_str());
        if !self.in_scope(key) {
            return Forwarded::Skipped;
        }
        let strategy = self.call.target.res.strategy;
        let result = if strategy.converts() {
            let new = new.as_ref().map(|o| strategy.from_storage(o.value.clone()));
            let prev = prev.as_ref().map(|o| strategy.from_storage(o.value.clone()));
            translate(*revision, new.as_ref(), prev.as_ref(), &self.sel).map(|(k, o)| (k, Cow::Owned(o.into_owned())))
        } else {
            translate(*revision, new.as_ref().map(|o| &o.value), prev.as_ref().map(|o| &o.value), &self.sel)
        };
        match result {
            Some((kind, obj)) if self.send(kind.name(), &obj).await => Forwarded::Sent,
            Some(_) => Forwarded::Gone,
            None => Forwarded::Skipped,
        }
    }

    /// An object of the cache as the watched resource shows it.
    fn view<'a>(&self, stored: &'a Value) -> Cow<'a, Value> {
        let strategy = self.call.target.res.strategy;
        if strategy.converts() { Cow::Owned(strategy.from_storage(stored.clone())) } else { Cow::Borrowed(stored) }
    }

    async fn bookmark(&mut self, rev: i64, initial_events_end: bool) -> bool {
        let res = self.call.target.res;
        let mut mark = json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": {"resourceVersion": rev.to_string()}});
        if initial_events_end {
            mark["metadata"]["annotations"] = json!({INITIAL_EVENTS_END: "true"});
        }
        self.send("BOOKMARK", &mark).await
    }

    /// Where the stream starts, from the cache (waiting, for a streaming list, until the cache
    /// has caught up with the revision asked for).
    async fn start(&self, from: From) -> Result<Start, ApiError> {
        let cache = self.api.caches.of(self.call.target.res).await?;
        match from {
            From::Now => cache.start(None),
            From::After(r) => cache.start(Some(r)),
            From::Initial { consistent: true, .. } => {
                // No resourceVersion: kube's consistent read. The objects as the store has them
                // now (the cache may not have caught up yet), then the cache's changes after
                // that revision (those it has not reached yet arrive live).
                let (stored, revision) = self.api.store.list_all(&self.scope).await?;
                let initial = stored
                    .iter()
                    .map(|s| Ok(Arc::new(crate::storage::cache::Object { key: s.key.clone(), value: crate::storage::decode(s)? })))
                    .collect::<Result<Vec<_>, ApiError>>()?;
                Ok(Start { initial, ..cache.start(Some(revision))? })
            }
            From::Initial { at_least, consistent: false } => {
                let deadline = tokio::time::Instant::now() + CATCH_UP;
                while cache.revision() < at_least {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ApiError::TooLargeResourceVersion { requested: at_least, current: cache.revision() });
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                cache.start(None)
            }
        }
    }

    async fn run(mut self, from: From) {
        let start = match self.start(from).await {
            Ok(s) => s,
            Err(e) => {
                let _ = self.send("ERROR", &e.status()).await;
                return;
            }
        };
        // `after`: the last revision processed (changes at or before it are not sent again);
        // `told`: the last one the client heard of (an event or a bookmark).
        let mut after = start.revision;
        let mut told = after;
        for obj in &start.initial {
            if !self.in_scope(&obj.key) {
                continue;
            }
            let shown = self.view(&obj.value);
            if self.sel.matches(&shown) && !self.send("ADDED", &shown).await {
                return;
            }
        }
        let bookmarks = self.call.query.get("allowWatchBookmarks").is_some_and(|b| b == "true");
        if matches!(from, From::Initial { .. }) && !self.bookmark(after, true).await {
            return;
        }
        for change in &start.replay {
            match self.forward(change).await {
                Forwarded::Gone => return,
                Forwarded::Sent => told = told.max(change.revision()),
                Forwarded::Skipped => {}
            }
            after = after.max(change.revision());
        }
        let mut live = start.live;
        loop {
            let change = match live.recv().await {
                Ok(c) => c,
                // Too slow for the broadcast: end; the client watches again from its last revision.
                Err(_) => return,
            };
            match change.as_ref() {
                Change::Reset => {
                    self.expired("the watch cache was reset (the store compacted past it); list again".into()).await;
                    return;
                }
                Change::Progress(rev) => {
                    after = after.max(*rev);
                    if bookmarks && *rev > told {
                        told = *rev;
                        if !self.bookmark(told, false).await {
                            return;
                        }
                    }
                }
                Change::Event { revision, .. } if *revision <= after => {}
                Change::Event { revision, .. } => {
                    let rev = *revision;
                    match self.forward(&change).await {
                        Forwarded::Gone => return,
                        Forwarded::Sent => told = rev,
                        Forwarded::Skipped => {}
                    }
                    after = rev;
                }
            }
        }
    }
}

/// Where a watch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum From {
    /// The current objects as ADDED, then what follows (no resourceVersion, or `0`).
    Now,
    /// Every change after this revision.
    After(i64),
    /// `sendInitialEvents=true`: the current objects (at a revision at least this one) as ADDED,
    /// a BOOKMARK marked `k8s.io/initial-events-end`, then what follows: a streaming list.
    Initial {
        /// The revision the initial state must have reached (0: any).
        at_least: i64,
        /// No resourceVersion was given: at least the store's revision when the watch starts.
        consistent: bool,
    },
}

/// The [`From`] of a watch's query (kube's ValidateListOptions for watches).
pub fn from_query(q: &crate::http::request::Query) -> Result<From, ApiError> {
    let get = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let bad = |m: &str| Err(ApiError::BadRequest(m.into()));
    let rv = match get("resourceVersion") {
        None => 0,
        Some(r) => {
            r.parse::<i64>().ok().filter(|r| *r >= 0).ok_or_else(|| ApiError::BadRequest(format!("invalid resourceVersion {r:?}")))?
        }
    };
    let matching = get("resourceVersionMatch");
    match get("sendInitialEvents") {
        Some("true") => {
            if matching != Some("NotOlderThan") {
                return bad("resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan");
            }
            if get("allowWatchBookmarks") != Some("true") {
                return bad("allowWatchBookmarks: Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true");
            }
            Ok(From::Initial { at_least: rv, consistent: get("resourceVersion").is_none() })
        }
        Some("false") | None => {
            if matching.is_some() {
                return bad(
                    "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                );
            }
            Ok(if rv == 0 { From::Now } else { From::After(rv) })
        }
        Some(other) => Err(ApiError::BadRequest(format!("sendInitialEvents: Invalid value: {other:?}"))),
    }
}

/// Serves a watch request.
pub async fn serve(api: Arc<Api>, call: Call) -> Result<Response, ApiError> {
    let sel = crate::rest::list::selector(&call)?;
    let from = from_query(&call.query)?;
    let timeout = match call.query.get("timeoutSeconds").map(|t| t.parse::<u64>()) {
        Some(Ok(t)) if t > 0 => Duration::from_secs(t),
        Some(Err(_)) => return Err(ApiError::BadRequest("timeoutSeconds must be a number".into())),
        _ => api.watch_timeout,
    };
    let (tx, rx) = mpsc::channel(256);
    let scope = keys::prefix(call.target.res, call.target.namespace.as_deref());
    let stream = Stream { api, call, sel, scope, out: tx, first: true };
    let spawner = stream.api.spawner.clone();
    spawner.spawn(async move {
        let _ = tokio::time::timeout(timeout, stream.run(from)).await;
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>));
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-cache, private")], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "d", "labels": labels}})
    }

    fn kind(new: Option<Value>, prev: Option<Value>, sel: &str) -> Option<Kind> {
        let Some(pods) = crate::registry::find("", "v1", "pods") else { panic!("served") };
        let sel = Selector::parse(pods, Some(sel), None).unwrap_or_else(|e| panic!("{e}"));
        translate(9, new.as_ref(), prev.as_ref(), &sel).map(|(k, _)| k)
    }

    #[test]
    fn selectors_turn_changes_into_adds_and_deletes() {
        let web = pod(json!({"app": "web"}));
        let db = pod(json!({"app": "db"}));
        assert_eq!(kind(Some(web.clone()), None, "app=web"), Some(Kind::Added));
        assert_eq!(kind(Some(web.clone()), Some(web.clone()), "app=web"), Some(Kind::Modified));
        assert_eq!(kind(Some(db.clone()), Some(web.clone()), "app=web"), Some(Kind::Deleted));
        assert_eq!(kind(Some(web.clone()), Some(db.clone()), "app=web"), Some(Kind::Added));
        assert_eq!(kind(Some(db.clone()), Some(db.clone()), "app=web"), None);
        let sel = Selector::default();
        let Some((k, obj)) = translate(9, None, Some(&web), &sel) else { panic!("a delete is an event") };
        assert_eq!(k, Kind::Deleted);
        assert_eq!(obj["metadata"]["resourceVersion"], "9", "a DELETED object carries the deletion's revision");
        assert_eq!(kind(None, Some(web), "app=db"), None);
    }
}
