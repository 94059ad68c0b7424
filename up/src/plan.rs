//! What `keel up` runs, as data: one [`Spec`] per process, in start order, computed from the
//! options alone (no I/O), so the layout is table-tested and `keel status` reads the same plan.
//!
//! The seed's HA picture on one machine, member `i` on loopback address `127.0.0.i` as if it
//! were its own host:
//!
//! ```text
//!   127.0.0.i:2379/2380   keel-store mi            (quorum floor(n/2)+1)
//!   127.0.0.i:6444        keel-apiserver           (all active, over every member)
//!   127.0.0.1:6443        keel's TCP load balancer (the kubeconfig's server) ─▶ every apiserver
//!   127.0.0.i:10259       keel-scheduler           (leader-elected through a Lease)
//!   127.0.0.i:10257       keel-controller-manager  (leader-elected through a Lease)
//!   127.0.0.i:10250       keel-kubelet, node keel-i (pod CIDR 10.244.i.0/24, bridge keeli)
//! ```
//!
//! The apiservers listen on 6444 (as k3s' apiserver behind its own balancer does) because the
//! balancer holds 6443 on 127.0.0.1.

use std::path::{Path, PathBuf};

/// The apiservers' port behind the balancer.
pub const APISERVER_PORT: u16 = 6444;
/// The balancer's port (the kubeconfig's server).
pub const BALANCER_PORT: u16 = 6443;

/// What a process is, which decides start order, stop order and what `keel status` asks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// A keel-store member.
    Store,
    /// A keel-apiserver.
    Apiserver,
    /// keel-scheduler.
    Scheduler,
    /// keel-controller-manager.
    ControllerManager,
    /// keel-kubelet.
    Kubelet,
}

impl Role {
    /// The binary.
    pub fn program(self) -> &'static str {
        match self {
            Role::Store => "keel-store",
            Role::Apiserver => "keel-apiserver",
            Role::Scheduler => "keel-scheduler",
            Role::ControllerManager => "keel-controller-manager",
            Role::Kubelet => "keel-kubelet",
        }
    }
}

/// One process to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// Unique name (`m1`, `apiserver-1`, `scheduler-2`, …); its log is `<data-dir>/<name>.log`.
    pub name: String,
    /// What it is.
    pub role: Role,
    /// Its command-line arguments.
    pub args: Vec<String>,
    /// Where it answers (`host:port`; the client URL for members, the HTTPS port otherwise).
    pub addr: String,
}

/// What the user asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Where data and logs go.
    pub data_dir: PathBuf,
    /// Store members (and apiserver, scheduler, controller-manager and kubelet replicas).
    pub members: usize,
    /// Whether to run the control plane above the store at all.
    pub control_plane: bool,
    /// Run one kubelet hosting this many simulated nodes instead of one real node per member.
    pub simulated_nodes: Option<usize>,
    /// Extra keel-store flags for every member.
    pub store_flags: Vec<String>,
}

/// The loopback address of member `i` (1-based).
pub fn host(i: usize) -> String {
    format!("127.0.0.{i}")
}

/// The admin kubeconfig `keel up` writes (its server is the balancer).
pub fn kubeconfig(data_dir: &Path) -> PathBuf {
    data_dir.join("kubeconfig")
}

/// The serving certificates every apiserver shares (the first one generates them).
pub fn cert_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("apiserver-certs")
}

fn path(p: PathBuf) -> String {
    p.display().to_string()
}

