//! A container's environment and command line, as kubelet's `makeEnvironmentVariables` builds
//! them: `envFrom` first (with `prefix`), then `env` in order (later wins); `$(VAR)` in values,
//! `command` and `args` expands to variables defined before it (`$$` is a literal `$`, unknown
//! references stay as written); `valueFrom` reads configMaps, secrets, the pod's fields and the
//! container's resources. Missing objects or keys are [`Error::PodSpec`] with kubelet's messages
//! (`configmap "x" not found`, `couldn't find key k in ConfigMap ns/x`) unless `optional`.
//!
//! Pure: configMaps and secrets come in as [`Refs`], fetched by the worker beforehand.

use crate::error::{Error, Result};
use crate::pod::quantity::{cpu_millis, memory_bytes};
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVarSource, ObjectFieldSelector, Pod, ResourceFieldSelector, Secret};
use std::collections::BTreeMap;

/// The configMaps and secrets a pod refers to that exist, by name (its namespace's), and the
/// ServiceAccount tokens its projections ask for.
#[derive(Debug, Clone, Default)]
pub struct Refs {
    /// ConfigMaps.
    pub config_maps: BTreeMap<String, ConfigMap>,
    /// Secrets.
    pub secrets: BTreeMap<String, Secret>,
    /// Tokens by (audience, expirationSeconds) of their `serviceAccountToken` projections.
    pub tokens: BTreeMap<(String, i64), String>,
}

impl Refs {
    /// The value of `key` in configMap `name` (data, then binaryData).
    pub fn config_map_key(&self, name: &str, key: &str) -> Option<Vec<u8>> {
        let cm = self.config_maps.get(name)?;
        cm.data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| v.as_bytes().to_vec())
            .or_else(|| cm.binary_data.as_ref().and_then(|d| d.get(key)).map(|b| b.0.clone()))
    }

    /// The value of `key` in secret `name` (data, then stringData).
    pub fn secret_key(&self, name: &str, key: &str) -> Option<Vec<u8>> {
        let s = self.secrets.get(name)?;
        s.data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .or_else(|| s.string_data.as_ref().and_then(|d| d.get(key)).map(|v| v.as_bytes().to_vec()))
    }
}

/// Names of configMaps and secrets the pod's env, envFrom and volumes refer to.
pub fn referenced(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let (mut cms, mut secrets) = (Vec::new(), Vec::new());
    let Some(spec) = &pod.spec else { return (cms, secrets) };
    for c in spec.init_containers.iter().flatten().chain(spec.containers.iter()) {
        for e in c.env.iter().flatten() {
            if let Some(s) = &e.value_from {
                if let Some(r) = &s.config_map_key_ref {
                    cms.push(r.name.clone());
                }
                if let Some(r) = &s.secret_key_ref {
                    secrets.push(r.name.clone());
                }
            }
        }
        for f in c.env_from.iter().flatten() {
            if let Some(r) = &f.config_map_ref {
                cms.push(r.name.clone());
            }
            if let Some(r) = &f.secret_ref {
                secrets.push(r.name.clone());
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(c) = &v.config_map {
            cms.push(c.name.clone());
        }
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.push(s);
        }
        for p in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &p.config_map {
                cms.push(c.name.clone());
            }
            if let Some(s) = &p.secret {
                secrets.push(s.name.clone());
            }
        }
    }
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    (cms, secrets)
}

/// Expands `$(VAR)` in `s` from `vars`.
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'('
                && let Some(end) = s[i + 2..].find(')')
            {
                let name = &s[i + 2..i + 2 + end];
                if let Some(v) = vars.get(name) {
                    out.push_str(v);
                    i += end + 3;
                    continue;
                }
            }
        }
        let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// A pod field for `fieldRef` (and the downward API).
