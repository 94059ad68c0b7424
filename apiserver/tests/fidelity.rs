//! Kubernetes API behaviours the components rely on, through kube-rs: create resets status
//! where Kubernetes resets it (and keeps a node's), server-side apply on `/status` applies to
//! status, `dryRun=All` writes nothing.

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
        "status": {"replicas": 5, "readyReplicas": 5}
    }))
    .expect("deployment")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_resets_status_where_kubernetes_does_and_a_node_keeps_its_own() {
    let s = support::start().await;
    let deploys: Api<Deployment> = Api::default_namespaced(s.client.clone());
    let d = deploys.create(&PostParams::default(), &deployment("d")).await.expect("deployment");
    assert_eq!(d.status.map(|st| (st.replicas, st.ready_replicas)), Some((None, None)), "status starts empty");
    let svcs: Api<Service> = Api::default_namespaced(s.client.clone());
    let svc: Service = serde_json::from_value(
        json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}}),
    )
    .expect("service");
    let svc = svcs.create(&PostParams::default(), &svc).await.expect("service");
    assert_eq!(svc.status.and_then(|st| st.load_balancer).and_then(|lb| lb.ingress), None);
    let nodes: Api<Node> = Api::all(s.client.clone());
    let node: Node = serde_json::from_value(
        json!({"metadata": {"name": "n1"}, "status": {"conditions": [{"type": "Ready", "status": "True"}], "capacity": {"cpu": "4"}}}),
    )
    .expect("node");
    let node = nodes.create(&PostParams::default(), &node).await.expect("node");
    let ready = node.status.and_then(|st| st.conditions).unwrap_or_default().into_iter().map(|c| (c.type_, c.status)).collect::<Vec<_>>();
    assert_eq!(ready, vec![("Ready".to_string(), "True".to_string())], "a kubelet registers with its status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_on_status_applies_to_status_and_owns_it() {
    let s = support::start().await;
    let deploys: Api<Deployment> = Api::default_namespaced(s.client.clone());
    deploys.create(&PostParams::default(), &deployment("d")).await.expect("deployment");
    let config = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 9}, "status": {"replicas": 3, "observedGeneration": 1}});
    let applied =
        deploys.patch_status("d", &PatchParams::apply("keel-controller").force(), &Patch::Apply(&config)).await.expect("apply status");
    assert_eq!(applied.status.as_ref().and_then(|st| st.replicas), Some(3));
    assert_eq!(applied.spec.as_ref().and_then(|sp| sp.replicas), Some(1), "the spec is not the status subresource's");
    let owner = applied.metadata.managed_fields.unwrap_or_default().into_iter().find(|m| m.manager.as_deref() == Some("keel-controller"));
    assert_eq!(owner.as_ref().and_then(|m| m.subresource.as_deref()), Some("status"));
    assert_eq!(owner.and_then(|m| m.operation), Some("Apply".into()));
    let mut other = config.clone();
    other["metadata"]["name"] = json!("nope");
    let missing = deploys.patch_status("nope", &PatchParams::apply("keel-controller").force(), &Patch::Apply(&other)).await;
    assert!(matches!(missing, Err(kube::Error::Api(ref e)) if e.code == 404), "{missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_checks_everything_and_writes_nothing() {
    let s = support::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(s.client.clone());
    let mut c = ConfigMap::default();
    c.metadata.name = Some("c".into());
    let dry = PostParams { dry_run: true, ..Default::default() };
    let answered = cms.create(&dry, &c).await.expect("a dry create answers");
    assert!(answered.metadata.uid.is_some());
    assert!(matches!(cms.get("c").await, Err(kube::Error::Api(ref e)) if e.code == 404), "nothing was created");
    let mut bad = c.clone();
    bad.data = Some([("bad/key".to_string(), "v".to_string())].into());
    assert!(matches!(cms.create(&dry, &bad).await, Err(kube::Error::Api(ref e)) if e.code == 422), "still validated");
    let stored = cms.create(&PostParams::default(), &c).await.expect("create");
    let patch = Patch::Merge(json!({"data": {"k": "v"}}));
    let patched = cms.patch("c", &PatchParams { dry_run: true, ..Default::default() }, &patch).await.expect("dry patch");
    assert_eq!(patched.data.and_then(|d| d.get("k").cloned()).as_deref(), Some("v"));
    let now = cms.get("c").await.expect("get");
    assert_eq!((now.data, now.metadata.resource_version), (None, stored.metadata.resource_version.clone()), "unchanged");
    cms.delete("c", &DeleteParams { dry_run: true, ..Default::default() }).await.expect("dry delete");
    assert!(cms.get("c").await.is_ok(), "still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quantities_and_node_affinity_are_checked_and_allocatable_defaults_to_capacity() {
    use k8s_openapi::api::core::v1::Pod;
    let s = support::start().await;
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    let pod = |resources: serde_json::Value, affinity: serde_json::Value| -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox", "resources": resources}], "affinity": affinity}})).expect("pod")
    };
    let err = |r: Result<Pod, kube::Error>| match r {
        Err(kube::Error::Api(e)) => (e.code, e.message),
        other => panic!("{other:?}"),
    };
    let (code, msg) = err(pods.create(&PostParams::default(), &pod(json!({"requests": {"cpu": "lots"}}), json!({}))).await);
    assert_eq!(code, 400);
    assert!(msg.contains("quantities must match the regular expression"), "{msg}");
    let (code, msg) =
        err(pods.create(&PostParams::default(), &pod(json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}), json!({}))).await);
    assert!(code == 422 && msg.contains("must be less than or equal to cpu limit of 1"), "{msg}");
    let gt = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["many"]}]}]}}});
    let (code, msg) = err(pods.create(&PostParams::default(), &pod(json!({}), gt)).await);
    assert!(code == 422 && msg.contains("for 'Gt', 'Lt' operators, the value must be an integer"), "{msg}");
    let nodes: Api<Node> = Api::all(s.client.clone());
    let node: Node =
        serde_json::from_value(json!({"metadata": {"name": "n1"}, "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}))
            .expect("node");
    let node = nodes.create(&PostParams::default(), &node).await.expect("node");
    let allocatable = node.status.and_then(|st| st.allocatable).unwrap_or_default();
    assert_eq!(allocatable.get("cpu").map(|q| q.0.as_str()), Some("4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_writes_keep_what_kubes_status_strategies_keep_and_daemonsets_count_template_generations() {
    use k8s_openapi::api::apps::v1::DaemonSet;
    let s = support::start().await;
    let deploys: Api<Deployment> = Api::default_namespaced(s.client.clone());
    let mut d = deploys.create(&PostParams::default(), &deployment("d")).await.expect("deployment");
    d.metadata.annotations.get_or_insert_with(Default::default).insert("deployment.kubernetes.io/revision".into(), "1".into());
    d.metadata.labels = Some([("changed".to_string(), "by-status".to_string())].into());
    d.status.get_or_insert_with(Default::default).observed_generation = Some(1);
    let written = deploys.replace_status("d", &PostParams::default(), &d).await.expect("status");
    let revision = written.metadata.annotations.as_ref().and_then(|a| a.get("deployment.kubernetes.io/revision")).cloned();
    assert_eq!(revision.as_deref(), Some("1"), "annotations sent with the status are kept");
    assert!(!written.metadata.labels.unwrap_or_default().contains_key("changed"), "labels stay as stored");
    assert_eq!(written.status.and_then(|st| st.observed_generation), Some(1));

    let dss: Api<DaemonSet> = Api::default_namespaced(s.client.clone());
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "ds"},
        "spec": {"selector": {"matchLabels": {"app": "ds"}}, "template": {"metadata": {"labels": {"app": "ds"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}}
    }))
    .expect("ds");
    let generation =
        |d: &DaemonSet| d.metadata.annotations.as_ref().and_then(|a| a.get("deprecated.daemonset.template.generation")).cloned();
    let ds = dss.create(&PostParams::default(), &ds).await.expect("create");
    assert_eq!(generation(&ds).as_deref(), Some("1"));
    let image = Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}}));
    let ds = dss.patch("ds", &PatchParams::default(), &image).await.expect("new template");
    assert_eq!(generation(&ds).as_deref(), Some("2"));
    let label = Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}}));
    assert_eq!(generation(&dss.patch("ds", &PatchParams::default(), &label).await.expect("label")).as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_pods_tolerate_unready_nodes_for_five_minutes_and_new_nodes_start_tainted() {
    use k8s_openapi::api::core::v1::Pod;
    let plugins = keel_apiserver::rest::admission::plugins(&["TaintNodesByCondition".into()], &[], false).expect("plugins");
    let s = support::start_config(keel_apiserver::Config { admission_plugins: plugins, ..Default::default() }).await;
    let pods: Api<Pod> = Api::default_namespaced(s.client.clone());
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
        .expect("pod");
    let p = pods.create(&PostParams::default(), &pod).await.expect("pod");
    let tolerations: Vec<(String, Option<i64>)> = p
        .spec
        .and_then(|sp| sp.tolerations)
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.toleration_seconds))
        .collect();
    assert_eq!(tolerations, vec![("node.kubernetes.io/not-ready".into(), Some(300)), ("node.kubernetes.io/unreachable".into(), Some(300))]);
    let nodes: Api<Node> = Api::all(s.client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).expect("node");
    let n = nodes.create(&PostParams::default(), &node).await.expect("node");
    let taints: Vec<(String, String)> =
        n.spec.and_then(|sp| sp.taints).unwrap_or_default().into_iter().map(|t| (t.key, t.effect)).collect();
    assert_eq!(taints, vec![("node.kubernetes.io/not-ready".to_string(), "NoSchedule".to_string())]);
}
