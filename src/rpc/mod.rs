//! The gRPC control plane (`agent.v1`), with standard health and reflection.
//! Library errors become `tonic::Status` here and only here ([`status`]).

mod admin;
mod auth;
mod connection;
mod did;
mod events;
mod holder;
mod issuance;
mod query;
mod template;
mod token;
mod verifier;
mod wallet;

pub mod proto {
    tonic::include_proto!("agent.v1");
    /// Encoded descriptors of `agent.v1`, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/agent_v1_descriptor.bin"));
}

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::metadata::MetadataValue;
use tonic::transport::ServerTlsConfig;
use tonic::transport::server::TcpIncoming;

use crate::Core;
use crate::error::Error;
use crate::protocols::Protocols;
use crate::store::Store;
use crate::verify::Verifier;
use proto::admin_service_server::AdminServiceServer;
use proto::connection_service_server::ConnectionServiceServer;
use proto::did_service_server::DidServiceServer;
use proto::event_service_server::EventServiceServer;
use proto::holder_service_server::HolderServiceServer;
use proto::issuance_service_server::IssuanceServiceServer;
use proto::template_service_server::TemplateServiceServer;
use proto::token_service_server::TokenServiceServer;
use proto::verifier_service_server::VerifierServiceServer;
use proto::wallet_service_server::WalletServiceServer;

/// Serves the control plane on `listener`, over TLS when `tls` is given,
/// until `shutdown`.
pub async fn serve(
    core: Core,
    protocols: Protocols,
    verifier: Verifier,
    listener: TcpListener,
    tls: Option<ServerTlsConfig>,
    shutdown: CancellationToken,
) {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<WalletServiceServer<wallet::Wallets>>()
        .await;
    health.set_serving::<DidServiceServer<did::Dids>>().await;
    health
        .set_serving::<ConnectionServiceServer<connection::Connections>>()
        .await;
    health
        .set_serving::<IssuanceServiceServer<issuance::Issuance>>()
        .await;
    health
        .set_serving::<HolderServiceServer<holder::Holder>>()
        .await;
    health
        .set_serving::<EventServiceServer<events::Events>>()
        .await;
    health
        .set_serving::<VerifierServiceServer<verifier::Verification>>()
        .await;
    health
        .set_serving::<TemplateServiceServer<template::Templates>>()
        .await;
    health
        .set_serving::<AdminServiceServer<admin::Admin>>()
        .await;
    // v1alpha too: older grpcurl, Postman and evans speak only that.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .expect("descriptor sets are valid");
    let reflection = reflection().build_v1().expect("descriptor sets are valid");
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        // The files were checked at load with the same provider, so this
        // fails only if tonic disagrees with that check.
        server = match server.tls_config(tls) {
            Ok(server) => server,
            Err(e) => {
                tracing::error!(error = %e, "gRPC TLS setup failed");
                return;
            }
        };
    }
    let result = server
        .layer(Measured {
            metrics: core.metrics.clone(),
        })
        .layer(DurableAnswers {
            store: core.store.clone(),
        })
        .layer(auth::Authorize::new(&core))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(AdminServiceServer::new(admin::Admin(core.clone())))
        .add_service(WalletServiceServer::new(wallet::Wallets(core.clone())))
        .add_service(TokenServiceServer::new(token::Tokens(core.clone())))
        .add_service(DidServiceServer::new(did::Dids(core.clone())))
        .add_service(ConnectionServiceServer::new(connection::Connections(
            core.clone(),
        )))
        .add_service(IssuanceServiceServer::new(issuance::Issuance(
            core.clone(),
            protocols.issuance.clone(),
        )))
        .add_service(HolderServiceServer::new(holder::Holder(
            core.clone(),
            protocols.issuance,
            verifier.clone(),
        )))
        .add_service(TemplateServiceServer::new(template::Templates(
            core.clone(),
        )))
        .add_service(VerifierServiceServer::new(verifier::Verification(
            core.clone(),
            verifier,
        )))
        .add_service(EventServiceServer::new(events::Events(
            core,
            shutdown.clone(),
        )))
        // Nagle's algorithm plus the client's delayed ACK held every unary
        // response back ~40 ms (headers, data and trailers are separate writes).
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled(),
        )
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "gRPC server failed");
    }
}

/// Every answer leaves only once what it may show is durable: a read that
/// saw a commit not yet flushed (an inbound message being taken in, say)
/// waits for that flush, so no client ever sees what a `kill -9` could
/// undo. With nothing written since the last flush it costs one idle sled
/// flush (tens of microseconds).
#[derive(Clone)]
struct DurableAnswers {
    store: Store,
}

impl<S> tower::Layer<S> for DurableAnswers {
    type Service = Durable<S>;

    fn layer(&self, inner: S) -> Durable<S> {
        Durable {
            inner,
            store: self.store.clone(),
        }
    }
}

#[derive(Clone)]
struct Durable<S> {
    inner: S,
    store: Store,
}

