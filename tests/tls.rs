//! The control plane over TLS: a CA and certificates made here with rcgen,
//! daemons serving with them (and requiring client certificates), clients
//! that trust the CA or not, the CLI's flags, and the refusal to serve
//! plaintext off loopback.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use agentd::harness::ProcessAgent;
use agentd::rpc::proto::ListWalletsRequest;
use agentd::rpc::proto::wallet_service_client::WalletServiceClient;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// PEM files in a temporary directory: a CA, a server certificate for
/// 127.0.0.1 and localhost and a client certificate both signed by it, and
/// a second CA with a client certificate of its own (a stranger's).
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        let ca = pki.ca("ca");
        pki.leaf(&ca, "server", ExtendedKeyUsagePurpose::ServerAuth);
        pki.leaf(&ca, "client", ExtendedKeyUsagePurpose::ClientAuth);
        let other = pki.ca("other-ca");
        pki.leaf(&other, "stranger", ExtendedKeyUsagePurpose::ClientAuth);
        pki
    }

    /// `<name>.pem`; a leaf's key is `<name>.key`.
    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn pem(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.path(file)).unwrap()
    }

    fn ca(&self, name: &str) -> Issuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let key = KeyPair::generate().unwrap();
        std::fs::write(
            self.path(&format!("{name}.pem")),
            params.self_signed(&key).unwrap().pem(),
        )
        .unwrap();
        Issuer::new(params, key)
    }

    fn leaf(&self, ca: &Issuer<'_, KeyPair>, name: &str, usage: ExtendedKeyUsagePurpose) {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, ca).unwrap();
        std::fs::write(self.path(&format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{name}.key")), key.serialize_pem()).unwrap();
    }

    /// A client trusting `ca`, presenting `identity`'s certificate if given.
    fn client(&self, ca: &str, identity: Option<&str>) -> ClientTlsConfig {
        let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(self.pem(ca)));
        match identity {
            Some(name) => config.identity(Identity::from_pem(
                self.pem(&format!("{name}.pem")),
                self.pem(&format!("{name}.key")),
            )),
            None => config,
        }
    }

    /// The environment that gives a daemon this server certificate.
    fn server_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "AGENTD_GRPC_TLS_CERT_FILE",
                display(&self.path("server.pem")),
            ),
            (
                "AGENTD_GRPC_TLS_KEY_FILE",
                display(&self.path("server.key")),
            ),
        ]
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// Off loopback, a control plane needs TLS and tokens: the daemons here
/// have this admin token.
const ADMIN: &str = "agentd_tls-test-admin-token-0123456789abcdef";

async fn start(name: &str, env: &[(&str, String)]) -> ProcessAgent {
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend([
        ("AGENTD_GRPC_AUTH", "tokens"),
        ("AGENTD_ADMIN_TOKEN", ADMIN),
    ]);
    common::start(name, &env).await
}

/// Lists the daemon's wallets over a new channel to `url` (with `tls` if
/// given); on failure, the whole chain of causes.
async fn list_wallets(url: String, tls: Option<ClientTlsConfig>) -> Result<usize, String> {
    let mut endpoint = Endpoint::from_shared(url)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).unwrap();
    }
    let channel = endpoint.connect().await.map_err(|e| causes(&e))?;
    let mut request = tonic::Request::new(ListWalletsRequest::default());
    let bearer = format!("Bearer {ADMIN}").parse().unwrap();
    request.metadata_mut().insert("authorization", bearer);
    let wallets = WalletServiceClient::new(channel)
        .list_wallets(request)
        .await
        .map_err(|s| causes(&s))?;
    Ok(wallets.into_inner().wallets.len())
}

fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        text.push_str(&format!(": {cause}"));
        next = cause.source();
    }
    text
}

