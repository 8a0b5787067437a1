//! The public DIDComm endpoint against hostile peers: each attack that was
//! found to work against it runs here, bounded, and must cost little and
//! change nothing.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agentd::harness::ProcessAgent;
use agentd::rpc::proto::{
    AcceptInvitationRequest, ConnectionState, GetConnectionRequest, PingRequest,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{CT, Outsider, connect, post, start};
use serde_json::{Value, json};

/// The agent's resident memory, from /proc.
fn rss_mib(agent: &ProcessAgent) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid().unwrap())).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024
}

/// CPU time the agent has used (user + system), from /proc.
fn cpu(agent: &ProcessAgent) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", agent.pid().unwrap())).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // Linux reports clock ticks of 1/100 s.
    Duration::from_millis(ticks * 10)
}

/// Bytes under `dir`.
fn size_of(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        size_of(&p)
                    } else {
                        e.metadata().map_or(0, |m| m.len())
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn ping(from: &str, to: &str, pthid: &Value) -> Value {
    json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "type": "https://didcomm.org/trust-ping/2.0/ping",
        "from": from, "to": [to], "pthid": pthid,
        "body": {"response_requested": true},
    })
}

/// A local HTTP listener that counts the POSTs it gets and answers
/// `status`, with `location` set when given (a redirect).
async fn listener(status: u16, location: Option<String>) -> (String, Arc<AtomicUsize>) {
    let posts = Arc::new(AtomicUsize::new(0));
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/didcomm", tcp.local_addr().unwrap());
    let counter = posts.clone();
    let app = axum::Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        let location = location.clone();
        async move {
            let mut r = axum::http::Response::builder().status(status);
            if let Some(l) = location {
                r = r.header("location", l);
            }
            r.body(axum::body::Body::empty()).unwrap()
        }
    });
    tokio::spawn(async move { axum::serve(tcp, app).await });
    (url, posts)
}

