//! Lists: one page (`limit`, `continue`) or all of a collection, read at one revision across
//! pages (the continue token carries it; a compacted one is 410 Expired), filtered by label and
//! field selectors; and DELETE of a collection, which deletes what such a list matches.

use crate::error::ApiError;
use crate::http::request::{Call, Output, Target};
use crate::http::{json, table};
use crate::registry::meta;
use crate::registry::selector::Selector;
use crate::rest::Api;
use crate::storage::keys::prefix;
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use serde_json::{Value, json};

/// Objects per list page when the client sets no limit (the whole list is still returned).
const PAGE: i64 = 500;

/// DELETE of a collection: every object the selectors match, each deleted as a DELETE of it
/// would be ([`crate::rest::deletion`]: gracefully, or held by finalizers), answered as a list
/// of them. One that changed or went meanwhile is left to its writer.
pub async fn delete_collection(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let res = call.target.res;
    let sel = selector(call)?;
    let req = crate::rest::delete::Request::of(call)?;
    let mut deleted = Vec::new();
    let mut page = list_page(api, call, &sel, 0, &prefix(res, call.target.namespace.as_deref()), PAGE).await?;
    loop {
        for obj in &page.items {
            let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_string);
            let name = meta::name_of(obj).map(str::to_string);
            let rv = meta::resource_version_of(obj)?;
            let one = Call { target: Target { namespace: ns, name, ..call.target.clone() }, ..call.clone() };
            let one_req = crate::rest::delete::Request { preconditions: (Some(rv), None), ..req.clone() };
            match crate::rest::delete::delete_one(api, &one, &one_req).await {
                Ok(done) => deleted.push(done.object().clone()),
                Err(ApiError::NotFound { .. } | ApiError::Refused { .. } | ApiError::Conflict { .. }) => {}
                Err(e) => return Err(e),
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
            let obj = api.view(call, s)?;
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

/// Where a list reads (kube's `resourceVersion` and `resourceVersionMatch` semantics).
#[derive(Debug, PartialEq, Eq)]
pub enum ReadAt {
    /// The latest revision: no resourceVersion, or `0` (any, as the watch cache would serve).
    Latest,
    /// The latest revision, which must be at least this one (`NotOlderThan`, or a resourceVersion
    /// without a limit); a newer one than the store has is 504 `ResourceVersionTooLarge`.
    NotOlderThan(i64),
    /// Exactly this revision (`Exact`, or a resourceVersion with a limit); a compacted one is 410.
    Exact(i64),
    /// A continue token's revision, from its start key.
    Continue(i64, String),
}

fn parse_rv(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>().ok().filter(|r| *r >= 0).ok_or_else(|| ApiError::BadRequest(format!("invalid resourceVersion {s:?}")))
}

/// The [`ReadAt`] of a list's query (kube's ValidateListOptions and its storage's rules).
pub fn read_at(query: &crate::http::request::Query, limit: Option<i64>, collection: &str) -> Result<ReadAt, ApiError> {
    let get = |k: &str| query.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let bad = |m: &str| Err(ApiError::BadRequest(m.into()));
    let (rv, matching, token) = (get("resourceVersion"), get("resourceVersionMatch"), get("continue"));
    if let Some(token) = token {
        if matching.is_some() {
            return bad("resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden when continue is provided");
        }
        if rv.is_some_and(|r| r != "0") {
            return bad("specifying resource version is not allowed when using continue");
        }
        let (r, start) = parse_continue(token, collection)?;
        return Ok(ReadAt::Continue(r, start));
    }
    match (rv, matching) {
        (None, Some(_)) => bad("resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"),
        (None, None) => Ok(ReadAt::Latest),
        (Some(r), Some("Exact")) => match parse_rv(r)? {
            0 => bad("resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\""),
            n => Ok(ReadAt::Exact(n)),
        },
        (Some(r), Some("NotOlderThan")) => Ok(match parse_rv(r)? {
            0 => ReadAt::Latest,
            n => ReadAt::NotOlderThan(n),
        }),
        (Some(_), Some(other)) => Err(ApiError::BadRequest(format!(
            "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
        ))),
        (Some(r), None) => Ok(match (parse_rv(r)?, limit) {
            (0, _) => ReadAt::Latest,
            (n, Some(_)) => ReadAt::Exact(n),
            (n, None) => ReadAt::NotOlderThan(n),
        }),
    }
}

/// GET of a collection: one page (`limit`, `continue`), read at one revision across pages,
/// where `resourceVersion` and `resourceVersionMatch` ask ([`ReadAt`]).
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
    let at = read_at(&call.query, limit, &collection)?;
    let (revision, start) = match &at {
        ReadAt::Continue(r, start) => (*r, start.clone()),
        ReadAt::Exact(r) => (*r, collection.clone()),
        ReadAt::Latest | ReadAt::NotOlderThan(_) => (0, collection.clone()),
    };
    let first = list_page(api, call, &sel, revision, &start, limit.unwrap_or(PAGE)).await;
    let mut page = match (first, &at) {
        (Err(ApiError::Gone(_)), ReadAt::Exact(r)) => {
            return Err(ApiError::Gone(format!("The resourceVersion for the provided list is too old: {r} has been compacted")));
        }
        (Err(ApiError::TooLargeResourceVersion { .. }), ReadAt::Exact(r)) => {
            return Err(ApiError::TooLargeResourceVersion { requested: *r, current: api.store.revision().await? });
        }
        (page, _) => page?,
    };
    if let ReadAt::NotOlderThan(r) = at
        && page.revision < r
    {
        return Err(ApiError::TooLargeResourceVersion { requested: r, current: page.revision });
    }
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

    #[test]
    fn resource_version_and_match_pick_where_a_list_reads() {
        let q = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<crate::http::request::Query>();
        let at = |pairs: &[(&str, &str)], limit: Option<i64>| read_at(&q(pairs), limit, "/registry/pods/").map_err(|e| e.to_string());
        assert_eq!(at(&[], None), Ok(ReadAt::Latest));
        assert_eq!(at(&[("resourceVersion", "0")], Some(5)), Ok(ReadAt::Latest));
        assert_eq!(at(&[("resourceVersion", "7")], None), Ok(ReadAt::NotOlderThan(7)));
        assert_eq!(at(&[("resourceVersion", "7")], Some(5)), Ok(ReadAt::Exact(7)));
        assert_eq!(at(&[("resourceVersion", "7"), ("resourceVersionMatch", "Exact")], None), Ok(ReadAt::Exact(7)));
        assert_eq!(at(&[("resourceVersion", "7"), ("resourceVersionMatch", "NotOlderThan")], Some(5)), Ok(ReadAt::NotOlderThan(7)));
        for bad in [
            vec![("resourceVersionMatch", "Exact")],
            vec![("resourceVersion", "0"), ("resourceVersionMatch", "Exact")],
            vec![("resourceVersion", "7"), ("resourceVersionMatch", "Sometimes")],
            vec![("resourceVersion", "x")],
        ] {
            assert!(at(&bad, None).is_err(), "{bad:?}");
        }
        let token = continue_token(42, "/registry/pods/d/p\0", "/registry/pods/");
        assert!(matches!(at(&[("continue", &token)], Some(1)), Ok(ReadAt::Continue(42, _))));
        assert!(at(&[("continue", &token), ("resourceVersion", "9")], Some(1)).is_err());
    }
}
