//! `GET /metrics` on real daemons: a flow, a refused message and a failed
//! call show in the counters; records by state survive a restart (counted
//! from the store); no listener unless configured.

mod common;

use agentd::rpc::proto::GetRecordRequest;
use common::{connect, eventually, issue_one, start};

/// A loopback port free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn scrape(port: u16) -> String {
    let r = common::http()
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
    );
    r.text().await.unwrap()
}

/// The value of the sample named exactly `series` (name and labels).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_a_refusal_and_a_failed_call_show_in_the_metrics() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut issuer = start("issuer", &[("AGENTD_METRICS_LISTEN", &listen)]).await;
    let holder = start("holder", &[]).await;
    let (ic, hc, ci) = connect(&issuer, &holder).await;
    issue_one(&ic, &hc, ci).await;
    let e = ic
        .issuance
        .clone()
        .get_record(GetRecordRequest {
            record_id: "no-such-record".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let refused = common::http()
        .build()
        .unwrap()
        .post(format!("http://{}/didcomm", issuer.didcomm))
        .header("content-type", "application/didcomm-encrypted+json")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);

    // The holder's ack may still be on its way: wait for the flow's end.
    let text = eventually(10, "the issuer's flow to end", async || {
        let t = scrape(port).await;
        value(&t, r#"agentd_flow_seconds_count{role="issuer"}"#)
            .is_some_and(|n| n == 1.0)
            .then_some(t)
    })
    .await;
    let v = |series: &str| value(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert_eq!(
        v(r#"agentd_records{role="issuer",state="CredentialSent"}"#),
        1.0
    );
    assert_eq!(
        v(r#"agentd_transitions_total{role="issuer",state="CredentialSent"}"#),
        1.0
    );
    assert!(v(r#"agentd_inbound_messages_total{outcome="accepted"}"#) >= 2.0);
    assert_eq!(
        v(r#"agentd_inbound_messages_total{outcome="not_json"}"#),
        1.0
    );
    assert!(
        v(r#"agentd_delivery_attempts_total{result="delivered",destination="loopback"}"#) >= 2.0
    );
    assert_eq!(
        v(r#"agentd_grpc_calls_total{method="/agent.v1.IssuanceService/CreateOffer",code="Ok"}"#),
        1.0
    );
    assert_eq!(
        v(
            r#"agentd_grpc_calls_total{method="/agent.v1.IssuanceService/GetRecord",code="NotFound"}"#
        ),
        1.0
    );
    assert_eq!(v("agentd_outbox_depth"), 0.0);
    assert_eq!(v("agentd_dead_letters"), 0.0);
    assert!(v("agentd_store_disk_bytes") > 0.0);
    assert!(v("agentd_store_flush_seconds_count") > 0.0);
    assert!(text.ends_with("# EOF\n"));

    // Records by state are counted from the store at start.
    issuer.kill().await.unwrap();
    issuer.restart().await.unwrap();
    let text = scrape(port).await;
    assert_eq!(
        value(
            &text,
            r#"agentd_records{role="issuer",state="CredentialSent"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"agentd_transitions_total{role="issuer",state="CredentialSent"}"#
        ),
        None
    );

    // The holder has no listener.
    let none = common::http()
        .build()
        .unwrap()
        .get(format!("http://{}/metrics", holder.didcomm))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404);
}
