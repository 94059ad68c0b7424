//! What a Service write allocates, the async shell of [`crate::registry::service_alloc`]:
//! read what is taken (the allocation keys), plan, and let the caller write the Service with
//! the claims in one Txn ([`crate::storage::Store::write_with`]). A claim that lost a race
//! fails the Txn; the caller reads again and plans again (a picked value moves on, a given one
//! becomes 422 "already allocated").
//!
//! Also the `default/kubernetes` Service and its Endpoints, which the apiserver keeps as
//! kube's controlplane controller does: the Service at the range's first IP, port 443 (`https`)
//! to the apiservers' port; each apiserver holds a lease key `/registry/masterleases/<ip>:<port>`
//! (TTL [`MASTER_LEASE_TTL`], renewed every [`RECONCILE_EVERY`]) and writes the Endpoints from
//! the live ones (kube's `--endpoint-reconciler-type=lease`).

use crate::error::ApiError;
use crate::http::request::Call;
use crate::registry::service_alloc::{self, Claims, IP_PREFIX, PORT_PREFIX, Taken};
use crate::registry::{self, Subresource};
use crate::rest::Api;
use crate::storage::{Written, keys};
use serde_json::{Value, json};
use std::time::Duration;

/// How long an apiserver's master lease lives without renewal.
pub const MASTER_LEASE_TTL: Duration = Duration::from_secs(15);
/// How often an apiserver renews its lease and rewrites the kubernetes Endpoints.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(10);
const MASTER_LEASES: &str = "/registry/masterleases/";

/// Whether writes of the call's resource allocate (core/v1 Services, not their status).
pub fn allocates(call: &Call) -> bool {
    let r = call.target.res;
    r.group.is_empty() && r.kind == "Service" && call.target.sub != Some(Subresource::Status)
}

/// What is allocated now.
pub async fn taken(api: &Api) -> Result<Taken, ApiError> {
    let mut t = Taken::default();
    for k in api.store.keys(IP_PREFIX).await? {
        if let Some(ip) = k.strip_prefix(IP_PREFIX).and_then(|s| s.parse().ok()) {
            t.ips.insert(ip);
        }
    }
    for k in api.store.keys(PORT_PREFIX).await? {
        if let Some(p) = k.strip_prefix(PORT_PREFIX).and_then(|s| s.parse().ok()) {
            t.ports.insert(p);
        }
    }
    Ok(t)
}

/// Fills in `new`'s cluster IP and node ports (over `old` on an update): the claims to write
/// with it, or 422.
pub async fn plan(api: &Api, call: &Call, new: &mut Value, old: Option<&Value>) -> Result<Claims, ApiError> {
    if !allocates(call) {
        return Ok(Claims::default());
    }
    let t = taken(api).await?;
    service_alloc::plan(new, old, &api.service_ranges, &t).map_err(|causes| ApiError::Invalid {
        kind: "Service".into(),
        name: new.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().into(),
        causes,
    })
}

/// What deleting `old` frees (nothing for other kinds).
pub fn release(call: &Call, old: &Value) -> Claims {
    if allocates(call) { service_alloc::release(old) } else { Claims::default() }
}

/// The claims as the store writes them.
pub fn side_keys(c: &Claims) -> Vec<(String, Vec<u8>)> {
    c.take.iter().map(|(k, v)| (k.clone(), v.to_string().into_bytes())).collect()
}

/// The `default/kubernetes` Service pointing at port `port` of the apiservers.
pub fn kubernetes_service(port: u16) -> Value {
    json!({
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "sessionAffinity": "None", "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
    })
}

/// `host:port` of an advertise address.
fn split(advertise: &str) -> Option<(String, u16)> {
    let (h, p) = advertise.rsplit_once(':')?;
    Some((h.trim_matches(['[', ']']).to_string(), p.parse().ok()?))
}

