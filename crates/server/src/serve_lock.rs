//! One `groupcast serve` per database without Redis. The embedded state (leases, pacing,
//! cancel flags) lives inside one process, so two processes on one SQLite file would each
//! think they hold every profile: they would take each other's mailings over and each pace on
//! its own. [`ServeLock::take`] refuses the second one at start-up.
//!
//! The hold is an exclusive OS file lock (`flock` on Unix, `LockFileEx` on Windows, through
//! std's [`File::try_lock`]) on `<DATABASE_PATH>.lock`, kept for the life of the process. The
//! kernel drops it when the process ends in any way, `kill -9` included, so a restart after a
//! crash is never blocked; the file itself stays (it only holds the last holder's PID).
//! With `REDIS_URL` set the state is shared and no lock is taken: several processes may serve.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The exclusive hold on a database; released when dropped or when the process ends.
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
    path: PathBuf,
}

impl ServeLock {
    /// Takes the hold on `database`, or fails with one line naming `DATABASE_PATH` (and the PID
    /// of the holder, when it can be read) if another process holds it.
    pub fn take(database: &Path) -> anyhow::Result<ServeLock> {
        let path = lock_path(database);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow::anyhow!("DATABASE_PATH {}: create folder: {e}", database.display())
            })?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| {
                anyhow::anyhow!(
                    "DATABASE_PATH {}: {}: {e}",
                    database.display(),
                    path.display()
                )
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = holder_pid(&mut file)
                    .map(|pid| format!(" (pid {pid})"))
                    .unwrap_or_default();
                anyhow::bail!(
                    "DATABASE_PATH {}: another `groupcast serve`{holder} is running on this \
                     database; without REDIS_URL only one serve process may use a database \
                     (stop the other one, or set REDIS_URL on both to run several)",
                    database.display()
                );
            }
            Err(TryLockError::Error(e)) => anyhow::bail!(
                "DATABASE_PATH {}: cannot lock {}: {e}",
                database.display(),
                path.display()
            ),
        }
        // Ours now: note who holds it, for the message a second process shows.
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.flush())
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(ServeLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `<database>.lock`, beside the database.
pub fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// The PID the holder wrote into the lock file, if readable.
fn holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_free_again_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sub/groupcast.db");
        let first = ServeLock::take(&db).unwrap();
        assert_eq!(first.path(), dir.path().join("sub/groupcast.db.lock"));
        let line = ServeLock::take(&db).unwrap_err().to_string();
        assert!(
            line.starts_with("DATABASE_PATH ")
                && line.contains("REDIS_URL")
                && line.contains(&format!("(pid {})", std::process::id()))
                && !line.contains('\n'),
            "{line}"
        );
        drop(first);
        ServeLock::take(&db).expect("free once the holder is gone");
    }
}
