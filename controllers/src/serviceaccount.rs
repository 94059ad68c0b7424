//! The ServiceAccount controller (kube's `pkg/controller/serviceaccount`
//! `serviceaccounts_controller.go`): every active namespace has the `default` ServiceAccount;
//! deleting it brings it back. Only Active namespaces are acted on. Level-triggered: a namespace
//! added or updated, or a default account deleted, queues the namespace, and each sync compares
//! the cache with [`DEFAULT_NAMES`].

use crate::context::Context;
use crate::error::{Error, Result};
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::queue::Queue;
use crate::runner::{Action, Reconcile};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use std::sync::Arc;

/// The ServiceAccounts every namespace gets (kube's `--service-account-names` default).
pub const DEFAULT_NAMES: &[&str] = &["default"];

/// The controller; its queue holds namespace names.
pub struct ServiceAccountController {
    ctx: Context,
    namespaces: Arc<Informer<Namespace>>,
    accounts: Arc<Informer<ServiceAccount>>,
    queue: Arc<Queue>,
}

/// kube's `syncNamespace` decision: the accounts of [`DEFAULT_NAMES`] that `ns` lacks
/// (`exists` says whether the cache holds one), or none when the namespace is not Active (a
/// namespace being deleted, or one whose phase is not set yet, is left alone).
pub fn to_create(ns: &Namespace, exists: impl Fn(&str) -> bool) -> Vec<&'static str> {
    if ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Active") {
        return Vec::new();
    }
    DEFAULT_NAMES.iter().copied().filter(|n| !exists(n)).collect()
}

impl ServiceAccountController {
    /// The controller, with its handlers registered.
    pub fn new(ctx: &Context) -> Arc<ServiceAccountController> {
        let c = Arc::new(ServiceAccountController {
            ctx: ctx.clone(),
            namespaces: ctx.shared.namespaces.clone(),
            accounts: ctx.shared.service_accounts.clone(),
            queue: Queue::new("serviceaccount", Some(ctx.metrics.clone())),
        });
        let q = c.queue.clone();
        c.namespaces.on_change(move |ch: &Change<'_, Namespace>| {
            if !matches!(ch, Change::Deleted(_)) {
                q.add(ObjectKey::of(ch.object()));
            }
        });
        let q = c.queue.clone();
        c.accounts.on_change(move |ch: &Change<'_, ServiceAccount>| {
            if let Change::Deleted(sa) = ch
                && DEFAULT_NAMES.contains(&sa.metadata.name.as_deref().unwrap_or_default())
            {
                q.add(ObjectKey::cluster(sa.metadata.namespace.clone().unwrap_or_default()));
            }
        });
        c
    }

    /// The work queue.
    pub fn queue(&self) -> Arc<Queue> {
        self.queue.clone()
    }
}

impl Reconcile for ServiceAccountController {
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        if !self.namespaces.is_synced() || !self.accounts.is_synced() {
            return Err(Error::NotSynced("namespaces/serviceaccounts"));
        }
        let Some(ns) = self.namespaces.get(key) else { return Ok(Action::Done) };
        let api: Api<ServiceAccount> = Api::namespaced(self.ctx.client.clone(), &key.name);
        for name in to_create(&ns, |n| self.accounts.get(&ObjectKey::new(key.name.clone(), n)).is_some()) {
            let sa = ServiceAccount { metadata: ObjectMeta { name: Some(name.to_string()), ..Default::default() }, ..Default::default() };
            if let Err(e) = api.create(&PostParams::default(), &sa).await {
                // An account the cache has not shown yet exists already; a namespace being
                // deleted refuses creates (kube ignores both). A missing namespace is retried, as
                // kube's; its deletion soon removes the key.
                let e = Error::from(e);
                if !(e.is_already_exists() || e.is_namespace_terminating()) {
                    return Err(e);
                }
            }
        }
        Ok(Action::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceStatus;

    fn ns(phase: Option<&str>, deleting: bool) -> Namespace {
        let mut n =
            Namespace { status: Some(NamespaceStatus { phase: phase.map(Into::into), ..Default::default() }), ..Default::default() };
        if deleting {
            n.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH));
        }
        n
    }

    /// The cases of kube's `TestServiceAccountCreation`.
    #[test]
    fn only_an_active_namespace_without_its_default_account_gets_one() {
        let none = |_: &str| false;
        let has_default = |n: &str| n == "default";
        let has_other = |n: &str| n == "other";
        assert_eq!(to_create(&ns(Some("Active"), false), none), vec!["default"], "new active namespace");
        assert_eq!(to_create(&ns(Some("Active"), false), has_default), Vec::<&str>::new(), "already there");
        assert_eq!(to_create(&ns(Some("Active"), false), has_other), vec!["default"], "someone else's account does not count");
        assert_eq!(to_create(&ns(Some("Terminating"), true), none), Vec::<&str>::new(), "terminating: nothing");
        assert_eq!(to_create(&ns(Some("Terminating"), false), none), Vec::<&str>::new(), "terminating phase alone");
        assert_eq!(to_create(&ns(None, false), none), Vec::<&str>::new(), "no phase yet: not Active (kube)");
    }
}
