//! The Issue Credential 3.0 state machine: a pure function from a role, the
//! current state and an event to the next state and the effects the I/O
//! around it must carry out in the same transaction.

use crate::store::{RecordState, Role};

use RecordState::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Issuer: the control plane made an offer.
    OfferCreated,
    /// Issuer: the control plane made an offer to keep as a draft.
    DraftCreated,
    /// Issuer: a draft was edited.
    Edit,
    /// Issuer: send a draft.
    Send,
    /// Issuer: an offer made to travel inside an invitation (a claim link).
    OfferAttached,
    /// Holder: an offer arrived.
    OfferArrived,
    /// The message a `…Pending` state waits on left the outbox.
    Delivered,
    /// Issuer: the holder's request arrived and its proof checked out.
    RequestArrived,
    /// Issuer: issue (manually, or automatically on the request).
    Issue,
    /// Issuer: the credential is signed.
    CredentialSigned,
    /// Issuer: the holder acknowledged the credential.
    AckArrived,
    /// Holder: accept the offer.
    Accept,
    /// Holder: the credential arrived and verified.
    CredentialVerified,
    /// Either: refuse to go on (a rejected offer, a bad request or credential).
    Fail,
    /// Either: the peer reported a problem in this thread.
    ProblemArrived,
    /// Either: expiry, idle timeout, undeliverable message, or explicit.
    Abandon,
}

/// What the I/O layer does when a transition commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    SendOffer,
    SendRequest,
    SendCredential,
    StoreCredential,
    SendAck,
    SendProblemReport,
}

impl Effect {
    /// A message whose delivery moves the record on (`…Pending → …Sent`)
    /// and whose failure abandons it; the ack and the stored credential
    /// change nothing once done.
    pub fn is_tracked(self) -> bool {
        !matches!(self, Effect::StoreCredential | Effect::SendAck)
    }
}

/// An event that is not legal in the current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{event:?} is not allowed for an {role:?} record in state {state}")]
pub struct Illegal {
    pub role: Role,
    pub state: String,
    pub event: Event,
}

/// Which role a state belongs to (None: either role).
pub fn role_of(state: RecordState) -> Option<Role> {
    match state {
        Draft | OfferPending | OfferSent | RequestReceived | CredentialPending
        | CredentialGenerated | CredentialSent => Some(Role::Issuer),
        OfferReceived | RequestPending | RequestSent | CredentialReceived => Some(Role::Holder),
        ProblemReportPending | ProblemReportSent | ProblemReportReceived | Abandoned => None,
    }
}

