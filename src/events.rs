//! Record state changes for subscribers. Events are written in the
//! transaction of the change they describe (so sequence order is commit
//! order and nothing is lost to a crash) and published here after commit.
//! A subscriber replays stored events after its cursor, then follows live.

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::metrics::Metrics;
use crate::store::{RecordEvent, RecordState, Role, Store};

/// Live publication of committed events, which the metrics see first;
/// cheap to clone.
#[derive(Clone)]
pub struct Events {
    live: broadcast::Sender<RecordEvent>,
    metrics: Metrics,
}

impl Default for Events {
    /// Events that no metrics count.
    fn default() -> Self {
        Events::new(Metrics::default())
    }
}

impl Events {
    pub fn new(metrics: Metrics) -> Self {
        Events {
            live: broadcast::channel(4096).0,
            metrics,
        }
    }

    /// Live subscribers: event streams and calls waiting on a thread.
    pub fn subscribers(&self) -> usize {
        self.live.receiver_count()
    }
}

/// Which events a subscriber wants; empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub wallet_id: Option<String>,
    pub role: Option<Role>,
    pub state: Option<RecordState>,
    pub thid: Option<String>,
}

impl Filter {
    pub fn matches(&self, e: &RecordEvent) -> bool {
        self.wallet_id.as_ref().is_none_or(|w| *w == e.wallet_id)
            && self.role.is_none_or(|r| r == e.role)
            && self.state.is_none_or(|s| s == e.new_state)
            && self.thid.as_ref().is_none_or(|t| *t == e.thid)
    }
}

const REPLAY_BATCH: usize = 512;

impl Events {
    /// Publishes events that have committed.
    pub fn publish(&self, events: impl IntoIterator<Item = RecordEvent>) {
        let events: Vec<RecordEvent> = events.into_iter().collect();
        self.metrics.on_events(&events);
        for e in events {
            // No subscriber is not an error.
            let _ = self.live.send(e);
        }
    }

    /// A receiver of live events only (for calls that wait on a thread).
    pub fn live(&self) -> broadcast::Receiver<RecordEvent> {
        self.live.subscribe()
    }

    /// Every matching event with `seq > after` (None: only new ones), in
    /// order and without gaps, then live events as they commit. The stream
    /// ends with an error item if the store fails, and ends when `stop` is
    /// cancelled (shutdown).
    pub fn subscribe(
        &self,
        store: Store,
        filter: Filter,
        after: Option<u64>,
        stop: CancellationToken,
    ) -> ReceiverStream<Result<RecordEvent>> {
        let live = self.live.subscribe();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            tokio::select! {
                result = follow(store, filter, after, live, &tx) => {
                    if let Err(e) = result {
                        let _ = tx.send(Err(e)).await;
                    }
                }
                _ = stop.cancelled() => {}
            }
        });
        ReceiverStream::new(rx)
    }
}

type Sink = mpsc::Sender<Result<RecordEvent>>;

/// Sends `e` if it matches; false once the subscriber has gone.
async fn emit(tx: &Sink, filter: &Filter, e: RecordEvent) -> bool {
    !filter.matches(&e) || tx.send(Ok(e)).await.is_ok()
}

/// Replays stored events with `cursor < seq <= upto`; returns the new
/// cursor, or None when the subscriber has gone. Only durable events leave
/// the process: the replay stops at the last event committed before a
/// flush that it waits for.
async fn catch_up(
    store: &Store,
    filter: &Filter,
    tx: &Sink,
    mut cursor: u64,
    upto: u64,
) -> Result<Option<u64>> {
    let upto = upto.min(store.last_event_seq()?);
    if cursor < upto {
        store.durable().await?;
    }
    while cursor < upto {
        let wanted = (upto - cursor).min(REPLAY_BATCH as u64) as usize;
        let batch = store.events_after(cursor, wanted)?;
        if batch.is_empty() {
            break;
        }
        for e in batch.into_iter().take_while(|e| e.seq <= upto) {
            cursor = e.seq;
            if !emit(tx, filter, e).await {
                return Ok(None);
            }
        }
        if cursor >= upto {
            break;
        }
    }
    Ok(Some(cursor))
}

