//! LimitRanger through the real kubectl: a LimitRange is defaulted as kube defaults it, a pod
//! created without resources gets the namespace's defaults (and the `kubernetes.io/limit-ranger`
//! annotation), a pod over a max is 403 with kube's message, and `kubectl describe limitrange`
//! prints kube's table.

use keel_testkit::{Cluster, text};

const RANGE: &str = "apiVersion: v1
kind: LimitRange
metadata: {name: cpu-mem, namespace: dev}
spec:
  limits:
  - type: Container
    default: {cpu: 500m, memory: 256Mi}
    defaultRequest: {cpu: 250m}
    max: {cpu: '1', memory: 512Mi}
    min: {cpu: 100m}
  - type: Pod
    max: {cpu: '2'}
";

fn pod(name: &str, resources: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: dev}}\nspec:\n  containers:\n  - name: c\n    image: busybox\n{resources}"
    )
}

fn rows(out: &str) -> Vec<String> {
    out.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

#[test]
fn limit_range_defaults_reach_created_pods_and_its_max_is_enforced_with_kubes_message() {
    let c = Cluster::start();
    c.ok(&["create", "namespace", "dev"]);
    c.apply(RANGE, &[]);

    // kube's defaulting of the LimitRange itself: defaultRequest.memory from default.
    let lr: serde_json::Value = serde_json::from_str(&c.ok(&["get", "limits", "cpu-mem", "-n", "dev", "-o", "json"])).unwrap_or_default();
    assert_eq!(lr["spec"]["limits"][0]["defaultRequest"], serde_json::json!({"cpu": "250m", "memory": "256Mi"}));
    assert_eq!(lr["spec"]["limits"][1].get("default"), None, "a Pod item gets no defaults");

    // A pod without resources gets the defaults; one with a limit only gets its request from
    // that limit (the pod's own defaulting, before LimitRanger).
    c.apply(&pod("plain", ""), &[]);
    let p: serde_json::Value = serde_json::from_str(&c.ok(&["get", "pod", "plain", "-n", "dev", "-o", "json"])).unwrap_or_default();
    assert_eq!(
        p["spec"]["containers"][0]["resources"],
        serde_json::json!({"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "250m", "memory": "256Mi"}})
    );
    assert_eq!(
        p["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c"
    );
    c.apply(&pod("sized", "    resources: {limits: {cpu: 800m}}\n"), &[]);
    let p: serde_json::Value = serde_json::from_str(&c.ok(&["get", "pod", "sized", "-n", "dev", "-o", "json"])).unwrap_or_default();
    assert_eq!(
        p["spec"]["containers"][0]["resources"],
        serde_json::json!({"limits": {"cpu": "800m", "memory": "256Mi"}, "requests": {"cpu": "800m", "memory": "256Mi"}})
    );

    // Over the Container max: 403 with kube's message, and nothing stored.
    let out = c.kubectl_in(&["apply", "-f", "-"], Some(&pod("big", "    resources: {limits: {cpu: '2'}}\n")));
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(r#"pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2"#), "{err}");
    assert!(!c.kubectl(&["get", "pod", "big", "-n", "dev"]).status.success(), "the refused pod is not stored");
    // Under the min: the request defaulted from the limit is below it.
    let out = c.kubectl_in(&["apply", "-f", "-"], Some(&pod("tiny", "    resources: {limits: {cpu: 50m}}\n")));
    assert!(
        text(&out.stderr).contains(r#"pods "tiny" is forbidden: minimum cpu usage per Container is 100m, but request is 50m"#),
        "{}",
        text(&out.stderr)
    );
    // Other namespaces have no LimitRange: nothing is defaulted there.
    c.ok(&["create", "namespace", "free"]);
    c.apply(&pod("plain", "").replace("namespace: dev", "namespace: free"), &[]);
    let p: serde_json::Value = serde_json::from_str(&c.ok(&["get", "pod", "plain", "-n", "free", "-o", "json"])).unwrap_or_default();
    assert_eq!(p["spec"]["containers"][0]["resources"], serde_json::json!({}));

    // kubectl get and describe read it as kube's.
    let got = rows(&c.ok(&["get", "limitranges", "-n", "dev"]));
    assert_eq!(got.first().map(String::as_str), Some("NAME CREATED AT"));
    assert!(got.get(1).is_some_and(|r| r.starts_with("cpu-mem 20")), "{got:?}");
    let described = rows(&c.ok(&["describe", "limitrange", "cpu-mem", "-n", "dev"]));
    for want in [
        "Name: cpu-mem",
        "Namespace: dev",
        "Type Resource Min Max Default Request Default Limit Max Limit/Request Ratio",
        "Container cpu 100m 1 250m 500m -",
        "Container memory - 512Mi 256Mi 256Mi -",
        "Pod cpu - 2 - - -",
    ] {
        assert!(described.iter().any(|r| r == want), "missing {want:?} in {described:#?}");
    }

    // kube's validation of a LimitRange.
    let out = c.kubectl_in(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: LimitRange\nmetadata: {name: bad, namespace: dev}\nspec:\n  limits:\n  - type: Container\n    min: {cpu: '2'}\n    max: {cpu: '1'}\n"),
    );
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains("min value 2 is greater than max value 1"), "{err}");
}
