//! Server-side printing: the `meta.k8s.io/v1` Table `kubectl get` asks for, with the columns
//! Kubernetes prints per kind (priority 1 columns show with `-o wide`) and each row's object as
//! PartialObjectMetadata (kubectl takes the NAMESPACE column from it).

use serde_json::{Value, json};

/// How long ago, as kubectl prints ages (`42s`, `5m3s`, `3h`, `12d`, `2y30d`).
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 { format!("{m}m") } else { format!("{m}m{}s", s % 60) }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 { format!("{h}h") } else { format!("{h}h{}m", m % 60) }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 { format!("{d}d") } else { format!("{d}d{}h", h % 24) }
    } else if h < 24 * 365 * 2 {
        format!("{d}d")
    } else if h < 24 * 365 * 8 {
        format!("{}y{}d", d / 365, d % 365)
    } else {
        format!("{}y", d / 365)
    }
}

fn s<'a>(o: &'a Value, path: &str) -> &'a str {
    o.pointer(path).and_then(Value::as_str).unwrap_or("")
}

fn n(o: &Value, path: &str) -> i64 {
    o.pointer(path).and_then(Value::as_i64).unwrap_or(0)
}

fn or_none(v: String) -> String {
    if v.is_empty() { "<none>".into() } else { v }
}

fn age(o: &Value, now: i64) -> String {
    match s(o, "/metadata/creationTimestamp").parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(now - t.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

fn count(o: &Value, path: &str) -> i64 {
    o.pointer(path).and_then(Value::as_object).map_or(0, |m| m.len() as i64)
}

fn containers(o: &Value, field: &str) -> String {
    let list = o.pointer("/spec/template/spec/containers").and_then(Value::as_array);
    list.into_iter().flatten().map(|c| c.get(field).and_then(Value::as_str).unwrap_or("")).collect::<Vec<_>>().join(",")
}

fn selector(o: &Value) -> String {
    let labels = o.pointer("/spec/selector/matchLabels").and_then(Value::as_object);
    or_none(labels.into_iter().flatten().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(","))
}

/// Column (name, priority) and cells of one kind.
fn columns(kind: &str) -> Vec<(&'static str, u8)> {
    match kind {
        "Namespace" => vec![("Name", 0), ("Status", 0), ("Age", 0)],
        "Node" => vec![("Name", 0), ("Status", 0), ("Roles", 0), ("Age", 0), ("Version", 0), ("Internal-IP", 1)],
        "Pod" => vec![("Name", 0), ("Ready", 0), ("Status", 0), ("Restarts", 0), ("Age", 0), ("IP", 1), ("Node", 1)],
        "Service" => vec![("Name", 0), ("Type", 0), ("Cluster-IP", 0), ("External-IP", 0), ("Port(s)", 0), ("Age", 0), ("Selector", 1)],
        "Endpoints" => vec![("Name", 0), ("Endpoints", 0), ("Age", 0)],
        "ConfigMap" => vec![("Name", 0), ("Data", 0), ("Age", 0)],
        "Secret" => vec![("Name", 0), ("Type", 0), ("Data", 0), ("Age", 0)],
        "ServiceAccount" => vec![("Name", 0), ("Secrets", 0), ("Age", 0)],
        "Event" => vec![("Last Seen", 0), ("Type", 0), ("Reason", 0), ("Object", 0), ("Message", 0)],
        "Deployment" => vec![
            ("Name", 0),
            ("Ready", 0),
            ("Up-to-date", 0),
            ("Available", 0),
            ("Age", 0),
            ("Containers", 1),
            ("Images", 1),
            ("Selector", 1),
        ],
        "ReplicaSet" => {
            vec![("Name", 0), ("Desired", 0), ("Current", 0), ("Ready", 0), ("Age", 0), ("Containers", 1), ("Images", 1), ("Selector", 1)]
        }
        "DaemonSet" => vec![
            ("Name", 0),
            ("Desired", 0),
            ("Current", 0),
            ("Ready", 0),
            ("Up-to-date", 0),
            ("Available", 0),
            ("Node Selector", 0),
            ("Age", 0),
        ],
        "Lease" => vec![("Name", 0), ("Holder", 0), ("Age", 0)],
        _ => vec![("Name", 0), ("Age", 0)],
    }
}

fn pod_cells(o: &Value, now: i64) -> Vec<Value> {
    let statuses = o.pointer("/status/containerStatuses").and_then(Value::as_array).cloned().unwrap_or_default();
    let total = o.pointer("/spec/containers").and_then(Value::as_array).map_or(0, Vec::len);
    let ready = statuses.iter().filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true)).count();
    let restarts: i64 = statuses.iter().map(|c| c.get("restartCount").and_then(Value::as_i64).unwrap_or(0)).sum();
    let mut status = s(o, "/status/reason").to_string();
    if status.is_empty() {
        status = s(o, "/status/phase").to_string();
    }
    for c in &statuses {
        let waiting = s(c, "/state/waiting/reason");
        if !waiting.is_empty() {
            status = waiting.to_string();
        }
    }
    if o.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
        status = "Terminating".into();
    }
    vec![
        json!(s(o, "/metadata/name")),
        json!(format!("{ready}/{total}")),
        json!(status),
        json!(restarts),
        json!(age(o, now)),
        json!(or_none(s(o, "/status/podIP").into())),
        json!(or_none(s(o, "/spec/nodeName").into())),
    ]
}

