//! Table tests of the allocator core.

use super::*;

fn svc(ty: &str, ip: Option<&str>, node_ports: &[Option<u64>]) -> Value {
    let ports: Vec<Value> = node_ports
        .iter()
        .enumerate()
        .map(|(i, np)| {
            let mut p = json!({"port": 80 + i as i64, "protocol": "TCP"});
            if let Some(n) = np {
                p["nodePort"] = json!(n);
            }
            p
        })
        .collect();
    let mut s = json!({"metadata": {"namespace": "default", "name": "web"}, "spec": {"type": ty, "ports": ports}});
    if let Some(ip) = ip {
        s["spec"]["clusterIP"] = json!(ip);
    }
    s
}

fn small() -> Ranges {
    Ranges { ips: Cidr::parse("10.0.0.0/29").unwrap_or_else(|e| panic!("{e}")), ports: (30000, 30002) }
}

fn taken(ips: &[&str], ports: &[u16]) -> Taken {
    Taken { ips: ips.iter().filter_map(|s| s.parse().ok()).collect(), ports: ports.iter().copied().collect() }
}

fn keys(c: &Claims) -> (Vec<String>, Vec<String>) {
    (c.take.iter().map(|(k, _)| k.clone()).collect(), c.free.clone())
}

#[test]
fn cidrs_exclude_network_and_broadcast() {
    let c = Cidr::parse("10.96.7.9/12").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.to_string(), "10.96.0.0/12");
    assert_eq!(c.nth(0), Ipv4Addr::new(10, 96, 0, 1));
    let s = small();
    assert_eq!(s.ips.usable(), 6);
    let table = [("10.0.0.0", false), ("10.0.0.1", true), ("10.0.0.6", true), ("10.0.0.7", false), ("10.0.0.8", false)];
    for (ip, want) in table {
        assert_eq!(s.ips.contains(ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED)), want, "{ip}");
    }
    assert!(Cidr::parse("fd00::/108").is_err() && Cidr::parse("10.0.0.0").is_err() && Cidr::parse("10.0.0.0/31").is_err());
    assert_eq!(parse_ports("30000-32767"), Ok((30000, 32767)));
    assert!(parse_ports("5-1").is_err());
}