/// The kubernetes Endpoints for the live apiservers (`ip:port` each): one subset per port.
pub fn kubernetes_endpoints(live: &[(String, u16)]) -> Value {
    let mut ports: Vec<u16> = live.iter().map(|(_, p)| *p).collect();
    ports.sort_unstable();
    ports.dedup();
    let subsets: Vec<Value> = ports
        .iter()
        .map(|p| {
            let mut ips: Vec<&str> = live.iter().filter(|(_, q)| q == p).map(|(ip, _)| ip.as_str()).collect();
            ips.sort_unstable();
            ips.dedup();
            let addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
            json!({"addresses": addresses, "ports": [{"name": "https", "port": p, "protocol": "TCP"}]})
        })
        .collect();
    json!({"metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}}, "subsets": subsets})
}

/// One round of the kubernetes Endpoints reconciler: renew this apiserver's lease, and write
/// the Endpoints if the live set changed. Errors are the store's; the next round tries again.
pub async fn reconcile_endpoints(api: &Api) -> Result<(), ApiError> {
    let Some((ip, port)) = split(&api.advertise) else { return Ok(()) };
    let lease = api.store.grant(MASTER_LEASE_TTL.as_secs() as i64).await?;
    let me = format!("{MASTER_LEASES}{ip}:{port}");
    let body = json!({"ip": ip, "port": port}).to_string().into_bytes();
    // Renewal is a put on a fresh lease (the previous one lapses on its own).
    let put = keel_etcd::proto::etcdserverpb::TxnRequest {
        compare: vec![],
        success: vec![keel_etcd::txn::put(&me, body, lease)],
        failure: vec![],
    };
    api.store.client().txn(put).await?;
    let mut live: Vec<(String, u16)> =
        api.store.keys(MASTER_LEASES).await?.iter().filter_map(|k| split(k.strip_prefix(MASTER_LEASES)?)).collect();
    live.sort();
    let res = registry::find("", "v1", "endpoints").ok_or(ApiError::NoSuchPath)?;
    let key = keys::key(res, Some("default"), "kubernetes");
    let want = kubernetes_endpoints(&live);
    let current = api.store.get(&key).await?;
    let call = Call::internal(res, "keel-apiserver");
    let call = Call { target: crate::http::request::Target { namespace: Some("default".into()), ..call.target }, ..call };
    match current {
        None => match crate::rest::object::create_object(api, &call, want).await {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e),
        },
        Some(s) => {
            let mut obj = crate::storage::decode(&s)?;
            if obj.get("subsets") == want.get("subsets") {
                return Ok(());
            }
            obj["subsets"] = want["subsets"].clone();
            let bytes = crate::registry::meta::for_store(&obj);
            match api.store.put_if(&key, bytes, s.mod_revision, 0).await? {
                Written::At(_) | Written::Guard(_) => Ok(()),
            }
        }
    }
}

/// Keeps the kubernetes Endpoints while the server runs.
pub async fn run_endpoints(api: std::sync::Arc<Api>) {
    loop {
        if let Err(e) = reconcile_endpoints(&api).await {
            tracing::debug!("kubernetes endpoints: {e}");
        }
        tokio::time::sleep(RECONCILE_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubernetes_endpoints_list_every_live_apiserver_once_per_port() {
        let live = vec![("127.0.0.2".to_string(), 6443), ("127.0.0.1".to_string(), 6443), ("127.0.0.1".to_string(), 7443)];
        let e = kubernetes_endpoints(&live);
        assert_eq!(
            e["subsets"],
            json!([
                {"addresses": [{"ip": "127.0.0.1"}, {"ip": "127.0.0.2"}], "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]},
                {"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": 7443, "protocol": "TCP"}]},
            ])
        );
        assert_eq!(split("[fd00::1]:6443"), Some(("fd00::1".into(), 6443)));
        assert_eq!(split("10.0.0.1:6443"), Some(("10.0.0.1".into(), 6443)));
    }
}
