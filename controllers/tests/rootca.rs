//! The root CA publisher with the real apiserver: every namespace, old and new, gets
//! `kube-root-ca.crt` holding the CA the kubeconfig trusts; deleting or editing it puts it
//! back.

mod common;

use base64::Engine as _;
use common::{control_plane, wait_for};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use keel_controllers::rootca::{CONFIG_MAP, DATA_KEY, DESCRIPTION_ANNOTATION};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Duration;

/// The PEM the admin kubeconfig trusts.
fn kubeconfig_ca(c: &keel_testkit::Cluster) -> String {
    let kc = kube::config::Kubeconfig::read_from(&c.kubeconfig).expect("kubeconfig");
    let data = kc.clusters[0].cluster.as_ref().and_then(|c| c.certificate_authority_data.clone()).expect("CA data");
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(data).expect("base64")).expect("PEM")
}

async fn published(api: &Api<ConfigMap>) -> Option<String> {
    let cm = api.get_opt(CONFIG_MAP).await.ok()??;
    cm.metadata.annotations.as_ref()?.get(DESCRIPTION_ANNOTATION)?;
    let data = cm.data?;
    (data.len() == 1).then_some(())?;
    data.get(DATA_KEY).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_gets_the_root_ca_and_keeps_it() {
    let c = control_plane(&[], &[], 0);
    let client = c.client().await;
    let ca = kubeconfig_ca(&c);
    assert!(ca.contains("BEGIN CERTIFICATE"));
    for ns in ["default", "kube-system", "kube-public"] {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let got = wait_for(&c, Duration::from_secs(30), &format!("{CONFIG_MAP} in {ns}"), || published(&api)).await;
        assert_eq!(got, ca, "{ns}");
    }

    // A namespace created later gets it too.
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "team"}})).expect("ns")).await.ok();
    let team: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    assert_eq!(wait_for(&c, Duration::from_secs(30), "the CA in a new namespace", || published(&team)).await, ca);

    // Edited: the data is put back (an extra key removed), someone's label kept.
    let edit = json!({"metadata": {"labels": {"mine": "yes"}}, "data": {"ca.crt": "tampered", "extra": "x"}});
    team.patch(CONFIG_MAP, &PatchParams::default(), &Patch::Merge(edit)).await.ok();
    wait_for(&c, Duration::from_secs(30), "the CA restored", || async {
        let cm = team.get_opt(CONFIG_MAP).await.ok()??;
        let labelled = cm.metadata.labels.as_ref()?.get("mine").is_some();
        (published(&team).await? == ca && labelled).then_some(())
    })
    .await;

    // Deleted: created again.
    let uid = team.get(CONFIG_MAP).await.ok().and_then(|c| c.metadata.uid);
    team.delete(CONFIG_MAP, &DeleteParams::default()).await.ok();
    wait_for(&c, Duration::from_secs(30), "the CA recreated", || async {
        let cm = team.get_opt(CONFIG_MAP).await.ok()??;
        (cm.metadata.uid != uid && published(&team).await? == ca).then_some(())
    })
    .await;
}
