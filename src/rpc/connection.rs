use std::time::Duration;

use tonic::{Request, Response, Status};

use super::proto::{self, connection_service_server::ConnectionService};
use super::{page, status};
use crate::Core;
use crate::protocols::{self, connections, discover_features, trust_ping};
use crate::store::{self, ConnectionRole, ConnectionState};

pub struct Connections(pub Core);

/// Longest a call may wait for a peer's reply.
const MAX_WAIT_MS: u32 = 60_000;

fn state_to_proto(s: ConnectionState) -> proto::ConnectionState {
    match s {
        ConnectionState::InvitationSent => proto::ConnectionState::InvitationSent,
        ConnectionState::Requested => proto::ConnectionState::Requested,
        ConnectionState::Active => proto::ConnectionState::Active,
        ConnectionState::Failed => proto::ConnectionState::Failed,
    }
}

fn to_proto(c: store::Connection) -> proto::Connection {
    proto::Connection {
        id: c.id,
        wallet_id: c.wallet_id,
        state: state_to_proto(c.state) as i32,
        role: match c.role {
            ConnectionRole::Inviter => proto::ConnectionRole::Inviter,
            ConnectionRole::Invitee => proto::ConnectionRole::Invitee,
        } as i32,
        our_did: c.our_did,
        their_did: c.their_did.unwrap_or_default(),
        invitation_id: c.invitation_id,
        label: c.label,
        created_at_ms: c.created_at_ms,
        updated_at_ms: c.updated_at_ms,
        problem: c.problem.unwrap_or_default(),
    }
}

impl Connections {
    fn connection(&self, wallet_id: &str, id: &str) -> Result<store::Connection, Status> {
        let wallet = super::auth::wallet(&self.0, wallet_id)?;
        self.0.store.connection(&wallet, id).map_err(status)
    }
}

fn wait(ms: u32) -> Duration {
    Duration::from_millis(ms.min(MAX_WAIT_MS) as u64)
}

#[tonic::async_trait]
impl ConnectionService for Connections {
    async fn create_invitation(
        &self,
        request: Request<proto::CreateInvitationRequest>,
    ) -> Result<Response<proto::CreateInvitationResponse>, Status> {
        let r = request.into_inner();
        let wallet = super::auth::wallet(&self.0, &r.wallet_id)?;
        let inv = connections::create_invitation(&self.0, &wallet, &r.label, &r.goal_code, &r.goal)
            .map_err(status)?;
        Ok(Response::new(proto::CreateInvitationResponse {
            connection: Some(to_proto(inv.connection)),
            invitation_url: inv.url,
            invitation_json: inv.message.to_json(),
        }))
    }

    async fn accept_invitation(
        &self,
        request: Request<proto::AcceptInvitationRequest>,
    ) -> Result<Response<proto::Connection>, Status> {
        let r = request.into_inner();
        let wallet = super::auth::wallet(&self.0, &r.wallet_id)?;
        let c = connections::accept_invitation(&self.0, &wallet, &r.invitation_url, &r.label)
            .await
            .map_err(status)?;
        Ok(Response::new(to_proto(c)))
    }

    async fn list_connections(
        &self,
        request: Request<proto::ListConnectionsRequest>,
    ) -> Result<Response<proto::ListConnectionsResponse>, Status> {
        let r = request.into_inner();
        let wallet = super::auth::wallet(&self.0, &r.wallet_id)?;
        let (size, token) = page(&r.page)?;
        let want = proto::ConnectionState::try_from(r.state)
            .unwrap_or(proto::ConnectionState::Unspecified);
        let p = self
            .0
            .store
            .connections(&wallet, size, token, |c| {
                want == proto::ConnectionState::Unspecified || state_to_proto(c.state) == want
            })
            .map_err(status)?;
        Ok(Response::new(proto::ListConnectionsResponse {
            connections: p.items.into_iter().map(to_proto).collect(),
            next_page_token: p.next_token,
        }))
    }

    async fn get_connection(
        &self,
        request: Request<proto::GetConnectionRequest>,
    ) -> Result<Response<proto::Connection>, Status> {
        let r = request.into_inner();
        Ok(Response::new(to_proto(
            self.connection(&r.wallet_id, &r.connection_id)?,
        )))
    }

    async fn ping(
        &self,
        request: Request<proto::PingRequest>,
    ) -> Result<Response<proto::PingResponse>, Status> {
        let r = request.into_inner();
        let conn = self.connection(&r.wallet_id, &r.connection_id)?;
        let ping = trust_ping::ping(r.wait_ms > 0);
        let reply = protocols::send_and_wait(&self.0, &conn, &ping, wait(r.wait_ms))
            .await
            .map_err(status)?;
        Ok(Response::new(proto::PingResponse {
            ping_id: ping.id,
            response_received: reply.is_some(),
            round_trip_ms: reply.map(|(_, rtt)| rtt.as_millis() as u32).unwrap_or(0),
        }))
    }

    async fn discover_features(
        &self,
        request: Request<proto::DiscoverFeaturesRequest>,
    ) -> Result<Response<proto::DiscoverFeaturesResponse>, Status> {
        let r = request.into_inner();
        let conn = self.connection(&r.wallet_id, &r.connection_id)?;
        let pattern = if r.r#match.is_empty() {
            "*"
        } else {
            &r.r#match
        };
        let query = discover_features::query(pattern);
        let wait_ms = if r.wait_ms == 0 { 5_000 } else { r.wait_ms };
        let reply = protocols::send_and_wait(&self.0, &conn, &query, wait(wait_ms))
            .await
            .map_err(status)?;
        let (reply, _) = reply.ok_or_else(|| {
            status(crate::error::Error::DeadlineExceeded(
                "no disclosure from the peer in time".into(),
            ))
        })?;
        Ok(Response::new(proto::DiscoverFeaturesResponse {
            protocols: discover_features::disclosed(&reply),
        }))
    }
}
