//! The components' acts, read from their logs. keel-scheduler logs every binding the
//! apiserver acknowledged as `bound pod=<ns>/<name> node=<node> holder=<id> transitions=<n>`
//! and its identity at start as `leader election on identity=<id> …`; the controller-manager
//! is asked for the same shape (`created pod=… rv=… holder=… transitions=…`, request
//! faults-1). Lines are `tracing`'s default format: time, level, target, message, then
//! `key=value` fields; ANSI colour codes are stripped first.

use crate::history::{Act, ActKind, Component, HolderId, Revision, Term};
use std::collections::BTreeMap;

/// `line` without ANSI escape sequences.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// A log line's message and fields (None for lines without the `target: ` part).
pub fn parse(line: &str) -> Option<(String, BTreeMap<String, String>)> {
    let clean = strip_ansi(line);
    let (_, rest) = clean.split_once(": ")?;
    let mut message = Vec::new();
    let mut fields = BTreeMap::new();
    for token in rest.split_whitespace() {
        match token.split_once('=') {
            Some((k, v)) if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') => {
                fields.insert(k.to_string(), v.trim_matches('"').to_string());
            }
            _ if fields.is_empty() => message.push(token),
            _ => {}
        }
    }
    Some((message.join(" "), fields))
}

/// The identities a component's log announced, oldest first (one per start).
pub fn identities(log: &str) -> Vec<HolderId> {
    log.lines()
        .filter_map(parse)
        .filter(|(m, _)| m == "leader election on")
        .filter_map(|(_, f)| f.get("identity").map(|i| HolderId(i.clone())))
        .collect()
}

fn key_of(fields: &BTreeMap<String, String>) -> Option<String> {
    [("pod", "pods"), ("replicaset", "replicasets"), ("deployment", "deployments")]
        .iter()
        .find_map(|(field, resource)| fields.get(*field).map(|v| format!("/registry/{resource}/{v}")))
}

/// The acts in `component`'s log.
pub fn acts(component: Component, log: &str) -> Vec<Act> {
    log.lines()
        .filter_map(parse)
        .filter_map(|(message, f)| {
            let kind = match message.as_str() {
                "bound" => ActKind::Bind { node: f.get("node")?.clone() },
                "created" => ActKind::Create,
                "deleted" => ActKind::Delete,
                "updated" | "scaled" => ActKind::Update,
                _ => return None,
            };
            Some(Act {
                component,
                holder: HolderId(f.get("holder")?.clone()),
                term: Term(f.get("transitions")?.parse().ok()?),
                key: key_of(&f)?,
                kind,
                revision: f.get("rv").and_then(|r| r.parse().ok()).map(Revision),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULER: &str = "\
2025-06-01T10:00:00.000001Z  INFO keel_scheduler: leader election on identity=host_00ab lease=kube-system/kube-scheduler
2025-06-01T10:00:01.000001Z  INFO keel_scheduler::driver: caches synced nodes=3 pending=0
\u{1b}[2m2025-06-01T10:00:02.1Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \u{1b}[2mkeel_scheduler::driver\u{1b}[0m\u{1b}[2m:\u{1b}[0m bound \u{1b}[3mpod\u{1b}[0m\u{1b}[2m=\u{1b}[0mdefault/web-0-abc \u{1b}[3mnode\u{1b}[0m\u{1b}[2m=\u{1b}[0mkeel-2 \u{1b}[3mholder\u{1b}[0m\u{1b}[2m=\u{1b}[0mhost_00ab \u{1b}[3mtransitions\u{1b}[0m\u{1b}[2m=\u{1b}[0m3
2025-06-01T10:00:03Z  INFO keel_scheduler::driver: preempting pod=default/big node=keel-1 victims=1 holder=host_00ab
2025-06-01T10:00:04Z  INFO keel_controller_manager::replicaset: created pod=default/web-0-xyz owner=ReplicaSet/default/web-0 rv=812 holder=cm_1 transitions=2
";

    #[test]
    fn binds_and_identities_are_read_with_or_without_colours() {
        assert_eq!(identities(SCHEDULER), vec![HolderId("host_00ab".into())]);
        let acts = acts(Component::Scheduler, SCHEDULER);
        assert_eq!(acts.len(), 2, "{acts:?}");
        assert_eq!(acts[0].key, "/registry/pods/default/web-0-abc");
        assert_eq!(acts[0].kind, ActKind::Bind { node: "keel-2".into() });
        assert_eq!((acts[0].holder.0.as_str(), acts[0].term), ("host_00ab", Term(3)));
        assert_eq!(acts[0].revision, None);
        assert_eq!(acts[1].kind, ActKind::Create);
        assert_eq!(acts[1].revision, Some(Revision(812)));
    }

    #[test]
    fn lines_that_are_not_acts_are_skipped() {
        for line in [
            "garbage",
            "x: bound pod=a/b node=n",
            "x: bound pod=a/b node=n holder=h transitions=z",
            "x: created owner=a holder=h transitions=1",
        ] {
            assert_eq!(acts(Component::Scheduler, line), vec![], "{line}");
        }
    }
}
