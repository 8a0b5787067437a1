//! Threads that end without a credential: an offer past its expiry, a
//! thread idle past the timeout, an offer that cannot be delivered.

mod common;

use agentd::rpc::proto::{CreateOfferRequest, RecordState};
use common::{connect, offer, start, wait_state};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_offers_are_abandoned_on_both_sides() {
    let env = [("AGENTD_ISSUANCE_SWEEP_INTERVAL_MS", "100")];
    let issuer = start("issuer", &env).await;
    let holder = start("holder", &env).await;
    let (ic, hc, ci) = connect(&issuer, &holder).await;
    let offered = ic
        .issuance
        .clone()
        .create_offer(CreateOfferRequest {
            expires_in_secs: 1,
            ..offer(&ci, true)
        })
        .await
        .unwrap()
        .into_inner();
    assert!(offered.expires_at_ms > 0);
    let a = wait_state(&ic, &offered.thid, RecordState::Abandoned).await;
    let b = wait_state(&hc, &offered.thid, RecordState::Abandoned).await;
    assert!(a.problem.contains("expired"), "{}", a.problem);
    assert!(b.problem.contains("expired"), "{}", b.problem);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_threads_and_undeliverable_offers_are_abandoned() {
    let env = [
        ("AGENTD_ISSUANCE_SWEEP_INTERVAL_MS", "100"),
        ("AGENTD_ISSUANCE_THREAD_TIMEOUT_SECS", "1"),
        ("AGENTD_OUTBOX_MAX_RETRIES", "2"),
    ];
    let issuer = start("issuer", &env).await;
    let mut holder = start("holder", &env).await;
    let (ic, hc, ci) = connect(&issuer, &holder).await;

    // Nobody accepts: after the idle timeout both sides give up.
    let idle = ic
        .issuance
        .clone()
        .create_offer(offer(&ci, true))
        .await
        .unwrap()
        .into_inner();
    let a = wait_state(&ic, &idle.thid, RecordState::Abandoned).await;
    let b = wait_state(&hc, &idle.thid, RecordState::Abandoned).await;
    assert!(a.problem.contains("no progress"), "{}", a.problem);
    assert!(b.problem.contains("no progress"), "{}", b.problem);

    // The holder is gone: the offer is retried, then the record is abandoned
    // with the delivery failure as the reason.
    holder.stop().await.unwrap();
    let lost = ic
        .issuance
        .clone()
        .create_offer(offer(&ci, true))
        .await
        .unwrap()
        .into_inner();
    let r = wait_state(&ic, &lost.thid, RecordState::Abandoned).await;
    assert!(
        r.problem.contains("could not deliver after 3 attempts")
            || r.problem.contains("no progress"),
        "{}",
        r.problem
    );
    assert!(!r.meta_last_failure.is_empty(), "{r:?}");
    assert_eq!(r.meta_retries, 0);
}