/// Ten thousand distinct hostile messages of every kind found to hurt
/// before: all refused with a 4xx, nothing stored, the database hardly
/// grows, memory and CPU stay small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_hostile_messages_store_nothing_and_cost_little() {
    // No rate limit: the deeper checks are what is tested here.
    let env = [("AGENTD_DIDCOMM_RATE_LIMIT_PER_SEC", "0")];
    let mut victim = start("victim", &env).await;
    let peer = start("peer", &[]).await;
    let (vc, _, _) = connect(&victim, &peer).await;
    let connected_did = {
        let mut c = vc.connections.clone();
        let list = c
            .list_connections(agentd::rpc::proto::ListConnectionsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .connections;
        list[0].our_did.clone()
    };
    let (open_did, invitation, _) = common::open_invitation(&victim).await;
    let before_records = common::count(&mut victim).await;
    let db = victim.dir().join("db");
    let before_size = size_of(&db);
    let before_cpu = cpu(&victim);

    let stranger = Outsider::new();
    let huge = stranger.padded(2000); // ~100 KB
    let base58_kid = format!("did:peer:2.Vz{}#key-1", "6".repeat(80_000));
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let mut bodies: Vec<(&str, String)> = Vec::new();
    for i in 0..10_000usize {
        let (kind, body) = match i % 8 {
            // A stranger writing to a connection's DID: refused before
            // anything of the stranger is resolved.
            0 => (
                "not_a_peer",
                stranger.pack(
                    &ping(&stranger.did, &connected_did, &json!(null)),
                    &connected_did,
                ),
            ),
            // A sender kid the size of a large did:peer:2.
            1 => (
                "over_limit",
                stranger.pack_as(
                    &ping(&stranger.did, &open_did, &invitation["id"]),
                    &open_did,
                    &format!("{huge}#key-1"),
                ),
            ),
            // An 80 KB base58 key (its decoding was quadratic).
            2 => (
                "over_limit",
                stranger.pack_as(
                    &ping(&stranger.did, &open_did, &invitation["id"]),
                    &open_did,
                    &base58_kid,
                ),
            ),
            // Anonymous.
            3 => ("anonymous", {
                let r = agentd::did::resolve(&open_did).unwrap();
                let k = &r.agreement[0];
                let public =
                    affinidi_crypto::jose::key_agreement::PublicKeyAgreement::from_raw_bytes(
                        affinidi_crypto::jose::key_agreement::Curve::X25519,
                        &k.public,
                    )
                    .unwrap();
                affinidi_messaging_didcomm::jwe::encrypt::anoncrypt(
                    ping("", &open_did, &invitation["id"])
                        .to_string()
                        .as_bytes(),
                    &[(k.kid.as_str(), &public)],
                )
                .unwrap()
            }),
            // An id of 4 KB, answering the open invitation.
            4 => ("over_limit", {
                let mut m = ping(&stranger.did, &open_did, &invitation["id"]);
                m["id"] = json!(format!("{i}-{}", "x".repeat(4096)));
                stranger.pack(&m, &open_did)
            }),
            // Created long before the replay window.
            5 => ("stale", {
                let mut m = ping(&stranger.did, &open_did, &invitation["id"]);
                m["created_time"] = json!(1_000_000_000u64);
                stranger.pack(&m, &open_did)
            }),
            // Too many recipients.
            6 => ("over_limit", {
                let mut v: Value = serde_json::from_str(&stranger.pack(
                    &ping(&stranger.did, &open_did, &invitation["id"]),
                    &open_did,
                ))
                .unwrap();
                let one = v["recipients"][0].clone();
                v["recipients"] = Value::Array(vec![one; 40]);
                v.to_string()
            }),
            // Nobody here.
            _ => ("unknown_recipient", {
                let other = Outsider::new();
                stranger.pack(&ping(&stranger.did, &other.did, &json!(null)), &other.did)
            }),
        };
        *kinds.entry(kind).or_default() += 1;
        bodies.push((kind, body));
    }
    let sent_bytes: usize = bodies.iter().map(|(_, b)| b.len()).sum();
    let started = Instant::now();
    let addr = victim.didcomm;
    // Twelve at a time: under the per-address limit of requests in flight.
    let client = common::http().build().unwrap();
    for chunk in bodies.chunks(12) {
        let mut set = tokio::task::JoinSet::new();
        for (kind, body) in chunk.iter().cloned() {
            let client = client.clone();
            set.spawn(async move {
                let r = client
                    .post(format!("http://{addr}/didcomm"))
                    .header("content-type", CT)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let text = r.text().await.unwrap();
                (kind, status, text)
            });
        }
        for (kind, status, text) in set.join_all().await {
            assert!((400..500).contains(&status), "{kind}: {status} {text}");
            let err: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(err["error"], kind, "{text}");
            assert!(
                text.len() < 1024,
                "the answer repeats the input: {} bytes",
                text.len()
            );
        }
    }
    let elapsed = started.elapsed();
    let used = cpu(&victim) - before_cpu;
    let rss = rss_mib(&victim);
    let after_records = victim.record_count().await.unwrap();
    let growth = size_of(&db).saturating_sub(before_size);
    println!(
        "10,000 hostile messages ({} MiB, {kinds:?}) in {:.1} s: agent CPU {} ms ({:.2} ms each), RSS {rss} MiB, database +{} KiB, records {before_records} -> {after_records}",
        sent_bytes >> 20,
        elapsed.as_secs_f64(),
        used.as_millis(),
        used.as_secs_f64() * 1000.0 / 10_000.0,
        growth >> 10
    );
    assert_eq!(
        after_records, before_records,
        "refused input stored nothing"
    );
    assert!(growth < 1 << 20, "the database grew by {growth} bytes");
    assert!(rss < 256, "{rss} MiB resident");
    assert!(
        used < Duration::from_millis(10 * 10_000),
        "{used:?} of CPU for 10,000 refusals"
    );
}

