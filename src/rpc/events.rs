use std::pin::Pin;

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::issuance::{role_from_proto, role_to_proto, state_from_proto, state_to_proto};
use super::proto::{self, event_service_server::EventService};
use super::status;
use tokio_util::sync::CancellationToken;

use crate::Core;
use crate::events::Filter;
use crate::store::RecordEvent;

/// Streams end when the daemon shuts down, so they do not hold it open.
pub struct Events(pub Core, pub CancellationToken);

fn to_proto(e: RecordEvent) -> proto::RecordEvent {
    proto::RecordEvent {
        seq: e.seq,
        wallet_id: e.wallet_id,
        record_id: e.record_id,
        thid: e.thid,
        role: role_to_proto(e.role) as i32,
        old_state: e.old_state.map_or(0, |s| state_to_proto(s) as i32),
        new_state: state_to_proto(e.new_state) as i32,
        reason: e.reason.unwrap_or_default(),
        at_ms: e.at_ms,
        ack_received: e.ack_received,
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::RecordEvent, Status>> + Send>>;

#[tonic::async_trait]
impl EventService for Events {
    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<proto::SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let r = request.into_inner();
        // An admin with no wallet hears every wallet; anyone else only the
        // token's own.
        let wallet = match super::auth::caller() {
            c if c.is_admin() && r.wallet_id.is_empty() => None,
            _ => Some(super::auth::wallet(&self.0, &r.wallet_id)?),
        };
        let filter = Filter {
            wallet_id: wallet,
            role: role_from_proto(r.role)?,
            state: state_from_proto(r.state)?,
            thid: (!r.thid.is_empty()).then_some(r.thid),
        };
        let after = (r.from_start || r.after_seq > 0).then_some(r.after_seq);
        let stream = self
            .0
            .events
            .subscribe(self.0.store.clone(), filter, after, self.1.clone())
            .map(|item| item.map(to_proto).map_err(status));
        Ok(Response::new(Box::pin(stream)))
    }
}
