//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), which kubectl's
//! `create namespace|configmap|secret|deployment` send and for which kubectl has no JSON
//! fallback. The body is `k8s\0` and a `runtime.Unknown` whose `raw` is the object's message
//! (types from `k8s-pb`).
//!
//! Each message is turned into the object's JSON by taking out the fields this module knows;
//! a message with anything left over is refused (415) rather than stored without it, so no
//! field a client sent is lost silently. The fields known are those of Namespace, ConfigMap,
//! Secret and ServiceAccount (but its `secrets`), and of a Deployment as kubectl's generators fill it in (containers with image,
//! command, args, ports, env, resources).

use crate::error::ApiError;
use base64::Engine;
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::rbac::v1 as rbac;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message;
use serde_json::{Map, Value, json};

/// The envelope's magic prefix.
const MAGIC: &[u8] = b"k8s\0";

/// True when `buf` (a message's encoding) holds only zero values: Go's encoder writes every
/// non-pointer field, so `""`, `0`, `false` and messages of those mean "not set". (A string
/// whose bytes happen to read as such a message would pass too; kubectl never sends one where
/// this module looks.)
fn all_zero(mut buf: &[u8]) -> bool {
    use prost::encoding::{WireType, decode_key, decode_varint};
    while !buf.is_empty() {
        let Ok((_, wire)) = decode_key(&mut buf) else { return false };
        match wire {
            WireType::Varint => match decode_varint(&mut buf) {
                Ok(0) => {}
                _ => return false,
            },
            WireType::LengthDelimited => {
                let Ok(len) = decode_varint(&mut buf) else { return false };
                let Some(len) = usize::try_from(len).ok().filter(|l| *l <= buf.len()) else { return false };
                if len > 0 && !all_zero(&buf[..len]) {
                    return false;
                }
                buf = &buf[len..];
            }
            WireType::SixtyFourBit if buf.len() >= 8 && buf[..8] == [0; 8] => buf = &buf[8..],
            WireType::ThirtyTwoBit if buf.len() >= 4 && buf[..4] == [0; 4] => buf = &buf[4..],
            _ => return false,
        }
    }
    true
}

