//! Who may call what. One table maps every method to the roles that may
//! call it; one layer checks it (and the token) before any handler runs,
//! and the handler learns the caller through [`wallet`], which confines a
//! token to its own wallet.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::Status;
use tonic::codegen::http;

use super::{Answer, status, with_reason};
use crate::Core;
use crate::error::Error;
use crate::ratelimit::{Rate, RateLimiter};
use crate::store::{Store, TokenRole};

use TokenRole::{Admin, Auditor, Holder, Issuer};

const ALL: &[TokenRole] = &[Admin, Issuer, Holder, Auditor];
const ACTORS: &[TokenRole] = &[Admin, Issuer, Holder];

/// Every `agent.v1` method, the roles that may call it, and what a call
/// costs from the token's rate (`grpc.rate_per_sec`): reads 1, actions that
/// sign, send or write 5, the custodial round trip 20. A method missing
/// here is refused to everyone (and fails `every_method_has_a_rule`).
/// Wallet-scoped methods are confined to the token's wallet by [`wallet`].
#[rustfmt::skip]
pub const TABLE: &[(&str, &[TokenRole], u32)] = &[
    ("/agent.v1.WalletService/CreateWallet", &[Admin], 5),
    ("/agent.v1.WalletService/GetWallet", ALL, 1),
    ("/agent.v1.WalletService/ListWallets", &[Admin], 1),
    ("/agent.v1.TokenService/CreateToken", &[Admin], 5),
    ("/agent.v1.TokenService/ListTokens", &[Admin], 1),
    ("/agent.v1.TokenService/RevokeToken", &[Admin], 1),
    ("/agent.v1.DidService/CreateDid", ACTORS, 5),
    ("/agent.v1.DidService/ListDids", ALL, 1),
    ("/agent.v1.DidService/ResolveDid", ALL, 1),
    ("/agent.v1.ConnectionService/CreateInvitation", ACTORS, 5),
    ("/agent.v1.ConnectionService/AcceptInvitation", ACTORS, 5),
    ("/agent.v1.ConnectionService/ListConnections", ALL, 1),
    ("/agent.v1.ConnectionService/GetConnection", ALL, 1),
    ("/agent.v1.ConnectionService/Ping", ACTORS, 5),
    ("/agent.v1.ConnectionService/DiscoverFeatures", ACTORS, 5),
    ("/agent.v1.IssuanceService/CreateOffer", &[Admin, Issuer], 5),
    // Up to 1,000 offers, stored in shared transactions.
    ("/agent.v1.IssuanceService/CreateOffers", &[Admin, Issuer], 50),
    ("/agent.v1.IssuanceService/ListRecords", ALL, 1),
    ("/agent.v1.IssuanceService/GetRecord", ALL, 1),
    ("/agent.v1.IssuanceService/IssueCredential", &[Admin, Issuer], 5),
    // Acts in two wallets (issuer's and holder's) at once.
    ("/agent.v1.IssuanceService/IssueCustodial", &[Admin], 20),
    ("/agent.v1.IssuanceService/RevokeCredential", &[Admin, Issuer], 5),
    ("/agent.v1.IssuanceService/WithdrawOffer", &[Admin, Issuer], 5),
    ("/agent.v1.IssuanceService/UpdateDraft", &[Admin, Issuer], 5),
    ("/agent.v1.IssuanceService/SendOffer", &[Admin, Issuer], 5),
    ("/agent.v1.IssuanceService/DiscardDraft", &[Admin, Issuer], 5),
    ("/agent.v1.IssuanceService/CreateClaimLink", &[Admin, Issuer], 5),
    ("/agent.v1.IssuanceService/DeleteRecordData", &[Admin, Issuer], 5),
    ("/agent.v1.IssuanceService/GetClaimLink", &[Admin, Issuer, Auditor], 2),
    // Up to 1,000 revocations in one transaction.
    ("/agent.v1.IssuanceService/RevokeCredentials", &[Admin, Issuer], 20),
    ("/agent.v1.HolderService/ListOffers", &[Admin, Holder, Auditor], 1),
    ("/agent.v1.HolderService/AcceptOffer", &[Admin, Holder], 5),
    ("/agent.v1.HolderService/RejectOffer", &[Admin, Holder], 5),
    ("/agent.v1.HolderService/ListCredentials", &[Admin, Holder, Auditor], 1),
    ("/agent.v1.HolderService/GetCredential", &[Admin, Holder, Auditor], 1),
    ("/agent.v1.HolderService/DeleteCredential", &[Admin, Holder], 5),
    ("/agent.v1.HolderService/MatchCredential", &[Admin, Holder], 2),
    ("/agent.v1.HolderService/RefreshStatus", &[Admin, Holder], 5),
    ("/agent.v1.EventService/Subscribe", ALL, 1),
    // May fetch DID documents, status lists and schemas.
    ("/agent.v1.VerifierService/VerifyCredential", ALL, 5),
    ("/agent.v1.VerifierService/AddTrustedIssuer", ACTORS, 5),
    ("/agent.v1.VerifierService/RemoveTrustedIssuer", ACTORS, 5),
    ("/agent.v1.VerifierService/ListTrustedIssuers", ALL, 1),
    ("/agent.v1.TemplateService/CreateTemplate", &[Admin, Issuer], 5),
    ("/agent.v1.TemplateService/GetTemplate", ALL, 1),
    ("/agent.v1.TemplateService/ListTemplates", ALL, 1),
    ("/agent.v1.TemplateService/ArchiveTemplate", &[Admin, Issuer], 5),
    // Copies the whole database.
    ("/agent.v1.AdminService/Backup", &[Admin], 100),
];

