//! Conformance with the installed `kubectl` against keel-apiserver on a keel-store member: the
//! commands users type, checked by what they print and by what the server then holds.

use keel_testkit as common;

use common::{Backend, Cluster, eventually, text};

/// Each check runs against a keel-store member and against the real etcd: the apiserver must
/// need nothing etcd does not do.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod keel {
            $(#[test] fn $name() { super::$name(super::Cluster::start_on(super::Backend::Keel, &[])); })*
        }
        mod etcd {
            $(#[test] fn $name() { super::$name(super::Cluster::start_on(super::Backend::Etcd, &[])); })*
        }
    };
}

on_both!(
    kubectl_version_and_discovery_name_the_served_api,
    apply_get_edit_and_delete_a_deployment_like_a_user,
    cordon_taint_and_label_a_node,
    kubectl_create_generators_send_protobuf_and_it_is_understood,
    server_side_apply_owns_fields_and_conflicts_with_other_writers,
    pods_are_bound_once_and_drain_evicts_them,
    a_delete_leaves_the_cascade_to_the_garbage_collector,
    priority_classes_endpoint_slices_and_controller_revisions_are_served,
);
use std::time::Duration;

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports:
        - containerPort: 80
        env:
        - {name: MODE, value: fast}
      - name: sidecar
        image: busybox:1.36
        command: ["sleep", "infinity"]
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
data:
  mode: fast
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
  namespace: shop
stringData:
  password: s3cret
"#;

const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n";

fn kubectl_version_and_discovery_name_the_served_api(c: Cluster) {
    let v = c.ok(&["version"]);
    assert!(v.contains("Server Version: v1.33.0"), "{v}");
    let r = c.ok(&["api-resources"]);
    for line in ["deployments", "deploy", "apps/v1", "configmaps", "namespaces", "leases", "coordination.k8s.io/v1"] {
        assert!(r.contains(line), "api-resources lacks {line}: {r}");
    }
    let ns = c.ok(&["get", "namespaces"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(n), "{ns}");
    }
    assert!(ns.starts_with("NAME") && ns.contains("STATUS") && ns.contains("Active"), "server-side table: {ns}");
    let explained = c.ok(&["explain", "pod.spec.containers"]);
    assert!(explained.contains("FIELD: containers <[]Container>") && explained.contains("imagePullPolicy"), "{explained}");
    // kube's request metrics: the namespace list above, by verb, resource, scope and code.
    let _ = c.kubectl(&["get", "namespace", "no-such-namespace"]);
    let metrics = c.ok(&["get", "--raw", "/metrics"]);
    let counted = |verb: &str, code: &str| {
        metrics.lines().any(|l| {
            l.starts_with(&format!("apiserver_request_total{{verb=\"{verb}\""))
                && l.contains("resource=\"namespaces\"")
                && l.contains(&format!("code=\"{code}\""))
                && l.contains("component=\"apiserver\"")
        })
    };
    assert!(counted("LIST", "200") && counted("GET", "404"), "{metrics}");
    assert!(metrics.contains("# TYPE apiserver_request_duration_seconds histogram"), "{metrics}");
}

