//! `?watch=true`: a chunked stream of `{"type": ..., "object": ...}` lines.
//!
//! - `resourceVersion=R` (R > 0): every change after R, in revision order, none twice.
//! - no resourceVersion or `0`: the current objects as ADDED, then every change after them.
//! - Selectors apply to events: an object that stops matching is sent as DELETED, one that
//!   starts matching as ADDED.
//! - `allowWatchBookmarks=true`: the store's progress notifications become BOOKMARKs.
//! - A revision the store has compacted away: one ERROR event (410 Expired), then the end.
//! - `timeoutSeconds` (default: the server's watch timeout) ends the stream; so does the client.
//!
//! The store watch resumes from the last revision sent if its connection breaks (another
//! `--etcd-servers` endpoint takes over), so a client sees no gap.
//!
//! Each client watch is its own store watch here; a shared watch cache is not built yet.

use crate::api::{Api, Call, Output};
use crate::crud::{self, decode, list_page, prefix};
use crate::encryption::Codec;
use crate::error::ApiError;
use crate::selector::Selector;
use crate::store::open;
use crate::table;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use keel_proto::mvccpb;
use serde_json::{Value, json};
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

/// The event a client with selector `sel` sees for one store event, if any.
pub fn translate(ev: &mvccpb::Event, sel: &Selector, codec: &Codec) -> Result<Option<(Kind, Value)>, ApiError> {
    let revision = ev.kv.as_ref().map_or(0, |kv| kv.mod_revision);
    let prev = match &ev.prev_kv {
        Some(kv) => Some(decode(&open(codec, kv.clone())?)?),
        None => None,
    };
    let was = prev.as_ref().is_some_and(|p| sel.matches(p));
    if ev.r#type == mvccpb::event::EventType::Delete as i32 {
        let Some(mut obj) = prev.filter(|_| was) else { return Ok(None) };
        crate::meta::set_resource_version(&mut obj, revision);
        return Ok(Some((Kind::Deleted, obj)));
    }
    let Some(kv) = &ev.kv else { return Ok(None) };
    let obj = decode(&open(codec, kv.clone())?)?;
    let is = sel.matches(&obj);
    let created = kv.create_revision == kv.mod_revision;
    Ok(match (created || prev.is_none(), was, is) {
        (_, _, false) if was => Some((Kind::Deleted, obj)),
        (_, _, false) => None,
        (true, _, true) | (false, false, true) => Some((Kind::Added, obj)),
        (false, true, true) => Some((Kind::Modified, obj)),
    })
}

fn line(v: &Value) -> bytes::Bytes {
    let mut s = v.to_string();
    s.push('\n');
    s.into()
}

struct Stream {
    api: Arc<Api>,
    call: Call,
    sel: Selector,
    out: mpsc::Sender<bytes::Bytes>,
    first: bool,
}

impl Stream {
    /// Sends one event; false once the client is gone.
    async fn send(&mut self, kind: &str, obj: Value) -> bool {
        let res = self.call.target.res;
        let obj = match (self.call.output, kind) {
            (Output::Table, "ADDED" | "MODIFIED" | "DELETED") => {
                let rv = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("").to_string();
                let now = self.api.clock.now().as_second();
                let mut t = table::table(res.kind, std::slice::from_ref(&obj), &rv, None, now);
                if !self.first {
                    t["columnDefinitions"] = json!([]);
                }
                self.first = false;
                t
            }
            _ => obj,
        };
        self.out.send(line(&json!({"type": kind, "object": obj}))).await.is_ok()
    }

    async fn expired(&mut self, message: String) {
        let status = ApiError::Gone(message).status();
        let _ = self.send("ERROR", status).await;
    }

    /// Initial state (for resourceVersion 0 / none): ADDED for each current object; the
    /// revision it was read at.
    async fn initial(&mut self) -> Result<Option<i64>, ApiError> {
        let collection = prefix(self.call.target.res, self.call.target.namespace.as_deref());
        let mut page = list_page(&self.api, &self.call, &self.sel, 0, &collection, 500).await?;
        loop {
            for obj in std::mem::take(&mut page.items) {
                if !self.send("ADDED", obj).await {
                    return Ok(None);
                }
            }
            let Some(next) = page.next.take() else { return Ok(Some(page.revision)) };
            page = list_page(&self.api, &self.call, &self.sel, page.revision, &next, 500).await?;
        }
    }

