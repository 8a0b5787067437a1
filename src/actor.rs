//! Who is acting: the control-plane token behind the request being
//! handled, set by the gRPC layer for the request's task and recorded on
//! what the request changes (`created_by` / `updated_by`).

tokio::task_local! {
    static ACTOR: String;
}

/// Runs `f` as `actor` (a token id).
pub async fn acting<F: std::future::Future>(actor: String, f: F) -> F::Output {
    ACTOR.scope(actor, f).await
}

/// The actor of this task's request; "" outside one.
pub fn current() -> String {
    ACTOR.try_with(String::clone).unwrap_or_default()
}
