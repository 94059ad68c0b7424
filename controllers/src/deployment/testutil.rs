//! Builders for the Deployment controller's table tests, shaped like kube's test helpers
//! (`newDeployment(name, replicas, revisionHistoryLimit, maxSurge, maxUnavailable, selector)`
//! with surge and unavailable 0 unless given, `rs(name, replicas, selector, timestamp)`).

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, ReplicaSet, ReplicaSetSpec, ReplicaSetStatus, RollingUpdateDeployment,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub fn ts(s: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(s).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

pub fn deployment(replicas: i32, surge: Option<IntOrString>, unavailable: Option<IntOrString>) -> Deployment {
    Deployment {
        metadata: ObjectMeta { name: Some("foo".into()), namespace: Some("default".into()), generation: Some(1), ..Default::default() },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(surge.unwrap_or(IntOrString::Int(0))),
                    max_unavailable: Some(unavailable.unwrap_or(IntOrString::Int(0))),
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

pub fn int(i: i32) -> Option<IntOrString> {
    Some(IntOrString::Int(i))
}

pub fn pct(s: &str) -> Option<IntOrString> {
    Some(IntOrString::String(s.into()))
}

/// A ReplicaSet with `replicas` (spec and status), all available, created at second `created`.
pub fn rs(name: &str, replicas: i32, created: i64) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta { name: Some(name.into()), creation_timestamp: Some(Time(ts(created))), ..Default::default() },
        spec: Some(ReplicaSetSpec { replicas: Some(replicas), ..Default::default() }),
        status: Some(ReplicaSetStatus { replicas, available_replicas: Some(replicas), ..Default::default() }),
    }
}

pub fn with_available(mut r: ReplicaSet, available: i32) -> ReplicaSet {
    if let Some(s) = r.status.as_mut() {
        s.available_replicas = Some(available);
    }
    r
}
