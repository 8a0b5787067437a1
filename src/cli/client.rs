//! What every client subcommand shares: the flags that say which daemon and
//! wallet to talk to, the channel (with the API key on every call), and
//! turning gRPC failures into one readable line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use agentd::config::Grpc;
use agentd::rpc::proto;

use super::output::{Listed, Output};

/// Which daemon, which wallet, and how to print.
#[derive(clap::Args)]
#[command(next_help_heading = "Daemon options")]
pub struct Target {
    /// The daemon's gRPC address (its `grpc.listen`): `host:port`, or a URL;
    /// `https://host:port` talks TLS.
    #[arg(long, global = true, env = "AGENTD_GRPC", default_value_t = Grpc::default().listen)]
    grpc: String,
    /// With https: trust this CA (PEM) instead of the system's roots.
    #[arg(long, global = true, env = "AGENTD_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// With https: present this client certificate (PEM), for a daemon
    /// with `grpc.tls.client_ca_file`.
    #[arg(long, global = true, requires = "key_file")]
    cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, requires = "cert_file")]
    key_file: Option<PathBuf>,
    /// The wallet to act on; empty is the daemon's default wallet.
    #[arg(
        long,
        global = true,
        env = "AGENTD_WALLET",
        default_value = "",
        hide_default_value = true
    )]
    wallet: String,
    /// The control-plane token, sent as `authorization: Bearer <token>`
    /// (AGENTD_API_KEY and --api-key are its deprecated names).
    #[arg(
        long,
        alias = "api-key",
        global = true,
        env = "AGENTD_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Print responses as JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

impl Target {
    /// Where to connect, and how: `https://` with TLS, anything else plaintext.
    fn endpoint(&self) -> anyhow::Result<Endpoint> {
        let (url, tls) = match self.grpc.split_once("://") {
            None => (format!("http://{}", self.grpc), false),
            Some(("http", _)) => (self.grpc.clone(), false),
            Some(("https", _)) => (self.grpc.clone(), true),
            Some(_) => bail!("--grpc {}: the scheme must be http or https", self.grpc),
        };
        let endpoint = Endpoint::from_shared(url)
            .map_err(|_| anyhow!("--grpc {}: not host:port or a URL", self.grpc))?;
        if !tls {
            // Certificates given for a plaintext address mean TLS was
            // intended: better to stop than to send the token in clear.
            if self.ca_file.is_some() || self.cert_file.is_some() {
                bail!(
                    "--ca-file, --cert-file and --key-file need TLS: give --grpc as https://{}",
                    self.grpc.trim_start_matches("http://")
                );
            }
            return Ok(endpoint);
        }
        let mut config = ClientTlsConfig::new();
        config = match &self.ca_file {
            Some(ca) => config.ca_certificate(Certificate::from_pem(read("--ca-file", ca)?)),
            None => config.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            config = config.identity(Identity::from_pem(
                read("--cert-file", cert)?,
                read("--key-file", key)?,
            ));
        }
        endpoint
            .tls_config(config)
            .map_err(|e| anyhow!("TLS: {}", root_cause(&e)))
    }
}

fn read(flag: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{flag} {}", path.display()))
}

/// The channel every typed client is built on: `FooServiceClient::new(d.svc())`.
pub type Svc = InterceptedService<Channel, Auth>;

/// A connected daemon, and where output goes.
pub struct Daemon {
    svc: Svc,
    pub wallet: String,
    pub out: Output,
}

