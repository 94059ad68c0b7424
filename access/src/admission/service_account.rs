//! ServiceAccount admission (kube's `plugin/pkg/admission/serviceaccount`): a pod created
//! without a service account runs as `default`; the account must exist; unless automounting is
//! off (pod first, then the account), every container gets the `kube-api-access-<xxxxx>`
//! projected volume (a 3607 s bound token, the cluster CA from `kube-root-ca.crt`, the
//! namespace) at `/var/run/secrets/kubernetes.io/serviceaccount`; the account's image pull
//! secrets are copied when the pod has none. Mirror pods may not use service accounts.

use crate::admission::limit_ranger::object_name;
use crate::authn::serviceaccount::WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS;
use crate::error::Error;
use crate::gostr::quote;
use k8s_openapi::api::core::v1::{
    ConfigMapProjection, DownwardAPIProjection, DownwardAPIVolumeFile, KeyToPath, LocalObjectReference, ObjectFieldSelector, Pod,
    ProjectedVolumeSource, ServiceAccount, ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};

/// The account pods get when they name none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// Prefix of the token volume's name.
pub const VOLUME_NAME_PREFIX: &str = "kube-api-access-";
/// Where containers find the token.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The ConfigMap holding the cluster CA in every namespace.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
/// The annotation marking a kubelet's mirror pod.
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// kube's `TokenVolumeSource()`.
pub fn token_volume_source() -> ProjectedVolumeSource {
    ProjectedVolumeSource {
        default_mode: Some(0o644),
        sources: Some(vec![
            VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    path: "token".into(),
                    expiration_seconds: Some(WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS),
                    audience: None,
                }),
                ..Default::default()
            },
            VolumeProjection {
                config_map: Some(ConfigMapProjection {
                    name: ROOT_CA_CONFIGMAP.into(),
                    items: Some(vec![KeyToPath { key: "ca.crt".into(), path: "ca.crt".into(), mode: None }]),
                    optional: None,
                }),
                ..Default::default()
            },
            VolumeProjection {
                downward_api: Some(DownwardAPIProjection {
                    items: Some(vec![DownwardAPIVolumeFile {
                        path: "namespace".into(),
                        field_ref: Some(ObjectFieldSelector { api_version: Some("v1".into()), field_path: "metadata.namespace".into() }),
                        ..Default::default()
                    }]),
                }),
                ..Default::default()
            },
        ]),
    }
}

fn forbidden(pod: &Pod, msg: String) -> Error {
    Error::forbidden("", "pods", &object_name(&pod.metadata), msg)
}

/// Admits a pod create in `namespace`. `lookup` finds a ServiceAccount of the namespace (the
/// apiserver's cache); `suffix` is 5 random characters for the volume name (kube's name
/// generator).
pub fn admit_pod_create(
    pod: &mut Pod,
    namespace: &str,
    lookup: impl Fn(&str) -> Option<ServiceAccount>,
    suffix: &str,
) -> Result<(), Error> {
    let mirror = pod.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(MIRROR_POD_ANNOTATION));
    if mirror {
        return validate_mirror(pod);
    }
    let Some(spec) = pod.spec.as_mut() else { return Ok(()) };
    let name = match spec.service_account_name.as_deref() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => {
            spec.service_account_name = Some(DEFAULT_SERVICE_ACCOUNT.into());
            DEFAULT_SERVICE_ACCOUNT.into()
        }
    };
    let Some(sa) = lookup(&name) else {
        return Err(forbidden(
            pod,
            format!("error looking up service account {namespace}/{name}: serviceaccount {} not found", quote(&name)),
        ));
    };
    let automount = spec.automount_service_account_token.or(sa.automount_service_account_token).unwrap_or(true);
    if automount {
        mount_token(pod, suffix);
    }
    let Some(spec) = pod.spec.as_mut() else { return Ok(()) };
    if spec.image_pull_secrets.as_ref().is_none_or(|s| s.is_empty())
        && let Some(secrets) = sa.image_pull_secrets.as_ref().filter(|s| !s.is_empty())
    {
        spec.image_pull_secrets = Some(secrets.iter().map(|s| LocalObjectReference { name: s.name.clone() }).collect());
    }
    Ok(())
}

fn mount_token(pod: &mut Pod, suffix: &str) {
    let Some(spec) = pod.spec.as_mut() else { return };
    let existing = spec.volumes.iter().flatten().find(|v| v.name.starts_with(VOLUME_NAME_PREFIX)).map(|v| v.name.clone());
    let has_volume = existing.is_some();
    let volume_name = existing.unwrap_or_else(|| format!("{VOLUME_NAME_PREFIX}{suffix}"));
    let mount = VolumeMount { name: volume_name.clone(), read_only: Some(true), mount_path: TOKEN_MOUNT_PATH.into(), ..Default::default() };
    let mut needs_volume = false;
    for c in spec.init_containers.iter_mut().flatten().chain(spec.containers.iter_mut()) {
        let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
        if !mounts.iter().any(|m| m.mount_path == TOKEN_MOUNT_PATH) {
            mounts.push(mount.clone());
            needs_volume = true;
        }
    }
    if !has_volume && needs_volume {
        spec.volumes.get_or_insert_with(Vec::new).push(Volume {
            name: volume_name,
            projected: Some(token_volume_source()),
            ..Default::default()
        });
    }
}

