//! The issuer's desk across two daemons: templates (claims checked against
//! the schema before anything is stored or sent, validity bounds and types
//! applied, the schema published for verifiers, archiving), withdrawing
//! unclaimed offers, and bulk offers with per-item outcomes.

mod common;

use agentd::harness::wait_for_state;
use agentd::rpc::proto::{
    self, AcceptOfferRequest, CreateOfferRequest, CreateTemplateRequest, GetTemplateRequest,
    ListRecordsRequest, ListTemplatesRequest, RecordState, VerifyCredentialRequest,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{WAIT, connect, http, start};
use serde_json::{Value, json};
use tonic::Code;

fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["name", "level"],
        "properties": {
            "name": { "type": "string", "minLength": 1 },
            "level": { "type": "integer", "minimum": 1, "maximum": 5 },
        },
        "additionalProperties": false,
    })
}

fn payload(jwt: &str) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_from_a_template_across_two_daemons() {
    let issuer = start("issuer", &[]).await;
    let holder = start("holder", &[]).await;
    let (ic, hc, ci) = connect(&issuer, &holder).await;
    let mut templates = ic.templates.clone();

    // A schema that is not one is refused when the template is made.
    let bad = templates
        .create_template(CreateTemplateRequest {
            name: "broken".into(),
            schema_json: json!({"type": "object", "properties": {"x": {"type": 7}}}).to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    assert!(
        bad.message()
            .contains("not a valid JSON Schema at /properties/x/type"),
        "{bad:?}"
    );

    let t = templates
        .create_template(CreateTemplateRequest {
            name: "Membership".into(),
            types: vec!["MembershipCredential".into()],
            contexts: vec!["https://example.com/membership/v1".into()],
            schema_json: schema().to_string(),
            default_validity_secs: 600,
            max_validity_secs: 3600,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        t.schema_url.ends_with(&format!("/schemas/{}", t.id)),
        "{}",
        t.schema_url
    );

    // The schema is public, with its $id.
    let served = http()
        .build()
        .unwrap()
        .get(&t.schema_url)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "application/schema+json");
    let mut published: Value = serde_json::from_str(&served.text().await.unwrap()).unwrap();
    assert_eq!(published["$id"], t.schema_url);
    published.as_object_mut().unwrap().remove("$id");
    assert_eq!(published, schema());

    let offer = |claims: Value| CreateOfferRequest {
        connection_id: ci.clone(),
        claims_json: claims.to_string(),
        template_id: t.id.clone(),
        automatic_issuance: true,
        ..Default::default()
    };
    let mut api = ic.issuance.clone();
    let records = |api: &mut proto::issuance_service_client::IssuanceServiceClient<_>| {
        let mut api = api.clone();
        async move {
            api.list_records(ListRecordsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .records
        }
    };

    // Claims that miss the schema: every violation named, nothing stored or sent.
    let e = api
        .create_offer(offer(json!({"level": "three", "extra": 1})))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    for part in [
        "/level: ",
        "(rule /properties/level/type)",
        "\"name\"",
        "(rule /required)",
        "(rule /additionalProperties)",
    ] {
        assert!(e.message().contains(part), "{part} in {e:?}");
    }
    // Validity past the template's maximum, or a schema of the caller's.
    for (bad, part) in [
        (
            CreateOfferRequest {
                validity_period_secs: 7200,
                ..offer(json!({"name": "A", "level": 2}))
            },
            "allows at most 3600 s",
        ),
        (
            CreateOfferRequest {
                schema_id: "https://example.com/s.json".into(),
                ..offer(json!({"name": "A", "level": 2}))
            },
            "a template names its own schema",
        ),
    ] {
        let e = api.create_offer(bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(part), "{part} in {e:?}");
    }
    assert!(records(&mut api).await.is_empty(), "nothing was stored");

    // A good offer: the template's types, schema and default validity.
    let offered = api
        .create_offer(CreateOfferRequest {
            correlation_id: "order-7".into(),
            reference_id: "ref-9".into(),
            ..offer(json!({"name": "Alice", "level": 3}))
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(offered.template_id, t.id);
    assert_eq!(offered.schema_id, t.schema_url);
    assert_eq!(offered.validity_period_secs, 600);
    let held = common::accept_until_held(&hc, &offered.thid).await;
    let vc = payload(&held.jwt);
    assert_eq!(vc["vc"]["credentialSchema"]["id"], t.schema_url);
    assert_eq!(
        vc["vc"]["@context"],
        json!([
            "https://www.w3.org/2018/credentials/v1",
            "https://example.com/membership/v1"
        ])
    );
    assert_eq!(
        vc["exp"].as_u64().unwrap() - vc["nbf"].as_u64().unwrap(),
        600
    );
    assert!(held.types.contains(&"MembershipCredential".to_string()));

    // A verifier elsewhere fetches the schema: SchemaConformance passes.
    let r = hc
        .verifier
        .clone()
        .verify_credential(VerifyCredentialRequest {
            jwt: held.jwt.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.valid, "{r:#?}");
    let schema_check = r.credentials[0]
        .checks
        .iter()
        .find(|c| c.name == "SchemaConformance")
        .unwrap();
    assert!(
        schema_check.applicable && schema_check.valid,
        "{schema_check:?}"
    );

    // Correlation ids are filters.
    for (correlation, reference, n) in [("order-7", "", 1), ("", "ref-9", 1), ("order-8", "", 0)] {
        let found = api
            .list_records(ListRecordsRequest {
                correlation_id: correlation.into(),
                reference_id: reference.into(),
                template_id: t.id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .records;
        assert_eq!(found.len(), n, "{correlation} {reference}");
    }

    // Archived: no new offers; listed only on request; the schema stays published.
    let archived = templates
        .archive_template(GetTemplateRequest {
            template_id: t.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(archived.archived_at_ms > 0);
    let e = api
        .create_offer(offer(json!({"name": "Bob", "level": 1})))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let listed = |include_archived| {
        let mut templates = templates.clone();
        async move {
            templates
                .list_templates(ListTemplatesRequest {
                    include_archived,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .templates
                .len()
        }
    };
    assert_eq!((listed(false).await, listed(true).await), (0, 1));
    let still = http()
        .build()
        .unwrap()
        .get(&t.schema_url)
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), 200);
    let unknown = http()
        .build()
        .unwrap()
        .get(t.schema_url.replace(&t.id, "nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // Another wallet's token, or another wallet named, cannot see it.
    let e = templates
        .get_template(GetTemplateRequest {
            wallet_id: "other".into(),
            template_id: t.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
}

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
            schema_json: schema().to_string(),
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
async fn a_draft_is_checked_edited_and_sent_or_discarded() {
    let issuer = start("issuer", &[]).await;
    let holder = start("holder", &[]).await;
    let (ic, hc, ci) = connect(&issuer, &holder).await;
    let t = ic
        .templates
        .clone()
        .create_template(CreateTemplateRequest {
            name: "Membership".into(),
            schema_json: schema().to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut api = ic.issuance.clone();
    let draft = |claims: Value| CreateOfferRequest {
        connection_id: ci.clone(),
        claims_json: claims.to_string(),
        template_id: t.id.clone(),
        expires_in_secs: 3600,
        draft: true,
        ..Default::default()
    };
    // Checked like any offer, even as a draft.
    let e = api
        .create_offer(draft(json!({"name": "Alice"})))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let d = api
        .create_offer(draft(json!({"name": "Alice", "level": 1})))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.state, RecordState::Draft as i32);
    assert_eq!(d.expires_at_ms, 0, "a draft's expiry counts from sending");

    // Edits are checked too; a refused one changes nothing.
    let e = api
        .update_draft(proto::UpdateDraftRequest {
            record_id: d.id.clone(),
            claims_json: Some(json!({"name": "Alice", "level": 9}).to_string()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let edited = api
        .update_draft(proto::UpdateDraftRequest {
            record_id: d.id.clone(),
            claims_json: Some(json!({"name": "Alice", "level": 4}).to_string()),
            comment: Some("welcome".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(edited.state, RecordState::Draft as i32);
    assert_eq!(edited.version, d.version + 1);

    // Nothing reached the holder; sending delivers the edited offer.
    let offers_at_holder = || {
        let mut h = hc.holder.clone();
        async move {
            h.list_offers(proto::ListOffersRequest::default())
                .await
                .unwrap()
                .into_inner()
                .records
        }
    };
    assert!(offers_at_holder().await.is_empty());
    let sent = api
        .send_offer(proto::RecordRequest {
            record_id: d.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sent.state, RecordState::OfferPending as i32);
    assert!(sent.expires_at_ms > agentd::now_ms());
    let mut hc2 = hc.clone();
    wait_for_state(&mut hc2, "", &d.thid, RecordState::OfferReceived, WAIT)
        .await
        .unwrap();
    let at_holder = offers_at_holder().await.remove(0);
    assert_eq!(
        serde_json::from_str::<Value>(&at_holder.claims_json).unwrap(),
        json!({"name": "Alice", "level": 4})
    );
    assert_eq!(at_holder.comment, "welcome");

    // A second draft, discarded: abandoned, never sent, no longer a draft.
    let other = api
        .create_offer(draft(json!({"name": "Bob", "level": 2})))
        .await
        .unwrap()
        .into_inner();
    let discarded = api
        .discard_draft(proto::RecordRequest {
            record_id: other.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(discarded.state, RecordState::Abandoned as i32);
    let e = api
        .send_offer(proto::RecordRequest {
            record_id: other.id,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(offers_at_holder().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_expiry_pins_the_credentials_exp() {
    let issuer = start("issuer", &[]).await;
    let holder = start("holder", &[]).await;
    let (ic, hc, ci) = connect(&issuer, &holder).await;
    let t = ic
        .templates
        .clone()
        .create_template(CreateTemplateRequest {
            name: "Short".into(),
            schema_json: json!({"type": "object"}).to_string(),
            default_validity_secs: 600,
            max_validity_secs: 3600,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let now = agentd::now_secs();
    let offer = |at: u64, validity: u64| CreateOfferRequest {
        connection_id: ci.clone(),
        claims_json: "{}".into(),
        template_id: t.id.clone(),
        credential_expires_at: at,
        validity_period_secs: validity,
        automatic_issuance: true,
        ..Default::default()
    };
    let mut api = ic.issuance.clone();
    for (bad, part) in [
        (offer(now + 1000, 600), "not both"),
        (offer(now - 10, 0), "not in the future"),
        (offer(now + 7200, 0), "allows at most 3600 s"),
    ] {
        let e = api.create_offer(bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(part), "{part}: {e:?}");
    }
    let at = now + 1000;
    let offered = api.create_offer(offer(at, 0)).await.unwrap().into_inner();
    // Accepted a moment later: exp is still the one asked.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let held = common::accept_until_held(&hc, &offered.thid).await;
    assert_eq!(held.expires, at);
    assert_eq!(payload(&held.jwt)["exp"], at);
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
