//! Paths inside the container's root file system, resolved by the kernel as if that root
//! were `/` (openat2 with RESOLVE_IN_ROOT): a symlink in an image (`/etc -> /host`) can
//! never send a mount, device or file of the runtime outside the container.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::stat::Mode;

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// What to create at the end of a path that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    Dir,
    File,
}

fn openat2(dir: BorrowedFd<'_>, path: &Path, flags: i32, resolve: u64) -> nix::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| nix::Error::EINVAL)?;
    // SAFETY: open_how is plain integers, for which all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    loop {
        // SAFETY: openat2(2) reads the NUL-terminated path and the open_how of the given
        // size; both live across the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        match nix::Error::result(fd) {
            Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e),
            // SAFETY: the kernel returned a new descriptor that nothing else owns.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        }
    }
}

fn relative(path: &Path) -> &Path {
    path.strip_prefix("/").unwrap_or(path)
}

/// Opens `path` (container view) under `root` as an `O_PATH` descriptor.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path) -> nix::Result<OwnedFd> {
    let rel = relative(path);
    if rel.as_os_str().is_empty() {
        return openat2(root, Path::new("."), libc::O_PATH, RESOLVE_IN_ROOT);
    }
    openat2(
        root,
        rel,
        libc::O_PATH,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    )
}

/// Opens `path` under `root`, first creating what is missing: directories on the way
/// (mode 0755) and, at the end, a directory or an empty file. A dangling symlink on the
/// way is followed (inside the root) and what it points to is created.
pub fn create_in_root(root: BorrowedFd<'_>, path: &Path, last: Create) -> nix::Result<OwnedFd> {
    let mut path = clean(path);
    // Each round creates one missing component or follows one dangling link.
    for _ in 0..256 {
        match open_in_root(root, &path) {
            Err(nix::Error::ENOENT) => {}
            other => return other,
        }
        let comps: Vec<&std::ffi::OsStr> = path.iter().skip(1).collect();
        // The deepest ancestor that exists (the root always does).
        let (k, parent) = (0..comps.len())
            .rev()
            .find_map(|k| {
                let prefix: PathBuf = comps[..k].iter().collect();
                open_in_root(root, &Path::new("/").join(prefix))
                    .ok()
                    .map(|fd| (k, fd))
            })
            .ok_or(nix::Error::ENOENT)?;
        let name = comps[k];
        let rest: PathBuf = comps[k + 1..].iter().collect();
        match nix::fcntl::readlinkat(&parent, name) {
            Ok(target) => {
                let target = PathBuf::from(target);
                let base = if target.is_absolute() {
                    PathBuf::from("/")
                } else {
                    container_path(root, &parent)?
                };
                path = clean(&base.join(target).join(rest));
            }
            Err(nix::Error::ENOENT) | Err(nix::Error::EINVAL) => {
                let made = if k + 1 == comps.len() && last == Create::File {
                    nix::fcntl::openat(
                        &parent,
                        name,
                        nix::fcntl::OFlag::O_CREAT
                            | nix::fcntl::OFlag::O_WRONLY
                            | nix::fcntl::OFlag::O_NOFOLLOW
                            | nix::fcntl::OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o644),
                    )
                    .map(drop)
                } else {
                    nix::sys::stat::mkdirat(&parent, name, Mode::from_bits_truncate(0o755))
                };
                match made {
                    Ok(()) | Err(nix::Error::EEXIST) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(nix::Error::ELOOP)
}

/// `/`-rooted, without `.` and `..` (which cannot climb above the root).
fn clean(path: &Path) -> PathBuf {
    super::mounts::clean_container_path(path)
}

/// Where `fd` is, as a path inside the root.
fn container_path(root: BorrowedFd<'_>, fd: &OwnedFd) -> nix::Result<PathBuf> {
    let real = |raw: i32| {
        std::fs::read_link(format!("/proc/self/fd/{raw}"))
            .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
    };
    let (root_path, path) = (real(root.as_raw_fd())?, real(fd.as_raw_fd())?);
    let rel = path
        .strip_prefix(&root_path)
        .map_err(|_| nix::Error::EXDEV)?;
    Ok(Path::new("/").join(rel))
}

/// A path that names what `fd` refers to, for calls that only take paths (mount(2)).
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn symlinks_stay_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // An image's hostile links: absolute and relative escapes.
        std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../outside", root.join("etc/rel")).unwrap();
        let rootfd = nix::fcntl::open(
            &root,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        // A dangling link: what it points to is made, inside the root.
        std::os::unix::fs::symlink("/var/run-target", root.join("dangling")).unwrap();
        for p in ["/abs/made", "/etc/rel/made", "/dangling/sub"] {
            let fd = create_in_root(rootfd.as_fd(), Path::new(p), Create::Dir).unwrap();
            let real = std::fs::read_link(fd_path(&fd)).unwrap();
            assert!(
                real.starts_with(&root),
                "{p} resolved to {}",
                real.display()
            );
        }
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert!(root.join("var/run-target/sub").is_dir());
        let f = create_in_root(rootfd.as_fd(), Path::new("/a/b/file"), Create::File).unwrap();
        assert!(
            std::fs::read_link(fd_path(&f))
                .unwrap()
                .ends_with("a/b/file")
        );
        assert!(root.join("a/b/file").is_file());
        assert_eq!(
            open_in_root(rootfd.as_fd(), Path::new("/nope")).unwrap_err(),
            nix::Error::ENOENT
        );
        assert!(open_in_root(rootfd.as_fd(), Path::new("/")).is_ok());
    }
}
