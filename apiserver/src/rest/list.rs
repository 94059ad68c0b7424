//! Lists: one page (`limit`, `continue`) or all of a collection, read at one revision across
//! pages (the continue token carries it; a compacted one is 410 Expired), filtered by label and
//! field selectors; and DELETE of a collection, which deletes what such a list matches.

use crate::error::ApiError;
use crate::http::request::{Call, Output};
use crate::http::{json, table};
use crate::registry::meta;
use crate::registry::selector::Selector;
use crate::rest::Api;
use crate::storage::keys::{key, prefix};
use crate::storage::{Written, decode};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use serde_json::{Value, json};

/// Objects per list page when the client sets no limit (the whole list is still returned).
const PAGE: i64 = 500;

/// DELETE of a collection: every object the selectors match, answered as a list of them.
pub async fn delete_collection(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let res = call.target.res;
    let sel = selector(call)?;
    let mut deleted = Vec::new();
    let mut page = list_page(api, call, &sel, 0, &prefix(res, call.target.namespace.as_deref()), PAGE).await?;
    loop {
        for obj in &page.items {
            let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
            let name = meta::name_of(obj).unwrap_or_default();
            let rv = meta::resource_version_of(obj)?;
            if let Written::At(_) = api.store.delete_if(&key(res, ns, name), rv).await? {
                deleted.push(obj.clone());
            }
        }
        let Some(next) = page.next.clone() else { break };
        page = list_page(api, call, &sel, page.revision, &next, PAGE).await?;
    }
    let list = json!({"kind": format!("{}List", res.kind), "apiVersion": res.api_version(), "metadata": {}, "items": deleted});
    Ok(json(StatusCode::OK, &list))
}

/// Selectors of the call.
pub fn selector(call: &Call) -> Result<Selector, ApiError> {
    Selector::parse(
        call.target.res,
        call.query.get("labelSelector").map(String::as_str),
        call.query.get("fieldSelector").map(String::as_str),
    )
}

/// A page of a list: matching objects, the revision it was read at, and where the next page
/// starts (a store key) if the range goes on.
pub struct ListPage {
    /// Objects that matched, with resourceVersions.
    pub items: Vec<Value>,
    /// The revision every page of this list is read at.
    pub revision: i64,
    /// The first key of the next page.
    pub next: Option<String>,
}

/// Up to `limit` matching objects from `start` (a key under the collection's prefix) at
/// `revision` (0: now).
pub async fn list_page(api: &Api, call: &Call, sel: &Selector, revision: i64, start: &str, limit: i64) -> Result<ListPage, ApiError> {
    let end = keel_etcd::prefix_end(prefix(call.target.res, call.target.namespace.as_deref()).as_bytes());
    let mut items = Vec::new();
    let mut from = start.to_string();
    let mut revision = revision;
    loop {
        let want = limit - items.len() as i64;
        let page = api.store.range(&from, &end, revision, want).await?;
        // The first page pins the revision (the header's); later pages read at it.
        if revision == 0 {
            revision = page.revision;
        }
        let last = page.kvs.last().map(|s| s.key.clone());
        for s in &page.kvs {
            let obj = decode(s)?;
            if sel.matches(&obj) {
                items.push(obj);
            }
        }
        let next = last.map(|k| format!("{k}\0"));
        if !page.more {
            return Ok(ListPage { items, revision, next: None });
        }
        from = next.unwrap_or_default();
        if items.len() as i64 >= limit {
            return Ok(ListPage { items, revision, next: Some(from) });
        }
    }
}

/// A continue token: where the next page starts and the revision the list is read at.
fn continue_token(revision: i64, next_key: &str, collection: &str) -> String {
    let start = next_key.strip_prefix(collection).unwrap_or(next_key);
    let t = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": start});
    base64::engine::general_purpose::STANDARD.encode(t.to_string())
}

fn parse_continue(token: &str, collection: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::BadRequest("continue key is not valid".into());
    let raw = base64::engine::general_purpose::STANDARD.decode(token).map_err(|_| bad())?;
    let t: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = t.get("rv").and_then(Value::as_i64).filter(|r| *r > 0).ok_or_else(bad)?;
    let start = t.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    if start.contains("..") || start.starts_with('/') {
        return Err(bad());
    }
    Ok((rv, format!("{collection}{start}")))
}

/// GET of a collection: one page (`limit`, `continue`), read at one revision across pages.
pub async fn list(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let res = call.target.res;
    let sel = selector(call)?;
    let collection = prefix(res, call.target.namespace.as_deref());
    let limit = match call.query.get("limit").map(|l| l.parse::<i64>()) {
        None => None,
        Some(Ok(l)) if l > 0 => Some(l),
        Some(Ok(_)) => None,
        Some(Err(_)) => return Err(ApiError::BadRequest("limit must be a number".into())),
    };
    let (revision, start) = match call.query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => parse_continue(token, &collection)?,
        None => (0, collection.clone()),
    };
    let mut page = list_page(api, call, &sel, revision, &start, limit.unwrap_or(PAGE)).await?;
    while limit.is_none()
        && let Some(next) = page.next.take()
    {
        let more = list_page(api, call, &sel, page.revision, &next, PAGE).await?;
        page.items.extend(more.items);
        page.next = more.next;
    }
    let token = page.next.as_deref().map(|n| continue_token(page.revision, n, &collection));
    let rv = page.revision.to_string();
    let body = match call.output {
        Output::Table => table::table(res, &page.items, &rv, token.as_deref(), api.clock.now().as_second()),
        Output::Json => {
            let mut meta = json!({"resourceVersion": rv});
            if let Some(t) = &token {
                meta["continue"] = json!(t);
            }
            json!({"kind": format!("{}List", res.kind), "apiVersion": res.api_version(), "metadata": meta, "items": page.items})
        }
    };
    Ok(json(StatusCode::OK, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_stay_in_their_collection() {
        let t = continue_token(42, "/registry/pods/default/p\0", "/registry/pods/default/");
        assert_eq!(parse_continue(&t, "/registry/pods/default/").ok(), Some((42, "/registry/pods/default/p\0".to_string())));
        let evil = base64::engine::general_purpose::STANDARD.encode(r#"{"rv":1,"start":"../secrets/x"}"#);
        assert!(parse_continue(&evil, "/registry/pods/default/").is_err());
        assert!(parse_continue("not base64!", "/registry/pods/").is_err());
    }
}
