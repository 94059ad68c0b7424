//! `keel up`: start a local 3-member keel-store cluster (127.0.0.1, .2 and .3, client port 2379,
//! peer port 2380) and keel-apiserver in front of it (https://127.0.0.1:6443, a kubeconfig in the
//! data folder), with data under one folder; print the etcdctl and kubectl lines to use; stop
//! everything cleanly on Ctrl-C.
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

const USAGE: &str = "Usage: keel up [--data-dir DIR] [--members N] [--no-apiserver] [-- extra keel-store flags]

Starts N (default 3) keel-store members on 127.0.0.1..N, client port 2379 and peer port 2380,
and keel-apiserver on https://127.0.0.1:6443 (unless --no-apiserver), with their data under DIR
(default ./keel-data) and a kubeconfig at DIR/kubeconfig, and stops them all on Ctrl-C.
Restarting with the same DIR continues the same cluster.";

struct Options {
    data_dir: PathBuf,
    members: usize,
    apiserver: bool,
    extra: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options { data_dir: PathBuf::from("keel-data"), members: 3, apiserver: true, extra: Vec::new() };
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("up") => {}
        Some("-h" | "--help" | "help") | None => return Err(USAGE.into()),
        Some(other) => return Err(format!("unknown command {other:?}\n\n{USAGE}")),
    }
    while let Some(a) = it.next() {
        match a.as_str() {
            "--data-dir" => o.data_dir = it.next().ok_or("--data-dir needs a value")?.into(),
            "--members" => {
                o.members = it.next().and_then(|n| n.parse().ok()).filter(|n| (1..=9).contains(n)).ok_or("--members takes 1 to 9")?
            }
            "--no-apiserver" => o.apiserver = false,
            "--" => o.extra = it.by_ref().cloned().collect(),
            other => return Err(format!("unknown flag {other:?}\n\n{USAGE}")),
        }
    }
    Ok(o)
}

fn sibling(name: &str) -> PathBuf {
    let me = std::env::current_exe().unwrap_or_default();
    me.with_file_name(name)
}

fn keel_store() -> PathBuf {
    sibling("keel-store")
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill").args([sig, &child.id().to_string()]).status();
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = match parse(&args) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("{msg}");
            return if args.iter().any(|a| a == "-h" || a == "--help" || a == "help") { ExitCode::SUCCESS } else { ExitCode::from(2) };
        }
    };
    if let Err(e) = std::fs::create_dir_all(&o.data_dir) {
        eprintln!("keel: creating {}: {e}", o.data_dir.display());
        return ExitCode::FAILURE;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = stop.clone();
        let handler = move || stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Err(e) = set_handler(handler) {
            eprintln!("keel: cannot catch Ctrl-C ({e}); stop the members with kill");
        }
    }
    let host = |i: usize| format!("127.0.0.{i}");
    let initial: Vec<String> = (1..=o.members).map(|i| format!("m{i}=http://{}:2380", host(i))).collect();
    let mut children: Vec<Child> = Vec::new();
    for i in 1..=o.members {
        let (client, peer) = (format!("http://{}:2379", host(i)), format!("http://{}:2380", host(i)));
        let path = o.data_dir.join(format!("m{i}.log"));
        let logs = std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|f| Ok((f.try_clone()?, f)));
        let (out, log) = match logs {
            Ok(pair) => pair,
            Err(e) => {
                eprintln!("keel: opening the log of m{i}: {e}");
                for c in &children {
                    signal(c, "-TERM");
                }
                return ExitCode::FAILURE;
            }
        };
        let spawned = Command::new(keel_store())
            .args(["--name", &format!("m{i}"), "--data-dir"])
            .arg(o.data_dir.join(format!("m{i}.etcd")))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial.join(","), "--initial-cluster-state", "new", "--initial-cluster-token", "keel-up"])
            .args(["--logger", "capnslog"])
            .args(&o.extra)
            .stdout(out)
            .stderr(log)
            .spawn();
        match spawned {
            Ok(c) => children.push(c),
            Err(e) => {
                eprintln!("keel: starting {}: {e} (build it with `cargo build -p keel-store`)", keel_store().display());
                for c in &children {
                    signal(c, "-TERM");
                }
                return ExitCode::FAILURE;
            }
        }
    }
    let endpoints: Vec<String> = (1..=o.members).map(|i| format!("{}:2379", host(i))).collect();
    let mut names: Vec<String> = (1..=o.members).map(|i| format!("m{i}")).collect();
    println!("keel: {} members running, data and logs in {}", o.members, o.data_dir.display());
    println!("keel: use  etcdctl --endpoints={} endpoint status -w table", endpoints.join(","));
    if o.apiserver {
        let kubeconfig = o.data_dir.join("kubeconfig");
        let urls: Vec<String> = endpoints.iter().map(|e| format!("http://{e}")).collect();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(o.data_dir.join("apiserver.log"));
        let spawned = log.and_then(|log| {
            Command::new(sibling("keel-apiserver"))
                .args(["--etcd-servers", &urls.join(","), "--bind-address", "127.0.0.1", "--secure-port", "6443"])
                .arg("--data-dir")
                .arg(o.data_dir.join("apiserver"))
                .arg("--write-kubeconfig")
                .arg(&kubeconfig)
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
        });
        match spawned {
            Ok(c) => {
                children.push(c);
                names.push("apiserver".into());
                println!("keel: Kubernetes API on https://127.0.0.1:6443; use  kubectl --kubeconfig {} get nodes", kubeconfig.display());
            }
            Err(e) => eprintln!("keel: not starting keel-apiserver ({e}); build it with `cargo build -p keel-apiserver`"),
        }
    }
    println!("keel: Ctrl-C stops the cluster");
    let mut exited = vec![false; children.len()];
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        for (i, c) in children.iter_mut().enumerate() {
            if !exited[i]
                && let Ok(Some(status)) = c.try_wait()
            {
                exited[i] = true;
                eprintln!("keel: {} exited ({status}); see {}", names[i], o.data_dir.join(format!("{}.log", names[i])).display());
            }
        }
        if exited.iter().all(|e| *e) {
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("keel: stopping");
    for c in &children {
        signal(c, "-TERM");
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for (i, c) in children.iter_mut().enumerate() {
        loop {
            match c.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    eprintln!("keel: {} did not stop; killing it", names[i]);
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    println!("keel: stopped");
    ExitCode::SUCCESS
}

/// Run `f` on SIGINT or SIGTERM (a small tokio runtime waits for them on its own thread).
fn set_handler(f: impl Fn() + Send + 'static) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::spawn(move || {
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else { return };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            f();
        })
    });
    // Give the thread a moment to install the handlers before children start answering.
    std::thread::sleep(Duration::from_millis(50));
    Ok(())
}