/// The next state and its effects, or `Illegal`. `state` is None for a
/// record that does not exist yet.
pub fn transition(
    role: Role,
    state: Option<RecordState>,
    event: &Event,
) -> Result<(RecordState, &'static [Effect]), Illegal> {
    use Effect::*;
    let illegal = || Illegal {
        role,
        state: state.map_or_else(|| "(none)".to_string(), |s| format!("{s:?}")),
        event: event.clone(),
    };
    if let Some(s) = state
        && role_of(s).is_some_and(|r| r != role)
    {
        return Err(illegal());
    }
    let next: (RecordState, &'static [Effect]) = match (role, state, event) {
        (Role::Issuer, None, Event::OfferCreated) => (OfferPending, &[SendOffer]),
        (Role::Issuer, None, Event::DraftCreated) => (Draft, &[]),
        // Sent as it is made: the invitation carries it, not the outbox.
        (Role::Issuer, None, Event::OfferAttached) => (OfferSent, &[]),
        (Role::Issuer, Some(Draft), Event::Edit) => (Draft, &[]),
        (Role::Issuer, Some(Draft), Event::Send) => (OfferPending, &[SendOffer]),
        (Role::Holder, None, Event::OfferArrived) => (OfferReceived, &[]),

        (_, Some(OfferPending), Event::Delivered) => (OfferSent, &[]),
        (_, Some(RequestPending), Event::Delivered) => (RequestSent, &[]),
        (_, Some(CredentialGenerated), Event::Delivered) => (CredentialSent, &[]),
        (_, Some(ProblemReportPending), Event::Delivered) => (ProblemReportSent, &[]),

        // The request may overtake the outbox's note that the offer left.
        (Role::Issuer, Some(OfferPending | OfferSent), Event::RequestArrived) => {
            (RequestReceived, &[])
        }
        (Role::Issuer, Some(RequestReceived), Event::Issue) => (CredentialPending, &[]),
        (Role::Issuer, Some(CredentialPending), Event::CredentialSigned) => {
            (CredentialGenerated, &[SendCredential])
        }
        (Role::Issuer, Some(CredentialGenerated | CredentialSent), Event::AckArrived) => {
            (CredentialSent, &[])
        }

        (Role::Holder, Some(OfferReceived), Event::Accept) => (RequestPending, &[SendRequest]),
        (Role::Holder, Some(RequestPending | RequestSent), Event::CredentialVerified) => {
            (CredentialReceived, &[StoreCredential, SendAck])
        }

        // A draft was never sent: nobody to report to, nobody to hear from.
        (_, Some(s), Event::Fail)
            if !s.is_final() && !matches!(s, ProblemReportPending | Draft) =>
        {
            (ProblemReportPending, &[SendProblemReport])
        }
        // A holder that refuses the credential reports after the issuer sent it.
        (_, Some(s), Event::ProblemArrived)
            if (!s.is_final() && s != Draft) || s == CredentialSent =>
        {
            (ProblemReportReceived, &[])
        }
        (_, Some(s), Event::Abandon) if !s.is_final() => (Abandoned, &[]),
        _ => return Err(illegal()),
    };
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENTS: [Event; 16] = [
        Event::OfferCreated,
        Event::OfferAttached,
        Event::DraftCreated,
        Event::Edit,
        Event::Send,
        Event::OfferArrived,
        Event::Delivered,
        Event::RequestArrived,
        Event::Issue,
        Event::CredentialSigned,
        Event::AckArrived,
        Event::Accept,
        Event::CredentialVerified,
        Event::Fail,
        Event::ProblemArrived,
        Event::Abandon,
    ];

    /// Every legal (role, state, event) and where it goes; everything else
    /// must be refused.
    fn legal() -> Vec<(Role, Option<RecordState>, Event, RecordState)> {
        use Event as E;
        use Role::*;
        let mut v = vec![
            (Issuer, None, E::OfferCreated, OfferPending),
            (Issuer, None, E::DraftCreated, Draft),
            (Issuer, None, E::OfferAttached, OfferSent),
            (Issuer, Some(Draft), E::Edit, Draft),
            (Issuer, Some(Draft), E::Send, OfferPending),
            (Holder, None, E::OfferArrived, OfferReceived),
            (Issuer, Some(OfferPending), E::Delivered, OfferSent),
            (
                Issuer,
                Some(OfferPending),
                E::RequestArrived,
                RequestReceived,
            ),
            (Issuer, Some(OfferSent), E::RequestArrived, RequestReceived),
            (Issuer, Some(RequestReceived), E::Issue, CredentialPending),
            (
                Issuer,
                Some(CredentialPending),
                E::CredentialSigned,
                CredentialGenerated,
            ),
            (
                Issuer,
                Some(CredentialGenerated),
                E::Delivered,
                CredentialSent,
            ),
            (
                Issuer,
                Some(CredentialGenerated),
                E::AckArrived,
                CredentialSent,
            ),
            (Issuer, Some(CredentialSent), E::AckArrived, CredentialSent),
            (
                Issuer,
                Some(CredentialSent),
                E::ProblemArrived,
                ProblemReportReceived,
            ),
            (Holder, Some(OfferReceived), E::Accept, RequestPending),
            (Holder, Some(RequestPending), E::Delivered, RequestSent),
            (
                Holder,
                Some(RequestPending),
                E::CredentialVerified,
                CredentialReceived,
            ),
            (
                Holder,
                Some(RequestSent),
                E::CredentialVerified,
                CredentialReceived,
            ),
        ];
        for role in [Issuer, Holder] {
            v.push((
                role,
                Some(ProblemReportPending),
                E::Delivered,
                ProblemReportSent,
            ));
            v.push((
                role,
                Some(ProblemReportPending),
                E::ProblemArrived,
                ProblemReportReceived,
            ));
            v.push((role, Some(ProblemReportPending), E::Abandon, Abandoned));
        }
        // A draft is only ever abandoned (discarded), never failed or reported on.
        v.push((Issuer, Some(Draft), E::Abandon, Abandoned));
        let open = |r| match r {
            Issuer => vec![
                OfferPending,
                OfferSent,
                RequestReceived,
                CredentialPending,
                CredentialGenerated,
            ],
            Holder => vec![OfferReceived, RequestPending, RequestSent],
        };
        for role in [Issuer, Holder] {
            for s in open(role) {
                v.push((role, Some(s), E::Fail, ProblemReportPending));
                v.push((role, Some(s), E::ProblemArrived, ProblemReportReceived));
                v.push((role, Some(s), E::Abandon, Abandoned));
            }
        }
        v
    }

    #[test]
    fn every_legal_transition_goes_where_the_design_says() {
        for (role, state, event, to) in legal() {
            let (next, _) = transition(role, state, &event)
                .unwrap_or_else(|e| panic!("{role:?} {state:?} {event:?}: {e}"));
            assert_eq!(next, to, "{role:?} {state:?} {event:?}");
        }
    }

    #[test]
    fn every_other_combination_is_illegal() {
        let legal = legal();
        let states = std::iter::once(None).chain(RecordState::ALL.into_iter().map(Some));
        let mut refused = 0;
        for role in [Role::Issuer, Role::Holder] {
            for state in states.clone() {
                for event in EVENTS {
                    let expected = legal
                        .iter()
                        .any(|(r, s, e, _)| *r == role && *s == state && *e == event);
                    let got = transition(role, state, &event);
                    assert_eq!(
                        got.is_ok(),
                        expected,
                        "{role:?} {state:?} {event:?}: {got:?}"
                    );
                    if let Err(e) = got {
                        refused += 1;
                        assert_eq!(e.event, event);
                    }
                }
            }
        }
        // 2 roles × 16 states (none and the 15) × 16 events, less the legal ones.
        assert_eq!(refused, 2 * 16 * 16 - legal.len());
    }

    #[test]
    fn effects_carry_the_messages() {
        let fx = |r, s, e| transition(r, s, &e).unwrap().1;
        assert_eq!(
            fx(Role::Issuer, None, Event::OfferCreated),
            [Effect::SendOffer]
        );
        assert_eq!(
            fx(Role::Holder, Some(OfferReceived), Event::Accept),
            [Effect::SendRequest]
        );
        assert_eq!(
            fx(
                Role::Issuer,
                Some(CredentialPending),
                Event::CredentialSigned
            ),
            [Effect::SendCredential]
        );
        assert_eq!(
            fx(Role::Holder, Some(RequestSent), Event::CredentialVerified),
            [Effect::StoreCredential, Effect::SendAck]
        );
        assert_eq!(
            fx(Role::Holder, Some(OfferReceived), Event::Fail),
            [Effect::SendProblemReport]
        );
    }
}
