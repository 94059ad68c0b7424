//! Defaulting, as Kubernetes does it on create and update: fields a user may leave out get the
//! value kube-apiserver would store, so `kubectl get -o yaml` and controllers see the same
//! object they would on Kubernetes.

use base64::Engine;
use serde_json::{Map, Value, json};

fn child<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let o = v.as_object_mut()?;
    let e = o.entry(key).or_insert_with(|| json!({}));
    if e.is_null() {
        *e = json!({});
    }
    e.as_object_mut()
}

fn default(m: &mut Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.into(), value);
    }
}

/// A container's image pull policy: `Always` for `:latest` or no tag, else `IfNotPresent`.
fn pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    let tag = if last.contains('@') { Some("digest") } else { last.split_once(':').map(|(_, t)| t) };
    match tag {
        None | Some("latest") => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// Defaults of a pod spec (pods and pod templates).
pub fn pod_spec(spec: &mut Value) {
    let Some(s) = spec.as_object_mut() else { return };
    default(s, "restartPolicy", json!("Always"));
    default(s, "dnsPolicy", json!("ClusterFirst"));
    default(s, "schedulerName", json!("default-scheduler"));
    default(s, "terminationGracePeriodSeconds", json!(30));
    default(s, "securityContext", json!({}));
    for list in ["containers", "initContainers"] {
        for c in s.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            let Some(c) = c.as_object_mut() else { continue };
            let image = c.get("image").and_then(Value::as_str).unwrap_or("").to_string();
            default(c, "imagePullPolicy", json!(pull_policy(&image)));
            default(c, "terminationMessagePath", json!("/dev/termination-log"));
            default(c, "terminationMessagePolicy", json!("File"));
            default(c, "resources", json!({}));
            for p in c.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
                if let Some(p) = p.as_object_mut() {
                    default(p, "protocol", json!("TCP"));
                }
            }
        }
    }
}

fn workload(obj: &mut Value, kind: &str) {
    let Some(spec) = obj.get_mut("spec") else { return };
    if let Some(s) = spec.as_object_mut() {
        if kind != "DaemonSet" {
            default(s, "replicas", json!(1));
        }
        default(s, "revisionHistoryLimit", json!(10));
        match kind {
            "Deployment" => {
                default(s, "progressDeadlineSeconds", json!(600));
                default(s, "strategy", json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}));
            }
            "DaemonSet" => {
                default(s, "updateStrategy", json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}));
            }
            _ => {}
        }
        if kind == "ReplicaSet" {
            s.remove("revisionHistoryLimit");
        }
    }
    if let Some(t) = spec.pointer_mut("/template/spec") {
        pod_spec(t);
    }
}

/// Fills in the defaults of `obj`, a `kind`.
pub fn apply(kind: &str, obj: &mut Value) {
    match kind {
        "Pod" => {
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec(spec);
            }
            if let Some(status) = obj_status(obj) {
                default(status, "phase", json!("Pending"));
            }
        }
        "Deployment" | "ReplicaSet" | "DaemonSet" => workload(obj, kind),
        "Namespace" => {
            let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
            if let Some(labels) = obj.get_mut("metadata").and_then(|m| child(m, "labels")) {
                labels.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            if let Some(spec) = child(obj, "spec") {
                default(spec, "finalizers", json!(["kubernetes"]));
            }
            if let Some(status) = obj_status(obj) {
                default(status, "phase", json!("Active"));
            }
        }
        "Service" => {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                default(spec, "type", json!("ClusterIP"));
                default(spec, "sessionAffinity", json!("None"));
                for p in spec.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
                    if let Some(p) = p.as_object_mut() {
                        default(p, "protocol", json!("TCP"));
                        let port = p.get("port").cloned().unwrap_or(Value::Null);
                        default(p, "targetPort", port);
                    }
                }
            }
        }
        "Secret" => {
            if let Some(o) = obj.as_object_mut() {
                if o.get("type").and_then(Value::as_str) == Some("") {
                    o.remove("type");
                }
                default(o, "type", json!("Opaque"));
                // stringData is write-only: it lands in data, base64 encoded, over what was there.
                if let Some(Value::Object(plain)) = o.remove("stringData") {
                    let data = o.entry("data").or_insert_with(|| json!({}));
                    if let Some(d) = data.as_object_mut() {
                        for (k, v) in plain {
                            let bytes = v.as_str().unwrap_or_default().as_bytes().to_vec();
                            d.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(bytes)));
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

fn obj_status(v: &mut Value) -> Option<&mut Map<String, Value>> {
    child(v, "status")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_gets_kubernetes_defaults() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}});
        apply("Deployment", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("registry:5000/nginx"), "Always");
        assert_eq!(pull_policy("registry:5000/nginx:1.2"), "IfNotPresent");
        assert_eq!(pull_policy("nginx@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn secret_string_data_becomes_data() {
        let mut s = json!({"data": {"a": "eA=="}, "stringData": {"b": "s3cret"}});
        apply("Secret", &mut s);
        assert_eq!(s, json!({"type": "Opaque", "data": {"a": "eA==", "b": "czNjcmV0"}}));
    }

    #[test]
    fn user_values_win_and_namespaces_are_labelled() {
        let mut ns = json!({"metadata": {"name": "x"}, "spec": {"finalizers": []}});
        apply("Namespace", &mut ns);
        assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "x");
        assert_eq!(ns["spec"]["finalizers"], json!([]));
        assert_eq!(ns["status"]["phase"], "Active");
    }
}