fn node_cells(o: &Value, now: i64) -> Vec<Value> {
    let conditions = o.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let ready = conditions.iter().find(|c| s(c, "/type") == "Ready").map(|c| s(c, "/status").to_string());
    let mut status = match ready.as_deref() {
        Some("True") => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let labels = o.pointer("/metadata/labels").and_then(Value::as_object);
    let roles: Vec<&str> =
        labels.into_iter().flatten().filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/")).filter(|r| !r.is_empty()).collect();
    let addresses = o.pointer("/status/addresses").and_then(Value::as_array).cloned().unwrap_or_default();
    let internal = addresses.iter().find(|a| s(a, "/type") == "InternalIP").map(|a| s(a, "/address").to_string()).unwrap_or_default();
    vec![
        json!(s(o, "/metadata/name")),
        json!(status),
        json!(or_none(roles.join(","))),
        json!(age(o, now)),
        json!(s(o, "/status/nodeInfo/kubeletVersion")),
        json!(or_none(internal)),
    ]
}

fn service_cells(o: &Value, now: i64) -> Vec<Value> {
    let ports = o.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
    let ports: Vec<String> = ports
        .iter()
        .map(|p| {
            let node = p.get("nodePort").and_then(Value::as_i64).map(|n| format!(":{n}")).unwrap_or_default();
            format!("{}{node}/{}", n(p, "/port"), s(p, "/protocol"))
        })
        .collect();
    let external: Vec<&str> =
        o.pointer("/spec/externalIPs").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let sel = o.pointer("/spec/selector").and_then(Value::as_object);
    let sel = sel.into_iter().flatten().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(",");
    vec![
        json!(s(o, "/metadata/name")),
        json!(s(o, "/spec/type")),
        json!(or_none(s(o, "/spec/clusterIP").into())),
        json!(or_none(external.join(","))),
        json!(or_none(ports.join(","))),
        json!(age(o, now)),
        json!(or_none(sel)),
    ]
}

fn cells(kind: &str, o: &Value, now: i64) -> Vec<Value> {
    let name = json!(s(o, "/metadata/name"));
    let a = json!(age(o, now));
    match kind {
        "Namespace" => vec![name, json!(s(o, "/status/phase")), a],
        "Node" => node_cells(o, now),
        "Pod" => pod_cells(o, now),
        "Service" => service_cells(o, now),
        "Endpoints" => {
            let subsets = o.get("subsets").and_then(Value::as_array).cloned().unwrap_or_default();
            let mut eps = Vec::new();
            for sub in &subsets {
                let ports: Vec<i64> = sub.get("ports").and_then(Value::as_array).into_iter().flatten().map(|p| n(p, "/port")).collect();
                for addr in sub.get("addresses").and_then(Value::as_array).into_iter().flatten() {
                    for p in &ports {
                        eps.push(format!("{}:{p}", s(addr, "/ip")));
                    }
                }
            }
            vec![name, json!(or_none(eps.join(","))), a]
        }
        "ConfigMap" => vec![name, json!(count(o, "/data") + count(o, "/binaryData")), a],
        "Secret" => vec![name, json!(s(o, "/type")), json!(count(o, "/data")), a],
        "ServiceAccount" => vec![name, json!(o.get("secrets").and_then(Value::as_array).map_or(0, Vec::len)), a],
        "Event" => {
            let last = [s(o, "/lastTimestamp"), s(o, "/eventTime"), s(o, "/metadata/creationTimestamp")]
                .into_iter()
                .find_map(|t| t.parse::<jiff::Timestamp>().ok())
                .map_or("<unknown>".into(), |t| human_duration(now - t.as_second()));
            let object = format!("{}/{}", s(o, "/involvedObject/kind").to_lowercase(), s(o, "/involvedObject/name"));
            vec![json!(last), json!(s(o, "/type")), json!(s(o, "/reason")), json!(object), json!(s(o, "/message"))]
        }
        "Deployment" => vec![
            name,
            json!(format!("{}/{}", n(o, "/status/readyReplicas"), n(o, "/spec/replicas"))),
            json!(n(o, "/status/updatedReplicas")),
            json!(n(o, "/status/availableReplicas")),
            a,
            json!(containers(o, "name")),
            json!(containers(o, "image")),
            json!(selector(o)),
        ],
        "ReplicaSet" => vec![
            name,
            json!(n(o, "/spec/replicas")),
            json!(n(o, "/status/replicas")),
            json!(n(o, "/status/readyReplicas")),
            a,
            json!(containers(o, "name")),
            json!(containers(o, "image")),
            json!(selector(o)),
        ],
        "DaemonSet" => {
            let ns = o.pointer("/spec/template/spec/nodeSelector").and_then(Value::as_object);
            let ns = ns.into_iter().flatten().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(",");
            vec![
                name,
                json!(n(o, "/status/desiredNumberScheduled")),
                json!(n(o, "/status/currentNumberScheduled")),
                json!(n(o, "/status/numberReady")),
                json!(n(o, "/status/updatedNumberScheduled")),
                json!(n(o, "/status/numberAvailable")),
                json!(or_none(ns)),
                a,
            ]
        }
        "Lease" => vec![name, json!(or_none(s(o, "/spec/holderIdentity").into())), a],
        _ => vec![name, a],
    }
}

/// The column definitions of `kind`.
pub fn column_definitions(kind: &str) -> Vec<Value> {
    columns(kind)
        .into_iter()
        .map(|(name, priority)| {
            let format = if name == "Name" { "name" } else { "" };
            json!({"name": name, "type": "string", "format": format, "description": "", "priority": priority})
        })
        .collect()
}

/// One row: the cells and the object's metadata.
pub fn row(kind: &str, obj: &Value, now: i64) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    json!({
        "cells": cells(kind, obj, now),
        "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta},
    })
}