async fn follow(
    store: Store,
    filter: Filter,
    after: Option<u64>,
    mut live: broadcast::Receiver<RecordEvent>,
    tx: &Sink,
) -> Result<()> {
    let mut cursor = match after {
        Some(c) => c,
        None => store.last_event_seq()?,
    };
    loop {
        let Some(c) = catch_up(&store, &filter, tx, cursor, u64::MAX).await? else {
            return Ok(());
        };
        cursor = c;
        loop {
            match live.recv().await {
                Ok(e) if e.seq <= cursor => {}
                // The next one in commit order: no need to read the store.
                Ok(e) if e.seq == cursor + 1 => {
                    cursor = e.seq;
                    if !emit(tx, &filter, e).await {
                        return Ok(());
                    }
                }
                // Publication can be out of commit order, but `e` has
                // committed, so the store holds it and everything before it:
                // read up to it from there, in order, each event once.
                Ok(e) => match catch_up(&store, &filter, tx, cursor, e.seq).await? {
                    Some(c) => cursor = c,
                    None => return Ok(()),
                },
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(wallet: &str, role: Role, state: RecordState) -> RecordEvent {
        RecordEvent {
            seq: 1,
            wallet_id: wallet.into(),
            record_id: "r".into(),
            thid: "t".into(),
            role,
            old_state: None,
            new_state: state,
            reason: None,
            at_ms: 0,
            ack_received: false,
        }
    }

    #[test]
    fn filters_combine_and_empty_matches_all() {
        let e = event("w", Role::Holder, RecordState::OfferReceived);
        assert!(Filter::default().matches(&e));
        let f = Filter {
            wallet_id: Some("w".into()),
            role: Some(Role::Holder),
            state: Some(RecordState::OfferReceived),
            thid: Some("t".into()),
        };
        assert!(f.matches(&e));
        for other in [
            event("x", Role::Holder, RecordState::OfferReceived),
            event("w", Role::Issuer, RecordState::OfferReceived),
            event("w", Role::Holder, RecordState::RequestPending),
        ] {
            assert!(!f.matches(&other), "{other:?}");
        }
    }

    /// A subscriber replaying stored events sees one only once it is durable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replay_waits_for_the_flush_of_what_it_shows() {
        use tokio_stream::StreamExt;
        let t = crate::testing::core();
        let store = t.core.store.clone();
        let held = store.hold_flushes().await;
        store
            .transact(|tx| tx.push_event(event("w", Role::Issuer, RecordState::OfferPending)))
            .unwrap();
        let stop = CancellationToken::new();
        let mut stream =
            Events::default().subscribe(store.clone(), Filter::default(), Some(0), stop.clone());
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(300), stream.next()).await;
        assert!(early.is_err(), "an event left before its flush: {early:?}");
        drop(held);
        let e = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
            .await
            .expect("the event once durable")
            .unwrap()
            .unwrap();
        assert_eq!(e.seq, 1);
        stop.cancel();
    }

    #[tokio::test]
    async fn out_of_order_publication_yields_each_event_once_in_order() {
        use tokio_stream::StreamExt;
        let t = crate::testing::core();
        let store = t.core.store.clone();
        let events = Events::default();
        let stop = CancellationToken::new();
        let mut stream = events.subscribe(store.clone(), Filter::default(), None, stop.clone());
        // Let the subscriber read its starting cursor (no events yet).
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let committed: Vec<RecordEvent> = (0..3)
            .map(|_| {
                store
                    .transact(|tx| {
                        tx.push_event(event("w", Role::Issuer, RecordState::OfferPending))
                    })
                    .unwrap()
            })
            .collect();
        // The last commit is published first, then the others.
        events.publish([
            committed[2].clone(),
            committed[0].clone(),
            committed[1].clone(),
        ]);
        let mut got = Vec::new();
        while let Ok(Some(e)) =
            tokio::time::timeout(std::time::Duration::from_millis(300), stream.next()).await
        {
            got.push(e.unwrap().seq);
        }
        assert_eq!(got, [1, 2, 3]);
        stop.cancel();
    }
}