fn apply_get_edit_and_delete_a_deployment_like_a_user(c: Cluster) {
    // Objects in a namespace that does not exist are refused.
    let out = c.kubectl_in(&["apply", "-f", "-"], Some(APP));
    assert!(!out.status.success() && text(&out.stderr).contains("namespaces \"shop\" not found"), "{}", text(&out.stderr));
    c.apply(NAMESPACE, &[]);
    let applied = c.apply(APP, &[]);
    for line in ["deployment.apps/web created", "service/web created", "configmap/settings created", "secret/creds created"] {
        assert!(applied.contains(line), "{applied}");
    }

    // Table output with the Deployment columns, and the other output formats.
    let table = c.ok(&["get", "deploy", "-n", "shop", "-o", "wide"]);
    assert!(table.contains("READY") && table.contains("UP-TO-DATE") && table.contains("nginx:1.27,busybox:1.36"), "{table}");
    let yaml = c.ok(&["get", "deploy", "web", "-n", "shop", "-o", "yaml"]);
    assert!(yaml.contains("revisionHistoryLimit: 10") && yaml.contains("maxSurge: 25%"), "defaults applied: {yaml}");
    let json: serde_json::Value = serde_json::from_str(&c.ok(&["get", "deploy", "web", "-n", "shop", "-o", "json"])).expect("json");
    assert_eq!(json["metadata"]["generation"], 1);
    let uid = json["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    assert_eq!(uid.len(), 36, "{uid}");
    let image = c.ok(&["get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
    assert_eq!(image, "nginx:1.27");
    let secret = c.ok(&["get", "secret", "creds", "-n", "shop", "-o", "jsonpath={.data.password}"]);
    assert_eq!(secret, "czNjcmV0", "stringData is stored as base64 data");

    // Selectors.
    assert!(c.ok(&["get", "deploy", "-n", "shop", "-l", "app=web", "-o", "name"]).contains("deployment.apps/web"));
    assert!(c.ok(&["get", "deploy", "-n", "shop", "-l", "app!=web", "-o", "name"]).trim().is_empty());
    assert!(c.ok(&["get", "cm", "-A", "--field-selector", "metadata.name=settings", "-o", "name"]).contains("configmap/settings"));

    // A watch sees a change made meanwhile.
    let watch_out = c.path("watch.out");
    let mut watch = c.spawn_kubectl(&["get", "deploy", "web", "-n", "shop", "-w", "-o", "jsonpath={.spec.replicas}{\"\\n\"}"], &watch_out);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(c.ok(&["scale", "deploy", "web", "-n", "shop", "--replicas=4"]).contains("scaled"));
    let seen = eventually(Duration::from_secs(15), || {
        let s = std::fs::read_to_string(&watch_out).unwrap_or_default();
        s.lines().any(|l| l.trim() == "4").then_some(s)
    });
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(seen.is_some(), "the watch missed the scale: {:?}", std::fs::read_to_string(&watch_out));

    // Label, annotate, describe.
    c.ok(&["label", "deploy", "web", "-n", "shop", "tier=front"]);
    c.ok(&["annotate", "deploy", "web", "-n", "shop", "owner=team-a"]);
    let described = c.ok(&["describe", "deploy", "web", "-n", "shop"]);
    assert!(described.contains("tier=front") && described.contains("owner: team-a") && described.contains("4 desired"), "{described}");

    // Apply again after editing the image and a label: the strategic merge patch path.
    let edited = APP.replace("image: nginx:1.27", "image: nginx:1.28").replacen("labels: {app: web}", "labels: {app: web, release: b}", 1);
    let applied = c.apply(&edited, &[]);
    assert!(applied.contains("deployment.apps/web configured") && applied.contains("configmap/settings unchanged"), "{applied}");
    let after: serde_json::Value = serde_json::from_str(&c.ok(&["get", "deploy", "web", "-n", "shop", "-o", "json"])).expect("json");
    let containers = &after["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["image"], "nginx:1.28");
    assert_eq!(containers[0]["env"][0]["value"], "fast", "the merge kept the container's other fields");
    assert_eq!(containers[1]["image"], "busybox:1.36", "and the other container");
    assert_eq!(after["metadata"]["labels"]["release"], "b");
    assert_eq!(after["metadata"]["labels"]["tier"], "front", "labels set by kubectl label stay");
    assert_eq!(after["metadata"]["generation"], 3, "bumped by the scale and by the image change, not by labels");
    assert_eq!(after["metadata"]["uid"].as_str(), Some(uid.as_str()));

    // A stale update is a 409.
    let mut stale = json.clone();
    stale["spec"]["replicas"] = serde_json::json!(7);
    let out = c.kubectl_in(&["replace", "-f", "-"], Some(&stale.to_string()));
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains("Conflict") && err.contains("the object has been modified"), "{err}");

    // Events list (empty here) and delete.
    c.ok(&["get", "events", "-n", "shop"]);
    assert!(c.ok(&["delete", "cm", "settings", "-n", "shop"]).contains("configmap \"settings\" deleted"));
    let missing = c.fails(&["get", "cm", "settings", "-n", "shop"]);
    assert!(missing.contains("Error from server (NotFound): configmaps \"settings\" not found"), "{missing}");

    // Deleting the namespace starts its termination; emptying it is the namespace controller's
    // (keel-controller-manager, not running here), and nothing new goes in meanwhile.
    c.ok(&["delete", "namespace", "shop", "--wait=false"]);
    assert_eq!(c.ok(&["get", "ns", "shop", "-o", "jsonpath={.status.phase}"]), "Terminating");
    let refused = c.fails(&["create", "configmap", "late", "-n", "shop"]);
    assert!(refused.contains("because it is being terminated"), "{refused}");
}

fn cordon_taint_and_label_a_node(c: Cluster) {
    c.apply("apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n", &[]);
    assert!(c.ok(&["cordon", "n1"]).contains("cordoned"));
    assert!(c.ok(&["get", "nodes"]).contains("SchedulingDisabled"));
    c.ok(&["taint", "node", "n1", "a=1:NoSchedule"]);
    c.ok(&["taint", "node", "n1", "b=2:NoExecute"]);
    c.ok(&["taint", "node", "n1", "a=1:NoSchedule-"]);
    let taints = c.ok(&["get", "node", "n1", "-o", "jsonpath={.spec.taints[*].key}"]);
    assert_eq!(taints, "b", "the whole remaining list replaces the old one");
    assert!(c.ok(&["uncordon", "n1"]).contains("uncordoned"));
    assert_eq!(c.ok(&["get", "node", "n1", "-o", "jsonpath={.spec.unschedulable}"]), "");
    c.ok(&["label", "node", "n1", "size=large"]);
    c.ok(&["label", "node", "n1", "size-"]);
    assert_eq!(c.ok(&["get", "node", "n1", "-o", "jsonpath={.metadata.labels.size}"]), "");
}

fn kubectl_create_generators_send_protobuf_and_it_is_understood(c: Cluster) {
    assert!(c.ok(&["create", "namespace", "team-a"]).contains("namespace/team-a created"));
    assert_eq!(c.ok(&["get", "ns", "team-a", "-o", "jsonpath={.status.phase}"]), "Active");
    c.ok(&["create", "configmap", "cfg", "-n", "team-a", "--from-literal=mode=fast"]);
    assert_eq!(c.ok(&["get", "cm", "cfg", "-n", "team-a", "-o", "jsonpath={.data.mode}"]), "fast");
    c.ok(&["create", "secret", "generic", "pw", "-n", "team-a", "--from-literal=password=s3cret"]);
    assert_eq!(c.ok(&["get", "secret", "pw", "-n", "team-a", "-o", "jsonpath={.type} {.data.password}"]), "Opaque czNjcmV0");
    c.ok(&["create", "deployment", "web", "-n", "team-a", "--image=nginx:1.27", "--replicas=2", "--port=80"]);
    c.ok(&["create", "deployment", "job", "-n", "team-a", "--image=busybox", "--", "sleep", "100"]);
    let web = c.ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "team-a",
        "-o",
        "jsonpath={.spec.replicas} {.spec.selector.matchLabels.app} {.spec.template.spec.containers[0].ports[0].containerPort}",
    ]);
    assert_eq!(web, "2 web 80");
    assert_eq!(
        c.ok(&["get", "deploy", "job", "-n", "team-a", "-o", "jsonpath={.spec.template.spec.containers[0].command}"]),
        r#"["sleep","100"]"#
    );
    let dup = c.fails(&["create", "namespace", "team-a"]);
    assert!(dup.contains("AlreadyExists"), "{dup}");
}

fn server_side_apply_owns_fields_and_conflicts_with_other_writers(c: Cluster) {
    let app = APP.replace("  namespace: shop\n", "");
    let out = c.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(&app));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("deployment.apps/web serverside-applied"), "{}", text(&out.stdout));
    let managers =
        c.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.managedFields[*].manager}/{.metadata.managedFields[*].operation}"]);
    assert_eq!(managers, "kubectl/Apply");
    // Another writer takes .spec.replicas; applying a different value conflicts (409) ...
    c.ok(&["scale", "deploy", "web", "--replicas=5"]);
    let out = c.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(&app));
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains("Apply failed with 1 conflict") && err.contains(".spec.replicas"), "{err}");
    assert_eq!(c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "5", "nothing written");
    // ... unless forced. Dropping a label from the configuration removes it.
    let without_label = app.replacen("labels: {app: web}", "labels: {}", 1);
    let out = c.kubectl_in(&["apply", "--server-side", "--force-conflicts", "-f", "-"], Some(&without_label));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}/{.metadata.labels.app}"]), "2/");
}

