//! Service ClusterIP and NodePort allocation, as kube-apiserver's service REST does it
//! (`pkg/registry/core/service/storage/alloc.go`, ipallocator, portallocator), as pure
//! functions: [`plan`] fills in what a Service needs from the ranges and what is taken, and
//! says which allocations the write takes and frees. The REST layer writes those with the
//! Service in one transaction (`crate::rest::services`), so the store is the one source of
//! truth: an allocation is a key (`/registry/ipaddresses/<ip>`, as kube's IPAddress objects;
//! `/registry/ranges/servicenodeports/<port>`) that exists exactly while a Service holds it.
//!
//! Rules: types ClusterIP, NodePort and LoadBalancer get a cluster IP (`None` is headless:
//! nothing); ExternalName none. A given IP must be in `--service-cluster-ip-range` and free; an
//! empty one is picked (never the network or broadcast address; the range's first usable
//! address is the `default/kubernetes` Service's, picked only for it). NodePort and
//! LoadBalancer ports get a node port from `--service-node-port-range`, a given one must be in
//! range and free. On update the cluster IP cannot change (unless to or from ExternalName) and
//! is kept when the update leaves it out; node ports are kept per port when left out and
//! dropped when the type no longer needs them.

use crate::registry::validation::Cause;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// Where IP allocations live.
pub const IP_PREFIX: &str = "/registry/ipaddresses/";
/// Where node port allocations live.
pub const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";

/// An IPv4 CIDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    base: u32,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.96.0.0/12` (the address is masked to the network).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (ip, len) = s.split_once('/').ok_or_else(|| format!("{s:?} is not a CIDR"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|e| format!("{s:?}: {e} (only IPv4 is served)"))?;
        let prefix: u8 = len.parse().map_err(|e| format!("{s:?}: {e}"))?;
        if !(1..=30).contains(&prefix) {
            return Err(format!("{s:?}: a service range needs a prefix between /1 and /30"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr { base: u32::from(ip) & mask, prefix })
    }

    /// Usable addresses (network and broadcast excluded).
    pub fn usable(&self) -> u32 {
        (1u32 << (32 - self.prefix)) - 2
    }

    /// The `i`-th usable address (0: the first after the network address).
    pub fn nth(&self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1 + i)
    }

    /// Whether `ip` is a usable address of the range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        v > self.base && v - self.base <= self.usable()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

/// The ranges (`--service-cluster-ip-range`, `--service-node-port-range`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ranges {
    /// Cluster IPs.
    pub ips: Cidr,
    /// Node ports, inclusive.
    pub ports: (u16, u16),
}

impl Default for Ranges {
    fn default() -> Ranges {
        Ranges { ips: Cidr { base: u32::from(Ipv4Addr::new(10, 96, 0, 0)), prefix: 12 }, ports: (30000, 32767) }
    }
}

/// Parses `30000-32767`.
pub fn parse_ports(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u16, u16) = (a.trim().parse().map_err(|e| format!("{s:?}: {e}"))?, b.trim().parse().map_err(|e| format!("{s:?}: {e}"))?);
    if a == 0 || a > b {
        return Err(format!("{s:?} is not a port range"));
    }
    Ok((a, b))
}

/// What is taken now (every allocation key's IP or port).
#[derive(Clone, Debug, Default)]
pub struct Taken {
    /// Allocated IPs.
    pub ips: BTreeSet<Ipv4Addr>,
    /// Allocated node ports.
    pub ports: BTreeSet<u16>,
}

/// The allocations a write takes and frees, as keys with the value each taken key gets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Claims {
    /// Keys that must not exist, written with the Service.
    pub take: Vec<(String, Value)>,
    /// Keys deleted with the Service write.
    pub free: Vec<String>,
    /// Whether a taken value was picked by the server (a lost race is retried) rather than
    /// given by the client (a lost race is "already allocated").
    pub picked: bool,
}

impl Claims {
    /// Nothing to take or free.
    pub fn is_empty(&self) -> bool {
        self.take.is_empty() && self.free.is_empty()
    }
}

fn ty(svc: &Value) -> &str {
    svc.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP")
}

fn cluster_ip(svc: &Value) -> Option<&str> {
    svc.pointer("/spec/clusterIP").and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn wants_node_ports(svc: &Value) -> bool {
    matches!(ty(svc), "NodePort" | "LoadBalancer")
}

/// The cluster IP and node ports `svc` holds (what it was allocated).
pub fn held(svc: &Value) -> (Option<Ipv4Addr>, Vec<u16>) {
    let ip = if ty(svc) == "ExternalName" { None } else { cluster_ip(svc).and_then(|s| s.parse().ok()) };
    let ports = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
        .filter_map(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .collect();
    (ip, ports)
}

fn ip_value(ip: Ipv4Addr, ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IPAddress", "metadata": {"name": ip.to_string()},
        "spec": {"parentRef": {"group": "", "resource": "services", "namespace": ns, "name": name}},
    })
}

