//! Endpoints with the real scheduler and kubelets: a Service gets a ClusterIP, and its Endpoints list its ready pods'
//! IPs and resolved named ports, a pod whose readiness probe fails stays in
//! `notReadyAddresses`, a pod whose container is killed by its liveness probe moves to
//! `notReadyAddresses` and back as its kubelet reports it, and the Endpoints go with the Service.

mod common;

use common::{apply, control_plane, ready_nodes, spawn_kubelets, wait_for};
use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Pod, Service};
use kube::api::{Api, DeleteParams};
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
---
apiVersion: v1
kind: Pod
metadata:
  name: never-ready
  namespace: default
  labels: {app: web}
  annotations: {sim.keel.dev/fail-readiness: "true"}
spec:
  containers:
  - name: c
    image: nginx
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {exec: {command: ["true"]}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata:
  name: flaky
  namespace: default
  labels: {app: web}
  annotations: {sim.keel.dev/fail-liveness-after: 4s}
spec:
  containers:
  - name: c
    image: nginx
    ports: [{name: http, containerPort: 8080}]
    livenessProbe: {exec: {command: ["true"]}, periodSeconds: 1, failureThreshold: 1}
"#;

fn ips(a: &Option<Vec<EndpointAddress>>) -> Vec<String> {
    a.iter().flatten().map(|a| a.ip.clone()).collect()
}

/// (ready IPs, not-ready IPs, port) of the Endpoints' only subset.
async fn subset(eps: &Api<Endpoints>) -> Option<(Vec<String>, Vec<String>, i32)> {
    let s = eps.get("web").await.ok()?.subsets?.into_iter().next()?;
    let port = s.ports.as_ref()?.first()?.port;
    Some((ips(&s.addresses), ips(&s.not_ready_addresses), port))
}

async fn ip_of(pods: &Api<Pod>, name: &str) -> Option<String> {
    pods.get(name).await.ok()?.status?.pod_ip
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_pod_readiness_and_the_service() {
    let mut c = control_plane(&[], &[], 0);
    spawn_kubelets(&mut c, 2, &["--restart-backoff", "3s"]);
    ready_nodes(&c, 2).await;
    let client = c.client().await;
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    apply(&c, APP).await;
    // The apiserver gave the Service a ClusterIP from the default range (10.96.0.0/12).
    let service = Api::<Service>::namespaced(client.clone(), "default").get("web").await.expect("the Service");
    let ip: std::net::Ipv4Addr =
        service.spec.and_then(|s| s.cluster_ip).and_then(|ip| ip.parse().ok()).expect("the Service has a ClusterIP");
    assert_eq!(ip.octets()[0], 10, "{ip}");
    assert_eq!(ip.octets()[1] & 0xf0, 96, "{ip} is in 10.96.0.0/12");
    let (never, flaky) = wait_for(&c, Duration::from_secs(30), "both hand-made pods running with an IP", || async {
        Some((ip_of(&pods, "never-ready").await?, ip_of(&pods, "flaky").await?))
    })
    .await;

    // The two Deployment pods and the flaky one (while its container lives) are ready on the
    // resolved port; the pod whose readiness probe fails is listed as not ready.
    let ready = wait_for(&c, Duration::from_secs(30), "three ready addresses on port 8080, never-ready not ready", || async {
        let (ready, not_ready, port) = subset(&eps).await?;
        (ready.len() == 3 && ready.contains(&flaky) && not_ready == [never.clone()] && port == 8080).then_some(ready)
    })
    .await;
    assert!(!ready.contains(&never));

    // The flaky pod's liveness probe fails: its kubelet kills the container and reports the pod
    // not ready until the restart back-off ends; its address moves and comes back.
    wait_for(&c, Duration::from_secs(30), "the flaky pod in notReadyAddresses", || async {
        let (ready, not_ready, _) = subset(&eps).await?;
        (!ready.contains(&flaky) && not_ready.contains(&flaky) && ready.len() == 2).then_some(())
    })
    .await;
    wait_for(&c, Duration::from_secs(60), "the flaky pod ready again", || async {
        let (ready, not_ready, _) = subset(&eps).await?;
        (ready.contains(&flaky) && !not_ready.contains(&flaky)).then_some(())
    })
    .await;
    let restarts =
        pods.get("flaky").await.ok().and_then(|p| p.status?.container_statuses?.first().map(|s| s.restart_count)).unwrap_or_default();
    assert!(restarts >= 1, "the kubelet restarted the flaky container: {restarts}");

    // The Service goes: so do its Endpoints.
    Api::<Service>::namespaced(client.clone(), "default").delete("web", &DeleteParams::default()).await.ok();
    wait_for(&c, Duration::from_secs(30), "the Endpoints gone", || async { eps.get_opt("web").await.ok()?.is_none().then_some(()) }).await;
}