type Answer = tonic::codegen::http::Response<tonic::body::Body>;

impl<S, R> tower::Service<R> for Durable<S>
where
    S: tower::Service<R, Response = Answer>,
    S::Future: Send + 'static,
{
    type Response = Answer;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let answer = self.inner.call(request);
        let store = self.store.clone();
        Box::pin(async move {
            let response = answer.await?;
            match store.durable().await {
                Ok(_) => Ok(response),
                Err(e) => Ok(status(e).into_http()),
            }
        })
    }
}

/// Counts each call by method and status code, and times it to the
/// answer's headers (a stream's whole life is not its latency).
#[derive(Clone)]
struct Measured {
    metrics: crate::metrics::Metrics,
}

impl<S> tower::Layer<S> for Measured {
    type Service = Measure<S>;

    fn layer(&self, inner: S) -> Measure<S> {
        Measure {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
struct Measure<S> {
    inner: S,
    metrics: crate::metrics::Metrics,
}

impl<S, B> tower::Service<tonic::codegen::http::Request<B>> for Measure<S>
where
    S: tower::Service<tonic::codegen::http::Request<B>, Response = Answer>,
    S::Future: Send + 'static,
{
    type Response = Answer;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: tonic::codegen::http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_string();
        let started = std::time::Instant::now();
        let answer = self.inner.call(request);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let response = answer.await?;
            // An error answers in the headers (trailers-only); a success
            // says OK in the trailers, after the body.
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map_or(tonic::Code::Ok, tonic::Code::from);
            metrics.grpc(&method, &format!("{code:?}"), started.elapsed());
            Ok(response)
        })
    }
}

fn with_reason(mut status: Status, reason: &'static str) -> Status {
    status
        .metadata_mut()
        .insert("x-agentd-reason", MetadataValue::from_static(reason));
    status
}

/// Maps a library error to a gRPC status with a machine-readable reason in
/// the `x-agentd-reason` metadata. Internal details are logged, not returned.
pub fn status(e: Error) -> Status {
    use tonic::Code;
    let (code, reason) = match &e {
        Error::InvalidArgument(_) => (Code::InvalidArgument, "INVALID_ARGUMENT"),
        Error::NotFound { .. } => (Code::NotFound, "NOT_FOUND"),
        Error::AlreadyExists(_) => (Code::AlreadyExists, "ALREADY_EXISTS"),
        Error::FailedPrecondition(_) => (Code::FailedPrecondition, "FAILED_PRECONDITION"),
        Error::PermissionDenied(_) => (Code::PermissionDenied, "PERMISSION_DENIED"),
        Error::Unauthenticated(_) => (Code::Unauthenticated, "UNAUTHENTICATED"),
        Error::Unsupported(_) => (Code::Unimplemented, "UNSUPPORTED"),
        Error::DeadlineExceeded(_) => (Code::DeadlineExceeded, "DEADLINE_EXCEEDED"),
        Error::ResourceExhausted(_) => (Code::ResourceExhausted, "RESOURCE_EXHAUSTED"),
        Error::Did(_) => (Code::InvalidArgument, "INVALID_DID"),
        Error::Envelope(_) => (Code::InvalidArgument, "INVALID_MESSAGE"),
        Error::Storage(_) | Error::Crypto(_) | Error::Internal(_) => (Code::Internal, "INTERNAL"),
    };
    let message = if code == Code::Internal {
        tracing::error!(error = %e, "internal error");
        "internal error (see the daemon log)".to_string()
    } else {
        e.to_string()
    };
    with_reason(Status::new(code, message), reason)
}

/// Page size from a request, checked against the maximum.
fn page(p: &Option<proto::PageRequest>) -> Result<(u32, &str), Status> {
    let (size, token) = p
        .as_ref()
        .map(|p| (p.page_size, p.page_token.as_str()))
        .unwrap_or((0, ""));
    // AIP-158: a larger page is brought down to the maximum, not refused.
    Ok((size.min(crate::store::MAX_PAGE as u32), token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::wallet_service_client::WalletServiceClient;

    /// A read that sees a commit not yet flushed answers only after the flush.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_answer_waits_for_the_flush_of_what_it_shows() {
        let t = crate::testing::core();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(
            t.core.clone(),
            t.protocols.clone(),
            crate::verify::Verifier::new(t.core.clone()).unwrap(),
            listener,
            None,
            shutdown.clone(),
        ));
        let mut client = WalletServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let held = t.core.store.hold_flushes().await;
        crate::wallet::create_wallet(&t.core, "fresh", "not yet durable").unwrap();
        let get = client.get_wallet(proto::GetWalletRequest { id: "fresh".into() });
        tokio::pin!(get);
        let early = tokio::time::timeout(std::time::Duration::from_millis(300), &mut get).await;
        assert!(early.is_err(), "answered before the flush: {early:?}");
        drop(held);
        let wallet = get.await.unwrap().into_inner();
        assert_eq!(wallet.label, "not yet durable");
        shutdown.cancel();
    }
}
