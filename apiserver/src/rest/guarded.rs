//! The one loop every change of a stored object goes through (kube-apiserver's
//! `GuaranteedUpdate`): read the object, compute the new one from it, write it guarded by the
//! revision it was read at; if someone wrote in between, read again and recompute, up to
//! [`RETRIES`] times, then 409 Conflict. Preconditions (a resourceVersion or uid the client
//! sent) are the closure's to check: it sees what is stored and answers Conflict itself.
//!
//! The write is skipped when nothing changed, and becomes a delete when the object was being
//! deleted without grace (`deletionGracePeriodSeconds` absent or 0) and its last finalizer is
//! gone, as kube-apiserver's `shouldDeleteDuringUpdate`. A pod in its grace period is never
//! deleted by an update: its kubelet deletes it. With `dryRun=All` nothing is written: the
//! answer is what would have been. A Service's IP and node port allocations are taken and
//! freed in the same Txn as its write ([`crate::rest::services`]).

use crate::error::ApiError;
use crate::http::request::Call;
use crate::registry::meta;
use crate::rest::{Api, conflict, quota, services};
use crate::storage::{self, Stored, Written};
use serde_json::Value;

/// Attempts before a change that keeps losing races is answered with 409.
pub const RETRIES: usize = 8;

/// What a guarded update ended with.
#[derive(Debug)]
pub enum Updated {
    /// The object as written (with its new resourceVersion), or unchanged.
    Stored(Value),
    /// The change removed the last finalizer of an object being deleted: it is gone.
    Deleted(Value),
}

impl Updated {
    /// The object, written or deleted.
    pub fn object(&self) -> &Value {
        match self {
            Updated::Stored(v) | Updated::Deleted(v) => v,
        }
    }
}

fn deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())
}

fn has_finalizers(v: &Value) -> bool {
    v.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty())
}

/// Whether writing `new` over `old` deletes the object instead (see the module doc; a
/// namespace also waits for its `spec.finalizers`, kube's ShouldDeleteNamespaceDuringUpdate).
pub fn deletes(old: &Value, new: &Value) -> bool {
    let grace = old.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0);
    let spec_finalizers = new.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    deleting(old) && !has_finalizers(new) && !spec_finalizers && grace == 0
}

/// What a change does to the stored object.
#[derive(Debug)]
pub enum Action {
    /// Store this object instead (or delete it, see [`deletes`]).
    Write(Value),
    /// Delete the object; this is what the answer shows.
    Delete(Value),
}

/// Does `action` (on the object as the call's resource shows it) to `current`, guarded by its
/// revision; None when the guard failed. The write keeps the key's lease (an updated Event
/// still expires).
pub async fn perform(api: &Api, call: &Call, key: &str, current: &Stored, action: Action) -> Result<Option<Updated>, ApiError> {
    let strategy = call.target.res.strategy;
    let mut new = match action {
        Action::Write(new) => new,
        Action::Delete(mut shown) if call.dry_run => {
            meta::set_resource_version(&mut shown, current.mod_revision);
            return Ok(Some(Updated::Deleted(shown)));
        }
        Action::Delete(mut shown) => {
            let stored = storage::decode(current)?;
            let claims = if services::allocates(call) { services::release(call, &stored) } else { Default::default() };
            let given_back = quota::release(api, call, &stored, None).await?;
            return Ok(match api.store.write_with(key, None, current.mod_revision, &[], &claims.free, &given_back).await? {
                Written::At(_) => {
                    meta::set_resource_version(&mut shown, current.mod_revision);
                    Some(Updated::Deleted(shown))
                }
                Written::Guard(_) => None,
            });
        }
    };
    let old = storage::decode(current)?;
    quota::fill_status(api, call, &mut new).await?;
    let claims = services::plan(api, call, &mut new, Some(&old)).await?;
    let stored = strategy.to_storage(new.clone())?;
    let bytes = meta::for_store(&stored);
    if bytes == current.value.as_ref() {
        meta::set_resource_version(&mut new, current.mod_revision);
        return Ok(Some(Updated::Stored(new)));
    }
    if call.dry_run {
        // Everything was computed and checked; nothing is written.
        meta::set_resource_version(&mut new, current.mod_revision);
        return Ok(Some(if deletes(&old, &stored) { Updated::Deleted(new) } else { Updated::Stored(new) }));
    }
    if deletes(&old, &stored) {
        let freed = services::release(call, &old);
        let given_back = quota::release(api, call, &old, None).await?;
        return Ok(match api.store.write_with(key, None, current.mod_revision, &[], &freed.free, &given_back).await? {
            Written::At(rev) => {
                meta::set_resource_version(&mut new, rev);
                Some(Updated::Deleted(new))
            }
            Written::Guard(_) => None,
        });
    }
    let given_back = quota::release(api, call, &old, Some(&new)).await?;
    match api
        .store
        .write_with(key, Some((bytes, current.lease)), current.mod_revision, &services::side_keys(&claims), &claims.free, &given_back)
        .await?
    {
        Written::At(rev) => {
            meta::set_resource_version(&mut new, rev);
            Ok(Some(Updated::Stored(new)))
        }
        Written::Guard(_) => Ok(None),
    }
}

/// Does `change(stored, old)` to the object the call names (see the module doc); 404 when it
/// does not exist.
pub async fn guarded<F>(api: &Api, call: &Call, mut change: F) -> Result<Updated, ApiError>
where
    F: FnMut(&Stored, &Value) -> Result<Action, ApiError>,
{
    for _ in 0..RETRIES {
        let (key, current) = api.read(call).await?;
        let old = api.view(call, &current)?;
        let action = change(&current, &old)?;
        if let Some(done) = perform(api, call, &key, &current, action).await? {
            return Ok(done);
        }
    }
    Err(conflict(call))
}

/// Changes the object the call names to `change(stored, old)`: update, patch, apply, status,
/// scale and binding all write through here.
pub async fn guarded_update<F>(api: &Api, call: &Call, mut change: F) -> Result<Updated, ApiError>
where
    F: FnMut(&Stored, &Value) -> Result<Value, ApiError>,
{
    guarded(api, call, |s, old| change(s, old).map(Action::Write)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_an_update_that_removes_the_last_finalizer_of_an_object_deleted_without_grace_deletes_it() {
        let marked = |grace: Option<i64>, finalizers: Value| {
            let mut m = json!({"name": "x", "deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": finalizers});
            if let Some(g) = grace {
                m["deletionGracePeriodSeconds"] = json!(g);
            }
            json!({ "metadata": m })
        };
        let without = json!({"metadata": {"name": "x"}});
        let table = [
            (marked(Some(0), json!(["f"])), without.clone(), true),
            (marked(None, json!(["f"])), without.clone(), true),
            (marked(Some(0), json!(["f", "g"])), marked(Some(0), json!(["g"])), false),
            (marked(Some(30), json!([])), without.clone(), false),
            (json!({"metadata": {"name": "x", "finalizers": ["f"]}}), without, false),
        ];
        for (old, new, want) in table {
            assert_eq!(deletes(&old, &new), want, "{old} -> {new}");
        }
    }
}