/// Go's zero string means unset.
fn text(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

/// Go's zero number means unset (for fields that are not pointers in Go).
fn num(v: Option<i32>) -> Option<i32> {
    v.filter(|n| *n != 0)
}

/// A field this module does not decode was set: refuse, naming what is left.
fn check_empty<T: Message + std::fmt::Debug>(rest: &T, what: &str) -> Result<(), ApiError> {
    if all_zero(&rest.encode_to_vec()) {
        return Ok(());
    }
    let mut left = format!("{rest:?}");
    left.truncate(300);
    Err(ApiError::Unsupported(format!(
        "the protobuf {what} sets fields this server does not decode from protobuf ({left}); send the object as JSON (e.g. kubectl create -f)"
    )))
}

fn put<T: Into<Value>>(m: &mut Map<String, Value>, k: &str, v: Option<T>) {
    if let Some(v) = v {
        m.insert(k.into(), v.into());
    }
}

fn put_list(m: &mut Map<String, Value>, k: &str, v: Vec<Value>) {
    if !v.is_empty() {
        m.insert(k.into(), Value::Array(v));
    }
}

fn put_map(m: &mut Map<String, Value>, k: &str, v: std::collections::BTreeMap<String, String>) {
    if !v.is_empty() {
        m.insert(k.into(), json!(v));
    }
}

fn object_meta(mut o: meta::ObjectMeta) -> Result<Value, ApiError> {
    let mut m = Map::new();
    put(&mut m, "name", text(o.name.take()));
    put(&mut m, "generateName", text(o.generate_name.take()));
    put(&mut m, "namespace", text(o.namespace.take()));
    put(&mut m, "resourceVersion", text(o.resource_version.take()));
    put_map(&mut m, "labels", std::mem::take(&mut o.labels));
    put_map(&mut m, "annotations", std::mem::take(&mut o.annotations));
    put_list(&mut m, "finalizers", std::mem::take(&mut o.finalizers).into_iter().map(Value::from).collect());
    // Set by servers, not clients: ignored as a server would overwrite them.
    o.uid = None;
    o.creation_timestamp = None;
    o.generation = None;
    o.self_link = None;
    o.managed_fields.clear();
    check_empty(&o, "metadata")?;
    Ok(Value::Object(m))
}

fn label_selector(mut s: meta::LabelSelector) -> Result<Value, ApiError> {
    let mut m = Map::new();
    put_map(&mut m, "matchLabels", std::mem::take(&mut s.match_labels));
    let mut exprs = Vec::new();
    for mut e in std::mem::take(&mut s.match_expressions) {
        let mut x = Map::new();
        put(&mut x, "key", text(e.key.take()));
        put(&mut x, "operator", text(e.operator.take()));
        put_list(&mut x, "values", std::mem::take(&mut e.values).into_iter().map(Value::from).collect());
        check_empty(&e, "label selector requirement")?;
        exprs.push(Value::Object(x));
    }
    put_list(&mut m, "matchExpressions", exprs);
    check_empty(&s, "label selector")?;
    Ok(Value::Object(m))
}

fn container(mut c: core::Container) -> Result<Value, ApiError> {
    let mut m = Map::new();
    put(&mut m, "name", text(c.name.take()));
    put(&mut m, "image", text(c.image.take()));
    put_list(&mut m, "command", std::mem::take(&mut c.command).into_iter().map(Value::from).collect());
    put_list(&mut m, "args", std::mem::take(&mut c.args).into_iter().map(Value::from).collect());
    put(&mut m, "workingDir", text(c.working_dir.take()));
    put(&mut m, "imagePullPolicy", text(c.image_pull_policy.take()));
    put(&mut m, "terminationMessagePath", text(c.termination_message_path.take()));
    put(&mut m, "terminationMessagePolicy", text(c.termination_message_policy.take()));
    let mut ports = Vec::new();
    for mut p in std::mem::take(&mut c.ports) {
        let mut x = Map::new();
        put(&mut x, "name", text(p.name.take()));
        put(&mut x, "containerPort", num(p.container_port.take()));
        put(&mut x, "hostPort", num(p.host_port.take()));
        put(&mut x, "protocol", text(p.protocol.take()));
        check_empty(&p, "container port")?;
        ports.push(Value::Object(x));
    }
    put_list(&mut m, "ports", ports);
    let mut env = Vec::new();
    for mut e in std::mem::take(&mut c.env) {
        let mut x = Map::new();
        put(&mut x, "name", text(e.name.take()));
        put(&mut x, "value", e.value.take());
        check_empty(&e, "environment variable")?;
        env.push(Value::Object(x));
    }
    put_list(&mut m, "env", env);
    if let Some(mut r) = c.resources.take() {
        let quantities = |q: std::collections::BTreeMap<String, k8s_pb::apimachinery::pkg::api::resource::Quantity>| -> Value {
            Value::Object(q.into_iter().map(|(k, v)| (k, json!(v.string.unwrap_or_default()))).collect())
        };
        let mut x = Map::new();
        let limits = std::mem::take(&mut r.limits);
        let requests = std::mem::take(&mut r.requests);
        if !limits.is_empty() {
            x.insert("limits".into(), quantities(limits));
        }
        if !requests.is_empty() {
            x.insert("requests".into(), quantities(requests));
        }
        check_empty(&r, "resource requirements")?;
        m.insert("resources".into(), Value::Object(x));
    }
    check_empty(&c, "container")?;
    Ok(Value::Object(m))
}

fn pod_template(mut t: core::PodTemplateSpec) -> Result<Value, ApiError> {
    let mut m = Map::new();
    if let Some(md) = t.metadata.take() {
        m.insert("metadata".into(), object_meta(md)?);
    }
    if let Some(mut s) = t.spec.take() {
        let mut x = Map::new();
        let containers = std::mem::take(&mut s.containers).into_iter().map(container).collect::<Result<Vec<_>, _>>()?;
        x.insert("containers".into(), Value::Array(containers));
        put(&mut x, "restartPolicy", text(s.restart_policy.take()));
        put(&mut x, "dnsPolicy", text(s.dns_policy.take()));
        put(&mut x, "schedulerName", text(s.scheduler_name.take()));
        put(&mut x, "terminationGracePeriodSeconds", s.termination_grace_period_seconds.take());
        put(&mut x, "serviceAccountName", text(s.service_account_name.take()));
        put_map(&mut x, "nodeSelector", std::mem::take(&mut s.node_selector));
        check_empty(&s, "pod spec")?;
        m.insert("spec".into(), Value::Object(x));
    }
    check_empty(&t, "pod template")?;
    Ok(Value::Object(m))
}

fn int_or_string(v: k8s_pb::apimachinery::pkg::util::intstr::IntOrString) -> Value {
    match (v.r#type, v.int_val, v.str_val) {
        (Some(1), _, Some(s)) => json!(s),
        (_, Some(i), _) => json!(i),
        (_, _, Some(s)) => json!(s),
        _ => json!(0),
    }
}

fn deployment(mut d: apps::Deployment) -> Result<Value, ApiError> {
    let mut m = Map::new();
    if let Some(md) = d.metadata.take() {
        m.insert("metadata".into(), object_meta(md)?);
    }
    if let Some(mut s) = d.spec.take() {
        let mut x = Map::new();
        put(&mut x, "replicas", s.replicas.take());
        if let Some(sel) = s.selector.take() {
            x.insert("selector".into(), label_selector(sel)?);
        }
        if let Some(t) = s.template.take() {
            x.insert("template".into(), pod_template(t)?);
        }
        if let Some(mut st) = s.strategy.take() {
            let mut y = Map::new();
            put(&mut y, "type", text(st.r#type.take()));
            if let Some(mut ru) = st.rolling_update.take() {
                let mut z = Map::new();
                put(&mut z, "maxUnavailable", ru.max_unavailable.take().map(int_or_string));
                put(&mut z, "maxSurge", ru.max_surge.take().map(int_or_string));
                check_empty(&ru, "rolling update")?;
                y.insert("rollingUpdate".into(), Value::Object(z));
            }
            check_empty(&st, "strategy")?;
            x.insert("strategy".into(), Value::Object(y));
        }
        put(&mut x, "minReadySeconds", num(s.min_ready_seconds.take()));
        put(&mut x, "revisionHistoryLimit", s.revision_history_limit.take());
        put(&mut x, "paused", s.paused.take().filter(|p| *p));
        put(&mut x, "progressDeadlineSeconds", s.progress_deadline_seconds.take());
        check_empty(&s, "deployment spec")?;
        m.insert("spec".into(), Value::Object(x));
    }
    // A client never sets status; generators send an empty one.
    d.status = None;
    check_empty(&d, "deployment")?;
    Ok(Value::Object(m))
}

fn with_type(mut obj: Value, api_version: &str, kind: &str) -> Value {
    if let Some(o) = obj.as_object_mut() {
        o.insert("apiVersion".into(), json!(api_version));
        o.insert("kind".into(), json!(kind));
    }
    obj
}

fn strings(v: Vec<String>) -> Vec<Value> {
    v.into_iter().map(Value::from).collect()
}

/// A binding (`kubectl create rolebinding|clusterrolebinding`): roleRef and subjects.
fn binding(md: Option<meta::ObjectMeta>, subjects: Vec<rbac::Subject>, role_ref: Option<rbac::RoleRef>) -> Result<Value, ApiError> {
    let mut m = Map::new();
    if let Some(md) = md {
        m.insert("metadata".into(), object_meta(md)?);
    }
    let subjects: Vec<Value> = subjects
        .into_iter()
        .map(|s| {
            let mut o = Map::new();
            put(&mut o, "kind", text(s.kind));
            put(&mut o, "apiGroup", s.api_group);
            put(&mut o, "name", text(s.name));
            put(&mut o, "namespace", text(s.namespace));
            Value::Object(o)
        })
        .collect();
    put_list(&mut m, "subjects", subjects);
    if let Some(r) = role_ref {
        m.insert(
            "roleRef".into(),
            json!({"apiGroup": r.api_group.unwrap_or_default(), "kind": r.kind.unwrap_or_default(), "name": r.name.unwrap_or_default()}),
        );
    }
    Ok(Value::Object(m))
}

/// A role's rules (`kubectl create role|clusterrole`).
fn role(md: Option<meta::ObjectMeta>, rules: Vec<rbac::PolicyRule>) -> Result<Value, ApiError> {
    let mut m = Map::new();
    if let Some(md) = md {
        m.insert("metadata".into(), object_meta(md)?);
    }
    let rules: Vec<Value> = rules
        .into_iter()
        .map(|r| {
            let mut o = Map::new();
            o.insert("verbs".into(), Value::Array(strings(r.verbs)));
            put_list(&mut o, "apiGroups", strings(r.api_groups));
            put_list(&mut o, "resources", strings(r.resources));
            put_list(&mut o, "resourceNames", strings(r.resource_names));
            put_list(&mut o, "nonResourceURLs", strings(r.non_resource_ur_ls));
            Value::Object(o)
        })
        .collect();
    put_list(&mut m, "rules", rules);
    Ok(Value::Object(m))
}

/// The envelope of a protobuf body: its apiVersion, kind and the object's message.
pub(crate) fn envelope(body: &[u8]) -> Result<(String, String, Vec<u8>), ApiError> {
    let bad = |e: String| ApiError::BadRequest(format!("protobuf body: {e}"));
    let rest = body.strip_prefix(MAGIC).ok_or_else(|| bad("missing the k8s\\0 prefix".into()))?;
    let unknown = Unknown::decode(rest).map_err(|e| bad(e.to_string()))?;
    if unknown.content_encoding.as_deref().is_some_and(|e| !e.is_empty()) {
        return Err(bad("content encodings are not supported".into()));
    }
    let tm = unknown.type_meta.unwrap_or_default();
    Ok((tm.api_version.unwrap_or_default(), tm.kind.unwrap_or_default(), unknown.raw.unwrap_or_default()))
}

/// The JSON object a protobuf request body holds.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let bad = |e: String| ApiError::BadRequest(format!("protobuf body: {e}"));
    let (api_version, kind, raw) = envelope(body)?;
    let raw = raw.as_slice();
    let obj = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => {
            let mut n = core::Namespace::decode(raw).map_err(|e| bad(e.to_string()))?;
            let mut m = Map::new();
            if let Some(md) = n.metadata.take() {
                m.insert("metadata".into(), object_meta(md)?);
            }
            if let Some(mut spec) = n.spec.take() {
                put_list(&mut m, "finalizers", std::mem::take(&mut spec.finalizers).into_iter().map(Value::from).collect());
                if let Some(f) = m.remove("finalizers") {
                    m.insert("spec".into(), json!({"finalizers": f}));
                }
                check_empty(&spec, "namespace spec")?;
            }
            n.status = None;
            check_empty(&n, "namespace")?;
            Value::Object(m)
        }
        ("v1", "ServiceAccount") => {
            let mut sa = core::ServiceAccount::decode(raw).map_err(|e| bad(e.to_string()))?;
            let mut m = Map::new();
            if let Some(md) = sa.metadata.take() {
                m.insert("metadata".into(), object_meta(md)?);
            }
            put(&mut m, "automountServiceAccountToken", sa.automount_service_account_token.take());
            let pulls =
                std::mem::take(&mut sa.image_pull_secrets).into_iter().map(|r| json!({"name": r.name.unwrap_or_default()})).collect();
            put_list(&mut m, "imagePullSecrets", pulls);
            check_empty(&sa, "serviceaccount")?;
            Value::Object(m)
        }
        ("v1", "ConfigMap") => {
            let mut c = core::ConfigMap::decode(raw).map_err(|e| bad(e.to_string()))?;
            let mut m = Map::new();
            if let Some(md) = c.metadata.take() {
                m.insert("metadata".into(), object_meta(md)?);
            }
            put_map(&mut m, "data", std::mem::take(&mut c.data));
            let binary = std::mem::take(&mut c.binary_data);
            if !binary.is_empty() {
                let enc: Map<String, Value> =
                    binary.into_iter().map(|(k, v)| (k, json!(base64::engine::general_purpose::STANDARD.encode(v)))).collect();
                m.insert("binaryData".into(), Value::Object(enc));
            }
            put(&mut m, "immutable", c.immutable.take());
            check_empty(&c, "configmap")?;
            Value::Object(m)
        }
        ("v1", "Secret") => {
            let mut s = core::Secret::decode(raw).map_err(|e| bad(e.to_string()))?;
            let mut m = Map::new();
            if let Some(md) = s.metadata.take() {
                m.insert("metadata".into(), object_meta(md)?);
            }
            let data = std::mem::take(&mut s.data);
            if !data.is_empty() {
                let enc: Map<String, Value> =
                    data.into_iter().map(|(k, v)| (k, json!(base64::engine::general_purpose::STANDARD.encode(v)))).collect();
                m.insert("data".into(), Value::Object(enc));
            }
            put_map(&mut m, "stringData", std::mem::take(&mut s.string_data));
            put(&mut m, "type", text(s.r#type.take()));
            put(&mut m, "immutable", s.immutable.take());
            check_empty(&s, "secret")?;
            Value::Object(m)
        }
        ("apps/v1", "Deployment") => deployment(apps::Deployment::decode(raw).map_err(|e| bad(e.to_string()))?)?,
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
            let b = rbac::RoleBinding::decode(raw).map_err(|e| bad(e.to_string()))?;
            binding(b.metadata, b.subjects, b.role_ref)?
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            let b = rbac::ClusterRoleBinding::decode(raw).map_err(|e| bad(e.to_string()))?;
            binding(b.metadata, b.subjects, b.role_ref)?
        }
        ("rbac.authorization.k8s.io/v1", "Role") => {
            let r = rbac::Role::decode(raw).map_err(|e| bad(e.to_string()))?;
            role(r.metadata, r.rules)?
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
            let r = rbac::ClusterRole::decode(raw).map_err(|e| bad(e.to_string()))?;
            if r.aggregation_rule.as_ref().is_some_and(|a| !a.cluster_role_selectors.is_empty()) {
                return Err(ApiError::Unsupported("protobuf aggregationRule bodies are not decoded by this server; send JSON".into()));
            }
            role(r.metadata, r.rules)?
        }
        _ => {
            return Err(ApiError::Unsupported(format!(
                "protobuf bodies of {api_version} {kind} are not decoded by this server; send JSON"
            )));
        }
    };
    Ok(with_type(obj, &api_version, &kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let u = Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut out = MAGIC.to_vec();
        out.extend(u.encode_to_vec());
        out
    }

    #[test]
    fn kubectl_create_namespace_decodes() {
        // The exact bytes kubectl 1.32 sends for `kubectl create namespace x`.
        let body = b"k8s\x00\n\x0f\n\x02v1\x12\tNamespace\x12\x19\n\x11\n\x01x\x12\x00\x1a\x00\"\x00*\x002\x008\x00B\x00\x12\x00\x1a\x02\n\x00\x1a\x00\"\x00";
        let obj = decode(body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(obj["kind"], "Namespace");
        assert_eq!(obj["apiVersion"], "v1");
        assert_eq!(obj["metadata"]["name"], "x");
    }

    #[test]
    fn a_deployment_from_the_generator_decodes_and_unknown_fields_are_refused() {
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("app".to_string(), "web".to_string());
        let d = apps::Deployment {
            metadata: Some(meta::ObjectMeta { name: Some("web".into()), labels: labels.clone(), ..Default::default() }),
            spec: Some(apps::DeploymentSpec {
                replicas: Some(2),
                selector: Some(meta::LabelSelector { match_labels: labels.clone(), ..Default::default() }),
                template: Some(core::PodTemplateSpec {
                    metadata: Some(meta::ObjectMeta { labels, ..Default::default() }),
                    spec: Some(core::PodSpec {
                        containers: vec![core::Container {
                            name: Some("nginx".into()),
                            image: Some("nginx:1.27".into()),
                            resources: Some(Default::default()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                }),
                strategy: Some(Default::default()),
                ..Default::default()
            }),
            status: Some(Default::default()),
        };
        let obj = decode(&envelope("apps/v1", "Deployment", d.encode_to_vec())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(obj["spec"]["replicas"], 2);
        assert_eq!(obj["spec"]["selector"]["matchLabels"]["app"], "web");
        assert_eq!(obj["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.27");

        let mut odd = d.clone();
        if let Some(spec) = odd.spec.as_mut().and_then(|s| s.template.as_mut()).and_then(|t| t.spec.as_mut()) {
            spec.host_network = Some(true);
        }
        let refused = decode(&envelope("apps/v1", "Deployment", odd.encode_to_vec()));
        assert!(matches!(refused, Err(ApiError::Unsupported(_))), "{refused:?}");
    }

    #[test]
    fn role_bindings_from_kubectl_create_decode() {
        let b = rbac::RoleBinding {
            metadata: Some(meta::ObjectMeta { name: Some("jane-edit".into()), ..Default::default() }),
            subjects: vec![rbac::Subject {
                kind: Some("User".into()),
                api_group: Some("rbac.authorization.k8s.io".into()),
                name: Some("jane".into()),
                namespace: None,
            }],
            role_ref: Some(rbac::RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: Some("ClusterRole".into()),
                name: Some("edit".into()),
            }),
        };
        let obj = decode(&envelope("rbac.authorization.k8s.io/v1", "RoleBinding", b.encode_to_vec())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(obj["roleRef"], json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"}));
        assert_eq!(obj["subjects"], json!([{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "jane"}]));
        let r = rbac::Role {
            metadata: Some(meta::ObjectMeta { name: Some("reader".into()), ..Default::default() }),
            rules: vec![rbac::PolicyRule {
                verbs: vec!["get".into()],
                api_groups: vec![String::new()],
                resources: vec!["pods".into()],
                ..Default::default()
            }],
        };
        let obj = decode(&envelope("rbac.authorization.k8s.io/v1", "Role", r.encode_to_vec())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(obj["rules"], json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]));
    }

    #[test]
    fn secrets_and_configmaps_keep_their_data() {
        let mut data = std::collections::BTreeMap::new();
        data.insert("password".to_string(), b"s3cret".to_vec());
        let s = core::Secret { data, r#type: Some("Opaque".into()), ..Default::default() };
        let obj = decode(&envelope("v1", "Secret", s.encode_to_vec())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(obj["data"]["password"], "czNjcmV0");
        assert!(decode(b"not protobuf").is_err());
        assert!(matches!(decode(&envelope("v1", "Pod", Vec::new())), Err(ApiError::Unsupported(_))));
    }
}
