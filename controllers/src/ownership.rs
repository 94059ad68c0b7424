//! ControllerRefs (`ownerReferences` with `controller: true`) and how a controller claims the
//! objects its selector matches (client-go's `BaseControllerRefManager.ClaimObject`):
//!
//! | object's controllerRef | selector matches | controller being deleted | decision |
//! |---|---|---|---|
//! | someone else | any | any | [`Claim::Ignore`] |
//! | us | yes | any | [`Claim::Own`] |
//! | us | no | no | [`Claim::Release`] |
//! | us | no | yes | [`Claim::Ignore`] |
//! | none | yes | no (and object not being deleted, same namespace) | [`Claim::Adopt`] |
//! | none | otherwise | | [`Claim::Ignore`] |
//!
//! Adoption and release are strategic-merge patches of `ownerReferences` (merge key `uid`)
//! carrying the object's uid as a precondition, as kube's controllers send them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use serde_json::{Value, json};

/// The controllerRef of `meta`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.as_ref()?.iter().find(|r| r.controller == Some(true))
}

/// True when `meta`'s controllerRef names `uid`.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == uid)
}

/// A controllerRef to `owner` (`controller` and `blockOwnerDeletion` true).
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// What a controller does with one object its namespace holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Already ours and matching.
    Own,
    /// An orphan that matches: set our controllerRef.
    Adopt,
    /// Ours but no longer matching: remove our controllerRef.
    Release,
    /// Not ours to touch.
    Ignore,
}

/// Decides [`Claim`] for `obj` by controller `owner` (see the module table).
pub fn claim(owner: &ObjectMeta, obj: &ObjectMeta, matches: bool) -> Claim {
    let owner_uid = owner.uid.as_deref().unwrap_or_default();
    let owner_deleting = owner.deletion_timestamp.is_some();
    match controller_of(obj) {
        Some(r) if r.uid != owner_uid => Claim::Ignore,
        Some(_) if matches => Claim::Own,
        Some(_) if owner_deleting => Claim::Ignore,
        Some(_) => Claim::Release,
        None => {
            if owner_deleting || !matches || obj.deletion_timestamp.is_some() {
                return Claim::Ignore;
            }
            if owner.namespace.as_deref().is_some_and(|ns| !ns.is_empty()) && owner.namespace != obj.namespace {
                return Claim::Ignore;
            }
            Claim::Adopt
        }
    }
}

/// The strategic-merge patch that makes `owner` the controller of the object with `obj_uid`.
pub fn adopt_patch(owner: &OwnerReference, obj_uid: &str) -> Value {
    json!({"metadata": {"ownerReferences": [owner], "uid": obj_uid}})
}

/// The strategic-merge patch that removes the reference to `owner_uid` from the object `obj_uid`.
pub fn release_patch(owner_uid: &str, obj_uid: &str) -> Value {
    json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": owner_uid}], "uid": obj_uid}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn meta(uid: &str, ns: &str, controller: Option<&str>, deleting: bool) -> ObjectMeta {
        ObjectMeta {
            uid: Some(uid.into()),
            namespace: Some(ns.into()),
            owner_references: controller.map(|c| {
                vec![OwnerReference {
                    uid: c.into(),
                    controller: Some(true),
                    name: "o".into(),
                    kind: "K".into(),
                    api_version: "v1".into(),
                    ..Default::default()
                }]
            }),
            deletion_timestamp: deleting.then_some(Time(jiff::Timestamp::UNIX_EPOCH)),
            ..Default::default()
        }
    }

    #[test]
    fn claim_follows_client_gos_controller_ref_manager() {
        let rs = meta("rs", "ns", None, false);
        let rs_deleting = meta("rs", "ns", None, true);
        let rows = [
            ("other controller", &rs, meta("p", "ns", Some("x"), false), true, Claim::Ignore),
            ("ours, matching", &rs, meta("p", "ns", Some("rs"), false), true, Claim::Own),
            ("ours, matching, owner deleting", &rs_deleting, meta("p", "ns", Some("rs"), false), true, Claim::Own),
            ("ours, not matching", &rs, meta("p", "ns", Some("rs"), false), false, Claim::Release),
            ("ours, not matching, owner deleting", &rs_deleting, meta("p", "ns", Some("rs"), false), false, Claim::Ignore),
            ("orphan, matching", &rs, meta("p", "ns", None, false), true, Claim::Adopt),
            ("orphan, not matching", &rs, meta("p", "ns", None, false), false, Claim::Ignore),
            ("orphan being deleted", &rs, meta("p", "ns", None, true), true, Claim::Ignore),
            ("orphan, owner deleting", &rs_deleting, meta("p", "ns", None, false), true, Claim::Ignore),
            ("orphan in another namespace", &rs, meta("p", "other", None, false), true, Claim::Ignore),
        ];
        for (what, owner, obj, matches, want) in rows {
            assert_eq!(claim(owner, &obj, matches), want, "{what}");
        }
    }
}
