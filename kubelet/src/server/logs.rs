//! `GET /containerLogs/{namespace}/{pod}/{container}` with kubectl logs' parameters:
//! `follow`, `previous`, `tailLines`, `sinceSeconds`, `sinceTime`, `timestamps`, `limitBytes`.
//! The log is the CRI file of the latest run (the one before it with `previous`), rotated files
//! included; `follow` streams new lines until the run ends (or the client goes away).

use super::{Failure, Server};
use crate::logs::{Options, parse, read, render};
use crate::runtime::{ContainerRecord, PodRef, PodUid};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use jiff::{SignedDuration, Timestamp};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

fn flag(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| v.is_empty() || v == "true" || v == "1")
}

/// The handler.
pub async fn handler(
    State(s): State<Server>,
    Path((ns, name, container)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, Failure> {
    let (pod, records) = s.pod(&ns, &name).await?;
    let mut runs: Vec<&ContainerRecord> = records.iter().filter(|r| r.name == container).collect();
    runs.sort_by_key(|r| r.attempt);
    let known = pod.spec.iter().flat_map(|sp| sp.containers.iter().chain(sp.init_containers.iter().flatten())).any(|c| c.name == container);
    if !known {
        return Err(Failure(StatusCode::BAD_REQUEST, format!("container {container} is not valid for pod {name}")));
    }
    let previous = flag(&q, "previous");
    let run = if previous { runs.len().checked_sub(2).map(|i| runs[i]) } else { runs.last().copied() };
    let Some(run) = run else {
        let msg = if previous {
            format!("previous terminated container \"{container}\" in pod \"{name}\" not found")
        } else {
            format!("container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating")
        };
        return Err(Failure(StatusCode::BAD_REQUEST, msg));
    };
    let pref = PodRef { uid: PodUid(pod.metadata.uid.clone().unwrap_or_default()), namespace: ns.clone(), name: name.clone() };
    let path = s
        .node
        .runtime
        .log_path(&pref, &container, run.attempt)
        .ok_or_else(|| Failure(StatusCode::NOT_FOUND, "this runtime keeps no logs".into()))?;
    let now = s.node.clock.now();
    let since = q.get("sinceTime").and_then(|t| t.parse::<Timestamp>().ok()).or_else(|| {
        q.get("sinceSeconds").and_then(|v| v.parse::<i64>().ok()).and_then(|secs| now.checked_sub(SignedDuration::from_secs(secs)).ok())
    });
    let opts = Options {
        tail_lines: q.get("tailLines").and_then(|v| v.parse::<i64>().ok()).map(|n| n.max(0) as usize),
        since,
        timestamps: flag(&q, "timestamps"),
        limit_bytes: q.get("limitBytes").and_then(|v| v.parse::<usize>().ok()),
    };
    let (body, offset) = read(&path, &opts);
    if !flag(&q, "follow") || previous || !run.running() {
        return Ok(Response::builder().header("content-type", "text/plain").body(Body::from(body)).unwrap_or_default());
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(16);
    let runtime = s.node.runtime.clone();
    let id = run.id.clone();
    let uid = pref.uid.clone();
    let timestamps = opts.timestamps;
    tokio::spawn(async move {
        if tx.send(Ok(bytes::Bytes::from(body))).await.is_err() {
            return;
        }
        let mut offset = offset;
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let mut chunk = Vec::new();
            if let Ok(mut f) = std::fs::File::open(&path) {
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                if len < offset {
                    // Rotated: the live file is new.
                    offset = 0;
                }
                if f.seek(SeekFrom::Start(offset)).is_ok() {
                    let _ = f.read_to_end(&mut chunk);
                }
            }
            offset += chunk.len() as u64;
            pending.extend_from_slice(&chunk);
            let mut out = Vec::new();
            while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                if let Some(l) = parse(&line[..line.len() - 1]) {
                    out.extend(render(&l, timestamps));
                }
            }
            if !out.is_empty() && tx.send(Ok(bytes::Bytes::from(out))).await.is_err() {
                return;
            }
            let still = runtime.containers(&uid).await.unwrap_or_default().iter().any(|r| r.id == id && r.running());
            if !still && chunk.is_empty() {
                return;
            }
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    });
    let stream = tokio_stream_from(rx);
    Ok(Response::builder().header("content-type", "text/plain").body(Body::from_stream(stream)).unwrap_or_default())
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