#[test]
fn creates_get_an_ip_and_node_ports_or_the_422_kube_answers() {
    let r = small();
    type Row = (Value, Taken, Result<(Option<&'static str>, Vec<u64>, usize), &'static str>);
    let rows: Vec<Row> = vec![
        // Given and free: taken as is.
        (svc("ClusterIP", Some("10.0.0.5"), &[None]), taken(&[], &[]), Ok((Some("10.0.0.5"), vec![], 1))),
        // Out of range, and taken.
        (
            svc("ClusterIP", Some("10.9.0.5"), &[]),
            taken(&[], &[]),
            Err(
                "spec.clusterIPs: Invalid value: []string{\"10.9.0.5\"}: failed to allocate IP 10.9.0.5: the provided IP (10.9.0.5) is not in the valid range. The range of valid IPs is 10.0.0.0/29",
            ),
        ),
        (
            svc("ClusterIP", Some("10.0.0.5"), &[]),
            taken(&["10.0.0.5"], &[]),
            Err("spec.clusterIPs: Invalid value: []string{\"10.0.0.5\"}: failed to allocate IP 10.0.0.5: provided IP is already allocated"),
        ),
        // Headless and ExternalName take nothing.
        (svc("ClusterIP", Some("None"), &[None]), taken(&[], &[]), Ok((Some("None"), vec![], 0))),
        (svc("ExternalName", None, &[None]), taken(&[], &[]), Ok((None, vec![], 0))),
        // NodePort: given in range and free, given out of range, given taken, picked.
        (svc("NodePort", Some("10.0.0.2"), &[Some(30001)]), taken(&[], &[]), Ok((Some("10.0.0.2"), vec![30001], 2))),
        (
            svc("NodePort", Some("10.0.0.2"), &[Some(80)]),
            taken(&[], &[]),
            Err(
                "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-30002",
            ),
        ),
        (
            svc("NodePort", Some("10.0.0.2"), &[Some(30001)]),
            taken(&[], &[30001]),
            Err("spec.ports[0].nodePort: Invalid value: 30001: provided port is already allocated"),
        ),
        (
            svc("NodePort", Some("10.0.0.2"), &[Some(30001), Some(30001)]),
            taken(&[], &[]),
            Err("spec.ports[1].nodePort: Invalid value: 30001: provided port is already allocated"),
        ),
        (svc("LoadBalancer", Some("10.0.0.2"), &[None, None]), taken(&[], &[30000]), Ok((Some("10.0.0.2"), vec![30001, 30002], 3))),
        // A ClusterIP Service may not ask for a node port.
        (
            svc("ClusterIP", Some("10.0.0.2"), &[Some(30001)]),
            taken(&[], &[]),
            Err("spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"),
        ),
    ];
    for (mut s, t, want) in rows {
        let before = s.clone();
        let got = plan(&mut s, None, &r, &t);
        match (got, want) {
            (Ok(claims), Ok((ip, ports, takes))) => {
                assert_eq!(s.pointer("/spec/clusterIP").and_then(Value::as_str), ip, "{before}");
                let mut got_ports: Vec<u64> =
                    s["spec"]["ports"].as_array().into_iter().flatten().filter_map(|p| p["nodePort"].as_u64()).collect();
                got_ports.sort();
                assert_eq!(got_ports, ports, "{before}");
                assert_eq!(claims.take.len(), takes, "{before}: {claims:?}");
                assert!(claims.free.is_empty());
                if ip.is_some_and(|i| i != "None") {
                    assert_eq!(s["spec"]["clusterIPs"], json!([ip]));
                    assert_eq!(s["spec"]["ipFamilies"], json!(["IPv4"]));
                    assert_eq!(s["spec"]["ipFamilyPolicy"], "SingleStack");
                }
            }
            (Err(causes), Err(msg)) => {
                let text: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
                assert_eq!(text, vec![msg.to_string()], "{before}");
            }
            (got, want) => panic!("{before}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn picked_ips_skip_what_is_taken_and_leave_the_first_to_the_kubernetes_service() {
    let r = small();
    let mut t = taken(&[], &[]);
    let mut seen = BTreeSet::new();
    for i in 0..5 {
        let mut s = svc("ClusterIP", None, &[]);
        s["metadata"]["name"] = json!(format!("s{i}"));
        let c = plan(&mut s, None, &r, &t).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(c.picked);
        let ip: Ipv4Addr = s["spec"]["clusterIP"].as_str().and_then(|s| s.parse().ok()).unwrap_or(Ipv4Addr::UNSPECIFIED);
        assert_ne!(ip, Ipv4Addr::new(10, 0, 0, 1), "the first usable IP is the kubernetes Service's");
        assert!(r.ips.contains(ip) && seen.insert(ip), "{ip} in range and new");
        assert_eq!(keys(&c).0, vec![format!("{IP_PREFIX}{ip}")]);
        t.ips.insert(ip);
    }
    let mut full = svc("ClusterIP", None, &[]);
    assert!(plan(&mut full, None, &r, &t).is_err(), "5 usable IPs beside the first: the range is full");
    let mut k = svc("ClusterIP", None, &[]);
    k["metadata"] = json!({"namespace": "default", "name": "kubernetes"});
    assert!(plan(&mut k, None, &r, &t).is_ok());
    assert_eq!(k["spec"]["clusterIP"], "10.0.0.1");
}

#[test]
fn updates_keep_the_ip_free_what_they_drop_and_refuse_changes() {
    let r = small();
    let t = taken(&["10.0.0.3"], &[30000]);
    let old = {
        let mut s = svc("NodePort", Some("10.0.0.3"), &[Some(30000)]);
        s["spec"]["clusterIPs"] = json!(["10.0.0.3"]);
        s
    };
    // Left out: kept (kube's PatchAllocatedValues); nothing taken or freed.
    let mut same = svc("NodePort", None, &[None]);
    let c = plan(&mut same, Some(&old), &r, &t).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!((same["spec"]["clusterIP"].clone(), same["spec"]["ports"][0]["nodePort"].clone()), (json!("10.0.0.3"), json!(30000)));
    assert!(c.is_empty(), "{c:?}");
    // A changed IP is refused.
    let mut moved = svc("NodePort", Some("10.0.0.4"), &[None]);
    let e = plan(&mut moved, Some(&old), &r, &t).err().unwrap_or_default();
    assert_eq!(e, vec![("spec.clusterIPs[0]".to_string(), "Invalid value: \"10.0.0.4\": may not change once set".to_string())]);
    // Another node port: the old one is freed, the new one taken.
    let mut other = svc("NodePort", Some("10.0.0.3"), &[Some(30002)]);
    let c = plan(&mut other, Some(&old), &r, &t).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(keys(&c), (vec![format!("{PORT_PREFIX}30002")], vec![format!("{PORT_PREFIX}30000")]));
    // Back to ClusterIP: the node port left as it was is dropped and freed.
    let mut plain = svc("ClusterIP", Some("10.0.0.3"), &[Some(30000)]);
    let c = plan(&mut plain, Some(&old), &r, &t).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(plain["spec"]["ports"][0].get("nodePort").is_none());
    assert_eq!(keys(&c), (vec![], vec![format!("{PORT_PREFIX}30000")]));
    // To ExternalName: the IP goes too; and back from it a new one is picked.
    let mut ext = svc("ExternalName", Some("10.0.0.3"), &[None]);
    let c = plan(&mut ext, Some(&old), &r, &t).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(ext["spec"].get("clusterIP").is_none());
    assert_eq!(keys(&c).1, vec![format!("{IP_PREFIX}10.0.0.3"), format!("{PORT_PREFIX}30000")]);
    let mut back = svc("ClusterIP", None, &[None]);
    let c = plan(&mut back, Some(&ext), &r, &taken(&[], &[])).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(c.picked && c.take.len() == 1 && c.free.is_empty(), "{c:?}");
    // A headless Service stays headless when the update leaves clusterIP out.
    let headless = svc("ClusterIP", Some("None"), &[None]);
    let mut again = svc("ClusterIP", None, &[None]);
    let c = plan(&mut again, Some(&headless), &r, &t).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!((again["spec"]["clusterIP"].clone(), c.is_empty()), (json!("None"), true));
    // Deleting frees everything held.
    assert_eq!(keys(&release(&old)), (vec![], vec![format!("{IP_PREFIX}10.0.0.3"), format!("{PORT_PREFIX}30000")]));
}