pub fn field(pod: &Pod, f: &ObjectFieldSelector, host_ip: &str) -> Result<String> {
    let m = &pod.metadata;
    let path = f.field_path.as_str();
    let map_key = |prefix: &str, map: &Option<BTreeMap<String, String>>| -> Option<Option<String>> {
        let key = path.strip_prefix(prefix)?.strip_prefix("['")?.strip_suffix("']")?;
        Some(map.as_ref().and_then(|m| m.get(key)).cloned())
    };
    if let Some(v) = map_key("metadata.labels", &m.labels).or_else(|| map_key("metadata.annotations", &m.annotations)) {
        return Ok(v.unwrap_or_default());
    }
    let fmt_map =
        |map: &Option<BTreeMap<String, String>>| map.iter().flatten().map(|(k, v)| format!("{k}=\"{v}\"")).collect::<Vec<_>>().join("\n");
    let status = pod.status.clone().unwrap_or_default();
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_else(|| "default".into()),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => fmt_map(&m.labels),
        "metadata.annotations" => fmt_map(&m.annotations),
        "spec.nodeName" => pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.hostIP" => status.host_ip.unwrap_or_else(|| host_ip.to_string()),
        "status.hostIPs" => status.host_ips.iter().flatten().map(|i| i.ip.clone()).collect::<Vec<_>>().join(","),
        "status.podIP" => status.pod_ip.unwrap_or_default(),
        "status.podIPs" => status.pod_ips.iter().flatten().map(|i| i.ip.clone()).collect::<Vec<_>>().join(","),
        other => return Err(Error::config(format!("unsupported fieldRef fieldPath {other:?}"))),
    })
}

/// A container resource for `resourceFieldRef`, in units of `divisor` (rounded up, as kubelet).
/// A missing limit reads the node's allocatable (`node_cpu_millis`, `node_memory`).
pub fn resource(c: &Container, r: &ResourceFieldSelector, node_cpu_millis: u64, node_memory: u64) -> Result<String> {
    let res = c.resources.clone().unwrap_or_default();
    let get = |m: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>, k: &str| {
        m.as_ref().and_then(|m| m.get(k)).map(|q| q.0.clone())
    };
    let (kind, value) = match r.resource.as_str() {
        "limits.cpu" => ("cpu", get(&res.limits, "cpu").and_then(|q| cpu_millis(&q)).unwrap_or(node_cpu_millis)),
        "requests.cpu" => ("cpu", get(&res.requests, "cpu").and_then(|q| cpu_millis(&q)).unwrap_or(0)),
        "limits.memory" => ("memory", get(&res.limits, "memory").and_then(|q| memory_bytes(&q)).unwrap_or(node_memory)),
        "requests.memory" => ("memory", get(&res.requests, "memory").and_then(|q| memory_bytes(&q)).unwrap_or(0)),
        "limits.ephemeral-storage" | "requests.ephemeral-storage" => ("memory", 0),
        other => return Err(Error::config(format!("unsupported resourceFieldRef resource {other:?}"))),
    };
    let divisor = r.divisor.as_ref().map(|d| d.0.as_str()).unwrap_or("1");
    let out = if kind == "cpu" {
        let d = cpu_millis(divisor).filter(|d| *d > 0).unwrap_or(1000);
        value.div_ceil(d)
    } else {
        let d = memory_bytes(divisor).filter(|d| *d > 0).unwrap_or(1);
        value.div_ceil(d)
    };
    Ok(out.to_string())
}

fn from_source(pod: &Pod, c: &Container, s: &EnvVarSource, refs: &Refs, host_ip: &str, node: (u64, u64)) -> Result<Option<String>> {
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    if let Some(r) = &s.config_map_key_ref {
        let optional = r.optional.unwrap_or(false);
        if !refs.config_maps.contains_key(&r.name) {
            return if optional { Ok(None) } else { Err(Error::config(format!("configmap \"{}\" not found", r.name))) };
        }
        return match refs.config_map_key(&r.name, &r.key) {
            Some(v) => Ok(Some(String::from_utf8_lossy(&v).into_owned())),
            None if optional => Ok(None),
            None => Err(Error::config(format!("couldn't find key {} in ConfigMap {ns}/{}", r.key, r.name))),
        };
    }
    if let Some(r) = &s.secret_key_ref {
        let optional = r.optional.unwrap_or(false);
        if !refs.secrets.contains_key(&r.name) {
            return if optional { Ok(None) } else { Err(Error::config(format!("secret \"{}\" not found", r.name))) };
        }
        return match refs.secret_key(&r.name, &r.key) {
            Some(v) => Ok(Some(String::from_utf8_lossy(&v).into_owned())),
            None if optional => Ok(None),
            None => Err(Error::config(format!("couldn't find key {} in Secret {ns}/{}", r.key, r.name))),
        };
    }
    if let Some(f) = &s.field_ref {
        return field(pod, f, host_ip).map(Some);
    }
    if let Some(r) = &s.resource_field_ref {
        return resource(c, r, node.0, node.1).map(Some);
    }
    Ok(None)
}

