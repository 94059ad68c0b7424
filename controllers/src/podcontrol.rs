//! Creating and deleting the pods a controller owns (kube's `controller.PodControlInterface`),
//! and slow-start batching: creates go in batches of 1, 2, 4, … and stop at the first batch
//! with a failure, so a quota or admission error costs a few requests instead of hundreds.

use crate::error::{Error, Result};
use futures::future::join_all;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams};
use std::future::Future;

/// The first batch size of [`slow_start`] (kube's `SlowStartInitialBatchSize`).
pub const SLOW_START_INITIAL_BATCH: usize = 1;

/// A pod made from `template`, named `<prefix>-<random>` by the apiserver, controlled by `owner`.
pub fn from_template(template: &PodTemplateSpec, namespace: &str, prefix: &str, owner: OwnerReference) -> Pod {
    let tm = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            namespace: Some(namespace.to_string()),
            labels: tm.labels,
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Creates `pod`.
pub async fn create(client: &kube::Client, pod: &Pod) -> Result<Pod> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    Ok(Api::<Pod>::namespaced(client.clone(), &ns).create(&PostParams::default(), pod).await?)
}

/// Deletes pod `ns/name`: true when this call deleted it (or started its graceful deletion),
/// false when it was already gone, which is not an error. A caller that raised a deletion
/// expectation for it must lower it on false: the informer may have handled the pod's Deleted
/// event before the expectation was raised (kube's manageReplicas calls DeletionObserved on
/// NotFound).
pub async fn delete(client: &kube::Client, ns: &str, name: &str) -> Result<bool> {
    match Api::<Pod>::namespaced(client.clone(), ns).delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(e) => {
            let e = Error::from(e);
            if e.is_not_found() { Ok(false) } else { Err(e) }
        }
    }
}

/// Calls `f(i)` for `i` in `0..count` in batches that start at `initial` and double while every
/// call of a batch succeeds. Returns how many succeeded and the first error.
pub async fn slow_start<F, Fut, T>(count: usize, initial: usize, f: F) -> (Vec<T>, Option<Error>)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut done = Vec::new();
    let mut next = 0;
    let mut batch = initial.max(1).min(count);
    while batch > 0 {
        let results = join_all((next..next + batch).map(&f)).await;
        next += batch;
        let mut first = None;
        for r in results {
            match r {
                Ok(v) => done.push(v),
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        if first.is_some() {
            return (done, first);
        }
        batch = (2 * batch).min(count - next);
    }
    (done, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn batches_double_and_stop_after_a_failing_batch() {
        let calls = Mutex::new(Vec::new());
        let (ok, err) = slow_start(10, 1, |i| {
            calls.lock().unwrap_or_else(|p| p.into_inner()).push(i);
            async move { if i == 4 { Err(Error::NotSynced("x")) } else { Ok(i) } }
        })
        .await;
        // Batches 1, 2, 4: the third batch (3..7) contains the failure, so 7..10 never run.
        assert_eq!(calls.into_inner().unwrap_or_default(), (0..7).collect::<Vec<_>>());
        assert_eq!(ok.len(), 6);
        assert!(err.is_some());
        let (all, none) = slow_start(5, 1, |i| async move { Ok::<_, Error>(i) }).await;
        assert_eq!((all.len(), none.is_none()), (5, true));
        let (zero, _) = slow_start(0, 1, |i| async move { Ok::<_, Error>(i) }).await;
        assert!(zero.is_empty());
    }
}
