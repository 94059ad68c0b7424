//! Volumes as files under the pod's folder (`<root-dir>/pods/<uid>/volumes/<name>/`), mounted
//! into containers by the runtime: emptyDir (a folder, mode 0777), configMap and secret (one
//! file per key or per `items` entry, mode `items[].mode` or `defaultMode`, 0644 by default),
//! downwardAPI (fieldRef / resourceFieldRef files), projected (configMap, secret, downwardAPI
//! and serviceAccountToken sources: the token [`crate::pod::token`] got, in the file at `path`
//! with the volume's `defaultMode`), hostPath (the host path itself, checked against `type`).
//!
//! Invariants: every file path comes from [`safe_relative`], so no key, `items[].path` or
//! `subPath` can leave the volume's folder; files are rewritten on each sync (configMap edits
//! reach running pods, as kubelet's do, within a sync period); an unknown volume source is an
//! [`Error::PodSpec`], not a crash.

use crate::error::{Error, Result};
use crate::pod::env::{Refs, field, resource};
use crate::pod::token::DEFAULT_EXPIRATION_SECONDS;
use crate::runtime::Mount;
use k8s_openapi::api::core::v1::{Container, DownwardAPIVolumeFile, KeyToPath, Pod, Volume};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// A relative path that stays inside its folder (no `..`, not absolute, not empty).
pub fn safe_relative(p: &str) -> Result<PathBuf> {
    let path = Path::new(p);
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            _ => return Err(Error::config(format!("path {p:?} must be relative and may not contain '..'"))),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(Error::config(format!("path {p:?} is empty")));
    }
    Ok(out)
}

fn write_file(dir: &Path, rel: &str, data: &[u8], mode: i32) -> Result<()> {
    let path = dir.join(safe_relative(rel)?);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
    }
    let tmp = path.with_extension("keel-tmp");
    std::fs::write(&tmp, data).map_err(Error::io(&tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode((mode as u32) & 0o7777)).map_err(Error::io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(Error::io(&path))
}

/// Writes keys of one object: all of `all` or the `items`.
fn write_keys(
    dir: &Path,
    all: &BTreeMap<String, Vec<u8>>,
    items: &Option<Vec<KeyToPath>>,
    default_mode: i32,
    what: &str,
    optional: bool,
) -> Result<()> {
    match items {
        None => {
            for (k, v) in all {
                write_file(dir, k, v, default_mode)?;
            }
        }
        Some(items) => {
            for it in items {
                match all.get(&it.key) {
                    Some(v) => write_file(dir, &it.path, v, it.mode.unwrap_or(default_mode))?,
                    None if optional => {}
                    None => return Err(Error::config(format!("configured to use key {} of {what}, which does not exist", it.key))),
                }
            }
        }
    }
    Ok(())
}

fn cm_data(refs: &Refs, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    let cm = refs.config_maps.get(name)?;
    let mut m: BTreeMap<String, Vec<u8>> = cm.data.iter().flatten().map(|(k, v)| (k.clone(), v.as_bytes().to_vec())).collect();
    m.extend(cm.binary_data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())));
    Some(m)
}

fn secret_data(refs: &Refs, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    let s = refs.secrets.get(name)?;
    let mut m: BTreeMap<String, Vec<u8>> = s.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    m.extend(s.string_data.iter().flatten().map(|(k, v)| (k.clone(), v.as_bytes().to_vec())));
    Some(m)
}

fn downward(dir: &Path, pod: &Pod, items: &[DownwardAPIVolumeFile], default_mode: i32, host_ip: &str, node: (u64, u64)) -> Result<()> {
    for it in items {
        let value = if let Some(f) = &it.field_ref {
            field(pod, f, host_ip)?
        } else if let Some(r) = &it.resource_field_ref {
            let name = r.container_name.clone().unwrap_or_default();
            let c = pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .find(|c| c.name == name)
                .ok_or_else(|| Error::config(format!("resourceFieldRef names unknown container {name:?}")))?;
            resource(c, r, node.0, node.1)?
        } else {
            continue;
        };
        write_file(dir, &it.path, value.as_bytes(), it.mode.unwrap_or(default_mode))?;
    }
    Ok(())
}

