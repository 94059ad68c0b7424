//! The ClusterRole aggregation controller (kube's `pkg/controller/clusterroleaggregation`,
//! `clusterrole-aggregation`): a ClusterRole with an `aggregationRule` holds the rules of every
//! other ClusterRole its selectors match (`admin`, `edit` and `view` gain the rules of roles
//! labelled `rbac.authorization.k8s.io/aggregate-to-*`).
//!
//! Invariants (kube's):
//! - the rules are computed by keel-access ([`aggregated_rules`]: selectors in order, matching
//!   roles in name order, the role itself skipped, equal rules once) from the informer's
//!   ClusterRoles, never from a single event;
//! - any ClusterRole change enqueues every aggregating role (the graph is small and its edges
//!   are labels, so kube does not track them); roles that aggregate aggregating roles
//!   (`admin` ← `edit` ← `view`) converge because each write is itself a change;
//! - a role is written (update with its resourceVersion) only when its rules differ, so a pass
//!   over a settled policy writes nothing.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::queue::Queue;
use crate::runner::{Action, Reconcile};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use keel_access::rbac::aggregation::{aggregated_rules, same_rule};
use keel_access::rbac::rules_of;
use kube::api::{Api, PostParams};
use std::sync::Arc;

/// The rules to write into `target`, or None when it has no aggregationRule or already holds
/// exactly them.
pub fn next_rules<'a>(target: &ClusterRole, all: impl IntoIterator<Item = &'a ClusterRole>) -> Option<Vec<PolicyRule>> {
    let rules = aggregated_rules(target, all)?;
    let current = rules_of(&target.rules);
    let same = rules.len() == current.len() && rules.iter().zip(current).all(|(a, b)| same_rule(a, b));
    (!same).then_some(rules)
}

/// The roles to look at after any ClusterRole change: every one with an aggregationRule.
pub fn aggregating<'a>(all: impl IntoIterator<Item = &'a ClusterRole>) -> Vec<String> {
    all.into_iter().filter(|r| r.aggregation_rule.is_some()).filter_map(|r| r.metadata.name.clone()).collect()
}

/// The controller; its queue holds ClusterRole names.
pub struct AggregationController {
    ctx: Context,
    roles: Arc<Informer<ClusterRole>>,
    queue: Arc<Queue>,
}

impl AggregationController {
    /// The controller over the ClusterRole informer `roles`, with its handler registered.
    pub fn new(ctx: &Context, roles: Arc<Informer<ClusterRole>>) -> Arc<AggregationController> {
        let c = Arc::new(AggregationController {
            ctx: ctx.clone(),
            roles,
            queue: Queue::new("clusterrole_aggregation", Some(ctx.metrics.clone())),
        });
        let (q, informer) = (c.queue.clone(), Arc::downgrade(&c.roles));
        c.roles.on_change(move |_: &Change<'_, ClusterRole>| {
            // The handler runs after the store took the event, so the list includes it.
            if let Some(roles) = informer.upgrade() {
                for name in aggregating(roles.list().iter().map(|r| r.as_ref())) {
                    q.add(ObjectKey::cluster(name));
                }
            }
        });
        c
    }

    /// The work queue.
    pub fn queue(&self) -> Arc<Queue> {
        self.queue.clone()
    }
}

