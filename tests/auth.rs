//! Tenants cannot see each other: every RPC of `agent.v1`, called with a
//! token of each role, in its own wallet and in another, is allowed or
//! refused as the roles say, and a refused call changes nothing.

mod common;

use bytes::{Buf, BufMut};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use agentd::rpc::proto::{self, token_service_client::TokenServiceClient};
use common::bearer;

const ADMIN: &str = "agentd_test-admin-token-0123456789abcdefghijklmnop";

/// What each role may call, written from the README's role table (not from
/// the code's): a method in no group fails the test.
const ADMIN_ONLY: &[&str] = &[
    "CreateWallet",
    "ListWallets",
    "CreateToken",
    "ListTokens",
    "RevokeToken",
    "IssueCustodial",
    "Backup",
];
const ISSUER_ACTS: &[&str] = &[
    "CreateOffer",
    "CreateOffers",
    "IssueCredential",
    "RevokeCredential",
    "RevokeCredentials",
    "CreateTemplate",
    "ArchiveTemplate",
    "WithdrawOffer",
    "UpdateDraft",
    "SendOffer",
    "DiscardDraft",
    "CreateClaimLink",
    "DeleteRecordData",
];
const HOLDER_ACTS: &[&str] = &[
    "AcceptOffer",
    "RejectOffer",
    "DeleteCredential",
    "MatchCredential",
    "RefreshStatus",
];
const HOLDER_READS: &[&str] = &["ListOffers", "ListCredentials", "GetCredential"];
const ISSUER_READS: &[&str] = &["GetClaimLink"];
const ISSUER_OR_HOLDER_ACTS: &[&str] = &[
    "CreateDid",
    "CreateInvitation",
    "AcceptInvitation",
    "Ping",
    "DiscoverFeatures",
    "AddTrustedIssuer",
    "RemoveTrustedIssuer",
];
const EVERYONE_READS: &[&str] = &[
    "GetWallet",
    "ListDids",
    "ResolveDid",
    "ListConnections",
    "GetConnection",
    "ListRecords",
    "GetRecord",
    "Subscribe",
    "VerifyCredential",
    "ListTrustedIssuers",
    "GetTemplate",
    "ListTemplates",
];
/// Not about a wallet: naming another one in field 1 is not a trespass.
const UNSCOPED: &[&str] = &["ResolveDid"];

fn allowed(method: &str, role: &str) -> bool {
    let is = |group: &[&str]| group.contains(&method);
    let known = [
        ADMIN_ONLY,
        ISSUER_ACTS,
        HOLDER_ACTS,
        HOLDER_READS,
        ISSUER_READS,
        ISSUER_OR_HOLDER_ACTS,
        EVERYONE_READS,
    ]
    .iter()
    .any(|g| is(g));
    assert!(known, "{method} is in no role group of this test");
    match role {
        "admin" => true,
        "issuer" => {
            is(ISSUER_ACTS) || is(ISSUER_READS) || is(ISSUER_OR_HOLDER_ACTS) || is(EVERYONE_READS)
        }
        "holder" => {
            is(HOLDER_ACTS) || is(HOLDER_READS) || is(ISSUER_OR_HOLDER_ACTS) || is(EVERYONE_READS)
        }
        "auditor" => is(HOLDER_READS) || is(ISSUER_READS) || is(EVERYONE_READS),
        _ => unreachable!(),
    }
}

/// Request and response bodies as raw protobuf bytes, so one loop can call
/// every method.
#[derive(Default, Clone)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let bytes = buf.copy_to_bytes(buf.remaining()).to_vec();
        Ok(Some(bytes))
    }
}

/// Every method of `agent.v1`: (path, name, server-streaming).
fn methods() -> Vec<(String, String, bool)> {
    let set = prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut all = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for m in &service.method {
                let path = format!("/{}.{}/{}", file.package(), service.name(), m.name());
                all.push((path, m.name().to_string(), m.server_streaming()));
            }
        }
    }
    all
}

