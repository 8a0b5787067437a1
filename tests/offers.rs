//! Offers beyond the single one, across real daemons: withdrawing unclaimed
//! offers, bulk offers with per-item outcomes, refusing duplicates, claim
//! links.

mod common;

use agentd::harness::wait_for_state;
use agentd::rpc::proto::{
    self, AcceptOfferRequest, CreateOfferRequest, CreateTemplateRequest, ListRecordsRequest,
    RecordState,
};
use common::{WAIT, connect, start};
use serde_json::{Value, json};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unclaimed_offer_can_be_withdrawn_a_claimed_one_cannot() {
    let issuer = start("issuer", &[]).await;
    let holder = start("holder", &[]).await;
    let (ic, hc, ci) = connect(&issuer, &holder).await;
    let (mut ic2, mut hc2) = (ic.clone(), hc.clone());
    let mut api = ic.issuance.clone();
    let offer = CreateOfferRequest {
        connection_id: ci.clone(),
        claims_json: json!({"name": "Alice"}).to_string(),
        ..Default::default()
    };

    // Unclaimed: withdrawn, the holder told with the reason.
    let first = api.create_offer(offer.clone()).await.unwrap().into_inner();
    wait_for_state(&mut ic2, "", &first.thid, RecordState::OfferSent, WAIT)
        .await
        .unwrap();
    wait_for_state(&mut hc2, "", &first.thid, RecordState::OfferReceived, WAIT)
        .await
        .unwrap();
    let withdrawn = api
        .withdraw_offer(proto::WithdrawOfferRequest {
            record_id: first.id.clone(),
            reason: "sent to the wrong person".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(withdrawn.state, RecordState::ProblemReportPending as i32);
    let told = wait_for_state(
        &mut hc2,
        "",
        &first.thid,
        RecordState::ProblemReportReceived,
        WAIT,
    )
    .await
    .unwrap();
    assert!(told.reason.contains("sent to the wrong person"), "{told:?}");
    // The holder can no longer accept it.
    let e = hc
        .holder
        .clone()
        .accept_offer(AcceptOfferRequest {
            record_id: told.record_id,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // Claimed: the holder's request arrived, withdrawal is refused.
    let second = api.create_offer(offer).await.unwrap().into_inner();
    let received = wait_for_state(&mut hc2, "", &second.thid, RecordState::OfferReceived, WAIT)
        .await
        .unwrap();
    hc.holder
        .clone()
        .accept_offer(AcceptOfferRequest {
            record_id: received.record_id,
            ..Default::default()
        })
        .await
        .unwrap();
    wait_for_state(
        &mut ic2,
        "",
        &second.thid,
        RecordState::RequestReceived,
        WAIT,
    )
    .await
    .unwrap();
    let e = api
        .withdraw_offer(proto::WithdrawOfferRequest {
            record_id: second.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("claimed"), "{e:?}");

    // Data: the withdrawn offer's claims may go once it ended; the
    // claimed one keeps them.
    wait_for_state(
        &mut ic2,
        "",
        &first.thid,
        RecordState::ProblemReportSent,
        WAIT,
    )
    .await
    .unwrap();
    let delete = |id: &str| {
        let mut api = api.clone();
        let id = id.to_string();
        async move {
            api.delete_record_data(proto::RecordRequest {
                record_id: id,
                ..Default::default()
            })
            .await
        }
    };
    let emptied = delete(&first.id).await.unwrap().into_inner();
    assert_eq!(emptied.claims_json, "{}");
    assert!(emptied.data_deleted_at_ms > 0);
    let e = delete(&second.id).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_offers_answer_per_item_and_deliver_only_the_good_ones() {
    let issuer = start("issuer", &[]).await;
    let holder = start("holder", &[]).await;
    let (ic, hc, ci) = connect(&issuer, &holder).await;
    let t = ic
        .templates
        .clone()
        .create_template(CreateTemplateRequest {
            name: "Membership".into(),
            schema_json: common::schema().to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let good = |n: usize| CreateOfferRequest {
        connection_id: ci.clone(),
        claims_json: json!({"name": format!("member {n}"), "level": 1 + n % 5}).to_string(),
        template_id: t.id.clone(),
        correlation_id: format!("row-{n}"),
        collection_id: format!("half-{}", n % 2),
        ..Default::default()
    };
    let mut offers: Vec<CreateOfferRequest> = (0..40).map(good).collect();
    // Four bad ones among them, each for its own reason.
    offers[3].claims_json = "not json".into();
    offers[10].connection_id = "no-such-connection".into();
    offers[17].claims_json = json!({"name": "x", "level": 99}).to_string();
    offers[25].validity_period_secs = 1;
    offers[25].template_id = "no-such-template".into();
    // Two of the same, both refusing a duplicate: the second is one.
    offers[30].refuse_duplicate = true;
    offers[31] = CreateOfferRequest {
        correlation_id: "row-31".into(),
        ..offers[30].clone()
    };
    let request = proto::CreateOffersRequest {
        offers,
        idempotency_key: "batch-1".into(),
        ..Default::default()
    };
    let mut api = ic.issuance.clone();
    let r = api
        .create_offers(request.clone())
        .await
        .unwrap()
        .into_inner();
    let failed: Vec<(u32, &str)> = r
        .failed
        .iter()
        .map(|f| (f.index, f.error_code.as_str()))
        .collect();
    assert_eq!(
        failed,
        [
            (3, "INVALID_ARGUMENT"),
            (10, "NOT_FOUND"),
            (17, "INVALID_ARGUMENT"),
            (25, "NOT_FOUND"),
            (31, "ALREADY_EXISTS"),
        ],
        "{:#?}",
        r.failed
    );
    assert!(r.failed[2].error.contains("/level"), "{:?}", r.failed[2]);
    assert_eq!(r.created.len(), 35);
    for c in &r.created {
        let rec = c.record.as_ref().unwrap();
        assert_eq!(rec.correlation_id, format!("row-{}", c.index));
        assert_eq!(rec.idempotency_key, format!("batch-1:{}", c.index));
    }

    // Exactly the good ones reach the holder.
    let holder_offers = || {
        let mut h = hc.holder.clone();
        async move {
            h.list_offers(proto::ListOffersRequest {
                page: Some(proto::PageRequest {
                    page_size: 100,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .records
            .len()
        }
    };
    common::eventually(15, "35 offers at the holder", || async {
        (holder_offers().await == 35).then_some(())
    })
    .await;

    // The same batch again makes nothing new.
    let again = api.create_offers(request).await.unwrap().into_inner();
    assert_eq!(again.created.len(), 35);
    let ids = |r: &proto::CreateOffersResponse| {
        r.created
            .iter()
            .map(|c| c.record.as_ref().unwrap().id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&again), ids(&r));
    let issued = api
        .list_records(ListRecordsRequest {
            page: Some(proto::PageRequest {
                page_size: 100,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(issued.len(), 35);
    // Filed by collection: the even rows (0..40 less the failed 10), and the odd.
    let filed = |collection: &str| {
        let mut api = api.clone();
        let collection = collection.to_string();
        async move {
            api.list_records(ListRecordsRequest {
                collection_id: collection,
                page: Some(proto::PageRequest {
                    page_size: 100,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .records
            .len()
        }
    };
    assert_eq!((filed("half-0").await, filed("half-1").await), (19, 16));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(holder_offers().await, 35);

    // Over 1,000 is refused whole.
    let e = api
        .create_offers(proto::CreateOffersRequest {
            offers: (0..1001).map(good).collect(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_credential_is_refused_when_asked() {
    let d = start("duplicates", &[]).await;
    let c = d.clients().await.unwrap();
    common::create_wallet(&c, "alice").await;
    let mut api = c.issuance.clone();
    let issue = |claims: Value, refuse_duplicate: bool| proto::IssueCustodialRequest {
        holder_wallet_id: "alice".into(),
        claims_json: claims.to_string(),
        types: vec!["MembershipCredential".into()],
        refuse_duplicate,
        ..Default::default()
    };
    let at = agentd::now_secs() + 900;
    let first = api
        .issue_custodial(proto::IssueCustodialRequest {
            credential_expires_at: at,
            ..issue(json!({"name": "Alice"}), true)
        })
        .await
        .unwrap()
        .into_inner();
    let first = first.credential.unwrap();
    assert_eq!(
        first.expires, at,
        "custodial issuance takes an absolute expiry too"
    );
    let credential = first.id;

    // The same kind and claims again: refused, naming the credential.
    let e = api
        .issue_custodial(issue(json!({"name": "Alice"}), true))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert!(e.message().contains(&credential), "{e:?}");
    // Other claims are fine; so is the same when not asking, and that one
    // is then the live duplicate a later asking offer is refused for.
    api.issue_custodial(issue(json!({"name": "Alice", "level": 2}), true))
        .await
        .unwrap();
    let second = api
        .issue_custodial(issue(json!({"name": "Alice"}), false))
        .await
        .unwrap()
        .into_inner()
        .credential
        .unwrap()
        .id;
    let e = api
        .issue_custodial(issue(json!({"name": "Alice"}), true))
        .await
        .unwrap_err();
    assert!(e.message().contains(&second), "{e:?}");
    // Once revoked, it is no longer live: the same may be issued again.
    api.revoke_credentials(proto::RevokeCredentialsRequest {
        ids: vec![credential, second],
        ..Default::default()
    })
    .await
    .unwrap();
    api.issue_custodial(issue(json!({"name": "Alice"}), true))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_link_connects_and_offers_once() {
    let issuer = start("issuer", &[]).await;
    let holder = start("holder", &[]).await;
    let late = start("late", &[]).await;
    let ic = issuer.clients().await.unwrap();
    let (hc, lc) = (
        holder.clients().await.unwrap(),
        late.clients().await.unwrap(),
    );
    // Too much to scan: refused before anything is stored.
    let e = ic
        .issuance
        .clone()
        .create_claim_link(proto::CreateClaimLinkRequest {
            offer: Some(CreateOfferRequest {
                claims_json: json!({"essay": "x".repeat(3000)}).to_string(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("too long for a QR code"), "{e:?}");
    let none = ic
        .issuance
        .clone()
        .list_records(ListRecordsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .records;
    assert!(none.is_empty());
    let link = ic
        .issuance
        .clone()
        .create_claim_link(proto::CreateClaimLinkRequest {
            offer: Some(CreateOfferRequest {
                claims_json: json!({"name": "Alice"}).to_string(),
                types: vec!["MembershipCredential".into()],
                automatic_issuance: true,
                expires_in_secs: 600,
                ..Default::default()
            }),
            label: "Example Club".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let record = link.record.clone().unwrap();
    assert_eq!(record.state, RecordState::OfferSent as i32);
    assert_eq!(&link.qr_png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(link.qr_svg.contains("<svg"), "{}", &link.qr_svg[..100]);
    eprintln!("claim link: {} bytes", link.invitation_url.len());
    let again = ic
        .issuance
        .clone()
        .get_claim_link(proto::RecordRequest {
            record_id: record.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.invitation_url, link.invitation_url);

    // One scan: a connection and the offer.
    let accept = |c: &agentd::harness::Clients| {
        let mut connections = c.connections.clone();
        let url = link.invitation_url.clone();
        async move {
            connections
                .accept_invitation(proto::AcceptInvitationRequest {
                    invitation_url: url,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let conn = accept(&hc).await;
    assert_eq!(conn.label, "Example Club");
    let mut hc2 = hc.clone();
    let offered = wait_for_state(&mut hc2, "", &record.thid, RecordState::OfferReceived, WAIT)
        .await
        .unwrap();
    agentd::harness::wait_active(&mut hc2, "", &conn.id, WAIT)
        .await
        .unwrap();
    hc.holder
        .clone()
        .accept_offer(AcceptOfferRequest {
            record_id: offered.record_id,
            ..Default::default()
        })
        .await
        .unwrap();
    wait_for_state(
        &mut hc2,
        "",
        &record.thid,
        RecordState::CredentialReceived,
        WAIT,
    )
    .await
    .unwrap();

    // A second scan: that wallet's connection fails, and its offer with it.
    let second = accept(&lc).await;
    let mut lc2 = lc.clone();
    common::eventually(10, "the late wallet's connection to fail", || {
        let mut c = lc.connections.clone();
        let id = second.id.clone();
        async move {
            let c = c
                .get_connection(proto::GetConnectionRequest {
                    connection_id: id,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            (c.state == proto::ConnectionState::Failed as i32).then_some(())
        }
    })
    .await;
    // The offer it came with is abandoned with it: no one will answer.
    let gone = wait_for_state(&mut lc2, "", &record.thid, RecordState::Abandoned, WAIT)
        .await
        .unwrap();
    assert!(gone.reason.contains("not_a_peer"), "{gone:?}");
    let e = lc
        .holder
        .clone()
        .accept_offer(AcceptOfferRequest {
            record_id: gone.record_id,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    // The issuer issued once.
    let issued = ic
        .issuance
        .clone()
        .get_record(proto::GetRecordRequest {
            record_id: record.id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(issued.state, RecordState::CredentialSent as i32);
}
