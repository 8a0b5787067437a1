//! Credential templates across real daemons: claims checked against the
//! schema before anything is stored or sent, validity bounds, types and
//! @contexts applied, the schema published for verifiers, archiving; drafts;
//! an absolute expiry.

mod common;

use agentd::harness::wait_for_state;
use agentd::rpc::proto::{
    self, CreateOfferRequest, CreateTemplateRequest, GetTemplateRequest, ListRecordsRequest,
    ListTemplatesRequest, RecordState, VerifyCredentialRequest,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{WAIT, connect, http, start};
use serde_json::{Value, json};
use tonic::Code;

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
            schema_json: common::schema().to_string(),
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
    assert_eq!(published, common::schema());

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
async fn a_draft_is_checked_edited_and_sent_or_discarded() {
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
