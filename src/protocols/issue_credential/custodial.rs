//! Custodial issuance: issuer and holder wallets of this daemon, offer,
//! accept and issue in one call, over the same protocol path as between
//! two agents.

use std::time::{Duration, Instant};

use super::{Issuance, OfferSpec};
use crate::Core;
use crate::error::{Error, Result};
use crate::protocols::connections;
use crate::store::{
    Connection, ConnectionState, CredentialRecord, RecordEvent, RecordState, StoredCredential,
};

/// The result of a custodial issuance.
pub struct Custodial {
    pub was_offered: bool,
    pub was_accepted: bool,
    pub issuer: CredentialRecord,
    pub holder: CredentialRecord,
    pub credential: StoredCredential,
}

/// Issuer and holder wallets of this daemon: offer, accept as the holder,
/// issue automatically, and return once the holder has the credential. The
/// messages take the same protocol path as between two agents.
impl Issuance {
    pub async fn custodial(
        &self,
        issuer_wallet: &str,
        holder_wallet: &str,
        spec: &OfferSpec,
        subject_did: Option<&str>,
        wait: Duration,
    ) -> Result<Custodial> {
        let core = &self.core;
        if issuer_wallet == holder_wallet {
            return Err(Error::InvalidArgument(
                "issuer and holder wallets must differ".into(),
            ));
        }
        let until = Instant::now() + wait;
        let mut live = core.events.live();
        let conn = local_connection(core, issuer_wallet, holder_wallet, until).await?;
        let spec = OfferSpec {
            connection_id: conn.id,
            automatic_issuance: true,
            ..spec.clone()
        };
        let offer = self.create_offer(issuer_wallet, &spec).await?;
        // Any state will do: the offer has arrived once the holder has a record.
        let holder = wait_for(core, &mut live, holder_wallet, &offer.thid, |_| true, until).await?;
        let was_accepted = holder.state == RecordState::OfferReceived;
        if was_accepted {
            self.accept_offer(holder_wallet, &holder.id, subject_did)
                .await?;
        }
        let holder = wait_for(
            core,
            &mut live,
            holder_wallet,
            &offer.thid,
            |s| s == RecordState::CredentialReceived,
            until,
        )
        .await?;
        let credential_id = holder.credential_id.clone().unwrap_or_default();
        Ok(Custodial {
            was_offered: true,
            was_accepted,
            issuer: core.store.record(issuer_wallet, &offer.id)?,
            credential: core.store.credential(holder_wallet, &credential_id)?,
            holder,
        })
    }
}

/// An active connection from the issuer wallet to the holder wallet, made
/// with an out-of-band invitation between them when there is none.
async fn local_connection(
    core: &Core,
    issuer: &str,
    holder: &str,
    until: Instant,
) -> Result<Connection> {
    let mut token = String::new();
    loop {
        let page = core
            .store
            .connections(issuer, 100, &token, |c| c.state == ConnectionState::Active)?;
        for c in page.items {
            let peer = c.their_did.as_deref().unwrap_or_default();
            if core
                .store
                .did_owner(peer)?
                .is_some_and(|d| d.wallet_id == holder)
            {
                return Ok(c);
            }
        }
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    let invitation = connections::create_invitation(core, issuer, "custodial", "", "")?;
    connections::accept_invitation(core, holder, &invitation.url, "").await?;
    loop {
        let c = core.store.connection(issuer, &invitation.connection.id)?;
        if c.state == ConnectionState::Active {
            return Ok(c);
        }
        if Instant::now() >= until {
            return Err(Error::DeadlineExceeded(
                "the custodial connection did not become active".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the wallet's record of `thid` is in a state `want` accepts;
/// a problem or abandoned state ends the wait with its reason.
async fn wait_for(
    core: &Core,
    live: &mut tokio::sync::broadcast::Receiver<RecordEvent>,
    wallet: &str,
    thid: &str,
    want: impl Fn(RecordState) -> bool,
    until: Instant,
) -> Result<CredentialRecord> {
    loop {
        if let Some(r) = core.store.record_by_thid(wallet, thid)? {
            if want(r.state) {
                return Ok(r);
            }
            if matches!(
                r.state,
                RecordState::ProblemReportPending
                    | RecordState::ProblemReportSent
                    | RecordState::ProblemReportReceived
                    | RecordState::Abandoned
            ) {
                return Err(Error::FailedPrecondition(format!(
                    "record {} ended in {:?}: {}",
                    r.id,
                    r.state,
                    r.problem.unwrap_or_default()
                )));
            }
        }
        let left = until.saturating_duration_since(Instant::now());
        // Any event (or a lag) is a reason to look again.
        if tokio::time::timeout(left, live.recv()).await.is_err() {
            return Err(Error::DeadlineExceeded(format!(
                "thread {thid} did not reach the expected state in time"
            )));
        }
    }
}
