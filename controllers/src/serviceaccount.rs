//! The ServiceAccount controller (kube's `pkg/controller/serviceaccount`
//! `serviceaccounts_controller.go`): every active namespace has the `default` ServiceAccount;
//! deleting it brings it back. Namespaces being deleted are left alone.

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

/// True when the namespace is being deleted.
pub fn terminating(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some() || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
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
        if terminating(&ns) {
            return Ok(Action::Done);
        }
        let api: Api<ServiceAccount> = Api::namespaced(self.ctx.client.clone(), &key.name);
        for name in DEFAULT_NAMES {
            if self.accounts.get(&ObjectKey::new(key.name.clone(), *name)).is_some() {
                continue;
            }
            let sa = ServiceAccount { metadata: ObjectMeta { name: Some(name.to_string()), ..Default::default() }, ..Default::default() };
            if let Err(e) = api.create(&PostParams::default(), &sa).await {
                let e = Error::from(e);
                if !(e.is_already_exists() || e.is_namespace_terminating() || e.is_not_found()) {
                    return Err(e);
                }
            }
        }
        Ok(Action::Done)
    }
}