/// Where a picked IP search starts: a hash of the Service's namespace/name, so services
/// spread over the range without a random source and the first usable IP stays the
/// `default/kubernetes` Service's.
fn start_offset(ns: &str, name: &str, usable: u32) -> u32 {
    let h = format!("{ns}/{name}").bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    1 + (h % u64::from(usable.saturating_sub(1).max(1))) as u32
}

fn pick_ip(r: &Ranges, taken: &Taken, ns: &str, name: &str) -> Option<Ipv4Addr> {
    if (ns, name) == ("default", "kubernetes") && !taken.ips.contains(&r.ips.nth(0)) {
        return Some(r.ips.nth(0));
    }
    let n = r.ips.usable();
    let start = start_offset(ns, name, n);
    // Offset 0 (the first usable IP) is left for the kubernetes Service.
    (0..n.saturating_sub(1)).map(|k| 1 + (start - 1 + k) % (n - 1)).map(|i| r.ips.nth(i)).find(|ip| !taken.ips.contains(ip))
}

fn pick_port(r: &Ranges, taken: &Taken, also: &BTreeSet<u16>, ns: &str, name: &str, i: usize) -> Option<u16> {
    let n = u32::from(r.ports.1 - r.ports.0) + 1;
    let start = start_offset(ns, &format!("{name}:{i}"), n + 1) - 1;
    (0..n).map(|k| r.ports.0 + ((start + k) % n) as u16).find(|p| !taken.ports.contains(p) && !also.contains(p))
}