/// `agentd wallet list` against `grpc` with `flags`; its stdout, or its stderr
/// on failure.
fn cli(grpc: &str, flags: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_agentd"))
        .args(["wallet", "list", "--grpc", grpc, "--token", ADMIN])
        .args(flags)
        .env_remove("AGENTD_CA_FILE")
        .env_remove("AGENTD_API_KEY")
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_clients_that_trust_the_ca_and_only_them() {
    let pki = Pki::new();
    // Off loopback: allowed because it is TLS.
    let mut env = pki.server_env();
    env.push(("AGENTD_GRPC_LISTEN", "0.0.0.0:0".into()));
    let d = start("tls", &env).await;
    let port = d.grpc.port();
    let https = format!("https://127.0.0.1:{port}");

    assert_eq!(
        list_wallets(https.clone(), Some(pki.client("ca.pem", None))).await,
        Ok(1)
    );
    // By name too: the certificate names localhost.
    let by_name = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pki.pem("ca.pem")))
        .domain_name("localhost");
    assert_eq!(list_wallets(https.clone(), Some(by_name)).await, Ok(1));

    let plaintext = list_wallets(format!("http://127.0.0.1:{port}"), None).await;
    assert!(plaintext.is_err(), "plaintext answered: {plaintext:?}");
    let untrusted = list_wallets(https.clone(), Some(pki.client("other-ca.pem", None))).await;
    let e = untrusted.expect_err("a client that does not trust the CA got through");
    assert!(e.contains("UnknownIssuer"), "{e}");

    // Health and reflection are on the same TLS server.
    let channel = Endpoint::from_shared(https.clone())
        .unwrap()
        .tls_config(pki.client("ca.pem", None))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // The CLI: https:// selects TLS, --ca-file trusts the CA.
    let ca = display(&pki.path("ca.pem"));
    let listed = cli(&https, &["--ca-file", &ca]).unwrap();
    assert!(listed.contains("default"), "{listed}");
    let e = cli(&format!("127.0.0.1:{port}"), &["--ca-file", &ca]).unwrap_err();
    assert!(e.contains("https://"), "{e}");
    let other = display(&pki.path("other-ca.pem"));
    let e = cli(&https, &["--ca-file", &other]).unwrap_err();
    assert!(
        e.contains("cannot reach agentd") && e.contains("UnknownIssuer"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_its_certificates_get_in() {
    let pki = Pki::new();
    let mut env = pki.server_env();
    env.push((
        "AGENTD_GRPC_TLS_CLIENT_CA_FILE",
        display(&pki.path("ca.pem")),
    ));
    let d = start("mtls", &env).await;
    let https = format!("https://127.0.0.1:{}", d.grpc.port());

    assert_eq!(
        list_wallets(https.clone(), Some(pki.client("ca.pem", Some("client")))).await,
        Ok(1)
    );
    let anonymous = list_wallets(https.clone(), Some(pki.client("ca.pem", None))).await;
    let e = anonymous.expect_err("no client certificate got through");
    // In TLS 1.3 the server refuses after the client's side of the handshake
    // is done: the client sees the alert or, when the server's close wins
    // the race, a closed, reset or broken connection, or (hyper) one that
    // was "not ready" when the request went out.
    assert!(
        [
            "CertificateRequired",
            "connection closed",
            "connection reset",
            "broken pipe",
            "connection was not ready",
        ]
        .iter()
        .any(|why| e.contains(why)),
        "{e}"
    );
    let stranger = list_wallets(https.clone(), Some(pki.client("ca.pem", Some("stranger")))).await;
    assert!(stranger.is_err(), "a certificate of another CA got through");

    let (ca, cert, key) = (
        display(&pki.path("ca.pem")),
        display(&pki.path("client.pem")),
        display(&pki.path("client.key")),
    );
    let listed = cli(
        &https,
        &["--ca-file", &ca, "--cert-file", &cert, "--key-file", &key],
    )
    .unwrap();
    assert!(listed.contains("default"), "{listed}");
    assert!(cli(&https, &["--ca-file", &ca]).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_off_loopback_needs_insecure() {
    let refused = ProcessAgent::start(
        env!("CARGO_BIN_EXE_agentd"),
        "exposed",
        &[("AGENTD_GRPC_LISTEN", "0.0.0.0:0")],
    )
    .await
    .err()
    .expect("a plaintext control plane on 0.0.0.0 started")
    .to_string();
    for what in ["grpc.listen", "grpc.tls.cert_file", "grpc.insecure = true"] {
        assert!(refused.contains(what), "{what} not in: {refused}");
    }

    let d = common::start(
        "insecure",
        &[
            ("AGENTD_GRPC_LISTEN", "0.0.0.0:0"),
            ("AGENTD_GRPC_INSECURE", "true"),
        ],
    )
    .await;
    let plaintext = list_wallets(format!("http://127.0.0.1:{}", d.grpc.port()), None).await;
    assert_eq!(plaintext, Ok(1));
}