/// While one address floods the endpoint with the most expensive input a
/// stranger can send, a connected peer's ping still gets through quickly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_does_not_starve_a_peer() {
    let env = [("AGENTD_DIDCOMM_RATE_LIMIT_PER_SEC", "0")];
    let victim = start("victim", &env).await;
    let peer = start("peer", &[]).await;
    // The peer invites, so the connection id is the peer's.
    let (pc, _, connection) = connect(&peer, &victim).await;
    let (open_did, invitation, _) = common::open_invitation(&victim).await;
    // The worst refused input we know: a stranger answering the open
    // invitation with a full-size body whose authentication tag is wrong
    // (resolved, key-agreed and MACed over a megabyte before refused).
    let stranger = Outsider::new();
    let mut m = ping(&stranger.did, &open_did, &invitation["id"]);
    m["body"]["padding"] = json!("p".repeat(700_000));
    let mut v: Value = serde_json::from_str(&stranger.pack(&m, &open_did)).unwrap();
    let mut tag = URL_SAFE_NO_PAD.decode(v["tag"].as_str().unwrap()).unwrap();
    tag[0] ^= 1;
    v["tag"] = json!(URL_SAFE_NO_PAD.encode(tag));
    let worst = v.to_string();
    assert!(worst.len() > 900_000);

    let stop = tokio_util::sync::CancellationToken::new();
    let refused = Arc::new(AtomicUsize::new(0));
    let mut flood = tokio::task::JoinSet::new();
    // From 127.0.0.2: one address, not the peers'.
    let client = common::http()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    for _ in 0..32 {
        let (client, body, stop, refused) =
            (client.clone(), worst.clone(), stop.clone(), refused.clone());
        let url = format!("http://{}/didcomm", victim.didcomm);
        flood.spawn(async move {
            while !stop.is_cancelled() {
                if let Ok(r) = client
                    .post(&url)
                    .header("content-type", CT)
                    .body(body.clone())
                    .send()
                    .await
                {
                    assert!(r.status().is_client_error(), "{}", r.status());
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut rtts = Vec::new();
    for _ in 0..20 {
        let r = pc
            .connections
            .clone()
            .ping(PingRequest {
                connection_id: connection.clone(),
                wait_ms: 5_000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            r.response_received,
            "a ping went unanswered during the flood"
        );
        rtts.push(r.round_trip_ms);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    flood.join_all().await;
    rtts.sort();
    let median = rtts[rtts.len() / 2];
    println!(
        "during a flood of {} refused 1 MB messages from one address: ping round trips (ms) {rtts:?}, median {median}",
        refused.load(Ordering::Relaxed)
    );
    assert!(
        refused.load(Ordering::Relaxed) > 50,
        "the flood did not run"
    );
    assert!(
        median < 100,
        "median round trip {median} ms during the flood"
    );
}

/// A peer whose endpoint takes connections and never answers holds up
/// only its own messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_does_not_hold_up_other_peers() {
    // Accepts and then says nothing.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_url = format!("http://{}/didcomm", hole.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hole.accept().await {
            held.push(s);
        }
    });
    let agent = start("agent", &[]).await;
    let healthy = start("healthy", &[]).await;
    let silent = start(
        "silent",
        &[("AGENTD_DIDCOMM_PUBLIC_ENDPOINT", hole_url.as_str())],
    )
    .await;
    let (mut ac, _, to_healthy) = connect(&agent, &healthy).await;
    // The agent accepts the silent one's invitation: its pings go into the hole.
    let (_, _, invitation_url) = common::open_invitation(&silent).await;
    let to_silent = ac
        .connections
        .accept_invitation(AcceptInvitationRequest {
            invitation_url,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    for _ in 0..300 {
        ac.connections
            .ping(PingRequest {
                connection_id: to_silent.clone(),
                wait_ms: 0,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut rtts = Vec::new();
    for _ in 0..5 {
        let r = ac
            .connections
            .ping(PingRequest {
                connection_id: to_healthy.clone(),
                wait_ms: 5_000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.response_received);
        rtts.push(r.round_trip_ms);
    }
    println!(
        "with 300 messages stuck on a dead endpoint, pings to a healthy peer took {rtts:?} ms"
    );
    assert!(rtts.iter().all(|ms| *ms < 1000), "{rtts:?}");
    // Nothing to the silent peer was lost: it waits in the outbox.
    let state = ac
        .connections
        .get_connection(GetConnectionRequest {
            connection_id: to_silent,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .state;
    assert_eq!(state, ConnectionState::Requested as i32);
}

/// Nothing a stranger says makes us post anywhere; a peer's redirect is not
/// followed; a daemon that does not allow private destinations does not
/// post to one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_and_redirects_cannot_point_our_posts_anywhere() {
    let (trap_url, trapped) = listener(202, None).await;
    let victim = start("victim", &[]).await;
    let peer = start("peer", &[]).await;
    let _ = connect(&victim, &peer).await;
    let (open_did, invitation, _) = common::open_invitation(&victim).await;
    // A stranger whose DID points at the trap: a message of a type nobody
    // speaks, answering the open invitation, and one to a connection's DID.
    let stranger = Outsider::at(&trap_url);
    let mut odd = ping(&stranger.did, &open_did, &invitation["id"]);
    odd["type"] = json!("https://example.org/nothing/1.0/x");
    let (status, _) = post(&victim, CT, stranger.pack(&odd, &open_did)).await;
    assert!(status == 202 || (400..500).contains(&status));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        trapped.load(Ordering::SeqCst),
        0,
        "we posted where a stranger pointed"
    );

    // A connected peer's endpoint answers 307 to the trap: not followed.
    let (redirecting, redirected) = listener(307, Some(trap_url.clone())).await;
    let fickle = start(
        "fickle",
        &[("AGENTD_DIDCOMM_PUBLIC_ENDPOINT", redirecting.as_str())],
    )
    .await;
    let (_, _, invitation_url) = common::open_invitation(&fickle).await;
    victim
        .clients()
        .await
        .unwrap()
        .connections
        .accept_invitation(AcceptInvitationRequest {
            invitation_url,
            ..Default::default()
        })
        .await
        .unwrap();
    common::eventually(10, "a post to the redirecting endpoint", || async {
        (redirected.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(trapped.load(Ordering::SeqCst), 0, "a redirect was followed");

    // Private destinations refused: the inviter below is on loopback.
    let strict = start(
        "strict",
        &[("AGENTD_OUTBOX_ALLOW_PRIVATE_DESTINATIONS", "false")],
    )
    .await;
    let (local_url, local_posts) = listener(202, None).await;
    let local = start(
        "local",
        &[("AGENTD_DIDCOMM_PUBLIC_ENDPOINT", local_url.as_str())],
    )
    .await;
    let (_, _, invitation_url) = common::open_invitation(&local).await;
    strict
        .clients()
        .await
        .unwrap()
        .connections
        .accept_invitation(AcceptInvitationRequest {
            invitation_url,
            ..Default::default()
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        local_posts.load(Ordering::SeqCst),
        0,
        "posted to a private address"
    );
    assert!(
        strict.log().contains("not a public address"),
        "the refusal is logged"
    );
}

/// Header and body limits answer in JSON; other paths and methods too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_of_the_http_layer_answer_in_json() {
    let agent = start("http", &[]).await;
    let url = format!("http://{}/didcomm", agent.didcomm);
    let client = common::http().build().unwrap();
    let json = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        (status, body["error"].as_str().unwrap().to_string())
    };
    let mut many = client.post(&url).header("content-type", CT);
    for i in 0..100 {
        many = many.header(format!("x-h-{i}"), "v");
    }
    assert_eq!(
        json(many.body("{}").send().await.unwrap()).await,
        (431, "headers_too_large".into())
    );
    let big = client
        .post(&url)
        .header("content-type", CT)
        .header("x-big", "v".repeat(20_000));
    assert_eq!(
        json(big.body("{}").send().await.unwrap()).await,
        (431, "headers_too_large".into())
    );
    // A declared length over the limit is refused before any of the body is
    // read (a client still writing it may see its pipe break, so the body
    // is not sent here).
    let (status, answer) = common::declared_post(agent.didcomm, 2 << 20).await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
    // Without a Content-Length (chunked), the limit holds while reading.
    let (status, answer) = chunked_post(agent.didcomm, 3 << 20).await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
    assert_eq!(
        json(client.get(&url).send().await.unwrap()).await,
        (405, "method_not_allowed".into())
    );
    let elsewhere = format!("http://{}/admin", agent.didcomm);
    assert_eq!(
        json(client.get(&elsewhere).send().await.unwrap()).await,
        (404, "not_found".into())
    );
    let (status, err) = post(&agent, "application/didcomm-signed+json", "{}").await;
    assert_eq!(
        (status, err["error"].as_str()),
        (415, Some("unsupported_media_type"))
    );
}

/// Posts `total` bytes in 64 KiB chunks with no length announced, by
/// hand; returns the status and the answer's text.
async fn chunked_post(addr: std::net::SocketAddr, total: usize) -> (u16, String) {
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /didcomm HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {CT}\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..total.div_ceil(chunk.len()) {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        // The server may answer and close before we are done.
        if tcp.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = tcp.write_all(b"0\r\n\r\n").await;
    common::answer_of(tcp).await
}
