//! The audit log (`--audit-log-path`): one JSON line per request in kube's `audit.k8s.io/v1`
//! `Event` shape at the `Metadata` level (who, what, when, the outcome; no bodies), built by
//! keel-access's [`keel_access::audit::event_line`].
//!
//! As kube's `WithAuditInit`, every answer carries an `Audit-Id` header, the client's own
//! `Audit-ID` when it sent one, a fresh UUID otherwise, with or without an audit log. With one,
//! [`record`] (outside the access front, so refusals are logged too) writes stage
//! `ResponseComplete` once the answer's head is ready; a watch gets `ResponseStarted` then and
//! `ResponseComplete` when its stream ends. The user, impersonated user and authorization
//! decision come from the front ([`Subject`], in the response's extensions), the Status of a
//! failed answer from [`Failure`], a created object's name from [`ObjectName`].
//!
//! Invariant: auditing never blocks nor fails a request. Lines go through a bounded channel to
//! one writer thread ([`Sink`]) that appends and flushes; a full channel (a slow disk) or a
//! failed write (a full disk) drops the line and counts it in kube's
//! `apiserver_audit_error_total{plugin="log"}`; `apiserver_audit_event_total` counts every
//! event generated.
//!
//! Keel differs from kube: there is no audit policy (every request is logged at `Metadata`), no
//! `RequestReceived` stage and no rotation flags; an apiserver without authentication
//! (`crate::http::access` off) logs every request as `system:anonymous` without a decision.

