//! Probe checks as kubelet's prober runs them (pkg/probe): exec passes on exit 0; httpGet passes
//! on a status from 200 to 399 (kubelet's `User-Agent: kube-probe/<version>`, redirects not
//! followed, the body ignored); tcpSocket passes when a connection opens. Each has the probe's
//! `timeoutSeconds`. Messages follow kubelet's where a user reads them in events.

use crate::pod::probe::Outcome;
use crate::runtime::ExecProcess;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Collects an exec's output and exit code within `timeout`.
pub async fn exec_outcome(mut p: ExecProcess, timeout: Duration) -> Outcome {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let run = async {
        let (a, b) = tokio::join!(p.stdout.read_to_end(&mut out), p.stderr.read_to_end(&mut err));
        let _ = (a, b);
        p.wait.await
    };
    match tokio::time::timeout(timeout, run).await {
        Err(_) => {
            (p.kill)();
            Outcome::Failure(format!("command timed out after {}s", timeout.as_secs()))
        }
        Ok(Err(e)) => Outcome::Failure(e.to_string()),
        Ok(Ok(0)) => Outcome::Success,
        Ok(Ok(code)) => {
            let mut text = String::from_utf8_lossy(&out).into_owned();
            text.push_str(&String::from_utf8_lossy(&err));
            let text = text.trim();
            if text.is_empty() {
                Outcome::Failure(format!("command exited with {code}"))
            } else {
                Outcome::Failure(text.chars().take(1024).collect())
            }
        }
    }
}

/// A TCP connect check.
pub async fn tcp(host: &str, port: u16, timeout: Duration) -> Outcome {
    let addr = format!("{host}:{port}");
    match tokio::time::timeout(timeout, TcpStream::connect(&addr)).await {
        Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
        Ok(Err(e)) => Outcome::Failure(format!("dial tcp {addr}: {e}")),
        Ok(Ok(_)) => Outcome::Success,
    }
}

/// An HTTP GET check (plain HTTP; `https` is refused honestly rather than checked without TLS).
pub async fn http(scheme: &str, host: &str, port: u16, path: &str, headers: &[(String, String)], timeout: Duration) -> Outcome {
    if !scheme.eq_ignore_ascii_case("http") {
        return Outcome::Failure(format!("scheme {scheme} is not supported by keel-kubelet's prober"));
    }
    let url = format!("http://{host}:{port}{path}");
    let run = async {
        let mut s = TcpStream::connect((host, port)).await.map_err(|e| format!("Get \"{url}\": dial tcp {host}:{port}: {e}"))?;
        let mut req =
            format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n");
        for (k, v) in headers {
            if !k.contains(['\r', '\n']) && !v.contains(['\r', '\n']) {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.map_err(|e| format!("Get \"{url}\": {e}"))?;
        let mut head = Vec::new();
        let mut buf = [0u8; 512];
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
            let n = s.read(&mut buf).await.map_err(|e| format!("Get \"{url}\": {e}"))?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
        let code: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("Get \"{url}\": malformed HTTP response {line:?}"))?;
        Ok::<u16, String>(code)
    };
    match tokio::time::timeout(timeout, run).await {
        Err(_) => Outcome::Failure(format!("Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)")),
        Ok(Err(e)) => Outcome::Failure(e),
        Ok(Ok(code)) if (200..400).contains(&code) => Outcome::Success,
        Ok(Ok(code)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
    }
}
