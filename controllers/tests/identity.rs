//! The ServiceAccount controller and the root CA publisher as `keel up` runs them: an apiserver
//! with client certificates and `Node,RBAC`, the manager under its own identity
//! (`system:kube-controller-manager`, held to its default roles) with `--root-ca-file`.

mod common;

use common::wait_for;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use keel_controllers::rootca::{CONFIG_MAP, DATA_KEY, DESCRIPTION, DESCRIPTION_ANNOTATION};
use keel_testkit::Cluster;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_its_own_identity_the_manager_gives_every_namespace_its_account_and_the_root_ca() {
    let mut c = Cluster::builder().secure(true).start();
    let files = tempfile::tempdir().expect("tempdir");
    // A bundle other than the kubeconfig's CA, so the flag is what is published.
    let pem = keel_access::pki::ClusterCa::generate("keel-test-root-ca").expect("a CA").cert_pem();
    let ca_file = files.path().join("root-ca.crt");
    std::fs::write(&ca_file, &pem).expect("write the root CA");
    let kcm = c.kubeconfig_for("system:kube-controller-manager", &[]);
    let (kcm, ca_file) = (kcm.to_string_lossy().into_owned(), ca_file.to_string_lossy().into_owned());
    c.spawn(
        "keel-controller-manager",
        false,
        &[
            "--kubeconfig",
            &kcm,
            "--leader-elect=false",
            "--secure-port=0",
            "--controllers=serviceaccount,root-ca-cert-publisher",
            "--root-ca-file",
            &ca_file,
        ],
    );
    let client = c.client().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "team"}})).expect("ns"))
        .await
        .expect("create team");

    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "team");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    let published = || async {
        let cm = cms.get_opt(CONFIG_MAP).await.ok()??;
        let described = cm.metadata.annotations.as_ref()?.get(DESCRIPTION_ANNOTATION).map(String::as_str) == Some(DESCRIPTION);
        (described && cm.data.as_ref()?.get(DATA_KEY) == Some(&pem) && cm.data.as_ref()?.len() == 1).then_some(cm.metadata.uid)
    };
    for ns in ["default", "kube-system", "team"] {
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
        wait_for(&c, Duration::from_secs(30), &format!("the default ServiceAccount in {ns}"), || async {
            sas.get_opt("default").await.ok()?.map(|_| ())
        })
        .await;
    }
    let first = wait_for(&c, Duration::from_secs(30), "the --root-ca-file bundle in team", published).await;

    // Deleted, both come back (created by the manager's identity, so RBAC allowed it).
    let old = sas.get("default").await.expect("the account").metadata.uid;
    sas.delete("default", &DeleteParams::default()).await.expect("delete the account");
    wait_for(&c, Duration::from_secs(30), "the default ServiceAccount recreated", || async {
        let sa = sas.get_opt("default").await.ok()??;
        (sa.metadata.uid != old).then_some(())
    })
    .await;
    cms.delete(CONFIG_MAP, &DeleteParams::default()).await.expect("delete the CA");
    wait_for(&c, Duration::from_secs(30), "the CA recreated", || async {
        let uid = published().await?;
        (uid != first).then_some(())
    })
    .await;
    // Edited: put back by an update (RBAC's update on configmaps).
    cms.patch(CONFIG_MAP, &PatchParams::default(), &Patch::Merge(json!({"data": {DATA_KEY: "tampered"}}))).await.expect("tamper");
    wait_for(&c, Duration::from_secs(30), "the CA repaired", published).await;
}
