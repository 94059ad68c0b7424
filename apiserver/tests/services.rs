//! Service ClusterIP and NodePort allocation through kubectl (request controllers-3): what is
//! allocated, kube's 422s for taken and out-of-range values and for a changed cluster IP, what
//! a delete frees, and the `default/kubernetes` Service and Endpoints the apiserver keeps.

use keel_testkit::{Cluster, eventually};
use std::time::Duration;

fn svc(name: &str, ty: &str, cluster_ip: Option<&str>, node_port: Option<u16>) -> String {
    let ip = cluster_ip.map(|ip| format!("  clusterIP: {ip}\n")).unwrap_or_default();
    let np = node_port.map(|p| format!(", nodePort: {p}")).unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  type: {ty}\n{ip}  selector: {{app: {name}}}\n  ports: [{{port: 80{np}}}]\n"
    )
}

fn get(c: &Cluster, name: &str, path: &str) -> String {
    c.ok(&["get", "svc", name, "-o", &format!("jsonpath={path}")])
}

fn fails_apply(c: &Cluster, yaml: &str) -> String {
    let out = c.kubectl_in(&["apply", "-f", "-"], Some(yaml));
    assert!(!out.status.success(), "should have failed: {}", keel_testkit::text(&out.stdout));
    keel_testkit::text(&out.stderr)
}

#[test]
fn services_get_cluster_ips_and_node_ports_and_taken_or_foreign_ones_are_refused() {
    let c = Cluster::start();
    // The kubernetes Service holds the range's first IP; its Endpoints name this apiserver.
    assert_eq!(get(&c, "kubernetes", "{.spec.clusterIP}"), "10.96.0.1");
    assert_eq!(get(&c, "kubernetes", "{.spec.ports[0].port}/{.spec.ports[0].targetPort}"), format!("443/{}", c.https.port()));
    let endpoints = eventually(Duration::from_secs(30), || {
        let e = c.ok(&["get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[0].addresses[0].ip}:{.subsets[0].ports[0].port}"]);
        (e == c.https.to_string()).then_some(e)
    });
    assert!(endpoints.is_some(), "the kubernetes Endpoints list the apiserver");

    // Picked: in the range, not the kubernetes one, with kube's single-stack fields.
    c.apply(&svc("web", "ClusterIP", None, None), &[]);
    let ip = get(&c, "web", "{.spec.clusterIP}");
    assert!(ip.starts_with("10.") && ip != "10.96.0.1", "{ip}");
    let octet = |i: usize| ip.split('.').nth(i).and_then(|o| o.parse::<u8>().ok()).unwrap_or(0);
    assert!((96..112).contains(&octet(1)), "{ip} in 10.96.0.0/12");
    assert_eq!(
        get(&c, "web", "{.spec.clusterIPs} {.spec.ipFamilies} {.spec.ipFamilyPolicy}"),
        format!("[\"{ip}\"] [\"IPv4\"] SingleStack")
    );

    // Given: taken as is; again, or outside the range, 422.
    c.apply(&svc("fixed", "ClusterIP", Some("10.96.0.50"), None), &[]);
    assert_eq!(get(&c, "fixed", "{.spec.clusterIP}"), "10.96.0.50");
    let err = fails_apply(&c, &svc("twin", "ClusterIP", Some("10.96.0.50"), None));
    assert!(
        err.contains("The Service \"twin\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.96.0.50\"}: failed to allocate IP 10.96.0.50: provided IP is already allocated"),
        "{err}"
    );
    let err = fails_apply(&c, &svc("far", "ClusterIP", Some("10.200.0.1"), None));
    assert!(err.contains("is not in the valid range. The range of valid IPs is 10.96.0.0/12"), "{err}");
    let err = fails_apply(&c, &svc("twin", "ClusterIP", Some("10.96.0.1"), None));
    assert!(err.contains("provided IP is already allocated"), "the kubernetes Service's IP is taken: {err}");

    // The cluster IP cannot change; other changes keep it.
    let err = c.fails(&["patch", "svc", "web", "-p", r#"{"spec":{"clusterIP":"10.96.0.77","clusterIPs":["10.96.0.77"]}}"#]);
    assert!(err.contains("spec.clusterIPs[0]: Invalid value: \"10.96.0.77\": may not change once set"), "{err}");
    c.ok(&["label", "svc", "web", "tier=front"]);
    assert_eq!(get(&c, "web", "{.spec.clusterIP}"), ip);

    // NodePorts: given, taken, out of range, picked, and freed by a change of type.
    c.apply(&svc("np", "NodePort", None, Some(30080)), &[]);
    assert_eq!(get(&c, "np", "{.spec.ports[0].nodePort}"), "30080");
    let err = fails_apply(&c, &svc("np2", "NodePort", None, Some(30080)));
    assert!(err.contains("spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"), "{err}");
    let err = fails_apply(&c, &svc("np2", "NodePort", None, Some(8080)));
    assert!(
        err.contains(
            "spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767"
        ),
        "{err}"
    );
    c.apply(&svc("lb", "LoadBalancer", None, None), &[]);
    let picked: u16 = get(&c, "lb", "{.spec.ports[0].nodePort}").parse().unwrap_or(0);
    assert!((30000..=32767).contains(&picked) && picked != 30080, "{picked}");
    c.ok(&["patch", "svc", "np", "-p", r#"{"spec":{"type":"ClusterIP"}}"#]);
    assert_eq!(get(&c, "np", "{.spec.ports[0].nodePort}"), "", "a ClusterIP Service has no node port");
    c.apply(&svc("np2", "NodePort", None, Some(30080)), &[]);

    // Headless and ExternalName hold nothing; a delete frees what the Service held.
    c.apply(&svc("headless", "ClusterIP", Some("None"), None), &[]);
    assert_eq!(get(&c, "headless", "{.spec.clusterIP}"), "None");
    c.apply("apiVersion: v1\nkind: Service\nmetadata: {name: ext}\nspec: {type: ExternalName, externalName: example.com}\n", &[]);
    assert_eq!(get(&c, "ext", "{.spec.clusterIP}"), "");
    c.ok(&["delete", "svc", "fixed", "np2"]);
    c.apply(&svc("twin", "ClusterIP", Some("10.96.0.50"), None), &[]);
    c.apply(&svc("np3", "NodePort", None, Some(30080)), &[]);
    assert_eq!(get(&c, "twin", "{.spec.clusterIP}"), "10.96.0.50");
}
