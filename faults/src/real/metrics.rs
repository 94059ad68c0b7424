//! The components' own counts against their logs: each running scheduler's
//! `scheduler_binds_total{holder,transitions}` and each controller-manager's
//! `controller_manager_writes_total{holder,transitions}` (scraped from their `/metrics`) must
//! equal the acts the same process logged under its identity. Both are bumped at the one place
//! an acknowledged act is recorded, so a difference means acts the checkers never saw (a log
//! line lost or malformed) — the history's acts would then be incomplete, and this says so.
//!
//! A process's identity is unique per start (`<host>_<random>`), so "its" acts are the log
//! lines carrying its identity as `holder`; earlier runs of the same part logged other ones.
//! The comparison runs in the liveness phase, but acts may still happen (a status-free write,
//! a late binding): the log is read before and after the scrape, and the counter must lie
//! between the two counts.

use super::acts::{identities, parse};
use super::cluster::KeelUp;
use crate::history::{Component, Violation};
use std::time::Duration;

/// The name findings carry.
pub const NAME: &str = "acts_match_metrics";

/// The counter a component keeps of its acts.
pub fn counter(component: Component) -> &'static str {
    match component {
        Component::Scheduler => "scheduler_binds_total",
        Component::ControllerManager => "controller_manager_writes_total",
    }
}

/// The sum over `metric`'s samples labelled `holder="<holder>"` in Prometheus text `text`.
pub fn counter_sum(text: &str, metric: &str, holder: &str) -> u64 {
    let label = format!("holder=\"{holder}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// The act lines in `log` carrying `holder`: `bound …` (the scheduler) or `created|updated|
/// deleted|deletedcollection …` (the controller-manager's fenced client, any kind).
pub fn logged_acts(log: &str, holder: &str) -> u64 {
    log.lines()
        .filter_map(parse)
        .filter(|(m, f)| {
            let verb = m.split_whitespace().next().unwrap_or("");
            matches!(verb, "bound" | "created" | "updated" | "deleted" | "deletedcollection")
                && f.get("holder").map(String::as_str) == Some(holder)
        })
        .count() as u64
}

/// Why `before ≤ counted ≤ after` fails, if it does.
pub fn disagreement(part: &str, holder: &str, before: u64, counted: u64, after: u64) -> Option<String> {
    (counted < before || counted > after)
        .then(|| format!("{part} ({holder}) counted {counted} acts on /metrics but logged {before}..{after}"))
}

async fn scrape(addr: &str) -> Option<String> {
    let out = tokio::process::Command::new("curl")
        .args(["-sk", "--max-time", "3", &format!("https://{addr}/metrics")])
        .kill_on_drop(true)
        .output()
        .await
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Compares every running scheduler's and controller-manager's counter with its log; parts
/// that cannot be scraped are reported too (the comparison must not pass by not happening).
pub async fn cross_check(up: &KeelUp) -> (usize, Vec<Violation>) {
    let mut compared = 0;
    let mut out = Vec::new();
    for (component, prefix, port) in
        [(Component::Scheduler, "scheduler-", 10259), (Component::ControllerManager, "controller-manager-", 10257)]
    {
        for i in 1..=up.members {
            let part = format!("{prefix}{i}");
            let Some(holder) = identities(&up.log(&part)).last().cloned() else { continue };
            let mut finding = None;
            for _ in 0..3 {
                let before = logged_acts(&up.log(&part), &holder.0);
                let Some(text) = scrape(&format!("127.0.0.{i}:{port}")).await else {
                    finding = Some(format!("{part}: /metrics on 127.0.0.{i}:{port} did not answer"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                };
                let counted = counter_sum(&text, counter(component), &holder.0);
                let after = logged_acts(&up.log(&part), &holder.0);
                finding = disagreement(&part, &holder.0, before, counted, after);
                if finding.is_none() {
                    compared += 1;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            out.extend(finding.map(|message| Violation { checker: NAME, revision: None, message }));
        }
    }
    (compared, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
# TYPE scheduler_binds counter
scheduler_binds_total{holder=\"vm_1\",transitions=\"2\"} 13
scheduler_binds_total{holder=\"vm_1\",transitions=\"3\"} 2
scheduler_binds_total{holder=\"vm_2\",transitions=\"4\"} 7
scheduler_binding_duration_seconds_count 22
";

    #[test]
    fn a_holders_samples_are_summed_over_terms() {
        assert_eq!(counter_sum(METRICS, "scheduler_binds_total", "vm_1"), 15);
        assert_eq!(counter_sum(METRICS, "scheduler_binds_total", "vm_2"), 7);
        assert_eq!(counter_sum(METRICS, "scheduler_binds_total", "vm_3"), 0);
    }

    #[test]
    fn act_lines_of_one_holder_are_counted_whatever_their_kind() {
        let log = "\
2026-12-07T01:00:00Z  INFO keel_controllers::acts: created pod=default/a owner=ReplicaSet/default/r rv=5 holder=cm_1 transitions=1
2026-12-07T01:00:01Z  INFO keel_controllers::acts: updated endpointslice=default/s rv=6 holder=cm_1 transitions=1
2026-12-07T01:00:02Z  INFO keel_controllers::acts: deleted pod=default/b holder=cm_2 transitions=2
2026-12-07T01:00:03Z  INFO keel_controllers: started leading: starting controllers identity=cm_1 transitions=1
";
        assert_eq!(logged_acts(log, "cm_1"), 2);
        assert_eq!(logged_acts(log, "cm_2"), 1);
    }

    #[test]
    fn a_counter_outside_the_logged_range_is_a_finding() {
        assert_eq!(disagreement("scheduler-1", "vm_1", 10, 10, 11), None);
        assert_eq!(disagreement("scheduler-1", "vm_1", 10, 11, 11), None);
        assert!(disagreement("scheduler-1", "vm_1", 10, 12, 11).is_some(), "acts counted but never logged");
        assert!(disagreement("scheduler-1", "vm_1", 10, 9, 11).is_some(), "acts logged but never counted");
    }
}
