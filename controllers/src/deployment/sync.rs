//! The Deployment controller's async shell: reads the cache, asks [`super::rollout`] and
//! [`super::status`] what to do, writes it (ReplicaSet updates, Deployment status) and
//! records events. One step per sync; the ReplicaSets' status changes wake the next.

use super::DeploymentController;
use super::rollout::{self, active};
use super::status::{self, Recheck};
use super::util::{self, POD_TEMPLATE_HASH, REVISION};
use crate::error::{Error, Result};
use crate::events::Kind;
use crate::key::ObjectKey;
use crate::ownership::{self, Claim, controller_of};
use crate::runner::Action;
use crate::selector::Sel;
use crate::shared::{BY_CONTROLLER, ORPHANS};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Duration;

/// The Deployment being synced and its ReplicaSets, updated in place as writes succeed.
struct Work {
    d: Deployment,
    rss: Vec<ReplicaSet>,
}

fn rs_name(rs: &ReplicaSet) -> String {
    rs.metadata.name.clone().unwrap_or_default()
}

fn conflict(key: &str, e: kube::Error) -> Error {
    let e = Error::from(e);
    if e.is_conflict() { Error::Conflict(key.to_string()) } else { e }
}

impl DeploymentController {
    fn now(&self) -> Timestamp {
        let t = self.ctx.clock.now();
        Timestamp::from_second(t.as_second()).unwrap_or(t)
    }

    fn d_api(&self, ns: &str) -> Api<Deployment> {
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    fn rs_api(&self, ns: &str) -> Api<ReplicaSet> {
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    pub(super) async fn sync(&self, key: &ObjectKey) -> Result<Action> {
        let Some(cached) = self.deployments.get(key) else { return Ok(Action::Done) };
        let mut d = cached.as_ref().clone();
        d.metadata.managed_fields = None;
        let spec = d.spec.clone().unwrap_or_default();
        let sel = match Sel::parse(&spec.selector) {
            Ok(s) if s.is_empty() => {
                self.recorder.record(
                    &d,
                    Kind::Warning,
                    "SelectingAll",
                    "This deployment is selecting all pods. A non-empty selector is required.",
                );
                if d.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0) < d.metadata.generation.unwrap_or(0) {
                    let mut s = d.status.clone().unwrap_or_default();
                    s.observed_generation = d.metadata.generation;
                    self.write_status(&mut d, s).await?;
                }
                return Ok(Action::Done);
            }
            Ok(s) => s,
            Err(why) => {
                self.recorder.record(&d, Kind::Warning, "InvalidSelector", format!("invalid selector: {why}"));
                return Ok(Action::Done);
            }
        };
        let rss = self.claim(&d, &sel).await?;
        let mut w = Work { d, rss };
        if w.d.metadata.deletion_timestamp.is_some() {
            let (new, _) = self.all_and_sync_revision(&mut w, false).await?;
            return self.sync_status(&mut w, new).await;
        }
        if let Some(s) = status::paused_update(&w.d, self.now()) {
            self.write_status(&mut w.d, s).await?;
        }
        let paused = w.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused || self.is_scaling_event(&mut w).await? {
            return self.sync_scale(&mut w, paused).await;
        }
        if util::is_rolling(&w.d) { self.rolling(&mut w).await } else { self.recreate(&mut w).await }
    }

    /// `getReplicaSetsForDeployment`: adopts and releases, returns the owned ReplicaSets.
    async fn claim(&self, d: &Deployment, sel: &Sel) -> Result<Vec<ReplicaSet>> {
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let mut candidates = self.rss.by_index(BY_CONTROLLER, &uid);
        candidates.extend(self.rss.by_index(ORPHANS, &ns));
        let owner = ownership::controller_ref(d);
        let api = self.rs_api(&ns);
        let mut owned = Vec::new();
        let mut may_adopt: Option<bool> = None;
        for rs in candidates {
            let matches = sel.matches(rs.metadata.labels.as_ref());
            let name = rs_name(&rs);
            let rs_uid = rs.metadata.uid.clone().unwrap_or_default();
            match ownership::claim(&d.metadata, &rs.metadata, matches) {
                Claim::Own => owned.push(rs.as_ref().clone()),
                Claim::Ignore => {}
                Claim::Release => {
                    let p = Patch::Strategic(ownership::release_patch(&uid, &rs_uid));
                    if let Err(e) = api.patch(&name, &PatchParams::default(), &p).await {
                        let e = Error::from(e);
                        if !e.is_not_found() {
                            return Err(e);
                        }
                    }
                }
                Claim::Adopt => {
                    if may_adopt.is_none() {
                        let fresh = self.d_api(&ns).get(d.metadata.name.as_deref().unwrap_or_default()).await?;
                        may_adopt = Some(fresh.metadata.uid == d.metadata.uid && fresh.metadata.deletion_timestamp.is_none());
                    }
                    if may_adopt != Some(true) {
                        continue;
                    }
                    let p = Patch::Strategic(ownership::adopt_patch(&owner, &rs_uid));
                    match api.patch(&name, &PatchParams::default(), &p).await {
                        Ok(adopted) => owned.push(adopted),
                        Err(e) => {
                            let e = Error::from(e);
                            if !e.is_not_found() {
                                return Err(e);
                            }
                        }
                    }
                }
            }
        }
        Ok(owned)
    }

    /// Writes `s` as the Deployment's status (PUT /status with its resourceVersion).
    async fn write_status(&self, d: &mut Deployment, s: DeploymentStatus) -> Result<()> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let name = d.metadata.name.clone().unwrap_or_default();
        d.status = Some(s);
        let updated = self.d_api(&ns).replace_status(&name, &PostParams::default(), d).await.map_err(|e| conflict(&name, e))?;
        *d = updated;
        d.metadata.managed_fields = None;
        Ok(())
    }

