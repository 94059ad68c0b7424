//! Endpoints through the real apiserver: a Service's Endpoints list its ready pods, move a pod
//! that stops being ready to notReadyAddresses, and go with the Service.

mod common;

use common::{FakeKubelet, apply, cluster, wait_for};
use k8s_openapi::api::core::v1::{Endpoints, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use std::time::Duration;

const APP: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: nginx, ports: [{name: http, containerPort: 8080}]}]}
"#;

fn ips(a: &Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>) -> Vec<String> {
    a.iter().flatten().map(|a| a.ip.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_pod_readiness_and_the_service() {
    let c = cluster(&[]);
    let _kubelet = FakeKubelet::start(c.kubeconfig.clone(), &["node-1", "node-2"]);
    let client = c.client().await;
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    apply(&c, APP).await;
    let ready = wait_for(&c, Duration::from_secs(30), "two ready addresses on port 8080", || async {
        let e = eps.get("web").await.ok()?;
        let s = e.subsets?.into_iter().next()?;
        let port = s.ports.clone()?.first()?.port;
        (ips(&s.addresses).len() == 2 && port == 8080).then_some(ips(&s.addresses))
    })
    .await;

    // One pod stops being ready (as its kubelet would report): it moves to notReadyAddresses.
    let list = pods.list(&ListParams::default().labels("app=web")).await.map(|l| l.items).unwrap_or_default();
    let p = list.iter().find(|p| p.status.as_ref().and_then(|s| s.pod_ip.as_ref()) == Some(&ready[0])).cloned().unwrap_or_default();
    let name = p.metadata.name.clone().unwrap_or_default();
    let conds = json!([{"type": "Ready", "status": "False", "lastTransitionTime": jiff::Timestamp::now().round(jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default()}]);
    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": {"conditions": conds}}))).await.ok();
    wait_for(&c, Duration::from_secs(30), "the unready pod in notReadyAddresses", || async {
        let s = eps.get("web").await.ok()?.subsets?.into_iter().next()?;
        (ips(&s.addresses) == [ready[1].clone()] && ips(&s.not_ready_addresses) == [ready[0].clone()]).then_some(())
    })
    .await;

    // The Service goes: so do its Endpoints.
    Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), "default").delete("web", &DeleteParams::default()).await.ok();
    wait_for(&c, Duration::from_secs(30), "the Endpoints gone", || async { eps.get_opt("web").await.ok()?.is_none().then_some(()) }).await;
}
