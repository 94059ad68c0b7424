//! Pod networking with iproute2: a bridge (`keel0` by default) holding the podCIDR's first
//! address, and per pod a network namespace `keel-<uid>` joined to the bridge by a veth pair
//! (`eth0` inside, `kv<10 hex>` outside), its address from the IPAM and a default route via the
//! bridge. Pods on one node reach each other over the bridge; the node reaches them through the
//! bridge's address. Nothing is routed off the machine: no forwarding or NAT rules are added.
//!
//! Invariants: names derive from the pod uid only (stable across kubelet restarts, never from
//! user strings); teardown is idempotent and tolerates half-made setups.

use crate::error::{Error, Result};
use crate::runtime::ipam::Cidr;
use sha2::{Digest, Sha256};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use tokio::process::Command;

/// Runs `ip` with `args`.
pub async fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip").args(args).output().await.map_err(|e| Error::Command {
        program: "ip".into(),
        args: args.join(" "),
        stderr: e.to_string(),
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command { program: "ip".into(), args: args.join(" "), stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() })
    }
}

/// The network namespace name of a pod.
pub fn netns_name(uid: &str) -> String {
    format!("keel-{uid}")
}

/// The path `ip netns` keeps it at.
pub fn netns_path(uid: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(netns_name(uid))
}

/// The host-side veth name of a pod (15 characters at most, as the kernel demands).
pub fn veth_name(uid: &str) -> String {
    let h = Sha256::digest(uid.as_bytes());
    let hex: String = h.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("kv{hex}")
}

/// Creates the bridge with the gateway address when missing, and brings it up.
pub async fn ensure_bridge(name: &str, cidr: Cidr) -> Result<()> {
    if ip(&["link", "show", "dev", name]).await.is_err() {
        ip(&["link", "add", "name", name, "type", "bridge"]).await?;
    }
    let addr = format!("{}/{}", cidr.gateway(), cidr.prefix);
    let shown = ip(&["-4", "addr", "show", "dev", name]).await.unwrap_or_default();
    if !shown.contains(&format!("inet {addr}")) {
        ip(&["addr", "add", &addr, "dev", name]).await?;
    }
    ip(&["link", "set", "dev", name, "up"]).await?;
    Ok(())
}

/// Deletes the bridge.
pub async fn remove_bridge(name: &str) {
    let _ = ip(&["link", "del", "dev", name]).await;
}

/// Sets up the pod's namespace and veth with `addr`.
pub async fn setup_pod(uid: &str, bridge: &str, cidr: Cidr, addr: Ipv4Addr) -> Result<PathBuf> {
    let ns = netns_name(uid);
    let veth = veth_name(uid);
    if !netns_path(uid).exists() {
        ip(&["netns", "add", &ns]).await?;
    }
    let _ = ip(&["link", "del", "dev", &veth]).await;
    let result = async {
        ip(&["link", "add", "name", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns]).await?;
        ip(&["link", "set", "dev", &veth, "master", bridge, "up"]).await?;
        ip(&["-n", &ns, "link", "set", "dev", "lo", "up"]).await?;
        ip(&["-n", &ns, "addr", "add", &format!("{addr}/{}", cidr.prefix), "dev", "eth0"]).await?;
        ip(&["-n", &ns, "link", "set", "dev", "eth0", "up"]).await?;
        ip(&["-n", &ns, "route", "add", "default", "via", &cidr.gateway().to_string()]).await?;
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = result {
        teardown_pod(uid).await;
        return Err(e);
    }
    Ok(netns_path(uid))
}

/// Removes the pod's namespace (its veth pair goes with it) and any veth left behind.
pub async fn teardown_pod(uid: &str) {
    let _ = ip(&["netns", "del", &netns_name(uid)]).await;
    let _ = ip(&["link", "del", "dev", &veth_name(uid)]).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_kernel_limits() {
        let v = veth_name("0a6a1b2c-3d4e-5f60-7182-93a4b5c6d7e8");
        assert_eq!(v.len(), 12);
        assert_eq!(v, veth_name("0a6a1b2c-3d4e-5f60-7182-93a4b5c6d7e8"));
        assert_ne!(v, veth_name("other"));
        assert_eq!(netns_name("u"), "keel-u");
    }
}
