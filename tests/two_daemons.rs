//! Two real daemons: invitation, acceptance, pings both ways, discover
//! features, and everything still there and working after both restart.

mod common;

use agentd::harness::Clients;
use agentd::rpc::proto::{
    AcceptInvitationRequest, ConnectionState, CreateInvitationRequest, DiscoverFeaturesRequest,
    GetConnectionRequest, ListConnectionsRequest, ListDidsRequest, PingRequest,
};
use common::{eventually, start};

async fn state(d: &Clients, id: &str) -> ConnectionState {
    let c = d
        .connections
        .clone()
        .get_connection(GetConnectionRequest {
            wallet_id: String::new(),
            connection_id: id.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    ConnectionState::try_from(c.state).unwrap()
}

async fn ping(d: &Clients, id: &str) -> bool {
    d.connections
        .clone()
        .ping(PingRequest {
            wallet_id: String::new(),
            connection_id: id.to_string(),
            wait_ms: 10_000,
        })
        .await
        .unwrap()
        .into_inner()
        .response_received
}

async fn listing(d: &Clients) -> (Vec<String>, Vec<(String, String, i32)>) {
    let dids = d
        .dids
        .clone()
        .list_dids(ListDidsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .dids
        .into_iter()
        .map(|d| d.did)
        .collect();
    let conns = d
        .connections
        .clone()
        .list_connections(ListConnectionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .connections
        .into_iter()
        .map(|c| (c.id, c.their_did, c.state))
        .collect();
    (dids, conns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_ping_restart_ping() {
    let mut a = start("a", &[]).await;
    let mut b = start("b", &[]).await;
    let (ac, bc) = (a.clients().await.unwrap(), b.clients().await.unwrap());

    let inv = ac
        .connections
        .clone()
        .create_invitation(CreateInvitationRequest {
            label: "A".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(inv.invitation_url.starts_with(&a.endpoint));
    assert!(inv.invitation_url.contains("?_oob="));
    let a_conn = inv.connection.unwrap();
    assert_eq!(a_conn.state, ConnectionState::InvitationSent as i32);

    let b_conn = bc
        .connections
        .clone()
        .accept_invitation(AcceptInvitationRequest {
            invitation_url: inv.invitation_url.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b_conn.their_did, a_conn.our_did);
    assert_eq!(b_conn.label, "A");

    eventually(15, "both connections active", || async {
        (state(&ac, &a_conn.id).await == ConnectionState::Active
            && state(&bc, &b_conn.id).await == ConnectionState::Active)
            .then_some(())
    })
    .await;
    let a_view = ac
        .connections
        .clone()
        .get_connection(GetConnectionRequest {
            wallet_id: String::new(),
            connection_id: a_conn.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a_view.their_did, b_conn.our_did);

    assert!(ping(&ac, &a_conn.id).await, "A pings B");
    assert!(ping(&bc, &b_conn.id).await, "B pings A");

    let features = bc
        .connections
        .clone()
        .discover_features(DiscoverFeaturesRequest {
            connection_id: b_conn.id.clone(),
            r#match: "https://didcomm.org/trust-ping/*".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(features.protocols, ["https://didcomm.org/trust-ping/2.0"]);

    let before_a = listing(&ac).await;
    let before_b = listing(&bc).await;
    assert!(before_a.0.contains(&a_conn.our_did));
    assert!(before_b.0.contains(&b_conn.our_did));

    a.restart().await.unwrap();
    b.restart().await.unwrap();
    let (ac, bc) = (a.clients().await.unwrap(), b.clients().await.unwrap());

    assert_eq!(
        listing(&ac).await,
        before_a,
        "A's DIDs and connections survive"
    );
    assert_eq!(
        listing(&bc).await,
        before_b,
        "B's DIDs and connections survive"
    );
    assert!(ping(&ac, &a_conn.id).await, "A pings B after restart");
    assert!(ping(&bc, &b_conn.id).await, "B pings A after restart");
}

/// An invitation is used once: a second acceptor's first message is
/// refused by the inviter, and its connection ends Failed with the reason
/// instead of waiting in Requested for ever; the first acceptor is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_acceptor_of_an_invitation_is_told_it_failed() {
    let inviter = start("inviter", &[]).await;
    let first = start("first", &[]).await;
    let second = start("second", &[]).await;
    let (ic, fc, sc) = (
        inviter.clients().await.unwrap(),
        first.clients().await.unwrap(),
        second.clients().await.unwrap(),
    );
    let url = ic
        .connections
        .clone()
        .create_invitation(CreateInvitationRequest::default())
        .await
        .unwrap()
        .into_inner()
        .invitation_url;
    let accept = |c: &Clients| {
        let mut connections = c.connections.clone();
        let url = url.clone();
        async move {
            connections
                .accept_invitation(AcceptInvitationRequest {
                    invitation_url: url,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .id
        }
    };
    let ok = accept(&fc).await;
    eventually(10, "the first acceptor active", || async {
        (state(&fc, &ok).await == ConnectionState::Active).then_some(())
    })
    .await;
    let refused = accept(&sc).await;
    eventually(10, "the second acceptor failed", || async {
        (state(&sc, &refused).await == ConnectionState::Failed).then_some(())
    })
    .await;
    let c = sc
        .connections
        .clone()
        .get_connection(GetConnectionRequest {
            wallet_id: String::new(),
            connection_id: refused,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(c.problem.contains("not_a_peer"), "{}", c.problem);
    assert_eq!(state(&fc, &ok).await, ConnectionState::Active);
}
