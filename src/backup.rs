//! agentd's backup file. A running daemon writes one ([`Snapshot`], served
//! by `AdminService.Backup`); `agentd restore` checks one and loads it into
//! an empty data directory ([`restore`]).
//!
//! The file is three lines, then the body:
//! - `AGENTD-BACKUP 1` (the format);
//! - one line of JSON, the [`Header`];
//! - `sha256:<64 hex>`, over the body and then the JSON line.
//!
//! The body holds every entry of every tree, each as: the tree's index in
//! `Header::trees` (1 byte), the key's length (u32, big endian), the key,
//! the value's length (u32), the value. Private keys stay sealed under the
//! master key; claims and credentials are in the clear, so the file is as
//! secret as the data directory.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::crypto::{KeyStore, MasterKey};
use crate::error::Error;
use crate::store::{Entry, Store};

const MAGIC: &str = "AGENTD-BACKUP ";
const FORMAT: &str = "1";
/// The JSON line is small; a longer one is not ours.
const MAX_LINE: u64 = 64 * 1024;
const CHUNK: usize = 256 * 1024;

/// What the file says of itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    /// The agentd that wrote it.
    pub agentd_version: String,
    pub created_at_ms: i64,
    /// The last record event in it: every change up to it is in, none after.
    pub event_seq: u64,
    pub trees: Vec<String>,
    pub entries: u64,
    pub body_bytes: u64,
    /// Ids handed out after a restore start above it.
    pub id_floor: u64,
}

/// Why a backup file was refused, or could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("not an agentd backup file")]
    NotABackup,
    #[error("backup format {0:?} is not one this agentd reads (it reads {FORMAT})")]
    UnsupportedFormat(String),
    #[error("the backup is truncated: its body should be {expected} bytes, the file has {found}")]
    Truncated { expected: u64, found: u64 },
    #[error("the backup is corrupt: {0}")]
    Corrupt(String),
    #[error(
        "the master key does not open this backup's keys (wrong AGENTD_MASTER_KEY or key file?)"
    )]
    WrongMasterKey,
    #[error("{} is not empty: restore only into a new data directory", .0.display())]
    NotEmpty(PathBuf),
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Store(#[from] Error),
}

fn io(what: impl std::fmt::Display) -> impl Fn(std::io::Error) -> BackupError {
    move |e| BackupError::Io(format!("{what}: {e}"))
}

/// A snapshot staged in a scratch file, to be sent header first.
pub struct Snapshot {
    pub header: Header,
    head: Vec<u8>,
    body: File,
}

impl Snapshot {
    /// Copies the database at one point (writes wait meanwhile: see
    /// [`Store::snapshot`]). Blocking.
    pub fn take(store: &Store) -> Result<Snapshot, Error> {
        let storage = |e: std::io::Error| Error::Storage(format!("staging the backup: {e}"));
        let mut body = BufWriter::with_capacity(CHUNK, store.scratch_file()?);
        let mut hash = Sha256::new();
        let mut body_bytes = 0u64;
        let point = store.snapshot(|tree, k, v| {
            let (tree, klen, vlen) = (
                [tree as u8],
                (k.len() as u32).to_be_bytes(),
                (v.len() as u32).to_be_bytes(),
            );
            for part in [&tree[..], &klen, k, &vlen, v] {
                hash.update(part);
                body.write_all(part)?;
            }
            body_bytes += (1 + 4 + k.len() + 4 + v.len()) as u64;
            Ok(())
        })?;
        let mut body = body.into_inner().map_err(|e| storage(e.into_error()))?;
        body.rewind().map_err(storage)?;
        let header = Header {
            agentd_version: env!("CARGO_PKG_VERSION").into(),
            created_at_ms: crate::now_ms(),
            event_seq: point.event_seq,
            trees: Store::tree_names().iter().map(|n| n.to_string()).collect(),
            entries: point.entries,
            body_bytes,
            id_floor: point.id_floor,
        };
        let mut json = serde_json::to_vec(&header).expect("a header serializes");
        json.push(b'\n');
        hash.update(&json);
        let mut head = format!("{MAGIC}{FORMAT}\n").into_bytes();
        head.extend_from_slice(&json);
        head.extend_from_slice(format!("sha256:{}\n", hex(&hash.finalize())).as_bytes());
        Ok(Snapshot { header, head, body })
    }