/// Every process, in start order: members, apiservers, then the components.
pub fn plan(o: &Options) -> Vec<Spec> {
    let n = o.members;
    let mut out = Vec::new();
    let initial: Vec<String> = (1..=n).map(|i| format!("m{i}=http://{}:2380", host(i))).collect();
    for i in 1..=n {
        let (client, peer) = (format!("http://{}:2379", host(i)), format!("http://{}:2380", host(i)));
        let mut args: Vec<String> =
            vec!["--name".into(), format!("m{i}"), "--data-dir".into(), path(o.data_dir.join(format!("m{i}.etcd")))];
        for (flag, value) in [
            ("--listen-client-urls", client.clone()),
            ("--advertise-client-urls", client),
            ("--listen-peer-urls", peer.clone()),
            ("--initial-advertise-peer-urls", peer),
            ("--initial-cluster", initial.join(",")),
            ("--initial-cluster-state", "new".into()),
            ("--initial-cluster-token", "keel-up".into()),
            ("--logger", "capnslog".into()),
        ] {
            args.push(flag.into());
            args.push(value);
        }
        args.extend(o.store_flags.iter().cloned());
        out.push(Spec { name: format!("m{i}"), role: Role::Store, args, addr: format!("{}:2379", host(i)) });
    }
    if !o.control_plane {
        return out;
    }
    let etcd_servers = (1..=n).map(|i| format!("http://{}:2379", host(i))).collect::<Vec<_>>().join(",");
    let kubeconfig = |part: &str| path(crate::identity::kubeconfig_of(&o.data_dir, part));
    for i in 1..=n {
        let args = vec![
            "--etcd-servers".into(),
            etcd_servers.clone(),
            "--bind-address".into(),
            host(i),
            "--secure-port".into(),
            APISERVER_PORT.to_string(),
            "--data-dir".into(),
            path(o.data_dir.join(format!("apiserver-{i}"))),
            "--cert-dir".into(),
            path(cert_dir(&o.data_dir)),
            "--client-ca-file".into(),
            path(crate::identity::ca_file(&o.data_dir)),
            "--authorization-mode".into(),
            "Node,RBAC".into(),
            "--enable-admission-plugins".into(),
            "NodeRestriction".into(),
            "--service-account-signing-key-file".into(),
            path(crate::identity::service_account_key_file(&o.data_dir)),
            "--service-account-issuer".into(),
            crate::identity::SERVICE_ACCOUNT_ISSUER.into(),
        ];
        out.push(Spec { name: format!("apiserver-{i}"), role: Role::Apiserver, args, addr: format!("{}:{APISERVER_PORT}", host(i)) });
    }
    for (role, port, name) in [(Role::Scheduler, 10259, "scheduler"), (Role::ControllerManager, 10257, "controller-manager")] {
        for i in 1..=n {
            let part = format!("{name}-{i}");
            let args =
                vec!["--kubeconfig".into(), kubeconfig(&part), "--bind-address".into(), host(i), "--secure-port".into(), port.to_string()];
            out.push(Spec { name: part, role, args, addr: format!("{}:{port}", host(i)) });
        }
    }
    match o.simulated_nodes {
        Some(nodes) => {
            let args = vec![
                "--kubeconfig".into(),
                kubeconfig("kubelet-simulated"),
                "--address".into(),
                host(1),
                "--port".into(),
                "10250".into(),
                "--root-dir".into(),
                path(o.data_dir.join("kubelet-simulated")),
                "--simulated-nodes".into(),
                nodes.to_string(),
                "--hostname-override".into(),
                "keel-sim".into(),
            ];
            out.push(Spec { name: "kubelet-simulated".into(), role: Role::Kubelet, args, addr: format!("{}:10250", host(1)) });
        }
        None => {
            for i in 1..=n {
                let args = vec![
                    "--kubeconfig".into(),
                    kubeconfig(&format!("kubelet-{i}")),
                    "--hostname-override".into(),
                    format!("keel-{i}"),
                    "--address".into(),
                    host(i),
                    "--port".into(),
                    "10250".into(),
                    "--root-dir".into(),
                    path(o.data_dir.join(format!("kubelet-{i}"))),
                    "--pod-cidr".into(),
                    format!("10.244.{i}.0/24"),
                    // Each node its own bridge and cgroup subtree, as separate hosts would have:
                    // one kubelet's shutdown never takes another's pods' network away.
                    "--bridge-name".into(),
                    format!("keel{i}"),
                    "--cgroup-root".into(),
                    format!("keel-{i}"),
                    "--stop-pods-on-shutdown".into(),
                ];
                out.push(Spec { name: format!("kubelet-{i}"), role: Role::Kubelet, args, addr: format!("{}:10250", host(i)) });
            }
        }
    }
    out
}