impl Reconcile for AggregationController {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        if !self.roles.is_synced() {
            return Err(Error::NotSynced("clusterroles"));
        }
        let Some(role) = self.roles.get(key) else { return Ok(Action::Done) };
        let all = self.roles.list();
        let Some(rules) = next_rules(&role, all.iter().map(|r| r.as_ref())) else { return Ok(Action::Done) };
        let mut updated = (*role).clone();
        updated.rules = Some(rules);
        let api: Api<ClusterRole> = Api::all(self.ctx.client.clone());
        match api.replace(&key.name, &PostParams::default(), &updated).await.map_err(Error::from) {
            Ok(_) => Ok(Action::Done),
            Err(e) if e.is_not_found() => Ok(Action::Done),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn role(v: serde_json::Value) -> ClusterRole {
        serde_json::from_value(v).expect("a ClusterRole")
    }

    fn agg(name: &str, to: &str, rules: serde_json::Value) -> ClusterRole {
        role(
            json!({"metadata": {"name": name, "labels": {format!("rbac.authorization.k8s.io/aggregate-to-{to}"): "true"}}, "rules": rules}),
        )
    }

    fn aggregator(name: &str, label: &str) -> ClusterRole {
        role(json!({"metadata": {"name": name, "labels": {format!("rbac.authorization.k8s.io/aggregate-to-{label}"): "true"}},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{name}"): "true"}}]}}))
    }

    fn rule(verb: &str, resource: &str) -> serde_json::Value {
        json!({"apiGroups": [""], "resources": [resource], "verbs": [verb]})
    }

    /// Runs the controller's decision over `roles` until nothing is written (what the queue does
    /// as each write comes back as a change); the number of passes that wrote something.
    fn settle(roles: &mut [ClusterRole]) -> usize {
        let mut passes = 0;
        loop {
            let snapshot = roles.to_vec();
            let mut wrote = false;
            for name in aggregating(snapshot.iter()) {
                let i = roles.iter().position(|r| r.metadata.name.as_deref() == Some(name.as_str())).expect("listed");
                if let Some(rules) = next_rules(&roles[i], snapshot.iter()) {
                    roles[i].rules = Some(rules);
                    wrote = true;
                }
            }
            if !wrote {
                return passes;
            }
            passes += 1;
            assert!(passes < 10, "aggregation does not settle");
        }
    }

    fn verbs_of(r: &ClusterRole) -> Vec<String> {
        rules_of(&r.rules).iter().map(|p| format!("{}:{}", p.verbs.join(","), p.resources.clone().unwrap_or_default().join(","))).collect()
    }

    /// kube's `TestSyncClusterRole` cases, and the admin ← edit ← view chain of the default policy.
    #[test]
    fn aggregation_writes_only_what_changes_and_settles_chains() {
        let plain = role(json!({"metadata": {"name": "plain"}, "rules": [rule("get", "pods")]}));
        assert_eq!(next_rules(&plain, [&plain]), None, "no aggregationRule: never rewritten");

        let target = aggregator("admin", "none");
        let a = agg("a", "admin", json!([rule("get", "pods")]));
        let b = agg("b", "admin", json!([rule("get", "pods"), rule("list", "secrets")]));
        let other = agg("c", "other", json!([rule("delete", "nodes")]));
        let all = [target.clone(), b.clone(), a.clone(), other.clone()];
        let rules = next_rules(&target, all.iter()).expect("rules to write");
        let mut written = target.clone();
        written.rules = Some(rules);
        assert_eq!(verbs_of(&written), ["get:pods", "list:secrets"], "name order, equal rules once, unmatched roles ignored");
        let all = [written.clone(), b, a, other];
        assert_eq!(next_rules(&written, all.iter()), None, "settled: nothing written");

        // A labelled role added later is picked up; removing it takes its rules away again.
        let extra = agg("z-extra", "admin", json!([rule("watch", "configmaps")]));
        let with_extra = [all.to_vec(), vec![extra]].concat();
        let grown = next_rules(&written, with_extra.iter()).expect("grows");
        assert_eq!(grown.len(), 3);
        let mut grown_role = written.clone();
        grown_role.rules = Some(grown);
        assert_eq!(next_rules(&grown_role, all.iter()).map(|r| r.len()), Some(2), "shrinks when the source goes");

        // Chains settle: view's rule reaches admin through edit.
        let mut chain = vec![
            aggregator("admin", "none"),
            aggregator("edit", "admin"),
            aggregator("view", "edit"),
            agg("pods-reader", "view", json!([rule("get", "pods")])),
            agg("cm-writer", "edit", json!([rule("update", "configmaps")])),
        ];
        let passes = settle(&mut chain);
        assert!(passes >= 1);
        let by = |n: &str| chain.iter().find(|r| r.metadata.name.as_deref() == Some(n)).cloned().expect("role");
        assert_eq!(verbs_of(&by("view")), ["get:pods"]);
        assert_eq!(verbs_of(&by("edit")), ["update:configmaps", "get:pods"]);
        assert_eq!(verbs_of(&by("admin")), ["update:configmaps", "get:pods"]);
        assert_eq!(settle(&mut chain), 0, "a settled policy writes nothing");
    }
}