/// Prepares every volume of the pod under `pod_dir/volumes`; returns each volume's host path.
pub fn prepare(pod_dir: &Path, pod: &Pod, refs: &Refs, host_ip: &str, node: (u64, u64)) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    let Some(spec) = &pod.spec else { return Ok(out) };
    for v in spec.volumes.iter().flatten() {
        let path = prepare_one(pod_dir, pod, v, refs, host_ip, node)?;
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

fn prepare_one(pod_dir: &Path, pod: &Pod, v: &Volume, refs: &Refs, host_ip: &str, node: (u64, u64)) -> Result<PathBuf> {
    let dir = pod_dir.join("volumes").join(safe_relative(&v.name)?);
    let mkdir = |mode: u32| -> Result<()> {
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).map_err(Error::io(&dir))
    };
    if v.empty_dir.is_some() {
        mkdir(0o777)?;
    } else if let Some(c) = &v.config_map {
        mkdir(0o755)?;
        let optional = c.optional.unwrap_or(false);
        match cm_data(refs, &c.name) {
            Some(data) => write_keys(&dir, &data, &c.items, c.default_mode.unwrap_or(0o644), &format!("configMap {}", c.name), optional)?,
            None if optional => {}
            None => return Err(Error::config(format!("configmap \"{}\" not found", c.name))),
        }
    } else if let Some(s) = &v.secret {
        mkdir(0o755)?;
        let name = s.secret_name.clone().unwrap_or_default();
        let optional = s.optional.unwrap_or(false);
        match secret_data(refs, &name) {
            Some(data) => write_keys(&dir, &data, &s.items, s.default_mode.unwrap_or(0o644), &format!("secret {name}"), optional)?,
            None if optional => {}
            None => return Err(Error::config(format!("secret \"{name}\" not found"))),
        }
    } else if let Some(d) = &v.downward_api {
        mkdir(0o755)?;
        downward(&dir, pod, d.items.as_deref().unwrap_or_default(), d.default_mode.unwrap_or(0o644), host_ip, node)?;
    } else if let Some(p) = &v.projected {
        mkdir(0o755)?;
        let mode = p.default_mode.unwrap_or(0o644);
        for src in p.sources.iter().flatten() {
            if let Some(c) = &src.config_map {
                let optional = c.optional.unwrap_or(false);
                match cm_data(refs, &c.name) {
                    Some(data) => write_keys(&dir, &data, &c.items, mode, &format!("configMap {}", c.name), optional)?,
                    None if optional => {}
                    None => return Err(Error::config(format!("configmap \"{}\" not found", c.name))),
                }
            } else if let Some(s) = &src.secret {
                let optional = s.optional.unwrap_or(false);
                match secret_data(refs, &s.name) {
                    Some(data) => write_keys(&dir, &data, &s.items, mode, &format!("secret {}", s.name), optional)?,
                    None if optional => {}
                    None => return Err(Error::config(format!("secret \"{}\" not found", s.name))),
                }
            } else if let Some(d) = &src.downward_api {
                downward(&dir, pod, d.items.as_deref().unwrap_or_default(), mode, host_ip, node)?;
            } else if let Some(t) = &src.service_account_token {
                let want = (t.audience.clone().unwrap_or_default(), t.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS));
                let token = refs
                    .tokens
                    .get(&want)
                    .ok_or_else(|| Error::config(format!("volume {:?}: no service account token was fetched for it", v.name)))?;
                write_file(&dir, &t.path, token.as_bytes(), mode)?;
            } else {
                return Err(Error::config(format!(
                    "volume {:?}: this projected source is not supported by keel-kubelet (clusterTrustBundle and podCertificate need APIs Keel lacks)",
                    v.name
                )));
            }
        }
    } else if let Some(h) = &v.host_path {
        let p = PathBuf::from(&h.path);
        if !p.is_absolute() {
            return Err(Error::config(format!("hostPath {:?} must be absolute", h.path)));
        }
        let kind = h.type_.as_deref().unwrap_or("");
        let meta = std::fs::metadata(&p);
        match kind {
            "" => {}
            "DirectoryOrCreate" if meta.is_err() => {
                std::fs::create_dir_all(&p).map_err(Error::io(&p))?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).map_err(Error::io(&p))?;
            }
            "FileOrCreate" if meta.is_err() => {
                std::fs::File::create(&p).map_err(Error::io(&p))?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).map_err(Error::io(&p))?;
            }
            "Directory" | "DirectoryOrCreate" if !meta.as_ref().is_ok_and(|m| m.is_dir()) => {
                return Err(Error::config(format!("hostPath type check failed: {} is not a directory", h.path)));
            }
            "File" | "FileOrCreate" if !meta.as_ref().is_ok_and(|m| m.is_file()) => {
                return Err(Error::config(format!("hostPath type check failed: {} is not a file", h.path)));
            }
            "Directory" | "DirectoryOrCreate" | "File" | "FileOrCreate" | "Socket" | "CharDevice" | "BlockDevice" => {}
            other => return Err(Error::config(format!("hostPath type {other:?} is not known"))),
        }
        return Ok(p);
    } else {
        return Err(Error::config(format!(
            "volume {:?} has a volume source keel-kubelet does not support (emptyDir, configMap, secret, downwardAPI, projected and hostPath are)",
            v.name
        )));
    }
    Ok(dir)
}

