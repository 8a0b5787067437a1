//! The database's place on disk: directories and files only we may read,
//! and renames that outlive a crash.

use std::path::Path;

/// Creates `dir` (and missing parents) with mode 0700; an existing
/// directory is left as it is, unless `always` (one that is ours alone).
pub fn private_dir(dir: &Path, always: bool) -> std::io::Result<()> {
    let existed = dir.exists();
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    if always || !existed {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Renames `from` to `to` (atomic on one file system) and syncs the
/// directory holding `to`, so that the rename outlives a crash once this
/// returns: for files and directories that replace another in one step.
pub fn rename_durably(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    let dir = to
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

/// Makes every file under `dir` 0600 (and every directory 0700).
pub(super) fn private_files(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
                private_files(&path)?;
            } else {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}