use crate::seams::Clock;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use keel_access::attributes::Attributes;
use keel_access::audit::{Record, Stage, event_line};
use keel_access::user::UserInfo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The request and response header (kube's `Audit-ID`).
pub const AUDIT_ID: &str = "audit-id";

/// What the access front learnt about a request, left in its response's extensions.
#[derive(Clone, Debug)]
pub struct Subject {
    /// The authorization attributes; `user` is the acting user (empty when authentication
    /// failed).
    pub attributes: Arc<Attributes>,
    /// Who authenticated (empty when authentication failed).
    pub user: UserInfo,
    /// The impersonated user, when there was one.
    pub impersonated: Option<UserInfo>,
    /// `allow` or `forbid`, and the authorizer's reason, once authorization ran.
    pub decision: Option<(&'static str, String)>,
}

/// The Status body of a failed answer, left in its response's extensions.
#[derive(Clone, Debug)]
pub struct Failure(pub Arc<serde_json::Value>);

/// The name of the object an answer carries (a create names it in its body, not its path).
#[derive(Clone, Debug)]
pub struct ObjectName(pub String);

/// The client's address on this connection, in every request's extensions (TCP only).
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub IpAddr);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabel {
    plugin: String,
}

/// The audit log's writer: a bounded channel into one thread that owns the output.
pub struct Sink {
    tx: mpsc::Sender<String>,
    events: Counter,
    errors: Family<PluginLabel, Counter>,
}

impl Sink {
    /// Starts the writer thread over `out` (a file opened for append, or stdout), holding at
    /// most `capacity` lines not yet written. The thread ends once the sink is dropped.
    pub fn start(out: Box<dyn Write + Send>, capacity: usize) -> std::io::Result<Arc<Sink>> {
        Sink::start_joinable(out, capacity).map(|(sink, _)| sink)
    }

    /// [`Sink::start`], with the writer thread to join (tests).
    fn start_joinable(out: Box<dyn Write + Send>, capacity: usize) -> std::io::Result<(Arc<Sink>, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let sink = Arc::new(Sink { tx, events: Counter::default(), errors: Family::default() });
        let errors = sink.errors.clone();
        let thread = std::thread::Builder::new().name("audit-log".into()).spawn(move || write_all(out, rx, &errors))?;
        Ok((sink, thread))
    }

    /// Queues one line; never waits (a full queue drops it and counts the drop).
    pub fn send(&self, line: String) {
        self.events.inc();
        if self.tx.try_send(line).is_err() {
            count_error(&self.errors);
        }
    }

    /// Events generated so far, and those lost (queue full or write failed).
    pub fn counts(&self) -> (u64, u64) {
        (self.events.get(), self.errors.get_or_create(&log_label()).get())
    }

    /// Registers kube's audit counters.
    pub fn register(&self, registry: &mut Registry) {
        registry.register("apiserver_audit_event", "Counter of audit events generated and sent to the audit backend.", self.events.clone());
        registry.register(
            "apiserver_audit_error",
            "Counter of audit events that failed to be audited properly. Plugin identifies the plugin affected by the error.",
            self.errors.clone(),
        );
    }
}

fn log_label() -> PluginLabel {
    PluginLabel { plugin: "log".into() }
}

fn count_error(errors: &Family<PluginLabel, Counter>) {
    errors.get_or_create(&log_label()).inc();
}

/// The writer thread: appends each line, flushing whenever the queue is momentarily empty.
fn write_all(out: Box<dyn Write + Send>, mut rx: mpsc::Receiver<String>, errors: &Family<PluginLabel, Counter>) {
    let mut out = std::io::BufWriter::new(out);
    while let Some(line) = rx.blocking_recv() {
        let mut batch = 0;
        let mut next = Some(line);
        while let Some(line) = next {
            if out.write_all(line.as_bytes()).is_err() {
                count_error(errors);
            } else {
                batch += 1;
            }
            next = rx.try_recv().ok();
        }
        if out.flush().is_err() {
            // Counted as lost, though BufWriter keeps the bytes it could not write and tries
            // them again before the next line (a disk that frees up gets them late).
            for _ in 0..batch {
                count_error(errors);
            }
        }
    }
}

/// The audit middleware's state.
pub struct Audit {
    /// Wall time (`requestReceivedTimestamp`, `stageTimestamp`).
    pub clock: Arc<dyn Clock>,
    /// Fresh audit ids (UUIDs).
    pub ids: Box<dyn Fn() -> String + Send + Sync>,
    /// The log, when `--audit-log-path` is given.
    pub sink: Option<Arc<Sink>>,
}

/// One request's facts, owned, so a watch's last line can be written when its stream ends.
struct Facts {
    audit_id: String,
    request_uri: String,
    subject: Subject,
    object_name: String,
    source_ips: Vec<String>,
    user_agent: String,
    code: u16,
    failure: Option<Status>,
    received: jiff::Timestamp,
}

impl Facts {
    fn line(&self, stage: Stage, now: jiff::Timestamp) -> String {
        event_line(&Record {
            audit_id: &self.audit_id,
            stage,
            request_uri: &self.request_uri,
            attributes: &self.subject.attributes,
            object_name: &self.object_name,
            user: &self.subject.user,
            impersonated: self.subject.impersonated.as_ref(),
            source_ips: &self.source_ips,
            user_agent: &self.user_agent,
            code: Some(self.code),
            failure: self.failure.as_ref(),
            received: self.received,
            stage_time: now,
            decision: self.subject.decision.as_ref().map(|(d, r)| (*d, r.as_str())),
        })
    }
}

/// kube's `SourceIPs`: the `X-Forwarded-For` entries, then the peer unless it is already last.
pub fn source_ips(headers: &HeaderMap, peer: Option<IpAddr>) -> Vec<String> {
    let mut ips: Vec<String> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| s.parse::<IpAddr>().is_ok())
        .map(str::to_string)
        .collect();
    if let Some(p) = peer.map(|p| p.to_string())
        && ips.last() != Some(&p)
    {
        ips.push(p);
    }
    ips
}

/// Without the access front (an unsecured server), a request is kube's anonymous one.
fn anonymous(method: &str, request_uri: &str) -> Subject {
    let (path, query) = request_uri.split_once('?').unwrap_or((request_uri, ""));
    let mut attributes = Attributes::from_request(method, path, query);
    attributes.user = UserInfo::anonymous();
    Subject { user: attributes.user.clone(), attributes: Arc::new(attributes), impersonated: None, decision: None }
}

/// Writes the watch's `ResponseComplete` line when its body is dropped (ended or cut off).
struct OnEnd {
    facts: Facts,
    audit: Arc<Audit>,
}

impl Drop for OnEnd {
    fn drop(&mut self) {
        if let Some(sink) = &self.audit.sink {
            sink.send(self.facts.line(Stage::ResponseComplete, self.audit.clock.now()));
        }
    }
}

