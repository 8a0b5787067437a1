//! The master key: from `AGENTD_MASTER_KEY` (64 hex chars) or a key file made
//! with mode 0600 on first start.

use std::fs;
use std::io::Write;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct MasterKey {
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

fn parse_hex(s: &str) -> Option<Zeroizing<[u8; 32]>> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut key = Zeroizing::new([0u8; 32]);
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

/// A key file anyone but its owner can read is refused: the key would not
/// be secret, and starting as if it were hides that.
fn refuse_loose_permissions(file: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(file)
            .map_err(|e| Error::InvalidArgument(format!("{}: {e}", file.display())))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(Error::InvalidArgument(format!(
                "master key file {} has mode {:o}: others can read it; run `chmod 600 {}` \
                 (and consider the key exposed)",
                file.display(),
                mode & 0o777,
                file.display()
            )));
        }
    }
    Ok(())
}

impl MasterKey {
    pub fn from_bytes(key: [u8; 32]) -> Self {
        MasterKey {
            key: Zeroizing::new(key),
        }
    }

    /// From the environment value if given, else from `file`, which is
    /// created (0600, 64 hex chars) when missing.
    pub fn load(env_value: Option<&str>, file: &Path) -> Result<Self> {
        match Self::read(env_value, file)? {
            Some(key) => Ok(key),
            None => Self::create(file),
        }
    }

    /// As [`MasterKey::load`], but a missing file is an error: for
    /// commands that must open existing keys (restore, rotation).
    pub fn load_existing(env_value: Option<&str>, file: &Path) -> Result<Self> {
        Self::read(env_value, file)?.ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "no master key: set AGENTD_MASTER_KEY or put the key file at {}",
                file.display()
            ))
        })
    }

    /// None when there is no environment value and no file.
    fn read(env_value: Option<&str>, file: &Path) -> Result<Option<Self>> {
        if let Some(v) = env_value {
            return parse_hex(v)
                .map(|key| Some(MasterKey { key }))
                .ok_or_else(|| {
                    Error::InvalidArgument(
                        "AGENTD_MASTER_KEY must be 64 hex characters (32 bytes)".into(),
                    )
                });
        }
        match fs::read_to_string(file) {
            Ok(text) => {
                refuse_loose_permissions(file)?;
                parse_hex(&text)
                    .map(|key| Some(MasterKey { key }))
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "master key file {} must hold 64 hex characters",
                            file.display()
                        ))
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::InvalidArgument(format!(
                "cannot read master key file {}: {e}",
                file.display()
            ))),
        }
    }

    fn create(file: &Path) -> Result<Self> {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::fill(&mut key[..]);
        let hex = Zeroizing::new(key.iter().map(|b| format!("{b:02x}")).collect::<String>());
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::store::private_dir(dir, false).map_err(|e| {
                Error::InvalidArgument(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(file).map_err(|e| {
            Error::InvalidArgument(format!(
                "cannot create master key file {}: {e}",
                file.display()
            ))
        })?;
        f.write_all(hex.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::Internal(format!("writing master key file: {e}")))?;
        tracing::info!(file = %file.display(), "created a new master key file (mode 0600)");
        Ok(MasterKey { key })
    }

    /// nonce (24 bytes) || ciphertext+tag.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new((&*self.key).into());
        let mut nonce = [0u8; 24];
        rand::fill(&mut nonce);
        let ct = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption of a small buffer");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if sealed.len() < 24 + 16 {
            return Err(Error::Crypto("sealed value too short".into()));
        }
        let cipher = XChaCha20Poly1305::new((&*self.key).into());
        let (nonce, ct) = sealed.split_at(24);
        cipher
            .decrypt(
                &XNonce::try_from(nonce).map_err(|_| Error::Crypto("bad nonce".into()))?,
                Payload { msg: ct, aad },
            )
            .map(Zeroizing::new)
            .map_err(|_| Error::Crypto("sealed value does not open".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/master.key");
        let a = MasterKey::load(None, &file).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let b = MasterKey::load(None, &file).unwrap();
        let sealed = a.seal(b"aad", b"secret");
        assert_eq!(b.open(b"aad", &sealed).unwrap().as_slice(), b"secret");
        assert!(b.open(b"other", &sealed).is_err());
    }

    #[test]
    fn env_key_must_be_hex_and_never_echoed() {
        let err = MasterKey::load(Some("not-a-key-but-secretish"), Path::new("/nonexistent"))
            .unwrap_err();
        assert!(!err.to_string().contains("secretish"));
        let k = MasterKey::load(Some(&"ab".repeat(32)), Path::new("/nonexistent")).unwrap();
        assert_eq!(format!("{k:?}"), "MasterKey([REDACTED])");
    }
}