    /// Hands out the file's bytes in chunks, header first, until `send`
    /// returns false. Blocking.
    pub fn send(mut self, mut send: impl FnMut(Vec<u8>) -> bool) -> std::io::Result<()> {
        if !send(std::mem::take(&mut self.head)) {
            return Ok(());
        }
        loop {
            let mut chunk = Vec::with_capacity(CHUNK);
            (&mut self.body)
                .take(CHUNK as u64)
                .read_to_end(&mut chunk)?;
            if chunk.is_empty() || !send(chunk) {
                return Ok(());
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a backup file entry by entry, checking as it goes; the checksum
/// is known good only once [`Reader::finish`] says so.
struct Reader {
    input: BufReader<File>,
    header: Header,
    json: Vec<u8>,
    digest: String,
    hash: Sha256,
    left: u64,
    entries: u64,
}

impl Reader {
    fn open(path: &Path) -> Result<Reader, BackupError> {
        let file = File::open(path).map_err(io(path.display()))?;
        let len = file.metadata().map_err(io(path.display()))?.len();
        let mut input = BufReader::new(file);
        let mut line = |what: &str| -> Result<Vec<u8>, BackupError> {
            let mut l = Vec::new();
            (&mut input)
                .take(MAX_LINE)
                .read_until(b'\n', &mut l)
                .map_err(io(path.display()))?;
            if l.last() != Some(&b'\n') {
                return Err(BackupError::Corrupt(format!("no complete {what} line")));
            }
            Ok(l)
        };
        let first = line("first").map_err(|_| BackupError::NotABackup)?;
        let first = String::from_utf8_lossy(&first);
        let format = first
            .trim_end()
            .strip_prefix(MAGIC)
            .ok_or(BackupError::NotABackup)?;
        if format != FORMAT {
            return Err(BackupError::UnsupportedFormat(crate::error::clip(
                format, 20,
            )));
        }
        let json = line("header")?;
        let header: Header = serde_json::from_slice(&json)
            .map_err(|e| BackupError::Corrupt(format!("header: {e}")))?;
        let sum = line("checksum")?;
        let digest = std::str::from_utf8(&sum)
            .ok()
            .and_then(|s| s.trim_end().strip_prefix("sha256:"))
            .filter(|d| d.len() == 64)
            .ok_or_else(|| BackupError::Corrupt("no sha256 line".into()))?
            .to_string();
        if header.trees.len() > 256 {
            return Err(BackupError::Corrupt("more than 256 trees".into()));
        }
        let head = (first.len() + json.len() + sum.len()) as u64;
        let found = len.saturating_sub(head);
        if found < header.body_bytes {
            return Err(BackupError::Truncated {
                expected: header.body_bytes,
                found,
            });
        }
        if found > header.body_bytes {
            return Err(BackupError::Corrupt(format!(
                "{} bytes after the end of the body",
                found - header.body_bytes
            )));
        }
        Ok(Reader {
            input,
            left: header.body_bytes,
            header,
            json,
            digest,
            hash: Sha256::new(),
            entries: 0,
        })
    }

    fn read(&mut self, n: u64) -> Result<Vec<u8>, BackupError> {
        if n > self.left {
            return Err(BackupError::Corrupt(format!(
                "entry {} runs past the end of the body",
                self.entries + 1
            )));
        }
        let mut buf = vec![0; n as usize];
        self.input
            .read_exact(&mut buf)
            .map_err(io("reading the backup"))?;
        self.hash.update(&buf);
        self.left -= n;
        Ok(buf)
    }

    fn length(&mut self) -> Result<u64, BackupError> {
        let b = self.read(4)?;
        Ok(u32::from_be_bytes(b.try_into().expect("4 bytes")) as u64)
    }

    /// The next `(tree name, key, value)`, or None at the end of the body.
    fn next_entry(&mut self) -> Result<Option<Entry>, BackupError> {
        if self.left == 0 {
            return Ok(None);
        }
        let tree = self.read(1)?[0] as usize;
        let name = self.header.trees.get(tree).cloned().ok_or_else(|| {
            BackupError::Corrupt(format!("entry {} names tree {tree}", self.entries + 1))
        })?;
        let klen = self.length()?;
        let k = self.read(klen)?;
        let vlen = self.length()?;
        let v = self.read(vlen)?;
        self.entries += 1;
        Ok(Some((name, k, v)))
    }

    /// Checks the checksum and the count once every entry was read.
    fn finish(mut self) -> Result<Header, BackupError> {
        self.hash.update(&self.json);
        if hex(&self.hash.finalize()) != self.digest {
            return Err(BackupError::Corrupt("the checksum does not match".into()));
        }
        if self.entries != self.header.entries {
            return Err(BackupError::Corrupt(format!(
                "{} entries, the header says {}",
                self.entries, self.header.entries
            )));
        }
        Ok(self.header)
    }
}

/// Reads the whole file and checks it: format, length, checksum, entries.
pub fn verify(path: &Path) -> Result<Header, BackupError> {
    let mut r = Reader::open(path)?;
    while r.next_entry()?.is_some() {}
    r.finish()
}

/// Restores `file` into `data_dir`, which must be missing or empty. The
/// file is checked whole first; it is loaded beside `data_dir`, and moved
/// into place only once `master` has opened every key in it, so a refusal
/// leaves nothing behind.
pub fn restore(file: &Path, data_dir: &Path, master: MasterKey) -> Result<Header, BackupError> {
    match std::fs::read_dir(data_dir).map(|mut d| d.next().is_some()) {
        Ok(true) => return Err(BackupError::NotEmpty(data_dir.to_path_buf())),
        Ok(false) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(data_dir.display())(e)),
    }
    verify(file)?;
    let mut staging = data_dir.as_os_str().to_owned();
    staging.push(".restoring");
    let staging = PathBuf::from(staging);
    // Only a restore that died midway leaves this name.
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(staging.display()))?;
    }
    if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::store::private_dir(parent, false).map_err(io(parent.display()))?;
    }
    let loaded = load(file, &staging, master);
    if loaded.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    let header = loaded?;
    crate::store::rename_durably(&staging, data_dir).map_err(io(data_dir.display()))?;
    Ok(header)
}