/// The middleware: sets `Audit-Id`, and with a log writes the request's lines.
pub async fn record(State(audit): State<Arc<Audit>>, req: Request, next: Next) -> Response {
    let client_id = req.headers().get(AUDIT_ID).filter(|v| !v.is_empty()).cloned();
    let (audit_id, header) = match client_id.as_ref().and_then(|v| Some((v.to_str().ok()?.to_string(), v.clone()))) {
        Some(pair) => pair,
        None => {
            let id = (audit.ids)();
            let header = HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("invalid"));
            (id, header)
        }
    };
    let Some(sink) = audit.sink.clone() else {
        let mut response = next.run(req).await;
        response.headers_mut().insert(AUDIT_ID, header);
        return response;
    };
    let received = audit.clock.now();
    let peer = req.extensions().get::<PeerAddr>().map(|p| p.0);
    let source_ips = source_ips(req.headers(), peer);
    let user_agent = req.headers().get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let request_uri = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| req.uri().path().to_string());
    let method = req.method().clone();
    let mut response = next.run(req).await;
    response.headers_mut().insert(AUDIT_ID, header);
    let subject = response.extensions_mut().remove::<Subject>().unwrap_or_else(|| anonymous(method.as_str(), &request_uri));
    let failure = response.extensions_mut().remove::<Failure>().and_then(|f| serde_json::from_value::<Status>((*f.0).clone()).ok());
    let object_name = response.extensions_mut().remove::<ObjectName>().map(|n| n.0).unwrap_or_default();
    let code = response.status().as_u16();
    let watch = subject.attributes.verb == "watch" && response.status().is_success();
    let facts = Facts { audit_id, request_uri, subject, object_name, source_ips, user_agent, code, failure, received };
    if !watch {
        sink.send(facts.line(Stage::ResponseComplete, audit.clock.now()));
        return response;
    }
    sink.send(facts.line(Stage::ResponseStarted, audit.clock.now()));
    let (parts, body) = response.into_parts();
    let guard = OnEnd { facts, audit: audit.clone() };
    let body = Body::from_stream(body.into_data_stream().map(move |chunk| {
        let _held = &guard;
        chunk
    }));
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc as std_mpsc;

    /// A writer that reports each write and then waits for permission: a disk as slow as the
    /// test wants.
    struct Gate {
        entered: std_mpsc::Sender<()>,
        go: std_mpsc::Receiver<()>,
        written: Arc<std::sync::Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.entered.send(());
            let _ = self.go.recv();
            self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A full disk.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("No space left on device"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::Error::other("No space left on device"))
        }
    }

    #[test]
    fn a_stuck_writer_never_holds_up_a_request_and_drops_are_counted() {
        let (entered_tx, entered) = std_mpsc::channel();
        let (go, go_rx) = std_mpsc::channel();
        let written = Arc::new(std::sync::Mutex::new(Vec::new()));
        let gate = Gate { entered: entered_tx, go: go_rx, written: written.clone() };
        // BufWriter passes a line larger than its buffer straight to the writer.
        let big = |n: usize| format!("{n}{}\n", "x".repeat(10_000));
        let (sink, thread) = Sink::start_joinable(Box::new(gate), 3).unwrap();
        sink.send(big(0));
        entered.recv().unwrap(); // the writer holds line 0 and is stuck in write
        for n in 1..=10 {
            sink.send(big(n)); // 3 fit in the queue, 7 are dropped, none waits
        }
        assert_eq!(sink.counts(), (11, 7));
        for _ in 0..4 {
            go.send(()).unwrap();
        }
        drop(sink); // the thread drains the queue and ends
        thread.join().unwrap();
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        let firsts: Vec<String> = text.lines().map(|l| l.trim_end_matches('x').to_string()).collect();
        assert_eq!(firsts, ["0", "1", "2", "3"]);
    }

    #[test]
    fn a_full_disk_counts_errors_and_keeps_going() {
        let (sink, thread) = Sink::start_joinable(Box::new(Full), 100).unwrap();
        sink.send("a\n".into());
        sink.send("b\n".into());
        let errors = sink.errors.clone();
        drop(sink);
        thread.join().unwrap();
        // Each line's write failed or its flush did: both are counted, none is retried forever.
        assert_eq!(errors.get_or_create(&log_label()).get(), 2);
    }

    #[test]
    fn source_ips_are_the_forwarded_ones_then_the_peer() {
        let mut h = HeaderMap::new();
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(source_ips(&h, Some(peer)), ["127.0.0.1"]);
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1, 10.0.0.2"));
        assert_eq!(source_ips(&h, Some(peer)), ["10.0.0.1", "10.0.0.2", "127.0.0.1"]);
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1,127.0.0.1,junk"));
        assert_eq!(source_ips(&h, Some(peer)), ["10.0.0.1", "127.0.0.1"]);
        assert!(source_ips(&HeaderMap::new(), None).is_empty());
    }
}
