//! The server's background tasks in one set, so they stop together: the watch caches'
//! followers, the compactor, the bootstrap, client watch streams, background garbage
//! collection. [`Tasks`] owns the set (the [`crate::Server`] holds it; dropping it aborts
//! every task); [`Spawner`] is the cheap handle the layers spawn through. It holds the set
//! weakly, so tasks that hold the server's state do not keep the set alive.
//!
//! Lock: one std mutex around the set, held to spawn or reap, never across an await.

use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use tokio::task::JoinSet;

type Set = Mutex<JoinSet<()>>;

/// Owns the tasks; aborts them when dropped.
pub struct Tasks {
    set: Arc<Set>,
}

/// Spawns into a [`Tasks`] set (nothing, once the set is gone).
#[derive(Clone)]
pub struct Spawner {
    set: Weak<Set>,
}

fn lock(set: &Set) -> std::sync::MutexGuard<'_, JoinSet<()>> {
    set.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Tasks {
    /// An empty set.
    pub fn new() -> Tasks {
        Tasks { set: Arc::new(Mutex::new(JoinSet::new())) }
    }

    /// A handle to spawn with.
    pub fn spawner(&self) -> Spawner {
        Spawner { set: Arc::downgrade(&self.set) }
    }

    /// Tasks still running.
    pub fn len(&self) -> usize {
        let mut s = lock(&self.set);
        while s.try_join_next().is_some() {}
        s.len()
    }

    /// True when no task runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Tasks {
    fn default() -> Tasks {
        Tasks::new()
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        lock(&self.set).abort_all();
    }
}

impl Spawner {
    /// Runs `task` in the set (finished tasks are reaped first, so the set does not grow).
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let Some(set) = self.set.upgrade() else { return };
        let mut s = lock(&set);
        while s.try_join_next().is_some() {}
        s.spawn(task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dropping_the_set_stops_its_tasks_and_later_spawns_do_nothing() {
        let tasks = Tasks::new();
        let spawner = tasks.spawner();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        spawner.spawn(async move {
            let _keep = tx;
            std::future::pending::<()>().await;
        });
        assert_eq!(tasks.len(), 1);
        drop(tasks);
        assert!(rx.recv().await.is_none(), "the task was aborted, so its sender is gone");
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let r = ran.clone();
        spawner.spawn(async move { r.store(true, std::sync::atomic::Ordering::SeqCst) });
        tokio::task::yield_now().await;
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    }
}
