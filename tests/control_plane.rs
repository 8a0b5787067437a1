//! Standard gRPC health and reflection, so `grpcurl list` works with no
//! protos; reflection can be closed to callers without a token.

mod common;

use tokio_stream::StreamExt;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_services_and_health_is_serving() {
    let d = common::start("reflection", &[]).await;
    let channel = common::channel(&d).await;
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response {response:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "agent.v1.AdminService",
            "agent.v1.ConnectionService",
            "agent.v1.DidService",
            "agent.v1.EventService",
            "agent.v1.HolderService",
            "agent.v1.IssuanceService",
            "agent.v1.TemplateService",
            "agent.v1.TokenService",
            "agent.v1.VerifierService",
            "agent.v1.WalletService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
        ]
    );

    // The same through v1alpha, which older grpcurl, Postman and evans speak.
    use tonic_reflection::pb::v1alpha as alpha;
    let mut old = alpha::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let request = alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let response = old
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap();
    let Some(alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected v1alpha reflection response {response:?}");
    };
    let old_names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in names.iter().filter(|n| n.starts_with("agent.v1.")) {
        assert!(
            old_names.contains(name),
            "v1alpha lists no {name}: {old_names:?}"
        );
    }

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in ["", "agent.v1.ConnectionService", "agent.v1.IssuanceService"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
}

/// `agentd run` expected to fail at start: its exit status and stderr.
fn agentd(config: &std::path::Path, master_key: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_agentd"))
        .args(["run", "--config"])
        .arg(config)
        .env("AGENTD_MASTER_KEY", master_key)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_and_wrong_master_key_fail_the_start_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[didcomm]\nlisten = \"127.0.0.1:0\"\nmax_body = 5\n").unwrap();
    let out = agentd(&bad, &"00".repeat(32));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_body"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing written"
    );

    let mut d = common::start("wrong-key", &[]).await;
    let before = d.record_count().await.unwrap();
    let out = agentd(&d.config_path(), &"ab".repeat(32));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("master key does not match"), "{err}");
    assert!(!err.contains(&"ab".repeat(32)), "the key is never echoed");
    assert_eq!(d.record_count().await.unwrap(), before);
}

const ADMIN: &str = "agentd_test-admin-token-reflection-0123456789abcdef";

/// Reflection is open by default; `grpc.reflection_requires_token` closes
/// it to callers without a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_can_require_a_token() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest,
    };
    for closed in [false, true] {
        let agent = agentd::harness::LocalAgent::start_with("reflection", |c| {
            c.grpc.auth = "tokens".into();
            c.grpc.admin_token = Some(ADMIN.into());
            c.grpc.reflection_requires_token = closed;
        })
        .await
        .unwrap();
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", agent.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let list = |token: Option<&str>| {
            let once = tokio_stream::once(ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            });
            match token {
                Some(t) => common::bearer(t, once),
                None => tonic::Request::new(once),
            }
        };
        let mut client = ServerReflectionClient::new(channel);
        let anonymous = client.server_reflection_info(list(None)).await;
        assert_eq!(anonymous.is_ok(), !closed, "{anonymous:?}");
        if closed {
            assert_eq!(anonymous.unwrap_err().code(), tonic::Code::Unauthenticated);
        }
        assert!(
            client
                .server_reflection_info(list(Some(ADMIN)))
                .await
                .is_ok()
        );
        agent.stop().await.unwrap();
    }
}