/// A Table of `objects`, at `resource_version`, with `continue_token` if the list has more.
pub fn table(kind: &str, objects: &[Value], resource_version: &str, continue_token: Option<&str>, now: i64) -> Value {
    let mut meta = json!({"resourceVersion": resource_version});
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": column_definitions(kind),
        "rows": objects.iter().map(|o| row(kind, o, now)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_print_like_kubectl() {
        let table = [
            (5, "5s"),
            (119, "119s"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60, "3h1m"),
            (30 * 3600, "30h"),
            (3 * 86400 + 3600, "3d1h"),
            (40 * 86400, "40d"),
            (3 * 365 * 86400 + 86400, "3y1d"),
        ];
        for (secs, want) in table {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn a_pod_row_has_the_columns_kubectl_prints() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
            "status": {"phase": "Running", "containerStatuses": [{"ready": true, "restartCount": 2}, {"ready": false, "restartCount": 1}]}
        });
        let now = "2026-01-01T00:01:00Z".parse::<jiff::Timestamp>().map(|t| t.as_second()).unwrap_or(0);
        let r = row("Pod", &pod, now);
        assert_eq!(r["cells"], json!(["p", "1/2", "Running", 3, "60s", "<none>", "n1"]));
        assert_eq!(r["object"]["metadata"]["namespace"], "default");
        assert_eq!(column_definitions("Pod").len(), r["cells"].as_array().map_or(0, Vec::len));
    }

    #[test]
    fn every_kind_has_a_cell_per_column() {
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": "2026-01-01T00:00:00Z"}});
        for r in crate::registry::RESOURCES {
            assert_eq!(cells(r.kind, &obj, 0).len(), columns(r.kind).len(), "{}", r.kind);
        }
    }
}
