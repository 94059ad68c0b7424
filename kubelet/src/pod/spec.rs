//! From pod spec to runtime container config: fetch the configMaps and secrets the pod refers
//! to and the ServiceAccount tokens its projections ask for, prepare its volumes, and build each container's command line, environment, mounts and
//! limits. Errors are [`Error::PodSpec`] with the waiting reason kubelet shows:
//! `CreateContainerConfigError` for env and command problems, `ContainerCreating` (with a
//! `FailedMount` event) for volumes.

use crate::error::{Error, Result};
use crate::pod::Node;
use crate::pod::env::{Refs, argv, environment, referenced};
use crate::pod::quantity::{cpu_millis, memory_bytes};
use crate::pod::token;
use crate::pod::volumes;
use crate::runtime::{ContainerConfig, PodRef};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What a sync prepared once for all of the pod's containers.
pub struct Prepared {
    /// The configMaps and secrets that exist.
    pub refs: Refs,
    /// The volumes' host paths, or why they could not be prepared.
    pub volumes: std::result::Result<BTreeMap<String, PathBuf>, String>,
    /// The pod's managed `/etc/hosts` (kubelet writes one per pod with its own network, so the
    /// pod's hostname resolves to its IP without DNS).
    pub etc_hosts: Option<PathBuf>,
}

/// The hosts file kubelet writes for a pod (`managedHostsFileContent`).
pub fn hosts_file(pod_ip: &str, hostname: &str) -> String {
    format!(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n{pod_ip}\t{hostname}\n"
    )
}

/// Fetches references and tokens (from the pod's cache `tokens`) and prepares volumes.
pub async fn prepare(node: &Node, pod: &Pod, pod_ip: &str, tokens: &token::TokenManager) -> Prepared {
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let (cms, secrets) = referenced(pod);
    let mut refs = Refs::default();
    let mut fetch_error = None;
    let cm_api: Api<ConfigMap> = Api::namespaced(node.client.clone(), &ns);
    for name in cms {
        match cm_api.get_opt(&name).await {
            Ok(Some(cm)) => {
                refs.config_maps.insert(name, cm);
            }
            Ok(None) => {}
            Err(e) => fetch_error = Some(format!("get configmap {name}: {e}")),
        }
    }
    let secret_api: Api<Secret> = Api::namespaced(node.client.clone(), &ns);
    for name in secrets {
        match secret_api.get_opt(&name).await {
            Ok(Some(s)) => {
                refs.secrets.insert(name, s);
            }
            Ok(None) => {}
            Err(e) => fetch_error = Some(format!("get secret {name}: {e}")),
        }
    }
    if node.runtime.features().volumes {
        for (audience, exp) in token::projections(pod) {
            let key = token::TokenKey::of(pod, &audience, exp);
            let api: Api<ServiceAccount> = Api::namespaced(node.client.clone(), &key.namespace);
            let sa = key.service_account.clone();
            let fetch = |req: TokenRequest| async move {
                api.create_token_request(&sa, &PostParams::default(), &req).await.map_err(|e| e.to_string())
            };
            match tokens.get(&key, node.clock.now(), fetch).await {
                Ok(t) => {
                    refs.tokens.insert((audience, exp), t);
                }
                Err(e) => fetch_error = Some(e),
            }
        }
    }
    let volumes = if let Some(e) = fetch_error {
        Err(e)
    } else if node.runtime.features().volumes {
        let dir = node.pods_dir.join(pod.metadata.uid.as_deref().unwrap_or("none"));
        volumes::prepare(&dir, pod, &refs, &node.host_ip, node.allocatable).map_err(|e| match e {
            Error::PodSpec { message, .. } => message,
            other => other.to_string(),
        })
    } else {
        Ok(BTreeMap::new())
    };
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
    let mut etc_hosts = None;
    if node.runtime.features().volumes && !host_network && !pod_ip.is_empty() {
        let dir = node.pods_dir.join(pod.metadata.uid.as_deref().unwrap_or("none"));
        let hostname = pod.spec.as_ref().and_then(|s| s.hostname.clone()).or(pod.metadata.name.clone()).unwrap_or_default();
        let path = dir.join("etc-hosts");
        if std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, hosts_file(pod_ip, &hostname))).is_ok() {
            etc_hosts = Some(path);
        }
    }
    Prepared { refs, volumes, etc_hosts }
}

fn quantity(c: &Container, which: &str, res: &str) -> Option<String> {
    let r = c.resources.as_ref()?;
    let m = if which == "limits" { r.limits.as_ref() } else { r.requests.as_ref() };
    m?.get(res).map(|q| q.0.clone())
}

/// The runtime config of one container run.
pub fn container_config(
    node: &Node,
    pod: &Pod,
    c: &Container,
    init: bool,
    attempt: u32,
    prepared: &Prepared,
    pod_ref: &PodRef,
) -> Result<ContainerConfig> {
    let vols = prepared
        .volumes
        .as_ref()
        .map_err(|m| Error::PodSpec { reason: "ContainerCreating", message: format!("MountVolume.SetUp failed: {m}") })?;
    let env = environment(pod, c, &prepared.refs, &node.host_ip, node.allocatable)?;
    let argv = argv(c, &env);
    if argv.is_empty() && node.runtime.features().needs_command {
        return Err(Error::config(format!(
            "container {:?} has no command: keel-kubelet runs containers as host programs and cannot read image {:?}'s ENTRYPOINT; set command",
            c.name,
            c.image.clone().unwrap_or_default()
        )));
    }
    let mut mounts = if node.runtime.features().volumes { volumes::mounts(c, vols)? } else { Vec::new() };
    if let Some(h) = &prepared.etc_hosts
        && !mounts.iter().any(|m| m.container_path == "/etc/hosts")
    {
        mounts.push(crate::runtime::Mount { host_path: h.clone(), container_path: "/etc/hosts".into(), read_only: false });
    }
    for m in &mounts {
        crate::runtime::linux::rootfs::relative(&m.container_path).map_err(Error::config)?;
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let hostname = spec.hostname.clone().or(pod.metadata.name.clone()).unwrap_or_default();
    Ok(ContainerConfig {
        pod: pod_ref.clone(),
        name: c.name.clone(),
        attempt,
        init,
        image: c.image.clone().unwrap_or_default(),
        argv,
        env,
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        mounts,
        hostname: hostname.chars().take(63).collect(),
        memory_limit: quantity(c, "limits", "memory").and_then(|q| memory_bytes(&q)),
        cpu_limit_millis: quantity(c, "limits", "cpu").and_then(|q| cpu_millis(&q)),
        cpu_request_millis: quantity(c, "requests", "cpu")
            .and_then(|q| cpu_millis(&q))
            .or(quantity(c, "limits", "cpu").and_then(|q| cpu_millis(&q))),
        annotations: pod.metadata.annotations.clone().unwrap_or_default(),
    })
}