fn pods_are_bound_once_and_drain_evicts_them(c: Cluster) {
    c.apply("apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n", &[]);
    c.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - {name: c, image: busybox}\n", &[]);
    let binding = br#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p"},"target":{"kind":"Node","name":"n1"}}"#;
    let (code, body) = c.http("POST", "/api/v1/namespaces/default/pods/p/binding", "application/json", binding);
    assert_eq!(code, 201, "{body}");
    assert_eq!(c.ok(&["get", "pod", "p", "-o", "jsonpath={.spec.nodeName}"]), "n1");
    let (code, body) = c.http("POST", "/api/v1/namespaces/default/pods/p/binding", "application/json", binding);
    assert!(code == 409 && body.contains("already assigned to node"), "{code} {body}");
    // No kubelet runs here to end the pod's grace period, so drain asks for none.
    let drained = c.ok(&["drain", "n1", "--force", "--ignore-daemonsets", "--grace-period=0", "--timeout=30s"]);
    assert!(drained.contains("evicting pod default/p") || drained.contains("pod/p evicted"), "{drained}");
    assert!(drained.contains("node/n1 drained"), "{drained}");
    assert!(c.fails(&["get", "pod", "p"]).contains("NotFound"));
    assert!(c.ok(&["get", "nodes"]).contains("SchedulingDisabled"));
}

