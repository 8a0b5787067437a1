//! The DIDComm HTTP transport: `POST /didcomm` answers 202 once the message
//! is durably taken in, a JSON 4xx naming the problem otherwise. The
//! endpoint faces the internet: every limit that needs no decoding (rate,
//! requests in flight per address, header count and size, body size, media
//! type) is checked before the body is read, and the connection loop is our
//! own so that header limits answer in JSON too.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::Service;

use super::inbox::{self, Receipt};
use super::{ENCRYPTED_MEDIA_TYPE, EnvelopeError, Transport};
use crate::error::{Error, clip};
use crate::ratelimit::{Rate, RateLimiter};

/// The HTTP layer refuses (with hyper's own, empty 431) only past this
/// many times our header limits; up to there we answer in JSON.
const HARD_HEADER_FACTOR: usize = 4;
/// Most of a refusal's message repeated in an answer.
const SHOWN: usize = 300;

struct Front {
    transport: Transport,
    limiter: RateLimiter<std::net::IpAddr>,
    in_flight: InFlight,
}

pub async fn serve(transport: Transport, listener: TcpListener, shutdown: CancellationToken) {
    let config = &transport.core.config.didcomm;
    let limits = config.limits.clone();
    let front = Arc::new(Front {
        limiter: RateLimiter::new(Rate {
            per_sec: config.rate_limit_per_sec,
            burst: config.rate_limit_burst,
        }),
        in_flight: InFlight::new(limits.max_in_flight_per_address),
        transport: transport.clone(),
    });
    let app = Router::new()
        .route("/didcomm", post(receive).fallback(wrong_method))
        .fallback(not_found)
        .with_state(front)
        .merge(crate::status::routes(transport.core.clone()))
        .merge(crate::templates::routes(transport.core.clone()));
    let mut http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
        .max_headers(limits.max_header_count * HARD_HEADER_FACTOR)
        .max_buf_size((limits.max_header_bytes * HARD_HEADER_FACTOR).max(8192));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a DIDComm connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<_>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().call(request.map(Body::new))
        });
        let connection = graceful.watch(
            http.serve_connection(TokioIo::new(stream), service)
                .into_owned(),
        );
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "DIDComm connection ended");
            }
        });
    }
    // In-flight requests finish; connections idle past this are dropped.
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
    }
}

async fn receive(
    State(front): State<Arc<Front>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (response, outcome) = answer(&front, peer, headers, body).await;
    front.transport.core.metrics.inbound(outcome);
    response
}

/// The answer to one `POST /didcomm`, and its outcome for the metrics.
async fn answer(
    front: &Front,
    peer: SocketAddr,
    headers: HeaderMap,
    body: Body,
) -> (Response, &'static str) {
    let transport = &front.transport;
    let config = &transport.core.config.didcomm;
    // Limits first: a refused request costs no decryption and stores nothing.
    if !front.limiter.admit(&peer.ip()) {
        let why = format!(
            "more than {} messages per second from {}",
            config.rate_limit_per_sec,
            peer.ip()
        );
        return (too_many("rate_limited", &why), "rate_limited");
    }
    let Some(_slot) = front.in_flight.enter(peer.ip()) else {
        let why = format!(
            "more than {} requests from {} at once",
            config.limits.max_in_flight_per_address,
            peer.ip()
        );
        return (too_many("too_many_in_flight", &why), "too_many_in_flight");
    };
    if let Some(refusal) = check_headers(&headers, &config.limits) {
        return (refusal, "bad_headers");
    }
    let max = config.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return (body_too_large(max), "too_large");
    }
    let Ok(body) = axum::body::to_bytes(body, max).await else {
        return (body_too_large(max), "too_large");
    };
    match inbox::receive(transport, body).await {
        Ok(Receipt::Stored) => (StatusCode::ACCEPTED.into_response(), "accepted"),
        Ok(Receipt::Duplicate) => (StatusCode::ACCEPTED.into_response(), "duplicate"),
        Err(Error::ResourceExhausted(why)) => (too_many("inbox_full", &why), "inbox_full"),
        Err(Error::Envelope(e)) => {
            let message = clip(&e.to_string(), SHOWN);
            tracing::info!(%peer, error = %message, "refused inbound message");
            let (status, code) = envelope_status(&e);
            (problem(status, code, &message), code)
        }
        Err(e) => {
            tracing::error!(error = %e, "storing inbound message failed");
            let internal = problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            );
            (internal, "internal")
        }
    }
}