/// Writes the file's entries into a new database at `path` and checks
/// that `master` opens its keys.
fn load(file: &Path, path: &Path, master: MasterKey) -> Result<Header, BackupError> {
    let mut r = Reader::open(file)?;
    let id_floor = r.header.id_floor;
    let mut failed = None;
    let entries = std::iter::from_fn(|| match r.next_entry() {
        Ok(e) => e.map(Ok),
        Err(e) => {
            failed = Some(e);
            None
        }
    });
    let store = Store::load(path, id_floor, entries)?;
    if let Some(e) = failed {
        return Err(e);
    }
    let header = r.finish()?;
    // A key that does not open is the master key's fault; a read that
    // fails is the store's, and says so.
    let wrong_key = |e| match e {
        Error::Crypto(_) => BackupError::WrongMasterKey,
        e => BackupError::Store(e),
    };
    let keys = KeyStore::open(master, store.clone()).map_err(wrong_key)?;
    keys.open_all().map_err(wrong_key)?;
    store.flush()?;
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DidMethod;

    /// A store with wallets, DIDs and keys, and its backup's bytes.
    fn backed_up() -> (crate::testing::TestCore, Vec<u8>) {
        let t = crate::testing::core();
        t.did("default", DidMethod::Key);
        t.did("w2", DidMethod::Peer2);
        for _ in 0..5 {
            t.core.store.next_id().unwrap();
        }
        let mut bytes = Vec::new();
        Snapshot::take(&t.core.store)
            .unwrap()
            .send(|chunk| {
                bytes.extend_from_slice(&chunk);
                true
            })
            .unwrap();
        (t, bytes)
    }

    fn entries(store: &Store) -> Vec<(usize, Vec<u8>, Vec<u8>)> {
        let mut all = Vec::new();
        store
            .snapshot(|t, k, v| {
                all.push((t, k.to_vec(), v.to_vec()));
                Ok(())
            })
            .unwrap();
        all
    }

    fn master() -> MasterKey {
        MasterKey::from_bytes([7; 32])
    }

    #[test]
    fn a_restore_holds_every_entry_and_ids_keep_rising() {
        let (t, bytes) = backed_up();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("b");
        std::fs::write(&file, &bytes).unwrap();
        let header = restore(&file, &dir.path().join("data/db"), master()).unwrap();
        let restored = Store::open(&dir.path().join("data/db")).unwrap();
        let (before, after) = (entries(&t.core.store), entries(&restored));
        // The restored meta tree also holds the id floor.
        assert_eq!(after.len(), before.len() + 1);
        assert!(before.iter().all(|e| after.contains(e)));
        assert_eq!(header.entries as usize, before.len());
        assert!(restored.next_id().unwrap() >= t.core.store.next_id().unwrap());
        assert!(!dir.path().join("data/db.restoring").exists());
    }

    #[test]
    fn every_truncation_and_every_flipped_bit_is_refused() {
        let (_t, bytes) = backed_up();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("b");
        std::fs::write(&file, &bytes).unwrap();
        verify(&file).unwrap();
        for len in 0..bytes.len() {
            std::fs::write(&file, &bytes[..len]).unwrap();
            assert!(verify(&file).is_err(), "cut at {len} of {}", bytes.len());
        }
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x10;
            std::fs::write(&file, &flipped).unwrap();
            assert!(verify(&file).is_err(), "bit flipped in byte {i}");
        }
        std::fs::write(&file, &bytes[..bytes.len() - 1]).unwrap();
        let target = dir.path().join("db");
        let err = restore(&file, &target, master()).unwrap_err();
        assert!(matches!(err, BackupError::Truncated { .. }), "{err}");
        assert!(!target.exists());
        std::fs::write(&file, b"{\"not\": \"a backup\"}\n").unwrap();
        let err = restore(&file, &target, master()).unwrap_err();
        assert!(matches!(err, BackupError::NotABackup), "{err}");
    }

    #[test]
    fn a_wrong_master_key_or_a_used_directory_is_refused_and_nothing_is_left() {
        let (_t, bytes) = backed_up();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("b");
        std::fs::write(&file, &bytes).unwrap();
        let target = dir.path().join("db");
        let err = restore(&file, &target, MasterKey::from_bytes([8; 32])).unwrap_err();
        assert!(matches!(err, BackupError::WrongMasterKey), "{err}");
        assert!(!target.exists());
        assert!(!dir.path().join("db.restoring").exists());
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("something"), b"x").unwrap();
        let err = restore(&file, &target, master()).unwrap_err();
        assert!(matches!(err, BackupError::NotEmpty(_)), "{err}");
        // An empty directory (made ready by the operator) is fine.
        std::fs::remove_file(target.join("something")).unwrap();
        restore(&file, &target, master()).unwrap();
    }
}