/// The caller of the request being handled.
#[derive(Debug, Clone)]
pub enum Caller {
    /// `grpc.auth = "none"`: anyone, as an admin.
    Anyone,
    Token {
        id: String,
        wallet: String,
        role: TokenRole,
    },
}

tokio::task_local! {
    static CALLER: Caller;
}

/// The caller of the request this task is handling (Anyone outside one).
pub fn caller() -> Caller {
    CALLER.try_with(Caller::clone).unwrap_or(Caller::Anyone)
}

impl Caller {
    fn role(&self) -> TokenRole {
        match self {
            Caller::Anyone => Admin,
            Caller::Token { role, .. } => *role,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role() == Admin
    }

    /// An auditor's token reads, and nothing it calls writes.
    pub fn is_auditor(&self) -> bool {
        self.role() == Auditor
    }

    /// Whether claims (and credential JWTs) are shown to this caller:
    /// everyone but an auditor.
    pub fn sees_claims(&self) -> bool {
        !self.is_auditor()
    }

    /// The token id recorded as who did something ("" without tokens).
    pub fn id(&self) -> &str {
        match self {
            Caller::Anyone => "",
            Caller::Token { id, .. } => id,
        }
    }
}

/// The wallet a request acts in: the one it names ("" is the default, or
/// a token's own), if the caller may act there. A token acts only in its
/// wallet; an admin in any.
pub fn wallet(core: &Core, named: &str) -> Result<String, Status> {
    let caller = caller();
    let named = match (&caller, named) {
        (Caller::Token { wallet, role, .. }, n) if *role != Admin => {
            if !n.is_empty() && n != wallet {
                return Err(status(Error::PermissionDenied(format!(
                    "this token acts in wallet {wallet:?}, not {n:?}"
                ))));
            }
            wallet.as_str()
        }
        (_, n) => n,
    };
    crate::wallet::resolve_wallet(core, named).map_err(status)
}

/// The tower layer that authenticates and authorizes every call.
#[derive(Clone)]
pub struct Authorize {
    store: Store,
    tokens: bool,
    reflection_requires_token: bool,
    rates: Arc<RateLimiter<String>>,
    default_rate: u32,
}

impl Authorize {
    pub fn new(core: &Core) -> Self {
        let grpc = &core.config.grpc;
        Authorize {
            store: core.store.clone(),
            tokens: grpc.auth == "tokens",
            reflection_requires_token: grpc.reflection_requires_token,
            rates: Arc::new(RateLimiter::new(Rate {
                per_sec: grpc.rate_per_sec,
                burst: grpc.rate_burst,
            })),
            default_rate: grpc.rate_per_sec,
        }
    }