    async fn run(mut self, from: Option<i64>) {
        let res = self.call.target.res;
        let mut after = match from {
            Some(r) => r,
            None => match self.initial().await {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    let _ = self.send("ERROR", e.status()).await;
                    return;
                }
            },
        };
        let bookmarks = self.call.query.get("allowWatchBookmarks").is_some_and(|b| b == "true");
        let collection = prefix(res, self.call.target.namespace.as_deref());
        loop {
            let mut events = match self.api.store.watch(&collection, after + 1).await {
                Ok(s) => s,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            while let Some(msg) = events.next().await {
                let Ok(resp) = msg else { break };
                if resp.compact_revision > 0 {
                    self.expired(format!("too old resource version: {after} ({})", resp.compact_revision)).await;
                    return;
                }
                if resp.canceled {
                    break;
                }
                if resp.events.is_empty() && !resp.created {
                    let rev = resp.header.map_or(after, |h| h.revision);
                    if bookmarks && rev > after {
                        let mark =
                            json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": {"resourceVersion": rev.to_string()}});
                        if !self.send("BOOKMARK", mark).await {
                            return;
                        }
                    }
                    continue;
                }
                for ev in &resp.events {
                    let rev = ev.kv.as_ref().map_or(after, |kv| kv.mod_revision);
                    match translate(ev, &self.sel, self.api.store.codec()) {
                        Ok(Some((kind, obj))) => {
                            if !self.send(kind.name(), obj).await {
                                return;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            let _ = self.send("ERROR", e.status()).await;
                            return;
                        }
                    }
                    after = after.max(rev);
                }
            }
            if self.out.is_closed() {
                return;
            }
            // The store stream broke: resume after the last revision sent.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Serves a watch request.
pub async fn serve(api: Arc<Api>, call: Call) -> Result<Response, ApiError> {
    let sel = crud::selector(&call)?;
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
    let stream = Stream { api, call, sel, out: tx, first: true };
    tokio::spawn(async move {
        let _ = tokio::time::timeout(timeout, stream.run(from)).await;
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>));
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-cache, private")], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_proto::mvccpb::KeyValue;

    fn kv(labels: Value, create: i64, modr: i64) -> KeyValue {
        let obj = json!({"metadata": {"name": "p", "namespace": "d", "labels": labels}});
        KeyValue {
            key: b"/registry/pods/d/p".to_vec().into(),
            value: obj.to_string().into_bytes().into(),
            create_revision: create,
            mod_revision: modr,
            ..Default::default()
        }
    }

    fn put(prev: Option<KeyValue>, now: KeyValue) -> mvccpb::Event {
        mvccpb::Event { r#type: mvccpb::event::EventType::Put as i32, kv: Some(now), prev_kv: prev }
    }

    fn kind(ev: &mvccpb::Event, sel: &str) -> Option<Kind> {
        let sel = Selector::parse("Pod", Some(sel), None).unwrap_or_else(|e| panic!("{e}"));
        translate(ev, &sel, &Codec::plain()).unwrap_or_else(|e| panic!("{e}")).map(|(k, _)| k)
    }

    #[test]
    fn selectors_turn_changes_into_adds_and_deletes() {
        let web = json!({"app": "web"});
        let db = json!({"app": "db"});
        assert_eq!(kind(&put(None, kv(web.clone(), 5, 5)), "app=web"), Some(Kind::Added));
        assert_eq!(kind(&put(Some(kv(web.clone(), 5, 5)), kv(web.clone(), 5, 6)), "app=web"), Some(Kind::Modified));
        assert_eq!(kind(&put(Some(kv(web.clone(), 5, 5)), kv(db.clone(), 5, 6)), "app=web"), Some(Kind::Deleted));
        assert_eq!(kind(&put(Some(kv(db.clone(), 5, 5)), kv(web.clone(), 5, 6)), "app=web"), Some(Kind::Added));
        assert_eq!(kind(&put(Some(kv(db.clone(), 5, 5)), kv(db.clone(), 5, 6)), "app=web"), None);
        let del = mvccpb::Event {
            r#type: mvccpb::event::EventType::Delete as i32,
            kv: Some(KeyValue { mod_revision: 9, ..Default::default() }),
            prev_kv: Some(kv(web, 5, 6)),
        };
        let sel = Selector::default();
        let Ok(Some((k, obj))) = translate(&del, &sel, &Codec::plain()) else { panic!("a delete is an event") };
        assert_eq!(k, Kind::Deleted);
        assert_eq!(obj["metadata"]["resourceVersion"], "9", "a DELETED object carries the deletion's revision");
        assert_eq!(kind(&del, "app=db"), None);
    }
}