fn validate_mirror(pod: &Pod) -> Result<(), Error> {
    let Some(spec) = &pod.spec else { return Ok(()) };
    if spec.service_account_name.as_deref().is_some_and(|n| !n.is_empty()) {
        return Err(forbidden(pod, "a mirror pod may not reference service accounts".into()));
    }
    for v in spec.volumes.iter().flatten() {
        if v.secret.is_some() {
            return Err(forbidden(pod, "a mirror pod may not reference secrets".into()));
        }
        let projected_token =
            v.projected.as_ref().and_then(|p| p.sources.as_ref()).is_some_and(|s| s.iter().any(|p| p.service_account_token.is_some()));
        if projected_token {
            return Err(forbidden(pod, "a mirror pod may not use ServiceAccountToken volume projections".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(extra: serde_json::Value) -> Pod {
        let mut spec = json!({"containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i",
            "volumeMounts": [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]}], "initContainers": [{"name": "init", "image": "i"}]});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "dev"}, "spec": spec})).unwrap()
    }

    fn sa(v: serde_json::Value) -> ServiceAccount {
        serde_json::from_value(v).unwrap()
    }

    fn default_sa(name: &str) -> Option<ServiceAccount> {
        (name == "default").then(|| sa(json!({"metadata": {"name": "default"}, "imagePullSecrets": [{"name": "regcred"}]})))
    }

    #[test]
    fn pods_get_the_default_account_and_a_token_volume() {
        let mut p = pod(json!({}));
        admit_pod_create(&mut p, "dev", default_sa, "x7k2q").unwrap();
        let spec = p.spec.unwrap();
        assert_eq!(spec.service_account_name.as_deref(), Some("default"));
        let volumes = spec.volumes.unwrap();
        assert_eq!(volumes.len(), 1);
        assert_eq!(volumes[0].name, "kube-api-access-x7k2q");
        assert_eq!(
            serde_json::to_value(volumes[0].projected.as_ref().unwrap()).unwrap(),
            json!({"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]})
        );
        let a = &spec.containers[0].volume_mounts.as_ref().unwrap()[0];
        assert_eq!((a.name.as_str(), a.mount_path.as_str(), a.read_only), ("kube-api-access-x7k2q", TOKEN_MOUNT_PATH, Some(true)));
        // A container that mounts something at the path keeps it.
        assert_eq!(spec.containers[1].volume_mounts.as_ref().unwrap().len(), 1);
        assert_eq!(spec.init_containers.unwrap()[0].volume_mounts.as_ref().unwrap().len(), 1);
        assert_eq!(spec.image_pull_secrets.unwrap()[0].name, "regcred");
    }

    #[test]
    fn a_missing_account_is_403() {
        let mut p = pod(json!({"serviceAccountName": "builder"}));
        let err = admit_pod_create(&mut p, "dev", default_sa, "x").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"pods "web" is forbidden: error looking up service account dev/builder: serviceaccount "builder" not found"#
        );
    }

    #[test]
    fn automount_off_on_pod_or_account_mounts_nothing() {
        let mut p = pod(json!({"automountServiceAccountToken": false}));
        admit_pod_create(&mut p, "dev", default_sa, "x").unwrap();
        assert!(p.spec.unwrap().volumes.is_none());
        let quiet = |_: &str| Some(sa(json!({"metadata": {"name": "default"}, "automountServiceAccountToken": false})));
        let mut p = pod(json!({}));
        admit_pod_create(&mut p, "dev", quiet, "x").unwrap();
        assert!(p.spec.unwrap().volumes.is_none());
        // The pod's choice wins over the account's.
        let mut p = pod(json!({"automountServiceAccountToken": true}));
        admit_pod_create(&mut p, "dev", quiet, "x").unwrap();
        assert!(p.spec.unwrap().volumes.is_some());
    }

    #[test]
    fn mirror_pods_may_not_use_accounts() {
        let mut p = pod(json!({"serviceAccountName": "default"}));
        p.metadata.annotations = Some([(MIRROR_POD_ANNOTATION.to_string(), "x".to_string())].into());
        assert_eq!(
            admit_pod_create(&mut p, "dev", default_sa, "x").unwrap_err().to_string(),
            r#"pods "web" is forbidden: a mirror pod may not reference service accounts"#
        );
    }
}
