//! ResourceQuota through the real kubectl: a quota's `status.used` is computed when it is
//! created, kept exact under concurrent creates (the check and the write are one Txn: a quota of
//! `pods: 5` and 20 racing creates give exactly 5 pods), given back by deletes, and printed by
//! `kubectl get` and `kubectl describe quota` as kube prints it.

use keel_testkit::{Cluster, text};

const QUOTA: &str = "apiVersion: v1
kind: ResourceQuota
metadata: {name: q, namespace: dev}
spec:
  hard: {pods: '5', count/configmaps: '2'}
";

fn pod(name: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: dev}}\nspec:\n  containers: [{{name: c, image: busybox}}]\n")
}

fn used(c: &Cluster) -> serde_json::Value {
    let q: serde_json::Value = serde_json::from_str(&c.ok(&["get", "quota", "q", "-n", "dev", "-o", "json"])).unwrap_or_default();
    q["status"]["used"].clone()
}

fn rows(out: &str) -> Vec<String> {
    out.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

#[test]
fn a_quota_of_five_pods_admits_exactly_five_of_twenty_racing_creates_and_deletes_give_back() {
    let c = Cluster::start();
    c.ok(&["create", "namespace", "dev"]);
    c.ok(&["create", "configmap", "before", "-n", "dev"]);
    c.apply(QUOTA, &[]);
    let q: serde_json::Value = serde_json::from_str(&c.ok(&["get", "quota", "q", "-n", "dev", "-o", "json"])).unwrap_or_default();
    assert_eq!(q["status"]["hard"], serde_json::json!({"pods": "5", "count/configmaps": "2"}));
    assert_eq!(q["status"]["used"], serde_json::json!({"pods": "0", "count/configmaps": "1"}), "what existed before is counted");

    // Twenty creates at once: every one checks and writes in one Txn.
    let outcomes: Vec<(bool, String)> = std::thread::scope(|s| {
        let c = &c;
        let handles: Vec<_> = (0..20)
            .map(|i| {
                s.spawn(move || {
                    let out = c.kubectl_in(&["create", "-f", "-"], Some(&pod(&format!("p{i}"))));
                    (out.status.success(), text(&out.stderr))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or((false, "panicked".into()))).collect()
    });
    let admitted = outcomes.iter().filter(|(ok, _)| *ok).count();
    assert_eq!(admitted, 5, "{outcomes:#?}");
    for (_, err) in outcomes.iter().filter(|(ok, _)| !*ok) {
        assert!(err.contains("is forbidden: exceeded quota: q, requested: pods=1, used: pods=5, limited: pods=5"), "{err}");
    }
    let listed = c.ok(&["get", "pods", "-n", "dev", "-o", "name"]);
    assert_eq!(listed.lines().count(), 5, "{listed}");
    assert_eq!(used(&c)["pods"], "5");

    // Deletes give back in their own Txn; the room is usable at once.
    let names: Vec<&str> = listed.lines().take(2).collect();
    let mut args = vec!["delete", "-n", "dev"];
    args.extend(names.iter().copied());
    c.ok(&args);
    assert_eq!(used(&c)["pods"], "3");
    c.kubectl_in(&["create", "-f", "-"], Some(&pod("again")));
    assert_eq!(used(&c)["pods"], "4");
    // A pod that has finished uses no `pods` any more: its status write gives it back.
    c.ok(&["patch", "pod", "again", "-n", "dev", "--subresource=status", "--type=merge", "-p", r#"{"status":{"phase":"Succeeded"}}"#]);
    assert_eq!(used(&c)["pods"], "3");

    // Object counts: the second configmap fits, the third does not.
    c.ok(&["create", "configmap", "a", "-n", "dev"]);
    let err = c.fails(&["create", "configmap", "b", "-n", "dev"]);
    assert!(
        err.contains(r#"configmaps "b" is forbidden: exceeded quota: q, requested: count/configmaps=1, used: count/configmaps=2, limited: count/configmaps=2"#),
        "{err}"
    );
    assert_eq!(used(&c), serde_json::json!({"pods": "3", "count/configmaps": "2"}));

    // kube's printer and describer.
    let got = rows(&c.ok(&["get", "quota", "-n", "dev"]));
    assert_eq!(got.first().map(String::as_str), Some("NAME AGE REQUEST LIMIT"));
    assert!(got.get(1).is_some_and(|r| r.starts_with("q ") && r.ends_with("count/configmaps: 2/2, pods: 3/5")), "{got:?}");
    let described = rows(&c.ok(&["describe", "quota", "q", "-n", "dev"]));
    for want in ["Name: q", "Namespace: dev", "Resource Used Hard", "count/configmaps 2 2", "pods 3 5"] {
        assert!(described.iter().any(|r| r == want), "missing {want:?} in {described:#?}");
    }

    // Raising the quota recomputes what is used and admits again.
    c.apply(&QUOTA.replace("pods: '5'", "pods: '6'"), &[]);
    assert_eq!(used(&c)["pods"], "3", "the finished pod is not counted");
    c.ok(&["delete", "pod", "again", "-n", "dev"]);
    assert_eq!(used(&c)["pods"], "3", "nor given back twice");
    c.ok(&["delete", "configmap", "a", "-n", "dev"]);
    assert_eq!(used(&c)["count/configmaps"], "1");
}
