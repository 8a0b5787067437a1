//! Group commit for transactions. Every sled 0.34 transaction takes sled's
//! global write lock and seals and writes a log buffer (a pwrite and a
//! sync_file_range on sled's I/O threads), so under load many small
//! transactions cost more than the work in them. Callers arriving while
//! another batch commits queue their jobs; the next one to get the turn
//! runs every queued job at once and hands each caller its own result.

use tokio::sync::oneshot;

use crate::error::Result;

/// Jobs `J` run in batches, each job answered with a `Result<O>`.
pub struct GroupCommit<J, O> {
    queue: std::sync::Mutex<Vec<(J, oneshot::Sender<Result<O>>)>>,
    turn: tokio::sync::Mutex<()>,
}

impl<J, O> Default for GroupCommit<J, O> {
    fn default() -> Self {
        GroupCommit {
            queue: Default::default(),
            turn: Default::default(),
        }
    }
}

impl<J, O> GroupCommit<J, O> {
    /// Queues `job` and returns its result. Whoever holds the turn runs
    /// the queued jobs with `batch`, which answers each, in order. A batch
    /// run by someone else answers this job too, so `batch` may not run.
    /// A job whose caller has gone (its future dropped) still runs; its
    /// answer goes to `unclaimed`, which finishes what the caller would have.
    pub async fn run(
        &self,
        job: J,
        batch: impl FnOnce(&[J]) -> Vec<Result<O>>,
        unclaimed: impl Fn(O),
    ) -> Result<O> {
        let (done, mut answer) = oneshot::channel();
        self.queue
            .lock()
            .expect("group commit queue")
            .push((job, done));
        let _turn = self.turn.lock().await;
        if let Ok(result) = answer.try_recv() {
            return result;
        }
        // Let tasks already running queue their jobs behind ours: under
        // load this makes batches several times larger (fewer, fuller
        // transactions); alone, it returns at once.
        tokio::task::yield_now().await;
        let (jobs, answers): (Vec<J>, Vec<_>) =
            std::mem::take(&mut *self.queue.lock().expect("group commit queue"))
                .into_iter()
                .unzip();
        let results = batch(&jobs);
        assert_eq!(results.len(), jobs.len(), "a batch answers every job");
        for (to, result) in answers.into_iter().zip(results) {
            if let Err(Ok(orphan)) = to.send(result) {
                unclaimed(orphan);
            }
        }
        answer
            .await
            .expect("our job was in this batch or an earlier one")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_jobs_share_batches_and_each_gets_its_own_answer() {
        let group: Arc<GroupCommit<u32, u32>> = Default::default();
        let batches = Arc::new(AtomicUsize::new(0));
        let mut set = tokio::task::JoinSet::new();
        for n in 0..200u32 {
            let (group, batches) = (group.clone(), batches.clone());
            set.spawn(async move {
                let answer = group
                    .run(
                        n,
                        |jobs| {
                            batches.fetch_add(1, Ordering::SeqCst);
                            // Slow enough that others queue behind this batch.
                            std::thread::sleep(std::time::Duration::from_millis(2));
                            jobs.iter()
                                .map(|j| match j % 7 {
                                    0 => Err(Error::InvalidArgument(format!("{j}"))),
                                    _ => Ok(j * 10),
                                })
                                .collect()
                        },
                        |_| {},
                    )
                    .await;
                (n, answer)
            });
        }
        for (n, answer) in set.join_all().await {
            match answer {
                Ok(v) => assert_eq!(v, n * 10),
                Err(e) => assert!(n % 7 == 0 && e.to_string().ends_with(&n.to_string())),
            }
        }
        let batches = batches.load(Ordering::SeqCst);
        assert!(
            batches < 200,
            "{batches} batches for 200 jobs: nothing was shared"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_whose_caller_went_away_still_runs_and_its_answer_is_unclaimed() {
        let group: Arc<GroupCommit<u32, u32>> = Default::default();
        let unclaimed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let batching = Arc::new(AtomicUsize::new(0));
        let run = |n: u32| {
            let (group, unclaimed, batching) = (group.clone(), unclaimed.clone(), batching.clone());
            async move {
                group
                    .run(
                        n,
                        |jobs| {
                            batching.fetch_add(1, Ordering::SeqCst);
                            // Holds the turn while the next caller queues and goes away.
                            std::thread::sleep(std::time::Duration::from_millis(100));
                            jobs.iter().map(|j| Ok(j * 10)).collect()
                        },
                        |o| unclaimed.lock().unwrap().push(o),
                    )
                    .await
            }
        };
        let until = |ready: &dyn Fn() -> bool| {
            while !ready() {
                std::thread::yield_now();
            }
        };
        let first = tokio::spawn(run(1));
        until(&|| batching.load(Ordering::SeqCst) == 1);
        let gone = tokio::spawn(run(2));
        until(&|| group.queue.lock().unwrap().len() == 1);
        gone.abort();
        assert_eq!(first.await.unwrap().unwrap(), 10);
        assert_eq!(run(3).await.unwrap(), 30);
        assert_eq!(*unclaimed.lock().unwrap(), vec![20]);
    }
}
