//! Operating commands: `backup` (against a running daemon), and the offline
//! `restore` and `rotate-master-key` (the daemon stopped).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tokio_stream::StreamExt;

use agentd::backup;
use agentd::config::Config;
use agentd::crypto::{self, KeySource, MasterKey};
use agentd::rpc::proto::BackupRequest;
use agentd::rpc::proto::admin_service_client::AdminServiceClient;

use super::client::{Daemon, failure};

/// Streams a backup from the daemon into `to`: written beside it as
/// `<to>.partial`, checked whole, then renamed, so `to` is never a half file.
pub async fn backup(d: Daemon, to: &Path) -> anyhow::Result<()> {
    if to.exists() {
        bail!("{} exists: choose a new file", to.display());
    }
    let mut partial = to.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let result = receive(&d, &partial).await;
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    let header = result?;
    agentd::store::rename_durably(&partial, to)
        .with_context(|| format!("renaming to {}", to.display()))?;
    if d.out.json {
        println!("{}", serde_json::to_string_pretty(&header)?);
    } else {
        println!(
            "backup written to {}: {} entries, {} bytes, up to event {}",
            to.display(),
            header.entries,
            header.body_bytes,
            header.event_seq
        );
    }
    Ok(())
}

async fn receive(d: &Daemon, partial: &Path) -> anyhow::Result<backup::Header> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    // Claims are in the clear in a backup: only its owner may read it.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = std::io::BufWriter::new(
        options
            .open(partial)
            .with_context(|| format!("creating {}", partial.display()))?,
    );
    let mut chunks = AdminServiceClient::new(d.svc())
        .backup(BackupRequest {})
        .await
        .map_err(failure)?
        .into_inner();
    while let Some(chunk) = chunks.next().await {
        file.write_all(&chunk.map_err(failure)?.data)?;
    }
    file.into_inner()?.sync_all()?;
    // What arrived is checked as restore will check it.
    Ok(backup::verify(partial)?)
}

/// `agentd restore --from FILE --config …`.
pub fn restore(config: &Path, from: &Path) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let master = MasterKey::load_existing(
        std::env::var("AGENTD_MASTER_KEY").ok().as_deref(),
        &config.keys.master_key_file,
    )?;
    let header = backup::restore(from, &config.storage.path, master)
        .with_context(|| format!("restoring {}", from.display()))?;
    println!(
        "restored {} entries (up to event {}, taken by agentd {}) into {}; start the daemon to resume",
        header.entries,
        header.event_seq,
        header.agentd_version,
        config.storage.path.display()
    );
    Ok(())
}

/// `agentd rotate-master-key --config …`.
pub fn rotate(config: &Path) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let env = |k: &str| std::env::var(k).ok();
    let source = match (env("AGENTD_MASTER_KEY"), env("AGENTD_NEW_MASTER_KEY")) {
        (Some(old), Some(new)) => KeySource::Env { old, new },
        (None, None) => KeySource::File(config.keys.master_key_file.clone()),
        (Some(_), None) => {
            bail!(
                "the master key comes from AGENTD_MASTER_KEY: give the new one in AGENTD_NEW_MASTER_KEY"
            )
        }
        (None, Some(_)) => {
            bail!(
                "AGENTD_NEW_MASTER_KEY is set without AGENTD_MASTER_KEY: give both, or neither to rotate the key file"
            )
        }
    };
    let rotated = crypto::rotate_master_key(&config.storage.path, &source)?;
    let done = if rotated.finished_earlier_run {
        "an interrupted rotation had sealed every key under the new master key; finished it".into()
    } else {
        let s = if rotated.keys == 1 { "" } else { "s" };
        format!(
            "{} key{s} sealed again under the new master key",
            rotated.keys
        )
    };
    match source {
        KeySource::File(file) => println!(
            "{done}; it is in {} now (the old key no longer opens this database: back the new one up)",
            file.display()
        ),
        KeySource::Env { .. } => {
            println!("{done}; start the daemon with AGENTD_MASTER_KEY set to the new key")
        }
    }
    Ok(())
}