/// Calls `path` with a body whose field 1 (the wallet in every
/// wallet-scoped request) is `wallet`; the status code of the answer.
async fn call(channel: &Channel, token: &str, path: &str, streaming: bool, wallet: &str) -> Code {
    let mut body = Vec::new();
    body.put_u8(0x0a);
    body.put_u8(wallet.len() as u8);
    body.put_slice(wallet.as_bytes());
    let mut request = Request::new(body);
    if !token.is_empty() {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let path = path.parse().unwrap();
    let answer = if streaming {
        grpc.server_streaming(request, path, Raw).await.map(|_| ())
    } else {
        grpc.unary(request, path, Raw).await.map(|_| ())
    };
    answer.err().map_or(Code::Ok, |s| s.code())
}

async fn token(channel: &Channel, wallet: &str, role: proto::TokenRole) -> String {
    TokenServiceClient::new(channel.clone())
        .create_token(bearer(
            ADMIN,
            proto::CreateTokenRequest {
                wallet_id: wallet.into(),
                role: role as i32,
                label: format!("{role:?}"),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .secret
}

/// What wallet `w` holds, as its admin sees it.
async fn contents(channel: &Channel, w: &str) -> (usize, usize, usize) {
    let mut dids = proto::did_service_client::DidServiceClient::new(channel.clone());
    let mut conns = proto::connection_service_client::ConnectionServiceClient::new(channel.clone());
    let mut records = proto::issuance_service_client::IssuanceServiceClient::new(channel.clone());
    let d = dids
        .list_dids(bearer(
            ADMIN,
            proto::ListDidsRequest {
                wallet_id: w.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .dids
        .len();
    let c = conns
        .list_connections(bearer(
            ADMIN,
            proto::ListConnectionsRequest {
                wallet_id: w.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .connections
        .len();
    let r = records
        .list_records(bearer(
            ADMIN,
            proto::ListRecordsRequest {
                wallet_id: w.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .records
        .len();
    (d, c, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_with_every_role_in_its_own_wallet_and_another() {
    let d = common::start(
        "auth",
        &[
            ("AGENTD_GRPC_AUTH", "tokens"),
            ("AGENTD_ADMIN_TOKEN", ADMIN),
        ],
    )
    .await;
    let channel = common::channel(&d).await;
    let mut wallets = proto::wallet_service_client::WalletServiceClient::new(channel.clone());
    for id in ["wa", "wb"] {
        wallets
            .create_wallet(bearer(
                ADMIN,
                proto::CreateWalletRequest {
                    id: id.into(),
                    label: id.into(),
                },
            ))
            .await
            .unwrap();
    }
    // The other wallet holds something a trespasser could change.
    let mut dids = proto::did_service_client::DidServiceClient::new(channel.clone());
    dids.create_did(bearer(
        ADMIN,
        proto::CreateDidRequest {
            wallet_id: "wb".into(),
            method: proto::DidMethod::Key as i32,
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    let before = contents(&channel, "wb").await;

    let methods = methods();
    assert!(methods.len() >= 28, "{} methods", methods.len());
    let mut checked = 0;
    for (role, kind) in [
        ("issuer", proto::TokenRole::Issuer),
        ("holder", proto::TokenRole::Holder),
        ("auditor", proto::TokenRole::Auditor),
        ("admin", proto::TokenRole::Admin),
    ] {
        let secret = token(&channel, "wa", kind).await;
        for (path, name, streaming) in &methods {
            for wallet in ["wa", "wb"] {
                if role == "admin" && wallet == "wb" {
                    continue; // an admin may change any wallet: not a trespass
                }
                let trespass =
                    wallet == "wb" && role != "admin" && !UNSCOPED.contains(&name.as_str());
                let code = call(&channel, &secret, path, *streaming, wallet).await;
                if !allowed(name, role) || trespass {
                    assert_eq!(code, Code::PermissionDenied, "{role} {name} in {wallet}");
                } else {
                    assert!(
                        !matches!(code, Code::PermissionDenied | Code::Unauthenticated),
                        "{role} {name} in {wallet}: {code:?}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert_eq!(
        contents(&channel, "wb").await,
        before,
        "a refused call changed wallet wb"
    );
    println!(
        "auth: {checked} calls checked over {} methods",
        methods.len()
    );

    // No token, a wrong one, a revoked one: unauthenticated. Health stays open.
    let (path, _, _) = methods.iter().find(|(_, n, _)| n == "ListDids").unwrap();
    assert_eq!(
        call(&channel, "", path, false, "wa").await,
        Code::Unauthenticated
    );
    assert_eq!(
        call(&channel, "agentd_nope", path, false, "wa").await,
        Code::Unauthenticated
    );
    let issuer = token(&channel, "wa", proto::TokenRole::Issuer).await;
    assert_eq!(call(&channel, &issuer, path, false, "wa").await, Code::Ok);
    let mut tokens = TokenServiceClient::new(channel.clone());
    let newest_first = proto::Query {
        filter: None,
        sort: vec![proto::SortKey {
            field: "created_at".into(),
            descending: true,
        }],
    };
    let listed = tokens
        .list_tokens(bearer(
            ADMIN,
            proto::ListTokensRequest {
                wallet_id: "wa".into(),
                page: Some(proto::PageRequest {
                    page_size: 1,
                    page_token: String::new(),
                }),
                query: Some(newest_first),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .tokens;
    let newest = &listed[0];
    assert_eq!(newest.role, proto::TokenRole::Issuer as i32);
    tokens
        .revoke_token(bearer(
            ADMIN,
            proto::RevokeTokenRequest {
                id: newest.id.clone(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        call(&channel, &issuer, path, false, "wa").await,
        Code::Unauthenticated
    );
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();
}

/// An auditor reads records and credentials without their claims or JWTs,
/// and cannot have their status checked (that writes); the holder's own
/// token sees them and can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_see_no_claims() {
    let d = common::start(
        "auditor",
        &[
            ("AGENTD_GRPC_AUTH", "tokens"),
            ("AGENTD_ADMIN_TOKEN", ADMIN),
        ],
    )
    .await;
    let channel = common::channel(&d).await;
    proto::wallet_service_client::WalletServiceClient::new(channel.clone())
        .create_wallet(bearer(
            ADMIN,
            proto::CreateWalletRequest {
                id: "h".into(),
                label: String::new(),
            },
        ))
        .await
        .unwrap();
    proto::issuance_service_client::IssuanceServiceClient::new(channel.clone())
        .issue_custodial(bearer(
            ADMIN,
            proto::IssueCustodialRequest {
                holder_wallet_id: "h".into(),
                claims_json: r#"{"secret":"s3cret"}"#.into(),
                types: vec!["T".into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    for (role, sees) in [
        (proto::TokenRole::Holder, true),
        (proto::TokenRole::Auditor, false),
    ] {
        let t = token(&channel, "h", role).await;
        let creds = proto::holder_service_client::HolderServiceClient::new(channel.clone())
            .list_credentials(bearer(&t, proto::ListCredentialsRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .credentials;
        assert_eq!(creds.len(), 1, "{role:?}");
        assert_eq!(creds[0].claims_json.contains("s3cret"), sees, "{role:?}");
        assert_eq!(!creds[0].jwt.is_empty(), sees, "{role:?}");
        let records = proto::issuance_service_client::IssuanceServiceClient::new(channel.clone())
            .list_records(bearer(&t, proto::ListRecordsRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .records;
        assert!(!records.is_empty());
        assert!(
            records
                .iter()
                .all(|r| r.claims_json.contains("s3cret") == sees),
            "{role:?}"
        );
        // Checking status stores the outcome: a write an auditor may not make.
        let checked = proto::holder_service_client::HolderServiceClient::new(channel.clone())
            .list_credentials(bearer(
                &t,
                proto::ListCredentialsRequest {
                    check_status: true,
                    ..Default::default()
                },
            ))
            .await;
        match checked {
            Ok(list) => {
                assert!(sees, "{role:?}");
                assert!(list.into_inner().credentials[0].status_checked_at_ms > 0);
            }
            Err(e) => {
                assert!(!sees, "{role:?}: {e:?}");
                assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
            }
        }
    }
}

/// The CLI: an admin makes a holder token (its secret printed once), the
/// holder's token (from AGENTD_TOKEN) works in its wallet and is refused in
/// another, with the reason on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_uses_tokens() {
    let d = common::start(
        "cli-auth",
        &[
            ("AGENTD_GRPC_AUTH", "tokens"),
            ("AGENTD_ADMIN_TOKEN", ADMIN),
        ],
    )
    .await;
    let cli = |token: &str, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_agentd"))
            .args(args)
            .args(["--grpc", &d.grpc.to_string(), "--json"])
            .env_remove("AGENTD_API_KEY")
            .env_remove("AGENTD_WALLET")
            .env("AGENTD_TOKEN", token)
            .output()
            .unwrap()
    };
    for id in ["mine", "theirs"] {
        assert!(
            cli(ADMIN, &["wallet", "create", "--id", id])
                .status
                .success()
        );
    }
    let made = cli(
        ADMIN,
        &["token", "create", "--wallet", "mine", "--role", "holder"],
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let made: serde_json::Value = serde_json::from_slice(&made.stdout).unwrap();
    let secret = made["secret"].as_str().unwrap();
    assert!(secret.starts_with("agentd_"), "{made}");

    let own = cli(secret, &["did", "list", "--wallet", "mine"]);
    assert!(
        own.status.success(),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
    let other = cli(secret, &["did", "list", "--wallet", "theirs"]);
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("not \"theirs\""));
    let listed = cli(ADMIN, &["token", "list"]);
    assert!(
        !String::from_utf8_lossy(&listed.stdout).contains(secret),
        "a secret listed"
    );
}

/// A token past its rate is refused with RESOURCE_EXHAUSTED, the reason
/// RATE_LIMITED and how long to wait; reads cost 1, actions 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_past_its_rate_is_told_when_to_retry() {
    let d = common::start(
        "rate",
        &[
            ("AGENTD_GRPC_AUTH", "tokens"),
            ("AGENTD_ADMIN_TOKEN", ADMIN),
        ],
    )
    .await;
    let channel = common::channel(&d).await;
    let slow = TokenServiceClient::new(channel.clone())
        .create_token(bearer(
            ADMIN,
            proto::CreateTokenRequest {
                role: proto::TokenRole::Issuer as i32,
                rate_per_sec: 3,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(slow.token.unwrap().rate_per_sec, 3);
    let mut dids = proto::did_service_client::DidServiceClient::new(channel.clone());
    // Burst 6: one action (5) and one read (1), then nothing.
    let create = || {
        bearer(
            &slow.secret,
            proto::CreateDidRequest {
                method: proto::DidMethod::Key as i32,
                ..Default::default()
            },
        )
    };
    let list = || bearer(&slow.secret, proto::ListDidsRequest::default());
    dids.create_did(create()).await.unwrap();
    dids.list_dids(list()).await.unwrap();
    let refused = dids.list_dids(list()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(
        refused.metadata().get("x-agentd-reason").unwrap(),
        "RATE_LIMITED"
    );
    let wait: u64 = refused
        .metadata()
        .get("retry-after-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 0 && wait <= 400, "{wait} ms");
    // The admin's own bucket is untouched.
    dids.list_dids(bearer(ADMIN, proto::ListDidsRequest::default()))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(wait + 50)).await;
    dids.list_dids(list()).await.unwrap();
}
