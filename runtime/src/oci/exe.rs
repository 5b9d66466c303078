//! Protection of the runtime binary against a container overwriting it (CVE-2019-5736):
//! the container's processes are clones of the runtime until they execute their
//! program, so `/proc/PID/exe` (and a `#!/proc/self/exe` interpreter) reaches the
//! runtime's executable. Before creating containers, the runtime re-executes itself once
//! from a private, detached, read-only bind mount of its own binary: /proc/self/exe
//! then names a file that nothing can write through, and that mount is in no mount
//! namespace, so no one (not even a privileged container) can make it writable.
//! Where the mount API is missing (Linux < 5.12), a sealed memfd copy does the same job
//! at the price of a copy of the binary.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use super::Error;

/// Whether this process's executable cannot be written: it lives on a read-only mount
/// or is a write-sealed memfd.
pub fn is_sealed() -> bool {
    let Ok(f) = std::fs::File::open("/proc/self/exe") else {
        return false;
    };
    if let Ok(s) = nix::sys::statvfs::fstatvfs(&f)
        && s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY)
    {
        return true;
    }
    // SAFETY: fcntl(2) F_GET_SEALS on a descriptor we own; no memory is passed.
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & libc::F_SEAL_WRITE != 0
}

/// Where a sealed process's binary came from, for [`program_path`].
const SEALED_FROM: &str = "RBOX_SEALED_FROM";

/// The path of this program's binary, also when it runs sealed (from a mount or memfd
/// without a path): to start another instance of it.
pub fn program_path() -> std::path::PathBuf {
    if is_sealed()
        && let Some(path) = std::env::var_os(SEALED_FROM)
    {
        return path.into();
    }
    std::env::current_exe().unwrap_or_else(|_| "rbox".into())
}

/// Re-executes the current program (same arguments and environment) from a read-only
/// view of its binary, unless it already runs from one. Call it first thing in `main`
/// of any program that creates containers or executes processes in them; it returns
/// `Ok` when the process is (already) protected, and does not return when it re-executes.
pub fn seal_current_exe() -> Result<(), Error> {
    if is_sealed() {
        return Ok(());
    }
    let exe = read_only_mount(c"/proc/self/exe").or_else(|_| sealed_copy())?;
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()).expect("arguments have no NUL"))
        .collect();
    // The sealed binary has no path (/proc/self/exe reads "/"); keep the original for
    // programs this one starts later (the DNS responder).
    let original = std::fs::read_link("/proc/self/exe").ok();
    let env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != SEALED_FROM)
        .chain(original.map(|p| (SEALED_FROM.into(), p.into_os_string())))
        .map(|(k, v)| {
            let mut b = k.as_bytes().to_vec();
            b.push(b'=');
            b.extend_from_slice(v.as_bytes());
            CString::new(b).expect("environment has no NUL")
        })
        .collect();
    let err = nix::unistd::execveat(&exe, c"", &args, &env, nix::fcntl::AtFlags::AT_EMPTY_PATH)
        .unwrap_err();
    Err(Error::io(
        "re-execute the runtime from its sealed binary",
        err,
    ))
}

/// A detached, read-only bind mount of a file (open_tree + mount_setattr).
fn read_only_mount(path: &std::ffi::CStr) -> Result<OwnedFd, Error> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    // SAFETY: open_tree(2) reads the NUL-terminated path; it returns a new descriptor.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    let fd = nix::Error::result(fd).map_err(|e| Error::io("open_tree of the runtime binary", e))?;
    // SAFETY: the kernel returned this new descriptor; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr(2) reads `attr` of the given size; the empty path with
    // AT_EMPTY_PATH names the descriptor itself.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    nix::Error::result(rc)
        .map_err(|e| Error::io("make the runtime binary's mount read-only", e))?;
    Ok(fd)
}

/// A sealed memfd holding a copy of our binary.
fn sealed_copy() -> Result<OwnedFd, Error> {
    let fd = nix::sys::memfd::memfd_create(
        c"rbox-runc",
        nix::sys::memfd::MFdFlags::MFD_CLOEXEC | nix::sys::memfd::MFdFlags::MFD_ALLOW_SEALING,
    )
    .map_err(|e| Error::io("memfd_create", e))?;
    let mut src = std::fs::File::open("/proc/self/exe")
        .map_err(|e| Error::io("open the runtime binary", e))?;
    let mut dst = std::fs::File::from(fd);
    std::io::copy(&mut src, &mut dst).map_err(|e| Error::io("copy the runtime binary", e))?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl(2) F_ADD_SEALS with an integer argument on our memfd.
    let rc = unsafe { libc::fcntl(dst.as_raw_fd(), libc::F_ADD_SEALS, seals) };
    nix::Error::result(rc).map_err(|e| Error::io("seal the runtime binary's copy", e))?;
    Ok(OwnedFd::from(dst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_copy_cannot_be_written() {
        let fd = sealed_copy().unwrap();
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let err = std::fs::OpenOptions::new().write(true).open(&path);
        // Opening may succeed, writing may not: the write seal forbids every write.
        if let Ok(mut f) = err {
            use std::io::Write;
            assert!(f.write_all(b"x").is_err());
        }
        // SAFETY: fcntl(2) F_GET_SEALS on our descriptor.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        assert_ne!(seals & libc::F_SEAL_WRITE, 0);
    }

    #[test]
    fn a_read_only_mount_refuses_writes() {
        // Needs CAP_SYS_ADMIN (tests run as root).
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("binary");
        std::fs::write(&file, "original").unwrap();
        let c = CString::new(file.as_os_str().as_bytes()).unwrap();
        let fd = read_only_mount(&c).unwrap();
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let err = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "original");
    }
}
