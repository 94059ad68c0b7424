//! A DaemonSet's history as ControllerRevisions (kube's `daemon/update.go` `constructHistory`,
//! `snapshot`, `cleanupHistory`): each distinct pod template is one revision named
//! `<ds>-<hash>` whose `data` is the strategic-merge patch `kubectl rollout undo` applies
//! (`{"spec":{"template":{…,"$patch":"replace"}}}`); the current one gets the highest revision
//! number, and old ones beyond `revisionHistoryLimit` that no live pod uses are deleted.
//! Without the `controllerrevisions` resource the hash comes from the template alone.

use super::DaemonSetController;
use super::eligibility::REVISION_HASH;
use crate::deployment::util::pod_template_hash;
use crate::error::{Error, Result};
use crate::ownership::{self, controller_of};
use crate::shared::BY_CONTROLLER;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// `getPatch`: the revision's data for `ds`'s current template.
pub fn patch(ds: &DaemonSet) -> Value {
    let mut t = serde_json::to_value(ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default()).unwrap_or(json!({}));
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// `Match`: the revision holds `ds`'s current template.
pub fn matches(ds: &DaemonSet, cr: &ControllerRevision) -> bool {
    cr.data.as_ref().is_some_and(|d| d.0 == patch(ds))
}

fn revision_hash(cr: &ControllerRevision) -> Option<String> {
    cr.metadata.labels.as_ref()?.get(REVISION_HASH).cloned()
}

impl DaemonSetController {
    fn cr_api(&self, ns: &str) -> Api<ControllerRevision> {
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    /// The current revision's hash and the old revisions.
    pub(super) async fn construct_history(&self, ds: &DaemonSet) -> Result<(String, Vec<ControllerRevision>)> {
        let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
        let template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let Some(revisions) = &self.revisions else { return Ok((pod_template_hash(&template, collisions), vec![])) };
        let ns = ds.metadata.namespace.clone().unwrap_or_default();
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let (mut current, mut old): (Vec<ControllerRevision>, Vec<ControllerRevision>) = (vec![], vec![]);
        for cr in revisions.by_index(BY_CONTROLLER, &uid) {
            let mut cr = cr.as_ref().clone();
            if revision_hash(&cr).is_none() {
                cr.metadata
                    .labels
                    .get_or_insert_with(Default::default)
                    .insert(REVISION_HASH.into(), cr.metadata.name.clone().unwrap_or_default());
                cr.metadata.managed_fields = None;
                cr = self.cr_api(&ns).replace(cr.metadata.name.as_deref().unwrap_or_default(), &PostParams::default(), &cr).await?;
            }
            if matches(ds, &cr) { current.push(cr) } else { old.push(cr) }
        }
        let next = old.iter().map(|c| c.revision).max().unwrap_or(0) + 1;
        current.sort_by_key(|c| std::cmp::Reverse(c.revision));
        let cur = match current.first() {
            None => self.snapshot(ds, next).await?,
            Some(c) => {
                // Duplicates of the current template: keep the newest (kube's dedupCurHistories
                // relabels their pods first; ours carry the kept one's hash already or will be
                // replaced by the rolling update).
                for dup in current.iter().skip(1) {
                    let _ = self.cr_api(&ns).delete(dup.metadata.name.as_deref().unwrap_or_default(), &DeleteParams::default()).await;
                }
                let mut c = c.clone();
                if c.revision < next {
                    c.revision = next;
                    c.metadata.managed_fields = None;
                    c = self.cr_api(&ns).replace(c.metadata.name.as_deref().unwrap_or_default(), &PostParams::default(), &c).await?;
                }
                c
            }
        };
        Ok((revision_hash(&cur).unwrap_or_else(|| cur.metadata.name.clone().unwrap_or_default()), old))
    }

    async fn snapshot(&self, ds: &DaemonSet, revision: i64) -> Result<ControllerRevision> {
        let ns = ds.metadata.namespace.clone().unwrap_or_default();
        let template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
        let hash = pod_template_hash(&template, collisions);
        let name = format!("{}-{hash}", ds.metadata.name.clone().unwrap_or_default());
        let mut labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
        labels.insert(REVISION_HASH.into(), hash.clone());
        let cr = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(labels),
                annotations: ds.metadata.annotations.clone(),
                owner_references: Some(vec![ownership::controller_ref(ds)]),
                ..Default::default()
            },
            data: Some(RawExtension(patch(ds))),
            revision,
        };
        match self.cr_api(&ns).create(&PostParams::default(), &cr).await {
            Ok(c) => Ok(c),
            Err(e) => {
                let e = Error::from(e);
                if !e.is_already_exists() {
                    return Err(e);
                }
                let existing = self.cr_api(&ns).get(&name).await?;
                let ours = controller_of(&existing.metadata).is_some_and(|r| Some(&r.uid) == ds.metadata.uid.as_ref());
                if ours && matches(ds, &existing) {
                    return Ok(existing);
                }
                // A hash collision: bump collisionCount so the next sync picks another name.
                let api: Api<DaemonSet> = Api::namespaced(self.ctx.client.clone(), &ns);
                let mut fresh = api.get(ds.metadata.name.as_deref().unwrap_or_default()).await?;
                if fresh.status.as_ref().and_then(|s| s.collision_count) == collisions {
                    let st = fresh.status.get_or_insert_with(Default::default);
                    st.collision_count = Some(collisions.unwrap_or(0) + 1);
                    fresh.metadata.managed_fields = None;
                    let _ = api.replace_status(ds.metadata.name.as_deref().unwrap_or_default(), &PostParams::default(), &fresh).await;
                }
                Err(e)
            }
        }
    }

    /// `cleanupHistory`: deletes the oldest revisions beyond the limit that no pod uses.
    pub(super) async fn cleanup_history(
        &self,
        ds: &DaemonSet,
        mut old: Vec<ControllerRevision>,
        live_hashes: &BTreeSet<String>,
    ) -> Result<()> {
        let limit = ds.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10).max(0) as usize;
        let mut to_kill = old.len().saturating_sub(limit);
        if to_kill == 0 {
            return Ok(());
        }
        old.sort_by_key(|c| c.revision);
        let ns = ds.metadata.namespace.clone().unwrap_or_default();
        for cr in old {
            if to_kill == 0 {
                break;
            }
            if revision_hash(&cr).is_some_and(|h| live_hashes.contains(&h)) {
                continue;
            }
            if let Err(e) = self.cr_api(&ns).delete(cr.metadata.name.as_deref().unwrap_or_default(), &DeleteParams::default()).await {
                let e = Error::from(e);
                if !e.is_not_found() {
                    return Err(e);
                }
            }
            to_kill -= 1;
        }
        Ok(())
    }
}
