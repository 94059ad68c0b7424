//! `keel-testkit`: black-box test clusters made of real processes, started the way users start
//! them, and stopped by PID when the test ends (also when it panics).
//!
//! ```text
//!  Cluster::builder().members(3).apiservers(2).start()
//!     ├─ keel-store  × members   (or the real etcd: Backend::Etcd)     proc::Proc each
//!     ├─ keel-apiserver × apiservers, all over the same store            proc::Proc each
//!     └─ spawn(bin, args): any other component (keel-scheduler, …)       proc::Proc, --kubeconfig given
//!  cluster.kubectl(..) / cluster.client().await (kube::Client) / cluster.http(..) (curl)
//!  Cluster::builder().secure(true): client CA + Node,RBAC as keel up runs it;
//!     cluster.kubeconfig_for("jane", &["devs"]) / cluster.kubectl_with(&kc, ..): other users
//! ```
//!
//! Modules: [`proc`] (a started process: kill -9, SIGSTOP/SIGCONT, restart with the same
//! command line, log file), [`cluster`] (the store members and apiservers, kubectl, curl, the
//! kube client), [`net`] (free loopback addresses).
//!
//! Binaries are taken from the cargo target folder the test runs from (`target/debug/`), so
//! `cargo build --workspace` must have built them (the README's test command does).
// Tests wait on the real clock for real processes.
#![allow(clippy::disallowed_methods)]

pub mod cluster;
pub mod net;
pub mod proc;

pub use cluster::{Backend, Builder, Cluster};
pub use proc::Proc;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The path of workspace binary `name`, next to the running test's own folder
/// (`target/debug/deps/<test>` → `target/debug/<name>`).
pub fn bin(name: &str) -> PathBuf {
    let me = std::env::current_exe().expect("the test's own path");
    let mut dir = me.parent().map(PathBuf::from).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(p.exists(), "{} is missing: build the workspace first (cargo build --workspace)", p.display());
    p
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Polls `f` until it returns Some, for up to `limit` (every 100 ms).
pub fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// [`eventually`] for async checks: polls `f` every 100 ms for up to `limit`.
pub async fn eventually_async<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