/// Header count and size, then media type: 431 and 415 in JSON.
fn check_headers(headers: &HeaderMap, limits: &crate::config::Limits) -> Option<Response> {
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers.len() > limits.max_header_count || bytes > limits.max_header_bytes {
        return Some(problem(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            &format!(
                "{} headers of {bytes} bytes; at most {} headers of {} bytes",
                headers.len(),
                limits.max_header_count,
                limits.max_header_bytes
            ),
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    (!content_type.eq_ignore_ascii_case(ENCRYPTED_MEDIA_TYPE)).then(|| {
        problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            &format!(
                "content type must be {ENCRYPTED_MEDIA_TYPE}, got {:?}",
                clip(content_type, 64)
            ),
        )
    })
}

fn body_too_large(max: usize) -> Response {
    problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        &format!("the body is over didcomm.max_body_bytes ({max} bytes)"),
    )
}

async fn wrong_method() -> Response {
    problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "POST a DIDComm message here",
    )
}

async fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not_found",
        "nothing here; DIDComm messages go to POST /didcomm",
    )
}

fn envelope_status(e: &EnvelopeError) -> (StatusCode, &'static str) {
    use EnvelopeError as E;
    match e {
        E::NotJson(_) => (StatusCode::BAD_REQUEST, "not_json"),
        E::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_envelope"),
        E::NotEncrypted => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_encrypted"),
        E::Anonymous => (StatusCode::FORBIDDEN, "anonymous"),
        E::NotAPeer(_) => (StatusCode::FORBIDDEN, "not_a_peer"),
        E::Limit(_) => (StatusCode::BAD_REQUEST, "over_limit"),
        E::UnknownRecipient => (StatusCode::NOT_FOUND, "unknown_recipient"),
        E::UnknownSender(_) => (StatusCode::BAD_REQUEST, "unknown_sender"),
        E::Decryption(_) => (StatusCode::BAD_REQUEST, "decryption_failed"),
        E::BadSignature(_) => (StatusCode::BAD_REQUEST, "bad_signature"),
        E::SenderMismatch(_) => (StatusCode::BAD_REQUEST, "sender_mismatch"),
        E::RecipientMismatch(_) => (StatusCode::BAD_REQUEST, "recipient_mismatch"),
        E::Expired(_) => (StatusCode::BAD_REQUEST, "expired"),
        E::Stale(_) => (StatusCode::BAD_REQUEST, "stale"),
        E::FromTheFuture(_) => (StatusCode::BAD_REQUEST, "from_the_future"),
        E::BadPlaintext(_) => (StatusCode::BAD_REQUEST, "bad_plaintext"),
    }
}

fn too_many(code: &str, message: &str) -> Response {
    let mut r = problem(StatusCode::TOO_MANY_REQUESTS, code, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

/// A JSON refusal, `{"error": code, "message": …}`, as every route of
/// the listener answers.
pub(crate) fn problem(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": code, "message": message });
    (status, axum::Json(body)).into_response()
}

/// Requests being processed, per remote address.
struct InFlight {
    max: usize,
    by_address: Mutex<HashMap<IpAddr, usize>>,
}

/// A request's place in [`InFlight`], given back when dropped.
struct Slot<'a> {
    in_flight: &'a InFlight,
    address: IpAddr,
}

impl InFlight {
    fn new(max: usize) -> Self {
        InFlight {
            max,
            by_address: Mutex::new(HashMap::new()),
        }
    }

    fn enter(&self, address: IpAddr) -> Option<Slot<'_>> {
        let mut by = self.by_address.lock().expect("in flight");
        let n = by.entry(address).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot {
            in_flight: self,
            address,
        })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut by = self.in_flight.by_address.lock().expect("in flight");
        if let Some(n) = by.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                by.remove(&self.address);
            }
        }
    }
}
