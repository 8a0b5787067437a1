//! `AdminService`: backups of the running daemon.

use std::pin::Pin;

use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::proto::{self, admin_service_server::AdminService};
use super::status;
use crate::Core;
use crate::backup::Snapshot;
use crate::error::Error;

pub struct Admin(pub Core);

type Chunks = Pin<Box<dyn Stream<Item = Result<proto::BackupChunk, Status>> + Send>>;

fn joined(e: tokio::task::JoinError) -> Status {
    status(Error::Internal(format!("backup task: {e}")))
}

#[tonic::async_trait]
impl AdminService for Admin {
    type BackupStream = Chunks;

    async fn backup(
        &self,
        _: Request<proto::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        let store = self.0.store.clone();
        let snapshot = tokio::task::spawn_blocking(move || Snapshot::take(&store))
            .await
            .map_err(joined)?
            .map_err(status)?;
        let h = &snapshot.header;
        tracing::info!(
            entries = h.entries,
            bytes = h.body_bytes,
            event_seq = h.event_seq,
            "backup snapshot taken"
        );
        // A small queue: the scratch file is read as fast as the client
        // takes it, not into memory.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let sent =
                snapshot.send(|data| tx.blocking_send(Ok(proto::BackupChunk { data })).is_ok());
            if let Err(e) = sent {
                let e = status(Error::Storage(format!("reading the staged backup: {e}")));
                let _ = tx.blocking_send(Err(e));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
