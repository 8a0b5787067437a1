//! Test-only helpers. Agents come from `agentd::harness`: each test starts
//! `agentd` child processes from this build with [`start`].

#![allow(dead_code)]

use std::time::{Duration, Instant};

use affinidi_crypto::jose::key_agreement::{Curve, PrivateKeyAgreement, PublicKeyAgreement};
use affinidi_messaging_didcomm::jwe::encrypt;
use agentd::did;
use agentd::harness::{self, Clients, ProcessAgent};
use serde_json::Value;

/// How long tests wait for a connection or a record state.
pub const WAIT: Duration = Duration::from_secs(15);

/// Starts this build's `agentd` as a child process; `env` overrides config.
pub async fn start(name: &str, env: &[(&str, &str)]) -> ProcessAgent {
    ProcessAgent::start(env!("CARGO_BIN_EXE_agentd"), name, env)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Clients for `a` and `b` with their default wallets connected (`a`
/// invites), and `a`'s connection id.
pub async fn connect(a: &ProcessAgent, b: &ProcessAgent) -> (Clients, Clients, String) {
    let mut ac = a.clients().await.unwrap();
    let mut bc = b.clients().await.unwrap();
    let (connection, _) = harness::connect(&mut ac, "", &mut bc, "", WAIT)
        .await
        .unwrap();
    (ac, bc, connection.id)
}

/// A raw channel to `a`'s gRPC, for clients [`agentd::harness::Clients`]
/// does not hold (reflection, health, an API-key interceptor).
pub async fn channel(a: &ProcessAgent) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{}", a.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Clients for the agent at `addr`, or None while it is down.
pub async fn clients(addr: std::net::SocketAddr) -> Option<Clients> {
    Clients::connect(&addr.to_string()).await.ok()
}

/// Every record of `role` in the default wallet, or None if the daemon is down.
pub async fn records(
    addr: std::net::SocketAddr,
    role: agentd::rpc::proto::Role,
) -> Option<Vec<agentd::rpc::proto::CredentialRecord>> {
    let mut c = clients(addr).await?.issuance;
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_records(agentd::rpc::proto::ListRecordsRequest {
                role: role as i32,
                page: Some(agentd::rpc::proto::PageRequest {
                    page_size: 100,
                    page_token: token,
                }),
                ..Default::default()
            })
            .await
            .ok()?
            .into_inner();
        all.extend(page.records);
        if page.next_page_token.is_empty() {
            return Some(all);
        }
        token = page.next_page_token;
    }
}

/// The holder's operator: accepts every offer it sees, until told to stop.
/// Errors (the daemon is down, a record moved on) are retried next round.
pub async fn accept_offers(
    holder: std::net::SocketAddr,
    stop: tokio_util::sync::CancellationToken,
) {
    while !stop.is_cancelled() {
        if let Some(mut c) = clients(holder).await {
            let offers = c
                .holder
                .list_offers(agentd::rpc::proto::ListOffersRequest {
                    page: Some(agentd::rpc::proto::PageRequest {
                        page_size: 100,
                        page_token: String::new(),
                    }),
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner().records)
                .unwrap_or_default();
            for r in offers {
                let _ = c
                    .holder
                    .accept_offer(agentd::rpc::proto::AcceptOfferRequest {
                        record_id: r.id,
                        ..Default::default()
                    })
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `message` with `authorization: Bearer <token>`.
pub fn bearer<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// Polls `f` until it returns Some, or panics after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A peer made up by the test, packing with the DIDComm library directly.
pub struct Outsider {
    pub did: String,
    private: PrivateKeyAgreement,
}

impl Outsider {
    pub fn new() -> Self {
        Self::at("http://127.0.0.1:9/didcomm")
    }

    /// An outsider whose DID names `endpoint` as its DIDComm service.
    pub fn at(endpoint: &str) -> Self {
        let private = PrivateKeyAgreement::generate(Curve::X25519);
        let x: [u8; 32] = private.public_key().to_public_bytes().try_into().unwrap();
        let ed = ed25519_dalek::SigningKey::from_bytes(&rand::random())
            .verifying_key()
            .to_bytes();
        let did = did::create_peer2(&ed, &x, endpoint);
        Outsider { did, private }
    }

    /// The same keys behind a did:peer:2 padded with `extra` more signing
    /// keys: a DID of any size, whose document repeats it in every key id.
    pub fn padded(&self, extra: usize) -> String {
        let key = self.did.split('.').nth(1).unwrap().to_string();
        let mut did = self.did.clone();
        for _ in 0..extra {
            did.push('.');
            did.push_str(&key);
        }
        did
    }

    /// Authcrypt of `message` to `to` (its first key-agreement key).
    pub fn pack(&self, message: &Value, to: &str) -> String {
        let skid = did::resolve(&self.did).unwrap().agreement[0].kid.clone();
        self.pack_as(message, to, &skid)
    }

    /// As [`Outsider::pack`], naming any sender key id (`skid`).
    pub fn pack_as(&self, message: &Value, to: &str, skid: &str) -> String {
        let r = did::resolve(to).unwrap();
        let recipient = &r.agreement[0];
        let public = PublicKeyAgreement::from_raw_bytes(Curve::X25519, &recipient.public).unwrap();
        encrypt::authcrypt(
            message.to_string().as_bytes(),
            skid,
            &self.private,
            &[(recipient.kid.as_str(), &public)],
        )
        .unwrap()
    }
}

/// The agent's record count (read with it stopped), and the agent running again.
pub async fn count(d: &mut ProcessAgent) -> usize {
    let n = d.record_count().await.unwrap();
    d.restart().await.unwrap();
    n
}

/// An HTTP client (with the process's TLS provider installed).
pub fn http() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

pub async fn post(
    d: &ProcessAgent,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let r = http()
        .build()
        .unwrap()
        .post(format!("http://{}/didcomm", d.didcomm))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub const CT: &str = "application/didcomm-encrypted+json";

/// A POST that declares `length` bytes of body and sends none; the answer.
pub async fn declared_post(addr: std::net::SocketAddr, length: usize) -> (u16, String) {
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /didcomm HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {CT}\r\ncontent-length: {length}\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    answer_of(tcp).await
}

/// The status and text of the answer on `tcp`, read until it closes (5 s at most).
pub async fn answer_of(mut tcp: tokio::net::TcpStream) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A new invitation of `agent`: our DID in it, the invitation, its URL.
pub async fn open_invitation(agent: &ProcessAgent) -> (String, Value, String) {
    let inv = agent
        .clients()
        .await
        .unwrap()
        .connections
        .create_invitation(agentd::rpc::proto::CreateInvitationRequest::default())
        .await
        .unwrap()
        .into_inner();
    let invitation: Value = serde_json::from_str(&inv.invitation_json).unwrap();
    let ours = invitation["from"].as_str().unwrap().to_string();
    (ours, invitation, inv.invitation_url)
}

/// Creates wallet `id` (labelled the same) through `c`.
pub async fn create_wallet(c: &Clients, id: &str) {
    c.wallets
        .clone()
        .create_wallet(agentd::rpc::proto::CreateWalletRequest {
            id: id.into(),
            label: id.into(),
        })
        .await
        .unwrap();
}

/// One automatic issuance of `{"name": "Alice"}` from `ic` to `hc` over the
/// connection `connection_id` (`ic`'s side), through to the holder holding
/// it; returns the thread id.
pub async fn issue_one(ic: &Clients, hc: &Clients, connection_id: String) -> String {
    let offer = ic
        .issuance
        .clone()
        .create_offer(agentd::rpc::proto::CreateOfferRequest {
            connection_id,
            claims_json: serde_json::json!({"name": "Alice"}).to_string(),
            automatic_issuance: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    accept_until_held(hc, &offer.thid).await;
    offer.thid
}

/// Accepts the offer of thread `thid` on `hc` (its default wallet) once it
/// has arrived, waits for the credential, and returns it.
pub async fn accept_until_held(hc: &Clients, thid: &str) -> agentd::rpc::proto::Credential {
    use agentd::rpc::proto::{
        AcceptOfferRequest, GetCredentialRequest, GetRecordRequest, RecordState,
    };
    let mut hc = hc.clone();
    let received = harness::wait_for_state(&mut hc, "", thid, RecordState::OfferReceived, WAIT)
        .await
        .unwrap();
    let accepted = hc
        .holder
        .accept_offer(AcceptOfferRequest {
            record_id: received.record_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    harness::wait_for_state(&mut hc, "", thid, RecordState::CredentialReceived, WAIT)
        .await
        .unwrap();
    let record = hc
        .issuance
        .get_record(GetRecordRequest {
            record_id: accepted.id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    hc.holder
        .get_credential(GetCredentialRequest {
            credential_id: record.credential_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// The credential type the issuance tests offer.
pub const DEGREE: &str = "UniversityDegreeCredential";

/// Claims of a university degree.
pub fn claims() -> String {
    r#"{"name":"Alice Example","degree":{"type":"BachelorDegree","name":"Computer Science"}}"#
        .into()
}

/// An offer of a degree on `connection_id`, valid an hour.
pub fn offer(connection_id: &str, automatic: bool) -> agentd::rpc::proto::CreateOfferRequest {
    agentd::rpc::proto::CreateOfferRequest {
        connection_id: connection_id.into(),
        claims_json: claims(),
        types: vec![DEGREE.into()],
        validity_period_secs: 3600,
        automatic_issuance: automatic,
        ..Default::default()
    }
}

/// The record of thread `thid` in `d`'s default wallet, if any.
pub async fn by_thid(d: &Clients, thid: &str) -> Option<agentd::rpc::proto::CredentialRecord> {
    d.issuance
        .clone()
        .list_records(agentd::rpc::proto::ListRecordsRequest {
            thid: thid.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records
        .pop()
}

/// Polls until the record of thread `thid` is in state `want` (20 s at most).
pub async fn wait_state(
    d: &Clients,
    thid: &str,
    want: agentd::rpc::proto::RecordState,
) -> agentd::rpc::proto::CredentialRecord {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = by_thid(d, thid).await;
        match r {
            Some(r) if r.state == want as i32 => return r,
            r if std::time::Instant::now() > deadline => {
                panic!("timed out waiting for {want:?} on {thid}; the record is {r:#?}")
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

/// Collects every event of a daemon from the start, in the background.
/// A JSON Schema for membership claims: a name and a level from 1 to 5, nothing else.
pub fn schema() -> serde_json::Value {
    serde_json::json!({
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