/// `keel-kubelet reset` arguments for a real (linux-runtime) kubelet's spec: what removes
/// whatever it left behind if it had to be killed (processes, namespaces, bridge, cgroups).
pub fn kubelet_reset(spec: &Spec) -> Option<Vec<String>> {
    if spec.role != Role::Kubelet || spec.args.iter().any(|a| a == "--simulated-nodes") {
        return None;
    }
    let mut out = vec!["reset".to_string()];
    for flag in ["--root-dir", "--bridge-name", "--cgroup-root", "--pod-cidr"] {
        let at = spec.args.iter().position(|a| a == flag)?;
        out.push(flag.to_string());
        out.push(spec.args.get(at + 1)?.clone());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(members: usize, control_plane: bool, simulated_nodes: Option<usize>) -> Options {
        Options { data_dir: PathBuf::from("/d"), members, control_plane, simulated_nodes, store_flags: vec!["--debug".into()] }
    }

    fn names(o: &Options) -> Vec<String> {
        plan(o).into_iter().map(|s| s.name).collect()
    }

    #[test]
    fn the_plan_is_the_seeds_ha_picture_one_replica_of_everything_per_member_address() {
        let o = opts(3, true, None);
        assert_eq!(
            names(&o),
            [
                "m1",
                "m2",
                "m3",
                "apiserver-1",
                "apiserver-2",
                "apiserver-3",
                "scheduler-1",
                "scheduler-2",
                "scheduler-3",
                "controller-manager-1",
                "controller-manager-2",
                "controller-manager-3",
                "kubelet-1",
                "kubelet-2",
                "kubelet-3"
            ]
        );
        let p = plan(&o);
        let m2 = &p[1];
        assert_eq!(m2.addr, "127.0.0.2:2379");
        let initial = m2.args.iter().position(|a| a == "--initial-cluster").map(|i| m2.args[i + 1].clone());
        assert_eq!(initial.as_deref(), Some("m1=http://127.0.0.1:2380,m2=http://127.0.0.2:2380,m3=http://127.0.0.3:2380"));
        assert_eq!(m2.args.last().map(String::as_str), Some("--debug"), "extra store flags come last");
        let api3 = &p[5];
        assert_eq!(api3.addr, "127.0.0.3:6444");
        assert!(api3.args.windows(2).any(|w| w == ["--etcd-servers", "http://127.0.0.1:2379,http://127.0.0.2:2379,http://127.0.0.3:2379"]));
        let k2 = &p[13];
        assert!(k2.args.windows(2).any(|w| w == ["--pod-cidr", "10.244.2.0/24"]));
        assert!(k2.args.windows(2).any(|w| w == ["--kubeconfig", "/d/kubelet-2.kubeconfig"]), "each kubelet its own identity");
        assert!(api3.args.windows(2).any(|w| w == ["--client-ca-file", "/d/pki/ca.crt"]));
        assert!(api3.args.windows(2).any(|w| w == ["--authorization-mode", "Node,RBAC"]));
        assert!(api3.args.windows(2).any(|w| w == ["--enable-admission-plugins", "NodeRestriction"]), "as kubeadm");
        assert!(api3.args.windows(2).any(|w| w == ["--service-account-signing-key-file", "/d/pki/sa.key"]), "one key for every apiserver");
        let s1 = &p[6];
        assert!(s1.args.windows(2).any(|w| w == ["--kubeconfig", "/d/scheduler.kubeconfig"]));
    }

    #[test]
    fn five_members_store_only_and_simulated_nodes_change_only_their_parts() {
        assert_eq!(names(&opts(5, false, None)), ["m1", "m2", "m3", "m4", "m5"]);
        let sim = names(&opts(1, true, Some(500)));
        assert_eq!(sim, ["m1", "apiserver-1", "scheduler-1", "controller-manager-1", "kubelet-simulated"]);
        let p = plan(&opts(1, true, Some(500)));
        assert!(p[4].args.windows(2).any(|w| w == ["--simulated-nodes", "500"]));
        assert_eq!(kubelet_reset(&p[4]), None, "simulated nodes leave nothing behind");
    }

    #[test]
    fn a_real_kubelet_is_reset_with_its_own_folder_bridge_cgroups_and_range() {
        let p = plan(&opts(2, true, None));
        let k2 = p.iter().find(|s| s.name == "kubelet-2").expect("kubelet-2");
        let reset = kubelet_reset(k2).expect("a reset");
        assert_eq!(
            reset,
            ["reset", "--root-dir", "/d/kubelet-2", "--bridge-name", "keel2", "--cgroup-root", "keel-2", "--pod-cidr", "10.244.2.0/24"]
        );
        assert_eq!(kubelet_reset(&p[0]), None, "only kubelets");
    }
}
