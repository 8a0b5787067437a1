//! Durability. A sled commit is visible at once but survives a crash only
//! once a flush has written it. Every write is numbered when it begins; a
//! flush covers every write that had finished when it started, so after it
//! "covered" is the highest number below which nothing is unfinished.
//!
//! [`Flusher::durable_within`] is group commit: concurrent callers share one
//! flush, and a caller for whom every write begun so far is covered does
//! not flush at all.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::Result;

/// Proof that a flush has made durable everything its caller had
/// committed or read before asking for it (see [`super::Store::durable`]).
pub struct Flushed(());

pub(super) struct Flusher {
    db: sled::Db,
    /// Flush tickets: a caller takes one; a flush covers every ticket
    /// taken before it started.
    requested: AtomicU64,
    flushed: AtomicU64,
    lock: tokio::sync::Mutex<()>,
    /// The `flushed` ticket, for callers waiting on someone else's flush.
    flushes: tokio::sync::watch::Sender<u64>,
    writes: Mutex<Writes>,
    /// Every write numbered up to this is durable.
    covered: AtomicU64,
    /// Told how long each flush took (metrics).
    observer: std::sync::OnceLock<Box<dyn Fn(Duration) + Send + Sync>>,
}

#[derive(Default)]
struct Writes {
    begun: u64,
    unfinished: BTreeSet<u64>,
}

impl Flusher {
    pub(super) fn new(db: sled::Db) -> Self {
        Flusher {
            db,
            requested: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            lock: tokio::sync::Mutex::new(()),
            flushes: tokio::sync::watch::Sender::new(0),
            writes: Mutex::new(Writes::default()),
            covered: AtomicU64::new(0),
            observer: std::sync::OnceLock::new(),
        }
    }

    pub(super) fn observe(&self, f: Box<dyn Fn(Duration) + Send + Sync>) {
        let _ = self.observer.set(f);
    }

    /// Numbers a write about to begin. Counted before it begins, because a
    /// reader can see a commit before the write returns.
    pub(super) fn begin(&self) -> u64 {
        let mut w = self.writes.lock().expect("writes");
        w.begun += 1;
        let n = w.begun;
        w.unfinished.insert(n);
        n
    }

    pub(super) fn end(&self, n: u64) {
        self.writes.lock().expect("writes").unfinished.remove(&n);
    }

    /// Every write numbered up to the result had finished.
    fn finished_below(&self) -> u64 {
        let w = self.writes.lock().expect("writes");
        w.unfinished.first().map_or(w.begun, |first| first - 1)
    }

    fn begun(&self) -> u64 {
        self.writes.lock().expect("writes").begun
    }

    /// See [`super::Store::durable_within`].
    pub(super) async fn durable_within(&self, patience: Duration) -> Result<Flushed> {
        let me = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let begun = self.begun();
        if begun <= self.covered.load(Ordering::SeqCst) {
            return Ok(Flushed(()));
        }
        if !patience.is_zero() {
            let mut flushes = self.flushes.subscribe();
            let theirs = tokio::time::timeout(patience, flushes.wait_for(|f| *f >= me)).await;
            if matches!(theirs, Ok(Ok(_))) {
                return Ok(Flushed(()));
            }
        }
        let _turn = self.lock.lock().await;
        if self.flushed.load(Ordering::SeqCst) >= me || begun <= self.covered.load(Ordering::SeqCst)
        {
            return Ok(Flushed(()));
        }
        let upto = self.requested.load(Ordering::SeqCst);
        let finished = self.finished_below();
        crate::crashpoint!("store.before_flush");
        let started = std::time::Instant::now();
        self.db.flush_async().await?;
        if let Some(f) = self.observer.get() {
            f(started.elapsed());
        }
        self.flushed.store(upto, Ordering::SeqCst);
        self.covered.fetch_max(finished, Ordering::SeqCst);
        self.flushes.send_replace(upto);
        Ok(Flushed(()))
    }

    #[cfg(test)]
    pub(super) async fn hold(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }
}
