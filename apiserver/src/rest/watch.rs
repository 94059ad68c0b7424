//! `?watch=true`: a chunked stream of `{"type": ..., "object": ...}` lines.
//!
//! - `resourceVersion=R` (R > 0): every change after R, in revision order, none twice.
//! - no resourceVersion or `0`: the current objects as ADDED, then every change after them.
//! - Selectors apply to events: an object that stops matching is sent as DELETED, one that
//!   starts matching as ADDED.
//! - `allowWatchBookmarks=true`: the store's progress notifications become BOOKMARKs.
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

    /// Sends `change` if the client sees it; false once the client is gone.
    async fn forward(&mut self, change: &Change) -> bool {
        let Change::Event { revision, new, prev } = change else { return true };
        let key = new.as_deref().or(prev.as_ref()).map_or("", |o| o.key.as_str());
        if !self.in_scope(key) {
            return true;
        }
        match translate(*revision, new.as_ref().map(|o| &o.value), prev.as_ref().map(|o| &o.value), &self.sel) {
            Some((kind, obj)) => self.send(kind.name(), &obj).await,
            None => true,
        }
    }

    async fn run(mut self, from: Option<i64>) {
        let res = self.call.target.res;
        let start = match self.api.caches.of(res).await.and_then(|c| c.start(from)) {
            Ok(s) => s,
            Err(e) => {
                let _ = self.send("ERROR", &e.status()).await;
                return;
            }
        };
        let mut after = start.revision;
        for obj in &start.initial {
            if self.in_scope(&obj.key) && self.sel.matches(&obj.value) && !self.send("ADDED", &obj.value).await {
                return;
            }
        }
        let bookmarks = self.call.query.get("allowWatchBookmarks").is_some_and(|b| b == "true");
        for change in &start.replay {
            if !self.forward(change).await {
                return;
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
                    if bookmarks && *rev > after {
                        after = *rev;
                        let mark =
                            json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": {"resourceVersion": rev.to_string()}});
                        if !self.send("BOOKMARK", &mark).await {
                            return;
                        }
                    }
                }
                Change::Event { revision, .. } if *revision <= after => {}
                Change::Event { revision, .. } => {
                    let rev = *revision;
                    if !self.forward(&change).await {
                        return;
                    }
                    after = rev;
                }
            }
        }
    }
}

/// Serves a watch request.
pub async fn serve(api: Arc<Api>, call: Call) -> Result<Response, ApiError> {
    let sel = crate::rest::list::selector(&call)?;
    let from = match call.query.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(r) => {
            Some(r.parse::<i64>().ok().filter(|r| *r > 0).ok_or_else(|| ApiError::BadRequest(format!("invalid resourceVersion {r:?}")))?)
        }
    };
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