fn owned(kind: &str, name: &str, owner_kind: &str, owner: &str, uid: &str) -> String {
    let (api, spec) = match kind {
        "ReplicaSet" => (
            "apps/v1",
            format!(
                "spec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: c, image: busybox}}]}}\n"
            ),
        ),
        _ => ("v1", "spec: {containers: [{name: c, image: busybox}]}\n".to_string()),
    };
    let owner_api = if owner_kind == "Pod" { "v1" } else { "apps/v1" };
    format!(
        "apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name}\n  ownerReferences:\n  - {{apiVersion: {owner_api}, kind: {owner_kind}, name: {owner}, uid: {uid}, controller: true}}\n{spec}"
    )
}

fn tree(c: &Cluster, d: &str) {
    let deploy = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {d}\nspec:\n  selector: {{matchLabels: {{app: {d}}}}}\n  template:\n    metadata: {{labels: {{app: {d}}}}}\n    spec: {{containers: [{{name: c, image: busybox}}]}}\n"
    );
    c.apply(&deploy, &[]);
    let uid = c.ok(&["get", "deploy", d, "-o", "jsonpath={.metadata.uid}"]);
    c.apply(&owned("ReplicaSet", &format!("{d}-rs"), "Deployment", d, &uid), &[]);
    let rs_uid = c.ok(&["get", "rs", &format!("{d}-rs"), "-o", "jsonpath={.metadata.uid}"]);
    c.apply(&owned("Pod", &format!("{d}-pod"), "ReplicaSet", &format!("{d}-rs"), &rs_uid), &[]);
}