    /// Sets the Deployment's revision annotation. kube writes it with the status (its
    /// deployments/status keeps annotations); a metadata patch works whatever /status keeps.
    async fn write_revision(&self, d: &mut Deployment, revision: &str) -> Result<()> {
        if d.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).map(String::as_str) == Some(revision) {
            return Ok(());
        }
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let name = d.metadata.name.clone().unwrap_or_default();
        let patch = json!({"metadata": {"resourceVersion": d.metadata.resource_version, "annotations": {REVISION: revision}}});
        let updated = self.d_api(&ns).patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await.map_err(|e| conflict(&name, e))?;
        *d = updated;
        d.metadata.managed_fields = None;
        Ok(())
    }

    fn replace_rs(w: &mut Work, rs: ReplicaSet) {
        let name = rs_name(&rs);
        match w.rss.iter_mut().find(|r| rs_name(r) == name) {
            Some(slot) => *slot = rs,
            None => w.rss.push(rs),
        }
    }

    /// `getAllReplicaSetsAndSyncRevision`: (new ReplicaSet, old ones), with the new one's
    /// revision and annotations and the Deployment's revision brought up to date; creates the
    /// new ReplicaSet when `create`.
    async fn all_and_sync_revision(&self, w: &mut Work, create: bool) -> Result<(Option<String>, Vec<String>)> {
        let template = w.d.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let mut by_age: Vec<&ReplicaSet> = w.rss.iter().collect();
        rollout::sort_by_age(&mut by_age);
        let new = by_age
            .iter()
            .find(|r| r.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| util::equal_ignore_hash(t, &template)))
            .map(|r| rs_name(r));
        let old: Vec<String> = by_age.iter().map(|r| rs_name(r)).filter(|n| Some(n) != new.as_ref()).collect();
        let new_revision = util::max_revision(w.rss.iter().filter(|r| Some(rs_name(r)) != new)) + 1;
        let ns = w.d.metadata.namespace.clone().unwrap_or_default();
        let min_ready = w.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if let Some(name) = &new {
            let Some(existing) = w.rss.iter().find(|r| &rs_name(r) == name).cloned() else { return Ok((new, old)) };
            let mut copy = existing.clone();
            let ann = copy.metadata.annotations.get_or_insert_with(Default::default);
            let ann_changed = util::set_new_rs_annotations(&w.d, ann, new_revision, true);
            let spec = copy.spec.get_or_insert_with(Default::default);
            let min_ready_changed = spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0);
            if ann_changed || min_ready_changed {
                spec.min_ready_seconds = min_ready;
                copy.metadata.managed_fields = None;
                let updated = self.rs_api(&ns).replace(name, &PostParams::default(), &copy).await.map_err(|e| conflict(name, e))?;
                Self::replace_rs(w, updated);
                return Ok((new, old));
            }
            let rev = copy.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).cloned().unwrap_or_default();
            self.write_revision(&mut w.d, &rev).await?;
            if status::progress_deadline(&w.d).is_some()
                && status::condition(&w.d.status.clone().unwrap_or_default(), status::PROGRESSING).is_none()
            {
                let mut s = w.d.status.clone().unwrap_or_default();
                let msg = format!("Found new replica set \"{name}\"");
                status::set_condition(&mut s, status::new_condition(status::PROGRESSING, "True", status::FOUND_NEW_RS, msg, self.now()));
                self.write_status(&mut w.d, s).await?;
            }
            return Ok((new, old));
        }
        if !create {
            return Ok((None, old));
        }
        self.create_new_rs(w, &template, new_revision, old).await
    }

    async fn create_new_rs(
        &self,
        w: &mut Work,
        template: &k8s_openapi::api::core::v1::PodTemplateSpec,
        new_revision: i64,
        old: Vec<String>,
    ) -> Result<(Option<String>, Vec<String>)> {
        let d = &w.d;
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let collisions = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = util::pod_template_hash(template, collisions);
        let mut t = template.clone();
        t.metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        selector.match_labels.get_or_insert_with(Default::default).insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let name = format!("{}-{hash}", d.metadata.name.clone().unwrap_or_default());
        let old_refs: Vec<&ReplicaSet> = w.rss.iter().collect();
        let replicas = if self.cfg.bug_ignore_max_surge && util::is_rolling(d) {
            util::replicas(d)
        } else {
            util::new_rs_new_replicas(d, rollout::total_replicas(&old_refs), 0)
        };
        let mut annotations = Default::default();
        util::set_new_rs_annotations(d, &mut annotations, new_revision, false);
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                owner_references: Some(vec![ownership::controller_ref(d)]),
                labels: t.metadata.as_ref().and_then(|m| m.labels.clone()),
                annotations: Some(annotations),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: d.spec.as_ref().and_then(|s| s.min_ready_seconds),
                selector,
                template: Some(t),
            }),
            status: None,
        };
        let mut already_exists = false;
        let created = match self.rs_api(&ns).create(&PostParams::default(), &rs).await {
            Ok(c) => c,
            Err(e) => {
                let e = Error::from(e);
                if e.is_already_exists() {
                    let existing = self.rs_api(&ns).get(&name).await?;
                    let ours = controller_of(&existing.metadata).is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
                    let same =
                        existing.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|et| util::equal_ignore_hash(et, template));
                    if !(ours && same) {
                        // A hash collision: bump collisionCount so the next sync picks another name.
                        let mut s = w.d.status.clone().unwrap_or_default();
                        s.collision_count = Some(s.collision_count.unwrap_or(0) + 1);
                        self.write_status(&mut w.d, s).await?;
                        return Err(e);
                    }
                    already_exists = true;
                    existing
                } else if e.is_namespace_terminating() {
                    return Err(e);
                } else {
                    let msg = format!("Failed to create new replica set \"{name}\": {e}");
                    if status::progress_deadline(&w.d).is_some() {
                        let mut s = w.d.status.clone().unwrap_or_default();
                        status::set_condition(
                            &mut s,
                            status::new_condition(status::PROGRESSING, "False", status::FAILED_RS_CREATE, msg.clone(), self.now()),
                        );
                        let _ = self.write_status(&mut w.d, s).await;
                    }
                    self.recorder.record(&w.d, Kind::Warning, status::FAILED_RS_CREATE, msg);
                    return Err(e);
                }
            }
        };
        if !already_exists && replicas > 0 {
            self.recorder.record(&w.d, Kind::Normal, "ScalingReplicaSet", format!("Scaled up replica set {name} from 0 to {replicas}"));
        }
        Self::replace_rs(w, created);
        self.write_revision(&mut w.d, &new_revision.to_string()).await?;
        if !already_exists && status::progress_deadline(&w.d).is_some() {
            let mut s = w.d.status.clone().unwrap_or_default();
            let msg = format!("Created new replica set \"{name}\"");
            status::set_condition(&mut s, status::new_condition(status::PROGRESSING, "True", status::NEW_RS_CREATED, msg, self.now()));
            self.write_status(&mut w.d, s).await?;
        }
        Ok((Some(name), old))
    }

    fn find<'a>(w: &'a Work, name: &str) -> Option<&'a ReplicaSet> {
        w.rss.iter().find(|r| rs_name(r) == name)
    }

    /// `scaleReplicaSet`: sets the size and the desired/max annotations; true when the size
    /// changed.
    async fn scale(&self, w: &mut Work, name: &str, size: i32) -> Result<bool> {
        let Some(rs) = Self::find(w, name).cloned() else { return Ok(false) };
        let want = util::replicas(&w.d);
        let max = want + util::max_surge(&w.d);
        let old = util::rs_replicas(&rs);
        let size_changed = old != size;
        if !size_changed && !util::replicas_annotations_need_update(&rs, want, max) {
            return Ok(false);
        }
        let mut copy = rs.clone();
        copy.metadata.managed_fields = None;
        copy.spec.get_or_insert_with(Default::default).replicas = Some(size);
        util::set_replicas_annotations(copy.metadata.annotations.get_or_insert_with(Default::default), want, max);
        let ns = w.d.metadata.namespace.clone().unwrap_or_default();
        let updated = self.rs_api(&ns).replace(name, &PostParams::default(), &copy).await.map_err(|e| conflict(name, e))?;
        Self::replace_rs(w, updated);
        if size_changed {
            let op = if size > old { "up" } else { "down" };
            self.recorder.record(&w.d, Kind::Normal, "ScalingReplicaSet", format!("Scaled {op} replica set {name} from {old} to {size}"));
        }
        Ok(size_changed)
    }

    fn split<'a>(w: &'a Work, new: &Option<String>, old: &[String]) -> (Option<&'a ReplicaSet>, Vec<&'a ReplicaSet>) {
        let n = new.as_deref().and_then(|n| Self::find(w, n));
        let o = old.iter().filter_map(|n| Self::find(w, n)).collect();
        (n, o)
    }

    /// `isScalingEvent`: an active ReplicaSet was sized for another replica count.
    async fn is_scaling_event(&self, w: &mut Work) -> Result<bool> {
        let (new, old) = self.all_and_sync_revision(w, false).await?;
        let (n, o) = Self::split(w, &new, &old);
        let mut all = o;
        all.extend(n);
        Ok(rollout::is_scaling_event(&w.d, &all))
    }

    /// kube's `sync`: scaling events and paused Deployments.
    async fn sync_scale(&self, w: &mut Work, paused: bool) -> Result<Action> {
        let (new, old) = self.all_and_sync_revision(w, false).await?;
        let targets = {
            let (n, o) = Self::split(w, &new, &old);
            rollout::scale_targets(&w.d, n, &o)
        };
        for (name, size) in targets {
            self.scale(w, &name, size).await?;
        }
        if paused {
            self.cleanup(w, &old).await?;
        }
        self.sync_status(w, new).await
    }

    /// `syncDeploymentStatus`: counts and Available, without estimating progress.
    async fn sync_status(&self, w: &mut Work, new: Option<String>) -> Result<Action> {
        let all: Vec<&ReplicaSet> = w.rss.iter().collect();
        let n = new.as_deref().and_then(|n| Self::find(w, n));
        let s = status::calculate(&all, n, &w.d, self.now());
        if !status::same(&w.d.status.clone().unwrap_or_default(), &s) {
            self.write_status(&mut w.d, s).await?;
        }
        Ok(Action::Done)
    }

    /// `syncRolloutStatus`: counts, Available and Progressing; a stuck rollout is looked at
    /// again at its deadline.
    async fn sync_rollout_status(&self, w: &mut Work, new: &Option<String>) -> Result<Action> {
        let all: Vec<&ReplicaSet> = w.rss.iter().collect();
        let n = new.as_deref().and_then(|n| Self::find(w, n));
        let now = self.now();
        let s = status::rollout(&all, n, &w.d, now);
        if status::same(&w.d.status.clone().unwrap_or_default(), &s) {
            return Ok(match status::recheck(&w.d, &s, now) {
                Recheck::No => Action::Done,
                Recheck::Soon => Action::RequeueAfter(Duration::from_secs(1)),
                Recheck::After(d) => Action::RequeueAfter(d),
            });
        }
        self.write_status(&mut w.d, s).await?;
        Ok(Action::Done)
    }

    /// `cleanupDeployment`: deletes old ReplicaSets beyond revisionHistoryLimit.
    async fn cleanup(&self, w: &mut Work, old: &[String]) -> Result<()> {
        let victims = {
            let o: Vec<&ReplicaSet> = old.iter().filter_map(|n| Self::find(w, n)).collect();
            rollout::history_to_delete(&w.d, &o)
        };
        let ns = w.d.metadata.namespace.clone().unwrap_or_default();
        for name in victims {
            if let Err(e) = self.rs_api(&ns).delete(&name, &DeleteParams::default()).await {
                let e = Error::from(e);
                if !e.is_not_found() {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// `rolloutRolling`.
    async fn rolling(&self, w: &mut Work) -> Result<Action> {
        let (new, old) = self.all_and_sync_revision(w, true).await?;
        let Some(new_name) = new.clone() else { return Ok(Action::Done) };
        let target = {
            let (n, o) = Self::split(w, &new, &old);
            let mut all = o;
            all.extend(n);
            n.and_then(|n| {
                let (have, want) = (util::rs_replicas(n), util::replicas(&w.d));
                if self.cfg.bug_ignore_max_surge { (have != want).then_some(want) } else { rollout::new_rs_target(&w.d, &all, n) }
            })
        };
        if let Some(size) = target
            && self.scale(w, &new_name, size).await?
        {
            return self.sync_rollout_status(w, &new).await;
        }
        let targets = {
            let (n, o) = Self::split(w, &new, &old);
            match n {
                Some(n) => rollout::old_rs_targets(&w.d, &active(&o), n),
                None => vec![],
            }
        };
        let mut scaled_down = false;
        for (name, size) in targets {
            scaled_down |= self.scale(w, &name, size).await?;
        }
        if scaled_down {
            return self.sync_rollout_status(w, &new).await;
        }
        if status::complete(&w.d, &w.d.status.clone().unwrap_or_default()) {
            self.cleanup(w, &old).await?;
        }
        self.sync_rollout_status(w, &new).await
    }

    /// `rolloutRecreate`: all old pods gone before the new ReplicaSet scales up.
    async fn recreate(&self, w: &mut Work) -> Result<Action> {
        let (mut new, mut old) = self.all_and_sync_revision(w, false).await?;
        let active_old: Vec<String> = {
            let (_, o) = Self::split(w, &new, &old);
            active(&o).iter().map(|r| rs_name(r)).collect()
        };
        let mut scaled_down = false;
        for name in active_old {
            scaled_down |= self.scale(w, &name, 0).await?;
        }
        if scaled_down || self.old_pods_running(w, &new, &old) {
            return self.sync_rollout_status(w, &new).await;
        }
        if new.is_none() {
            (new, old) = self.all_and_sync_revision(w, true).await?;
        }
        if let Some(n) = new.clone() {
            let want = util::replicas(&w.d);
            self.scale(w, &n, want).await?;
        }
        if status::complete(&w.d, &w.d.status.clone().unwrap_or_default()) {
            self.cleanup(w, &old).await?;
        }
        self.sync_rollout_status(w, &new).await
    }

    /// `oldPodsRunning`: an old ReplicaSet still reports pods, or one of its pods is not
    /// finished.
    fn old_pods_running(&self, w: &Work, new: &Option<String>, old: &[String]) -> bool {
        let o: Vec<&ReplicaSet> = old.iter().filter_map(|n| Self::find(w, n)).collect();
        if o.iter().map(|r| rollout::actual(r)).sum::<i32>() > 0 {
            return true;
        }
        let new_uid = new.as_deref().and_then(|n| Self::find(w, n)).and_then(|r| r.metadata.uid.clone());
        w.rss.iter().filter(|r| r.metadata.uid != new_uid).any(|r| {
            self.pods.by_index(BY_CONTROLLER, r.metadata.uid.as_deref().unwrap_or_default()).iter().any(|p| {
                let ph = crate::pod::phase(p);
                ph != "Failed" && ph != "Succeeded"
            })
        })
    }
}