    /// Who calls `path` with these headers, or why they may not.
    fn check(&self, path: &str, headers: &http::HeaderMap) -> Result<Caller, Status> {
        let open = path.starts_with("/grpc.health.")
            || (path.starts_with("/grpc.reflection.") && !self.reflection_requires_token);
        if !self.tokens || open {
            return Ok(Caller::Anyone);
        }
        let presented = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                status(Error::Unauthenticated(
                    "no token (authorization: Bearer <token>)".into(),
                ))
            })?;
        let token = crate::tokens::authenticate(&self.store, presented.trim()).map_err(status)?;
        if path.starts_with("/grpc.reflection.") {
            return Ok(Caller::Anyone);
        }
        let rule = TABLE.iter().find(|(method, ..)| *method == path);
        let Some((_, _, cost)) = rule.filter(|(_, roles, _)| roles.contains(&token.role)) else {
            return Err(with_reason(
                Status::permission_denied(format!("a {:?} token may not call {path}", token.role)),
                "PERMISSION_DENIED",
            ));
        };
        let own = Rate {
            per_sec: token.rate_per_sec,
            burst: token.rate_per_sec.saturating_mul(2),
        };
        if let Err(wait) = self.rates.take(&token.id, *cost, own) {
            let mut refused = with_reason(
                Status::resource_exhausted(format!(
                    "rate limited: this token may make {} calls' worth per second; retry in {} ms",
                    if own.per_sec > 0 {
                        own.per_sec
                    } else {
                        self.default_rate
                    },
                    wait.as_millis()
                )),
                "RATE_LIMITED",
            );
            if let Ok(v) = wait.as_millis().to_string().parse() {
                refused.metadata_mut().insert("retry-after-ms", v);
            }
            return Err(refused);
        }
        Ok(Caller::Token {
            id: token.id,
            wallet: token.wallet_id,
            role: token.role,
        })
    }
}

impl<S> tower::Layer<S> for Authorize {
    type Service = Authorized<S>;

    fn layer(&self, inner: S) -> Authorized<S> {
        Authorized {
            inner,
            check: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authorized<S> {
    inner: S,
    check: Authorize,
}

impl<S, B> tower::Service<http::Request<B>> for Authorized<S>
where
    S: tower::Service<http::Request<B>, Response = Answer>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Answer;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self.check.check(request.uri().path(), request.headers()) {
            Ok(caller) => {
                let actor = caller.id().to_string();
                let handled = self.inner.call(request);
                Box::pin(CALLER.scope(caller, crate::actor::acting(actor, handled)))
            }
            Err(refused) => Box::pin(std::future::ready(Ok(refused.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    /// Every method of `agent.v1` has a rule: a new RPC without one fails here.
    #[test]
    fn every_method_has_a_rule() {
        let set = prost_types::FileDescriptorSet::decode(super::super::proto::FILE_DESCRIPTOR_SET)
            .unwrap();
        let mut methods = Vec::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    methods.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        assert!(methods.len() >= 25, "{methods:?}");
        for m in &methods {
            assert!(super::TABLE.iter().any(|(t, ..)| t == m), "no rule for {m}");
        }
        for (t, ..) in super::TABLE {
            assert!(
                methods.contains(&t.to_string()),
                "a rule for no method: {t}"
            );
        }
    }
}
