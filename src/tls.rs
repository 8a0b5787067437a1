//! TLS on the gRPC control plane: the PEM files `grpc.tls` names, read and
//! checked at load with the rustls (ring) provider the server runs on, so a
//! wrong file fails the start naming its config key rather than failing
//! every handshake later.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::crypto::ring;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use zeroize::Zeroizing;

use crate::config::{ConfigError, invalid};

/// A client has this long to finish its handshake: one that never does
/// must not hold a task and a socket forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's certificate chain and key, and the CA that client
/// certificates must chain to (mTLS), as checked PEM. No `Debug`: it holds
/// the private key.
pub(crate) struct ServerTls {
    cert_chain: Vec<u8>,
    key: Zeroizing<Vec<u8>>,
    client_ca: Option<Vec<u8>>,
}

impl ServerTls {
    /// Reads and checks the files. Errors name the config key and the file,
    /// never what the file holds.
    pub(crate) fn load(
        cert_file: &Path,
        key_file: &Path,
        client_ca_file: Option<&Path>,
    ) -> Result<ServerTls, ConfigError> {
        const CERT: &str = "grpc.tls.cert_file";
        const KEY: &str = "grpc.tls.key_file";
        const CLIENT_CA: &str = "grpc.tls.client_ca_file";

        let cert_chain = read(CERT, cert_file)?;
        let certs = certificates(CERT, cert_file, &cert_chain)?;
        let key = Zeroizing::new(read(KEY, key_file)?);
        let der = PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
            let what = match e {
                pem::Error::NoItemsFound => "no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                _ => "not valid PEM",
            };
            in_file(KEY, key_file, what)
        })?;
        let signer = ring::sign::any_supported_type(&der).map_err(|_| {
            in_file(
                KEY,
                key_file,
                "key type not supported (RSA, ECDSA P-256/P-384, Ed25519)",
            )
        })?;
        CertifiedKey::new(certs, signer).keys_match().map_err(|_| {
            in_file(
                KEY,
                key_file,
                format!(
                    "does not belong to the first certificate of {}",
                    cert_file.display()
                ),
            )
        })?;

        let client_ca = match client_ca_file {
            None => None,
            Some(path) => {
                let pem = read(CLIENT_CA, path)?;
                let mut roots = RootCertStore::empty();
                for cert in certificates(CLIENT_CA, path, &pem)? {
                    roots
                        .add(cert)
                        .map_err(|e| in_file(CLIENT_CA, path, format!("not a CA: {e}")))?;
                }
                WebPkiClientVerifier::builder_with_provider(
                    roots.into(),
                    Arc::new(ring::default_provider()),
                )
                .build()
                .map_err(|e| in_file(CLIENT_CA, path, e.to_string()))?;
                Some(pem)
            }
        };
        Ok(ServerTls {
            cert_chain,
            key,
            client_ca,
        })
    }

    /// tonic's server configuration: clients must present a certificate
    /// from the client CA when there is one.
    pub(crate) fn server_config(&self) -> ServerTlsConfig {
        let config = ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_chain, &*self.key))
            .timeout(HANDSHAKE_TIMEOUT);
        match &self.client_ca {
            Some(ca) => config.client_ca_root(Certificate::from_pem(ca)),
            None => config,
        }
    }
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| in_file(key, path, format!("cannot read: {e}")))
}

/// Every certificate in `pem`; at least one.
fn certificates(
    key: &str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    // pem's own errors may quote a line of the file: never passed on.
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| in_file(key, path, "not valid PEM"))?;
    if certs.is_empty() {
        return Err(in_file(key, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn in_file(key: &str, path: &Path, what: impl std::fmt::Display) -> ConfigError {
    invalid(key, format!("{}: {what}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_matching_pair_loads_and_wrong_files_are_named_not_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            rcgen::generate_simple_self_signed(["localhost".to_string()]).unwrap(),
            rcgen::generate_simple_self_signed(["localhost".to_string()]).unwrap(),
        );
        let cert = write(dir.path(), "cert.pem", &a.cert.pem());
        let key_text = a.signing_key.serialize_pem();
        let key = write(dir.path(), "key.pem", &key_text);
        let other_key = write(dir.path(), "other.pem", &b.signing_key.serialize_pem());
        let missing = dir.path().join("missing.pem");
        // The key's base64, which no error may quote.
        let key_body: String = key_text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();

        ServerTls::load(&cert, &key, Some(&cert)).unwrap();
        let wrong: [(&Path, &Path, Option<&Path>, &str, &str); 5] = [
            (&missing, &key, None, "grpc.tls.cert_file", "missing.pem"),
            (&key, &key, None, "grpc.tls.cert_file", "no PEM certificate"),
            (
                &cert,
                &cert,
                None,
                "grpc.tls.key_file",
                "no PEM private key",
            ),
            (
                &cert,
                &other_key,
                None,
                "grpc.tls.key_file",
                "does not belong",
            ),
            (
                &cert,
                &key,
                Some(&key),
                "grpc.tls.client_ca_file",
                "no PEM certificate",
            ),
        ];
        for (cert, key, ca, named, why) in wrong {
            let e = ServerTls::load(cert, key, ca).err().unwrap().to_string();
            assert!(e.contains(named) && e.contains(why), "{e}");
            assert!(!e.contains(&key_body[..20]), "the key is echoed: {e}");
        }
    }
}
