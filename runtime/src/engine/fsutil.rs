//! Small file helpers every piece of state uses: atomic writes and file locks.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use super::error::{Error, Result};

/// `.<name of path><suffix>`, beside `path`.
fn beside(path: &Path, suffix: &str) -> std::path::PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    path.with_file_name(format!(".{name}{suffix}"))
}

/// Makes `file` (mode 0600) hold exactly `data`, reusing it if it exists.
fn write_private(file: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(file)?;
    f.write_all(data)?;
    f.set_len(data.len() as u64)
}

/// Writes `data` to `path` through a temporary file in the same directory and a rename,
/// so readers see the old content or the new, never a part.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = beside(path, &format!(".tmp{}", std::process::id()));
    write_private(&tmp, data)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io("cannot write", path)(e)
        })
}

/// [`write_atomic`] for a file that only holders of its lock write (a container's
/// record): the new content goes into a spare file kept beside it, which then swaps
/// places with the old one (`renameat2` with `RENAME_EXCHANGE`). Readers still see the
/// old content or the new; but no inode is made or freed per write, which on ext4
/// without a journal costs more than the rest of the write.
pub fn replace_locked(path: &Path, data: &[u8]) -> Result<()> {
    let spare = beside(path, ".spare");
    let swap = || match nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        &spare,
        nix::fcntl::AT_FDCWD,
        path,
        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
    ) {
        Ok(()) => Ok(()),
        // The first write, or a file system that cannot exchange.
        Err(nix::Error::ENOENT | nix::Error::EINVAL | nix::Error::ENOSYS) => {
            std::fs::rename(&spare, path)
        }
        Err(e) => Err(e.into()),
    };
    write_private(&spare, data)
        .and_then(|()| swap())
        .map_err(Error::io("cannot write", path))
}

/// Takes an exclusive lock on `path` (a file or a directory), waiting for it.
pub fn lock_exclusive(path: &Path) -> Result<Flock<File>> {
    let file = File::open(path).map_err(Error::io("cannot open for locking", path))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::io("cannot lock", path)(e.into()))
}

/// Opens (creating) a lock file and takes an exclusive lock on it, waiting for it.
pub fn lock_file(path: &Path) -> Result<Flock<File>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(Error::io("cannot open lock file", path))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::io("cannot lock", path)(e.into()))
}

/// True when some process holds a lock on `path`; false when none does or the file is
/// missing (its owner never started or the machine rebooted).
pub fn is_locked(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_) => false,
        Err((_, e)) => e == nix::errno::Errno::EWOULDBLOCK,
    }
}

/// Calls `f` (a unix socket's bind or connect) with a path to `path` that fits a socket
/// address (108 bytes): through `/proc/self/fd/N/` of its directory when it is longer.
pub fn with_short_path<T>(
    path: &Path,
    f: impl FnOnce(&Path) -> std::io::Result<T>,
) -> std::io::Result<T> {
    const SUN_PATH_MAX: usize = 107;
    if path.as_os_str().len() <= SUN_PATH_MAX {
        return f(path);
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return f(path);
    };
    let dir = File::open(dir)?;
    let short = Path::new("/proc/self/fd")
        .join(std::os::fd::AsRawFd::as_raw_fd(&dir).to_string())
        .join(name);
    f(&short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }
    #[test]
    fn replace_locked_swaps_in_the_new_content_and_reuses_the_spare() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rec.json");
        replace_locked(&p, b"first, longer").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"first, longer");
        replace_locked(&p, b"second").unwrap();
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"second",
            "shorter content is cut"
        );
        let inodes = |p: &Path| std::fs::metadata(p).unwrap().ino();
        let spare = dir.path().join(".rec.json.spare");
        let before = [inodes(&p), inodes(&spare)];
        replace_locked(&p, b"third").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"third");
        assert_eq!(
            [inodes(&spare), inodes(&p)],
            before,
            "the two files swapped, no new inode"
        );
    }

    #[test]
    fn sockets_on_long_paths() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("d".repeat(60)).join("e".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        let sock = deep.join("attach.sock");
        let listener =
            with_short_path(&sock, |p| std::os::unix::net::UnixListener::bind(p)).unwrap();
        assert!(sock.exists());
        with_short_path(&sock, |p| std::os::unix::net::UnixStream::connect(p)).unwrap();
        drop(listener);
    }

    #[test]
    fn lock_is_seen_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        assert!(!is_locked(&p));
        let held = lock_file(&p).unwrap();
        assert!(is_locked(&p));
        drop(held);
        assert!(!is_locked(&p));
    }
}
