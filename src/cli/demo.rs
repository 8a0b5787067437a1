//! `agentd demo`: an issuer and a holder agent on loopback, connected with
//! an out-of-band invitation, one credential issued over DIDComm, every
//! state change of both sides printed as it commits, then the credential
//! decoded and verified.

use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio_stream::StreamExt;

use agentd::harness::{self, Clients, LocalAgent};
use agentd::rpc::proto::{self, RecordState};

const WAIT: Duration = Duration::from_secs(20);
const TYPE: &str = "UniversityDegreeCredential";

pub async fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    println!("agentd demo: an issuer and a holder agent on loopback, with temporary storage\n");
    let issuer = LocalAgent::start("issuer").await?;
    let holder = LocalAgent::start("holder").await?;
    for a in [&issuer, &holder] {
        println!("  {:<7} DIDComm {}   gRPC {}", a.name, a.endpoint, a.grpc);
    }
    let mut ic = issuer.clients().await?;
    let mut hc = holder.clients().await?;
    let printers = [
        print_events("issuer", ic.clone(), started),
        print_events("holder", hc.clone(), started),
    ];

    let (ci, ch) = harness::connect(&mut ic, "", &mut hc, "", WAIT)
        .await
        .context("connecting the agents")?;
    println!("\n  connected with an Out-of-Band 2.0 invitation:");
    println!(
        "    issuer {}  ↔  holder {}",
        short(&ci.our_did),
        short(&ch.our_did)
    );

    let claims =
        r#"{"name":"Alice Example","degree":{"type":"BachelorDegree","name":"Computer Science"}}"#;
    println!("\n  the issuer offers a {TYPE} with claims {claims}\n");
    let offer = ic
        .issuance
        .create_offer(proto::CreateOfferRequest {
            connection_id: ci.id.clone(),
            claims_json: claims.into(),
            types: vec![TYPE.into()],
            validity_period_secs: 365 * 24 * 3600,
            automatic_issuance: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let received =
        harness::wait_for_state(&mut hc, "", &offer.thid, RecordState::OfferReceived, WAIT).await?;
    hc.holder
        .accept_offer(proto::AcceptOfferRequest {
            record_id: received.record_id.clone(),
            ..Default::default()
        })
        .await?;
    let done = harness::wait_for_state(
        &mut hc,
        "",
        &offer.thid,
        RecordState::CredentialReceived,
        WAIT,
    )
    .await?;
    wait_for_ack(&mut ic, &offer.id).await?;
    // Let the printers show the last events before the summary.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for p in printers {
        p.abort();
    }

    let record = hc
        .issuance
        .get_record(proto::GetRecordRequest {
            record_id: done.record_id,
            ..Default::default()
        })
        .await?
        .into_inner();
    let credential = hc
        .holder
        .get_credential(proto::GetCredentialRequest {
            credential_id: record.credential_id,
            ..Default::default()
        })
        .await?
        .into_inner();
    show(&credential)?;
    issuer.stop().await?;
    holder.stop().await?;
    println!(
        "\n  done in {} ms; both agents stopped and their storage removed",
        started.elapsed().as_millis()
    );
    Ok(())
}

/// Prints one agent's record events as they commit.
fn print_events(
    name: &'static str,
    mut c: Clients,
    started: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(stream) = c.events.subscribe(proto::SubscribeRequest::default()).await else {
            return;
        };
        let mut stream = stream.into_inner();
        while let Some(Ok(e)) = stream.next().await {
            let state = |v: i32| {
                RecordState::try_from(v)
                    .map(|s| {
                        s.as_str_name()
                            .trim_start_matches("RECORD_STATE_")
                            .to_string()
                    })
                    .unwrap_or_default()
            };
            let from = if e.old_state == 0 {
                "(new)".into()
            } else {
                state(e.old_state)
            };
            let why = if !e.reason.is_empty() {
                format!("  ({})", e.reason)
            } else if e.old_state == e.new_state {
                "  (the holder's ack)".into()
            } else {
                String::new()
            };
            println!(
                "  {:>5} ms  {name:<6}  {from:>22} → {}{why}",
                started.elapsed().as_millis(),
                state(e.new_state)
            );
        }
    })
}

async fn wait_for_ack(c: &mut Clients, record_id: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = c
            .issuance
            .get_record(proto::GetRecordRequest {
                record_id: record_id.into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        if r.ack_received {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the issuer never saw the holder's ack"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn short(did: &str) -> String {
    if did.len() > 40 {
        format!("{}…", &did[..40])
    } else {
        did.to_string()
    }
}

/// Decodes the VC-JWT and verifies it again, as any verifier would.
fn show(c: &proto::Credential) -> anyhow::Result<()> {
    let part = |i: usize| -> anyhow::Result<serde_json::Value> {
        let b64 = c.jwt.split('.').nth(i).context("not a JWT")?;
        Ok(serde_json::from_slice(&URL_SAFE_NO_PAD.decode(b64)?)?)
    };
    println!(
        "\n  the holder's credential (VC-JWT, {} bytes):",
        c.jwt.len()
    );
    println!("  header  {}", part(0)?);
    let payload = serde_json::to_string_pretty(&part(1)?)?;
    for line in payload.lines() {
        println!("          {line}");
    }
    let now = agentd::now_secs();
    let checked = agentd::vc::verify(&c.jwt, Some(&c.issuer), &c.subject, now)
        .context("the credential does not verify")?;
    println!("\n  verification, with only the issuer's did:key:");
    println!(
        "    ✓ signature: EdDSA by {}",
        agentd::vc::key_id(&checked.issuer)
    );
    println!("    ✓ issuer = iss = {}", short(&checked.issuer));
    println!(
        "    ✓ subject = sub = {} (the holder's fresh did:key)",
        short(&checked.subject)
    );
    println!(
        "    ✓ valid from {} until {}",
        checked.not_before,
        checked
            .expires
            .map_or("(no expiry)".into(), |e| e.to_string())
    );
    Ok(())
}
