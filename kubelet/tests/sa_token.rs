//! ServiceAccount tokens end to end, as `keel up` runs the pieces: an apiserver with client
//! certificates, `Node,RBAC` and a signing key; keel-controller-manager under its own identity
//! (it creates the namespace's `default` ServiceAccount and `kube-root-ca.crt`); a Linux-runtime
//! keel-kubelet as `system:node:n1`. The `kube-api-access-xxxxx` volume the apiserver's
//! ServiceAccount admission gives the pod gets a token from TokenRequest, and that token
//! authenticates as `system:serviceaccount:team:default` until the pod is deleted.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{Certs, Host, free_port, jsonpath, wait_for};
use keel_testkit::Cluster;

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// curl to the apiserver with `token` as the only credential: (status, body).
fn as_token(c: &Cluster, token: &str, path: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-sk", "-o", "-", "-w", "\n%{http_code}", "--max-time", "20", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("https://{}{path}", c.https))
        .output()
        .expect("curl");
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = s.rsplit_once('\n').unwrap_or((&s, "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pods_projected_token_authenticates_as_its_service_account() {
    let host = Host::new(7);
    let certs = Certs::new(&host.path("certs"));
    let key = host.path("sa").join("sa.key");
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key").serialize_pem();
    std::fs::write(&key, pem).expect("write the signing key");
    let key = key.to_string_lossy().into_owned();
    let mut c = Cluster::builder()
        .secure(true)
        .apiserver_flags(&["--service-account-signing-key-file", &key, "--service-account-issuer", ISSUER])
        .start();

    let kcm = c.kubeconfig_for("system:kube-controller-manager", &[]).to_string_lossy().into_owned();
    c.spawn(
        "keel-controller-manager",
        false,
        &["--kubeconfig", &kcm, "--leader-elect=false", "--secure-port=0", "--controllers=serviceaccount,root-ca-cert-publisher"],
    );
    let port = free_port();
    let kubelet = c.kubeconfig_for("system:node:n1", &["system:nodes"]).to_string_lossy().into_owned();
    let mut flags = vec!["--kubeconfig".to_string(), kubelet];
    flags.extend(host.flags("n1", port, &certs, &host.path("manifests")));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    c.spawn("keel-kubelet", false, &flags);
    wait_for(&c, 30, "node Ready", || {
        (jsonpath(&c, &["node", "n1"], "{.status.conditions[?(@.type==\"Ready\")].status}") == "True").then_some(())
    });

    // The mount point is made in the container's view, never on the host (`/var/run` links to
    // `/run` on Debian: the link is followed inside the container's root).
    let on_host = std::path::Path::new("/run/secrets/kubernetes.io/serviceaccount");
    let was_on_host = on_host.exists();
    c.ok(&["create", "namespace", "team"]);
    wait_for(&c, 30, "the default ServiceAccount and kube-root-ca.crt", || {
        let sa = jsonpath(&c, &["serviceaccount", "default", "-n", "team"], "{.metadata.name}");
        let ca = jsonpath(&c, &["configmap", "kube-root-ca.crt", "-n", "team"], "{.metadata.name}");
        (!sa.is_empty() && !ca.is_empty()).then_some(())
    });
    // No volume of our own: the apiserver's ServiceAccount admission (on with a signing key)
    // names the account and adds kube-api-access-xxxxx; a second projection asks for another
    // audience.
    c.apply(
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: sa, namespace: team}}
spec:
  nodeName: n1
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'cat {MOUNT}/namespace; echo; test -s {MOUNT}/token && grep -q CERTIFICATE {MOUNT}/ca.crt && test -s /var/run/secrets/vault/token && echo token-mounted; sleep 3600']
    volumeMounts:
    - {{name: vault, mountPath: /var/run/secrets/vault, readOnly: true}}
  volumes:
  - name: vault
    projected:
      sources:
      - serviceAccountToken: {{audience: vault, expirationSeconds: 600, path: token}}
"#
        ),
        &[],
    );
    let volumes = jsonpath(&c, &["pod", "sa", "-n", "team"], "{.spec.volumes[*].name}");
    let volume = volumes.split_whitespace().find(|v| v.starts_with("kube-api-access-")).unwrap_or_default().to_string();
    assert_eq!(volume.len(), "kube-api-access-".len() + 5, "the admission's volume: {volumes:?}");
    wait_for(&c, 60, "the pod Running", || (jsonpath(&c, &["pod", "sa", "-n", "team"], "{.status.phase}") == "Running").then_some(()));
    let mut last = String::new();
    let logs = keel_testkit::eventually(std::time::Duration::from_secs(30), || {
        let (code, body) = certs.curl(port, "/containerLogs/team/sa/c", &[]);
        last = format!("{code} {body}");
        (code == 200 && body.contains("token-mounted")).then_some(body)
    });
    let logs = logs.unwrap_or_else(|| panic!("the container never saw its token; its log: {last}\n{}", c.logs()));
    assert!(logs.starts_with("team\n"), "the downwardAPI namespace file: {logs:?}");

    assert!(was_on_host || !on_host.exists(), "the container's mount point was made on the host");
    let uid = jsonpath(&c, &["pod", "sa", "-n", "team"], "{.metadata.uid}");
    let file = host.root.join("pods").join(&uid).join("volumes").join(&volume).join("token");
    let token = std::fs::read_to_string(&file).expect("the token file");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).expect("stat").permissions()) & 0o777;
    assert_eq!(mode, 0o644, "the volume's defaultMode");
    let (code, body) = as_token(&c, &token, "/api/v1/namespaces/team/pods");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains(r#"User \"system:serviceaccount:team:default\" cannot list resource \"pods\""#), "{body}");
    let (code, body) = as_token(&c, "not-a-token", "/api/v1/namespaces/team/pods");
    assert_eq!(code, 401, "a bogus token is refused, so the 403 above was an authenticated user: {body}");
    let vault =
        std::fs::read_to_string(host.root.join("pods").join(&uid).join("volumes").join("vault").join("token")).expect("the vault token");
    assert_ne!(vault, token, "one token per audience");
    assert_eq!(as_token(&c, &vault, "/api/v1/namespaces/team/pods").0, 401, "a token for audience vault is not the apiserver's");

    // The token is bound to the pod: once the pod is gone it no longer authenticates.
    c.ok(&["delete", "pod", "sa", "-n", "team", "--wait=true", "--timeout=60s"]);
    wait_for(&c, 30, "the bound token refused", || (as_token(&c, &token, "/api/v1/namespaces/team/pods").0 == 401).then_some(()));
}
