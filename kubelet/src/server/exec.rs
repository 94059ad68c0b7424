//! `/exec/{namespace}/{pod}/{container}?command=…&stdin=1&stdout=1&stderr=1&tty=0` over
//! WebSocket with the `v5.channel.k8s.io` (or `v4`) subprotocol kubectl ≥ 1.31 speaks: each
//! binary message starts with a channel byte — 0 stdin, 1 stdout, 2 stderr, 3 error (a
//! `metav1.Status` JSON when the command ends), 4 resize; v5 adds 255 (`[255, 0]` closes stdin).
//! The command runs in the container's namespaces through the runtime.

use super::{Failure, Server};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Percent-decoding of one query component (`+` is a space).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                Ok(v) => {
                    out.push(v);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query's pairs in order (repeated keys kept: `command` repeats).
pub fn pairs(q: &str) -> Vec<(String, String)> {
    q.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, ""))).map(|(k, v)| (decode(k), decode(v))).collect()
}

fn truthy(v: &str) -> bool {
    v.is_empty() || v == "1" || v == "true"
}

/// The handler.
pub async fn handler(
    State(s): State<Server>,
    Path((ns, name, container)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, Failure> {
    let q = pairs(q.as_deref().unwrap_or_default());
    let command: Vec<String> = q.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
    let want = |k: &str, alt: &str| q.iter().any(|(key, v)| (key == k || key == alt) && truthy(v));
    let stdin = want("stdin", "input");
    let tty = want("tty", "tty");
    if command.is_empty() {
        return Err(Failure(StatusCode::BAD_REQUEST, "you must specify at least 1 command".into()));
    }
    let Ok(ws) = ws else {
        return Err(Failure(StatusCode::BAD_REQUEST, "exec needs a WebSocket upgrade with the v5.channel.k8s.io subprotocol".into()));
    };
    let (_, records) = s.pod(&ns, &name).await?;
    let run = records
        .iter()
        .filter(|r| r.name == container && r.running())
        .max_by_key(|r| r.attempt)
        .ok_or_else(|| Failure(StatusCode::BAD_REQUEST, format!("container {container} is not running")))?;
    let proc =
        s.node.runtime.exec(&run.id, &command, stdin, tty).await.map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(ws.protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"]).on_upgrade(move |socket| pump(socket, proc)))
}

fn status(code: Result<i32, String>) -> Vec<u8> {
    let v = match code {
        Ok(0) => serde_json::json!({"metadata": {}, "status": "Success"}),
        Ok(c) => serde_json::json!({
            "metadata": {}, "status": "Failure", "message": format!("command terminated with non-zero exit code: exit status {c}"),
            "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": c.to_string()}]}
        }),
        Err(e) => serde_json::json!({"metadata": {}, "status": "Failure", "message": e}),
    };
    let mut out = vec![3u8];
    out.extend(serde_json::to_vec(&v).unwrap_or_default());
    out
}

async fn pump(socket: WebSocket, p: crate::runtime::ExecProcess) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(32);
    let crate::runtime::ExecProcess { stdin, mut stdout, mut stderr, wait, kill } = p;
    let copy = |mut r: Box<dyn tokio::io::AsyncRead + Send + Unpin>, ch: u8, tx: tokio::sync::mpsc::Sender<Vec<u8>>| async move {
        let mut buf = vec![0u8; 8192];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let mut m = Vec::with_capacity(n + 1);
                    m.push(ch);
                    m.extend_from_slice(&buf[..n]);
                    if tx.send(m).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let out_task = tokio::spawn(copy(std::mem::replace(&mut stdout, Box::new(tokio::io::empty())), 1, tx.clone()));
    let err_task = tokio::spawn(copy(std::mem::replace(&mut stderr, Box::new(tokio::io::empty())), 2, tx.clone()));
    let mut stdin = stdin;
    let input = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let data = match msg {
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            match data.split_first() {
                Some((0, rest)) => {
                    if let Some(w) = stdin.as_mut()
                        && w.write_all(rest).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Some((255, rest)) if rest.first() == Some(&0) => {
                    if let Some(mut w) = stdin.take() {
                        let _ = w.shutdown().await;
                    }
                }
                _ => {}
            }
        }
        // The client went away.
        true
    });
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(Message::Binary(m.into())).await.is_err() {
                return None;
            }
        }
        Some(sink)
    });
    let code = tokio::select! {
        c = wait => c.map_err(|e| e.to_string()),
        _ = input => {
            kill();
            return;
        }
    };
    let _ = out_task.await;
    let _ = err_task.await;
    let _ = tx.send(status(code)).await;
    drop(tx);
    if let Ok(Some(mut sink)) = writer.await {
        // A normal closure (1000): client-go's WebSocket executor treats a close without a
        // status code (1005) as a failed stream and kubectl exec fails.
        let normal = axum::extract::ws::CloseFrame { code: axum::extract::ws::close_code::NORMAL, reason: "".into() };
        let _ = sink.send(Message::Close(Some(normal))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_keep_repeated_commands() {
        let p = pairs("command=sh&command=-c&command=echo%20hi+there&stdin=true&tty");
        let cmds: Vec<&str> = p.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.as_str()).collect();
        assert_eq!(cmds, ["sh", "-c", "echo hi there"]);
        assert!(p.iter().any(|(k, v)| k == "tty" && v.is_empty()));
        assert_eq!(decode("%zz%4"), "%zz%4");
    }
}
