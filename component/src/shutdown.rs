//! Shutdown: the future every component's main waits on.

/// Resolves on SIGINT (Ctrl-C) or SIGTERM. If the signal handlers cannot be installed it never
/// resolves (the process is then stopped by SIGKILL only), and says so.
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        tracing::warn!("cannot install SIGINT/SIGTERM handlers; stop this process with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
