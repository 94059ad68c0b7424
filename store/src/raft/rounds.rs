//! Requests that travel in rounds: each request joins the next round that starts after it
//! arrived, and one runner task serves rounds until none waits. Used for read-index rounds (one
//! quorum confirmation for every read waiting; a round already under way may predate a write
//! the read must see) and for writes forwarded to the leader (one peer call per batch).

use crate::error::{Error, Result};
use std::sync::Mutex;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// A waiting request: its item and where its answer goes.
pub type Waiter<I, O> = (I, oneshot::Sender<Result<O>>);

/// The queue of one kind of request.
pub struct Rounds<I, O> {
    state: Mutex<(bool, Vec<Waiter<I, O>>)>,
}

impl<I, O> Default for Rounds<I, O> {
    fn default() -> Self {
        Rounds { state: Mutex::new((false, Vec::new())) }
    }
}

/// A joined request: whether the caller must start the runner, and the answer to wait for.
pub struct Joined<O> {
    /// True when no runner is running: the caller starts one (which calls [`Rounds::next`]).
    pub start_runner: bool,
    answer: oneshot::Receiver<Result<O>>,
}

impl<O> Joined<O> {
    /// The answer, or etcd's timeout at `deadline`.
    pub async fn answer(self, deadline: Instant) -> Result<O> {
        match tokio::time::timeout_at(deadline, self.answer).await {
            Err(_) => Err(Error::Timeout),
            Ok(Err(_)) => Err(Error::Stopped),
            Ok(Ok(r)) => r,
        }
    }
}

impl<I, O> Rounds<I, O> {
    /// Queue `item` for the next round.
    pub fn join(&self, item: I) -> Joined<O> {
        let (tx, rx) = oneshot::channel();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.1.push((item, tx));
        let start_runner = !std::mem::replace(&mut st.0, true);
        Joined { start_runner, answer: rx }
    }

    /// The runner's next round, or `None` (and the runner is done) when nothing waits.
    pub fn next(&self) -> Option<Vec<Waiter<I, O>>> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.1.is_empty() {
            st.0 = false;
            return None;
        }
        Some(std::mem::take(&mut st.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_joining_during_a_round_wait_for_the_next_one() {
        let r: Rounds<u32, u32> = Rounds::default();
        let a = r.join(1);
        assert!(a.start_runner);
        let first = r.next().unwrap();
        let b = r.join(2);
        assert!(!b.start_runner, "the runner is still running");
        for (i, tx) in first {
            let _ = tx.send(Ok(i * 10));
        }
        let second = r.next().unwrap();
        assert_eq!(second.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![2]);
        for (i, tx) in second {
            let _ = tx.send(Ok(i * 10));
        }
        assert!(r.next().is_none());
        assert!(r.join(3).start_runner, "a new runner starts after the last one stopped");
        let deadline = Instant::now() + std::time::Duration::from_secs(1);
        assert_eq!((a.answer(deadline).await, b.answer(deadline).await), (Ok(10), Ok(20)));
    }
}