impl Daemon {
    /// Connects eagerly, so an unreachable daemon is reported once, up front.
    pub async fn connect(t: Target) -> anyhow::Result<Daemon> {
        let endpoint = t.endpoint()?;
        let token = t.token.or_else(|| std::env::var("AGENTD_API_KEY").ok());
        let auth = Auth::new(token.as_deref())?;
        let channel = endpoint
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| anyhow!("cannot reach agentd at {}: {}", t.grpc, root_cause(&e)))?;
        Ok(Daemon {
            svc: InterceptedService::new(channel, auth),
            wallet: t.wallet,
            out: Output { json: t.json },
        })
    }

    /// A new handle on the one channel, for a typed client.
    pub fn svc(&self) -> Svc {
        self.svc.clone()
    }

    /// Fetches one page (with --page-size/--page-token) or all of them,
    /// and prints the items.
    pub async fn list<L: Listed>(
        &self,
        paging: &Paging,
        mut fetch: impl AsyncFnMut(proto::PageRequest) -> Result<tonic::Response<L>, Status>,
    ) -> anyhow::Result<()> {
        let one_page = paging.page_size.is_some() || paging.page_token.is_some();
        let mut page = proto::PageRequest {
            page_size: paging.page_size.unwrap_or(MAX_PAGE),
            page_token: paging.page_token.clone().unwrap_or_default(),
        };
        let mut all = Vec::new();
        let mut first_total = None;
        loop {
            let (items, next, total) = ok(fetch(page.clone()).await)?.into_parts();
            all.extend(items);
            first_total = first_total.or(total);
            if one_page || next.is_empty() {
                return Ok(self.out.list::<L>(&all, &next, first_total.as_ref())?);
            }
            page.page_token = next;
        }
    }
}

/// The daemon's largest page, so following all pages takes few calls.
const MAX_PAGE: u32 = 100;

/// Lists follow every page unless one of these is given.
#[derive(clap::Args)]
pub struct Paging {
    /// Fetch one page of this many items (1..100).
    #[arg(long)]
    page_size: Option<u32>,
    /// Fetch the page after this token (printed on stderr after a page).
    #[arg(long)]
    page_token: Option<String>,
}

/// The innermost cause, lower-case for an I/O error ("connection refused"),
/// rather than tonic's generic "transport error". An I/O error that wraps
/// another (a TLS failure: "invalid peer certificate: UnknownIssuer") says
/// more than its kind ("invalid data").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    match last.downcast_ref::<std::io::Error>() {
        Some(io) if io.get_ref().is_none() => io.kind().to_string(),
        _ => last.to_string(),
    }
}

/// Adds the API key, if any, to every request.
#[derive(Clone)]
pub struct Auth(Option<MetadataValue<Ascii>>);

impl Auth {
    fn new(key: Option<&str>) -> anyhow::Result<Auth> {
        let Some(key) = key else {
            return Ok(Auth(None));
        };
        // The error must not echo the key.
        let mut value: MetadataValue<Ascii> = format!("Bearer {key}")
            .parse()
            .map_err(|_| anyhow!("--token: not a valid header value"))?;
        value.set_sensitive(true);
        Ok(Auth(Some(value)))
    }
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

/// The message of a call, or its failure as `CODE: message [reason]`.
pub fn ok<T>(r: Result<tonic::Response<T>, Status>) -> anyhow::Result<T> {
    r.map(tonic::Response::into_inner).map_err(failure)
}

/// `NOT_FOUND: wallet nope not found [reason NOT_FOUND]`.
pub fn failure(s: Status) -> anyhow::Error {
    let reason = s
        .metadata()
        .get("x-agentd-reason")
        .and_then(|v| v.to_str().ok())
        .map(|r| format!(" [reason {r}]"))
        .unwrap_or_default();
    anyhow!("{}: {}{reason}", code_name(s.code()), s.message())
}

/// The canonical gRPC name: `Code::NotFound` → `NOT_FOUND`.
fn code_name(code: tonic::Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

#[cfg(test)]
mod tests {
    #[test]
    fn code_names_are_the_canonical_ones() {
        assert_eq!(super::code_name(tonic::Code::NotFound), "NOT_FOUND");
        assert_eq!(super::code_name(tonic::Code::Ok), "OK");
        assert_eq!(
            super::code_name(tonic::Code::FailedPrecondition),
            "FAILED_PRECONDITION"
        );
    }
}
