//! The DIDComm HTTP transport: `POST /didcomm` answers 202 once the message
//! is durably in the inbox, a 4xx naming the problem otherwise.

use axum::Router;
use axum::body::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::limits::RateLimiter;
use super::{ENCRYPTED_MEDIA_TYPE, EnvelopeError, Transport, inbox};
use crate::error::Error;

pub async fn serve(transport: Transport, listener: TcpListener, shutdown: CancellationToken) {
    let core = &transport.core;
    let limit = core.config.didcomm.max_body_bytes;
    let limiter = Arc::new(RateLimiter::new(
        core.config.didcomm.rate_limit_per_sec,
        core.config.didcomm.rate_limit_burst,
    ));
    let app = Router::new()
        .route("/didcomm", post(receive))
        .layer(DefaultBodyLimit::max(limit))
        .with_state((transport.clone(), limiter))
        .into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "DIDComm HTTP server failed");
    }
}

async fn receive(
    State((transport, limiter)): State<(Transport, Arc<RateLimiter>)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let core = &transport.core;
    // Limits first: a refused request costs no decryption and stores nothing.
    if !limiter.admit(peer.ip()) {
        return too_many(
            "rate_limited",
            &format!(
                "more than {} messages per second from {}",
                core.config.didcomm.rate_limit_per_sec,
                peer.ip()
            ),
        );
    }

    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    if !content_type.eq_ignore_ascii_case(ENCRYPTED_MEDIA_TYPE) {
        return problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            &format!("content type must be {ENCRYPTED_MEDIA_TYPE}, got {content_type:?}"),
        );
    }
    match inbox::receive(&transport, &body).await {
        Ok(_) => StatusCode::ACCEPTED.into_response(),
        Err(Error::ResourceExhausted(why)) => too_many("inbox_full", &why),
        Err(Error::Envelope(e)) => {
            tracing::info!(error = %e, "refused inbound message");
            let (status, code) = envelope_status(&e);
            problem(status, code, &e.to_string())
        }
        Err(e) => {
            tracing::error!(error = %e, "storing inbound message failed");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        }
    }
}

fn envelope_status(e: &EnvelopeError) -> (StatusCode, &'static str) {
    match e {
        EnvelopeError::NotJson(_) => (StatusCode::BAD_REQUEST, "not_json"),
        EnvelopeError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_envelope"),
        EnvelopeError::UnknownRecipient => (StatusCode::NOT_FOUND, "unknown_recipient"),
        EnvelopeError::UnknownSender(_) => (StatusCode::BAD_REQUEST, "unknown_sender"),
        EnvelopeError::Decryption(_) => (StatusCode::BAD_REQUEST, "decryption_failed"),
        EnvelopeError::BadSignature(_) => (StatusCode::BAD_REQUEST, "bad_signature"),
        EnvelopeError::SenderMismatch(_) => (StatusCode::BAD_REQUEST, "sender_mismatch"),
        EnvelopeError::RecipientMismatch(_) => (StatusCode::BAD_REQUEST, "recipient_mismatch"),
        EnvelopeError::Expired(_) => (StatusCode::BAD_REQUEST, "expired"),
        EnvelopeError::BadPlaintext(_) => (StatusCode::BAD_REQUEST, "bad_plaintext"),
    }
}

fn too_many(code: &str, message: &str) -> Response {
    let mut r = problem(StatusCode::TOO_MANY_REQUESTS, code, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

fn problem(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": code, "message": message });
    (status, axum::Json(body)).into_response()
}