/// The environment of container `c`, in order, without duplicates (later definitions win).
pub fn environment(pod: &Pod, c: &Container, refs: &Refs, host_ip: &str, node: (u64, u64)) -> Result<Vec<(String, String)>> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut set = |k: String, v: String, vars: &mut BTreeMap<String, String>| {
        if vars.insert(k.clone(), v).is_none() {
            order.push(k);
        }
    };
    for f in c.env_from.iter().flatten() {
        let prefix = f.prefix.clone().unwrap_or_default();
        if let Some(r) = &f.config_map_ref {
            match refs.config_maps.get(&r.name) {
                None if r.optional.unwrap_or(false) => {}
                None => return Err(Error::config(format!("configmap \"{}\" not found", r.name))),
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        set(format!("{prefix}{k}"), v.clone(), &mut vars);
                    }
                }
            }
        }
        if let Some(r) = &f.secret_ref {
            match refs.secrets.get(&r.name) {
                None if r.optional.unwrap_or(false) => {}
                None => return Err(Error::config(format!("secret \"{}\" not found", r.name))),
                Some(s) => {
                    for (k, v) in s.data.iter().flatten() {
                        set(format!("{prefix}{k}"), String::from_utf8_lossy(&v.0).into_owned(), &mut vars);
                    }
                }
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = match &e.value_from {
            Some(s) => match from_source(pod, c, s, refs, host_ip, node)? {
                Some(v) => v,
                None => continue,
            },
            None => expand(e.value.as_deref().unwrap_or_default(), &vars),
        };
        set(e.name.clone(), value, &mut vars);
    }
    Ok(order.into_iter().filter_map(|k| vars.get(&k).map(|v| (k.clone(), v.clone()))).collect())
}

/// `command` + `args` expanded with the container's environment. Empty when the container has no
/// `command` (the image's ENTRYPOINT cannot be read, so the caller reports it).
pub fn argv(c: &Container, env: &[(String, String)]) -> Vec<String> {
    let vars: BTreeMap<String, String> = env.iter().cloned().collect();
    c.command.iter().flatten().chain(c.args.iter().flatten()).map(|s| expand(s, &vars)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{
                "name": "c",
                "command": ["sh", "-c", "echo $(GREETING) $$(HOME) $(MISSING)"],
                "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}},
                "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
                "env": [
                    {"name": "GREETING", "value": "hello"},
                    {"name": "BOTH", "value": "$(GREETING) world"},
                    {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
                    {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "password"}}},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                    {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": true}}}
                ]
            }]}
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn refs() -> Refs {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"k": "v", "other": "o"}})).unwrap_or_else(|e| panic!("{e}"));
        let s: Secret =
            serde_json::from_value(json!({"metadata": {"name": "s"}, "data": {"password": "czNjcjN0"}})).unwrap_or_else(|e| panic!("{e}"));
        Refs { config_maps: [("cm".to_string(), cm)].into(), secrets: [("s".to_string(), s)].into(), ..Default::default() }
    }

    #[test]
    fn environment_and_argv() {
        let p = pod();
        let c = &p.spec.as_ref().map(|s| s.containers[0].clone()).unwrap_or_default();
        let env = environment(&p, c, &refs(), "192.0.2.1", (2000, 1 << 30)).unwrap_or_else(|e| panic!("{e}"));
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CM_k"), Some("v"));
        assert_eq!(get("BOTH"), Some("hello world"));
        assert_eq!(get("FROM_CM"), Some("v"));
        assert_eq!(get("FROM_SECRET"), Some("s3cr3t"));
        assert_eq!(get("POD"), Some("p"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("MEM_MI"), Some("64"));
        assert_eq!(get("CPU"), Some("1"));
        assert_eq!(get("OPT"), None);
        assert_eq!(argv(c, &env), vec!["sh", "-c", "echo hello $(HOME) $(MISSING)"]);
        let (cms, secrets) = referenced(&p);
        assert_eq!((cms, secrets), (vec!["cm".to_string(), "nope".to_string()], vec!["s".to_string()]));
    }

    #[test]
    fn missing_objects_and_keys_are_config_errors() {
        let p = pod();
        let c = &p.spec.as_ref().map(|s| s.containers[0].clone()).unwrap_or_default();
        let e = environment(&p, c, &Refs::default(), "", (0, 0)).err().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("CreateContainerConfigError: configmap \"cm\" not found"));
        let mut r = refs();
        r.secrets.clear();
        let e = environment(&p, c, &r, "", (0, 0)).err().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("CreateContainerConfigError: secret \"s\" not found"));
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {}})).unwrap_or_else(|e| panic!("{e}"));
        let mut r = refs();
        r.config_maps.insert("cm".into(), cm);
        let e = environment(&p, c, &r, "", (0, 0)).err().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("CreateContainerConfigError: couldn't find key k in ConfigMap ns/cm"));
    }
}