/// The mounts of container `c` given the prepared volumes.
pub fn mounts(c: &Container, volumes: &BTreeMap<String, PathBuf>) -> Result<Vec<Mount>> {
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let base = volumes.get(&m.name).ok_or_else(|| Error::config(format!("volumeMount {:?} names no volume of the pod", m.name)))?;
        let host_path = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            None => base.clone(),
            Some(sub) => {
                let p = base.join(safe_relative(sub)?);
                if !p.exists() {
                    std::fs::create_dir_all(&p).map_err(Error::io(&p))?;
                }
                p
            }
        };
        out.push(Mount { host_path, container_path: m.mount_path.clone(), read_only: m.read_only.unwrap_or(false) });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use serde_json::json;

    #[test]
    fn config_map_and_secret_files_have_their_contents_and_modes() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}, {"name": "scratch", "mountPath": "/s", "subPath": "x/y"}]}],
                "volumes": [
                    {"name": "cfg", "configMap": {"name": "cm", "items": [{"key": "k", "path": "sub/k.txt", "mode": 0o600}]}},
                    {"name": "all", "configMap": {"name": "cm", "defaultMode": 0o640}},
                    {"name": "sec", "secret": {"secretName": "s"}},
                    {"name": "down", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                    {"name": "scratch", "emptyDir": {}}
                ]}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"k": "v", "j": "w"}})).unwrap_or_else(|e| panic!("{e}"));
        let s: Secret =
            serde_json::from_value(json!({"metadata": {"name": "s"}, "data": {"pw": "aGk="}})).unwrap_or_else(|e| panic!("{e}"));
        let refs = Refs { config_maps: [("cm".to_string(), cm)].into(), secrets: [("s".to_string(), s)].into(), ..Default::default() };
        let vols = prepare(dir.path(), &pod, &refs, "", (0, 0)).unwrap_or_else(|e| panic!("{e}"));
        let read = |v: &str, f: &str| std::fs::read_to_string(vols[v].join(f)).unwrap_or_default();
        let mode = |v: &str, f: &str| std::fs::metadata(vols[v].join(f)).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
        assert_eq!((read("cfg", "sub/k.txt"), mode("cfg", "sub/k.txt")), ("v".to_string(), 0o600));
        assert!(!vols["cfg"].join("j").exists(), "items select keys");
        assert_eq!((read("all", "j"), mode("all", "j")), ("w".to_string(), 0o640));
        assert_eq!((read("sec", "pw"), mode("sec", "pw")), ("hi".to_string(), 0o644));
        assert_eq!(read("down", "labels"), "a=\"b\"");
        let c = pod.spec.as_ref().map(|s| s.containers[0].clone()).unwrap_or_default();
        let m = mounts(&c, &vols).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m[1].host_path, vols["scratch"].join("x/y"));
    }

    #[test]
    fn paths_cannot_escape_and_unknown_sources_are_reported() {
        assert!(
            safe_relative("../x").is_err()
                && safe_relative("/etc/passwd").is_err()
                && safe_relative("a/../../b").is_err()
                && safe_relative("").is_err()
        );
        assert_eq!(safe_relative("./a/b").ok(), Some(PathBuf::from("a/b")));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "volumes": [
            {"name": "evil", "configMap": {"name": "cm", "items": [{"key": "k", "path": "../../escape"}]}}
        ]}}))
        .unwrap_or_else(|e| panic!("{e}"));
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"k": "v"}})).unwrap_or_else(|e| panic!("{e}"));
        let refs = Refs { config_maps: [("cm".to_string(), cm)].into(), ..Default::default() };
        assert!(matches!(prepare(dir.path(), &pod, &refs, "", (0, 0)), Err(Error::PodSpec { .. })));
        let nfs: Pod = serde_json::from_value(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [], "volumes": [{"name": "n", "nfs": {"server": "x", "path": "/"}}]}}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let e = prepare(dir.path(), &nfs, &refs, "", (0, 0)).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("does not support"), "{e}");
    }

    /// kube's projected `serviceAccountToken`: the token at `path`, with the volume's
    /// `defaultMode`, beside the CA and namespace files of the admission's `kube-api-access-*`.
    #[test]
    fn a_service_account_token_projection_writes_the_fetched_token() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "dev"}, "spec": {"containers": [], "volumes": [
                {"name": "kube-api-access-x", "projected": {"defaultMode": 0o640, "sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                ]}}
            ]}}))
            .unwrap_or_else(|e| panic!("{e}"));
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "PEM"}}))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut refs = Refs { config_maps: [("kube-root-ca.crt".to_string(), cm)].into(), ..Default::default() };
        let e = prepare(dir.path(), &pod, &refs, "", (0, 0)).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("no service account token"), "{e}");
        refs.tokens.insert((String::new(), 3607), "eyJ.jwt".into());
        let vols = prepare(dir.path(), &pod, &refs, "", (0, 0)).unwrap_or_else(|e| panic!("{e}"));
        let v = &vols["kube-api-access-x"];
        let read = |f: &str| std::fs::read_to_string(v.join(f)).unwrap_or_default();
        assert_eq!((read("token"), read("ca.crt"), read("namespace")), ("eyJ.jwt".into(), "PEM".into(), "dev".into()));
        let mode = std::fs::metadata(v.join("token")).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
        assert_eq!(mode, 0o640);
        refs.tokens.insert((String::new(), 3607), "eyJ.renewed".into());
        prepare(dir.path(), &pod, &refs, "", (0, 0)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read("token"), "eyJ.renewed", "a renewed token replaces the file");
    }
}