/// Fills in `svc`'s cluster IP and node ports (over `old` on an update) from `ranges` and
/// `taken`, and says what the write takes and frees; the 422 causes when a given value is out
/// of range, taken, or a change kube refuses.
pub fn plan(svc: &mut Value, old: Option<&Value>, ranges: &Ranges, taken: &Taken) -> Result<Claims, Vec<Cause>> {
    let ns = svc.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default").to_string();
    let name = svc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let (old_ip, old_ports) = old.map(held).unwrap_or_default();
    let mut claims = Claims::default();
    let mut causes = Vec::new();
    let spec = svc.get_mut("spec").and_then(Value::as_object_mut);
    let Some(spec) = spec else { return Ok(claims) };

    // The cluster IP.
    let external = spec.get("type").and_then(Value::as_str) == Some("ExternalName");
    let given = spec.get("clusterIP").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let old_type_external = old.is_some_and(|o| ty(o) == "ExternalName");
    // A headless Service stays headless when an update leaves clusterIP out.
    let old_headless = !old_type_external && old.and_then(cluster_ip) == Some("None");
    let given = given.or_else(|| old_headless.then(|| "None".to_string()));
    let mut ip_now: Option<Ipv4Addr> = None;
    if external {
        // To ExternalName: an IP left as it was is dropped (kube's dropTypeDependentFields).
        let old_cluster = old.and_then(cluster_ip).map(str::to_string);
        if given.is_some() && given == old_cluster {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
    } else if given.as_deref() == Some("None") {
        if old.is_some() && !old_type_external && old.and_then(cluster_ip) != Some("None") {
            causes.push(("spec.clusterIPs[0]".into(), "Invalid value: \"None\": may not change once set".into()));
        }
        spec.insert("clusterIP".into(), json!("None"));
        spec.insert("clusterIPs".into(), json!(["None"]));
    } else {
        let kept = if old_type_external { None } else { old.and_then(cluster_ip).map(str::to_string) };
        let want = given.clone().or(kept.clone());
        match (want, &kept) {
            (Some(w), Some(k)) if &w != k => {
                causes.push(("spec.clusterIPs[0]".into(), format!("Invalid value: {w:?}: may not change once set")));
            }
            (Some(w), Some(_)) => ip_now = w.parse().ok(),
            (Some(w), None) => match w.parse::<Ipv4Addr>() {
                Err(_) => causes.push(("spec.clusterIPs[0]".into(), format!("Invalid value: {w:?}: must be a valid IP address"))),
                Ok(ip) if !ranges.ips.contains(ip) => causes.push((
                    "spec.clusterIPs".into(),
                    format!(
                        "Invalid value: []string{{{w:?}}}: failed to allocate IP {w}: the provided IP ({w}) is not in the valid range. The range of valid IPs is {}",
                        ranges.ips
                    ),
                )),
                Ok(ip) if taken.ips.contains(&ip) && old_ip != Some(ip) => causes.push((
                    "spec.clusterIPs".into(),
                    format!("Invalid value: []string{{{w:?}}}: failed to allocate IP {w}: provided IP is already allocated"),
                )),
                Ok(ip) => ip_now = Some(ip),
            },
            (None, _) => match pick_ip(ranges, taken, &ns, &name) {
                Some(ip) => {
                    ip_now = Some(ip);
                    claims.picked = true;
                }
                None => causes.push(("spec.clusterIPs".into(), format!("Internal error: range is full: {}", ranges.ips))),
            },
        }
        if let Some(ip) = ip_now {
            spec.insert("clusterIP".into(), json!(ip.to_string()));
            spec.insert("clusterIPs".into(), json!([ip.to_string()]));
            spec.insert("ipFamilies".into(), json!(["IPv4"]));
            spec.insert("ipFamilyPolicy".into(), json!("SingleStack"));
        }
    }
    if let Some(ip) = ip_now.filter(|ip| old_ip != Some(*ip)) {
        claims.take.push((format!("{IP_PREFIX}{ip}"), ip_value(ip, &ns, &name)));
    }
    if let Some(ip) = old_ip.filter(|ip| ip_now != Some(*ip)) {
        claims.free.push(format!("{IP_PREFIX}{ip}"));
    }

    // Node ports.
    let new_type = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    let needs_ports = matches!(new_type.as_str(), "NodePort" | "LoadBalancer");
    let old_by_port: Vec<(i64, String, u16)> = old
        .filter(|o| wants_node_ports(o))
        .and_then(|o| o.pointer("/spec/ports"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let np = u16::try_from(p.get("nodePort")?.as_u64()?).ok()?;
            Some((p.get("port")?.as_i64()?, p.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string(), np))
        })
        .collect();
    let mut now_ports = BTreeSet::new();
    for (i, p) in spec.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten().enumerate() {
        let Some(p) = p.as_object_mut() else { continue };
        if !needs_ports {
            // A type that needs none drops them when left as they were (kube's dropTypeDependentFields).
            let given = p.get("nodePort").and_then(Value::as_u64).and_then(|n| u16::try_from(n).ok());
            if given.is_some_and(|g| old_ports.contains(&g)) || given == Some(0) {
                p.remove("nodePort");
            } else if given.is_some() {
                causes.push((format!("spec.ports[{i}].nodePort"), format!("Forbidden: may not be used when `type` is '{new_type}'")));
            }
            continue;
        }
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string();
        let given = p.get("nodePort").and_then(Value::as_u64).filter(|n| *n != 0);
        let chosen = match given {
            Some(n) => match u16::try_from(n).ok().filter(|n| (ranges.ports.0..=ranges.ports.1).contains(n)) {
                None => {
                    causes.push((
                        format!("spec.ports[{i}].nodePort"),
                        format!(
                            "Invalid value: {n}: provided port is not in the valid range. The range of valid ports is {}-{}",
                            ranges.ports.0, ranges.ports.1
                        ),
                    ));
                    continue;
                }
                Some(n) if (taken.ports.contains(&n) && !old_ports.contains(&n)) || now_ports.contains(&n) => {
                    causes.push((format!("spec.ports[{i}].nodePort"), format!("Invalid value: {n}: provided port is already allocated")));
                    continue;
                }
                Some(n) => n,
            },
            None => match old_by_port.iter().find(|(op, opr, np)| *op == port && *opr == proto && !now_ports.contains(np)) {
                Some((_, _, np)) => *np,
                None => match pick_port(ranges, taken, &now_ports, &ns, &name, i) {
                    Some(n) => {
                        claims.picked = true;
                        n
                    }
                    None => {
                        causes.push((format!("spec.ports[{i}].nodePort"), "Internal error: range is full".into()));
                        continue;
                    }
                },
            },
        };
        now_ports.insert(chosen);
        p.insert("nodePort".into(), json!(chosen));
    }
    for p in now_ports.iter().filter(|p| !old_ports.contains(p)) {
        claims.take.push((format!("{PORT_PREFIX}{p}"), json!({"namespace": ns, "name": name})));
    }
    for p in old_ports.iter().filter(|p| !now_ports.contains(p)) {
        claims.free.push(format!("{PORT_PREFIX}{p}"));
    }
    if causes.is_empty() { Ok(claims) } else { Err(causes) }
}

/// What deleting `svc` frees.
pub fn release(svc: &Value) -> Claims {
    let (ip, ports) = held(svc);
    let mut free: Vec<String> = ip.map(|ip| format!("{IP_PREFIX}{ip}")).into_iter().collect();
    free.extend(ports.iter().map(|p| format!("{PORT_PREFIX}{p}")));
    Claims { take: Vec::new(), free, picked: false }
}

#[cfg(test)]
mod tests;