fn a_delete_leaves_the_cascade_to_the_garbage_collector(c: Cluster) {
    // kubectl's --cascade becomes the finalizer the collector (keel-controller-manager, not
    // running here) acts on; the dependents are untouched until it does.
    let marks = |d: &str| c.ok(&["get", "deploy", d, "-o", "jsonpath={.metadata.finalizers}/{.metadata.deletionTimestamp}"]);
    tree(&c, "keep");
    c.ok(&["delete", "deploy", "keep", "--cascade=orphan", "--wait=false"]);
    let m = marks("keep");
    assert!(m.starts_with(r#"["orphan"]/"#) && m.len() > r#"["orphan"]/"#.len(), "{m}");
    tree(&c, "fg");
    c.ok(&["delete", "deploy", "fg", "--cascade=foreground", "--wait=false"]);
    assert!(marks("fg").starts_with(r#"["foregroundDeletion"]/"#), "{}", marks("fg"));
    tree(&c, "bg");
    c.ok(&["delete", "deploy", "bg"]);
    assert!(c.fails(&["get", "deploy", "bg"]).contains("NotFound"), "Background: the owner goes at once");
    let left = c.ok(&["get", "rs,pods", "-o", "name"]);
    for d in ["keep", "fg", "bg"] {
        assert!(left.contains(&format!("{d}-rs")) && left.contains(&format!("{d}-pod")), "dependents are the collector's: {left}");
    }
    // The collector's last step, removing the finalizer, deletes the owner.
    c.ok(&["patch", "deploy", "keep", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
    assert!(c.fails(&["get", "deploy", "keep"]).contains("NotFound"));
}

fn priority_classes_endpoint_slices_and_controller_revisions_are_served(c: Cluster) {
    let pcs = c.ok(&["get", "priorityclasses"]);
    assert!(pcs.contains("system-node-critical") && pcs.contains("2000001000") && pcs.contains("system-cluster-critical"), "{pcs}");
    let namespaces = c.ok(&["get", "ns", "-o", "name"]);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(namespaces.contains(&format!("namespace/{ns}")), "{namespaces}");
    }
    c.apply("apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: high\nvalue: 1000\n", &[]);
    c.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: urgent\nspec:\n  priorityClassName: high\n  containers:\n  - {name: c, image: busybox}\n", &[]);
    assert_eq!(c.ok(&["get", "pod", "urgent", "-o", "jsonpath={.spec.priority}/{.spec.preemptionPolicy}"]), "1000/PreemptLowerPriority");
    let refused = c.fails(&["run", "gold", "--image=busybox", "--overrides", r#"{"spec":{"priorityClassName":"gold"}}"#]);
    assert!(refused.contains("Forbidden") && refused.contains("no PriorityClass with name gold was found"), "{refused}");
    c.apply(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  labels: {kubernetes.io/service-name: web}\naddressType: IPv4\nendpoints:\n- addresses: [10.0.0.7]\nports:\n- {port: 80}\n",
        &[],
    );
    let slices = c.ok(&["get", "endpointslices", "-l", "kubernetes.io/service-name=web"]);
    assert!(slices.contains("web-1") && slices.contains("IPv4") && slices.contains("10.0.0.7"), "{slices}");
    c.apply("apiVersion: apps/v1\nkind: ControllerRevision\nmetadata:\n  name: ds-1\nrevision: 1\ndata: {spec: {template: {}}}\n", &[]);
    assert!(c.ok(&["get", "controllerrevisions"]).contains("ds-1"));
    let changed = c.fails(&["patch", "controllerrevision", "ds-1", "--type=merge", "-p", r#"{"data":{"spec":{"x":1}}}"#]);
    assert!(changed.contains("field is immutable"), "{changed}");
}
