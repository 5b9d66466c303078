//! File helpers shared by the store: flock-based locks and write-to-temp-then-rename.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};

/// An flock(2) held on a lock file until dropped.
pub struct FileLock {
    _held: Flock<File>,
}

impl FileLock {
    fn open(path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
    }

    fn take(path: &Path, arg: FlockArg) -> io::Result<Option<FileLock>> {
        let file = Self::open(path)?;
        match Flock::lock(file, arg) {
            Ok(lock) => Ok(Some(FileLock { _held: lock })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(io::Error::from(e)),
        }
    }

    /// Waits for the exclusive lock on `path` (created if missing).
    pub fn exclusive(path: &Path) -> io::Result<FileLock> {
        Self::take(path, FlockArg::LockExclusive).map(|l| l.expect("blocking lock"))
    }

    /// Waits for a shared lock on `path` (created if missing).
    pub fn shared(path: &Path) -> io::Result<FileLock> {
        Self::take(path, FlockArg::LockShared).map(|l| l.expect("blocking lock"))
    }

    /// The exclusive lock on `path` if nobody holds any lock on it now.
    pub fn try_exclusive(path: &Path) -> io::Result<Option<FileLock>> {
        Self::take(path, FlockArg::LockExclusiveNonblock)
    }
}

/// A name suffix unique to this process and call, for temporary files.
pub fn unique_suffix() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A temporary path next to `path` (same directory, so a rename is atomic).
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", unique_suffix()))
}

/// Writes `bytes` to `path` atomically: readers see the old or the new content, whole,
/// also after a crash (the content is synced before it replaces the old).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_replacing(path, bytes, true)
}

/// [`write_atomic`] without the sync, for what a crash may lose: one sync less on a hot
/// path (a container start), where the disk is shared with other writers.
pub fn write_atomic_unsynced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_replacing(path, bytes, false)
}

fn write_replacing(path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    let tmp = temp_path_for(path);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes a directory tree; a tree that is already gone is fine.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Removes a file; a file that is already gone is fine.
pub fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        // No temporary is left next to it.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn exclusive_lock_excludes_others() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        let held = FileLock::exclusive(&p).unwrap();
        assert!(FileLock::try_exclusive(&p).unwrap().is_none());
        drop(held);
        assert!(FileLock::try_exclusive(&p).unwrap().is_some());
        let _shared = FileLock::shared(&p).unwrap();
        assert!(FileLock::try_exclusive(&p).unwrap().is_none());
    }
}
