//! `GET /schemas/{template id}` on the DIDComm listener: a template's JSON
//! Schema, with `$id` its URL, for verifiers anywhere. Public by design (a
//! credential names it); a schema never changes, so it may be cached long.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::Core;
use crate::didcomm::http::problem;

/// What the listener serves under `/schemas/`; merged into its router.
pub fn routes(core: Core) -> Router {
    Router::new()
        .route("/schemas/{id}", get(answer))
        .with_state(core)
}

async fn answer(State(core): State<Core>, Path(id): Path<String>) -> Response {
    // Read, then flush: what it shows was committed, and nothing leaves
    // before it is durable.
    let found = match core.store.template_any(&id) {
        Ok(t) => core.store.durable().await.map(|_| t),
        Err(e) => Err(e),
    };
    match found {
        Ok(Some(t)) => {
            let mut schema = t.schema;
            if let Some(o) = schema.as_object_mut() {
                o.insert(
                    "$id".into(),
                    super::schema_url(&core.endpoint, &t.id).into(),
                );
            }
            (
                [
                    (header::CONTENT_TYPE, "application/schema+json"),
                    (header::CACHE_CONTROL, "public, max-age=86400, immutable"),
                ],
                schema.to_string(),
            )
                .into_response()
        }
        Ok(None) => problem(StatusCode::NOT_FOUND, "not_found", "no such schema"),
        Err(e) => {
            tracing::error!(error = %e, template = %id, "serving a schema failed");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        }
    }
}
