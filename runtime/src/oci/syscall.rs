//! The privileged system calls of the container setup, behind a trait so that the setup
//! sequence (mounts, devices, pivot_root, hostname, sysctls) can be unit-tested without
//! root: [`Linux`] makes the calls, the test double records them.

use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};

/// The calls the container setup makes that need privileges or change the process.
pub trait Syscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    /// Sets (`set`) and clears (`clear`) `MOUNT_ATTR_*` bits on the mount tree at `target`.
    fn mount_setattr_recursive(&self, target: &Path, set: u64, clear: u64) -> nix::Result<()>;
    /// Makes `new_root` the root: pivot_root, then detaches the old root.
    fn pivot_root(&self, new_root: &Path) -> nix::Result<()>;
    /// For `--no-pivot`: moves `new_root` onto `/` and chroots into it.
    fn move_root(&self, new_root: &Path) -> nix::Result<()>;
    fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, dev: u64) -> nix::Result<()>;
    fn chown(&self, path: &Path, uid: Option<Uid>, gid: Option<Gid>) -> nix::Result<()>;
    fn symlink(&self, target: &Path, link: &Path) -> nix::Result<()>;
    fn sethostname(&self, name: &str) -> nix::Result<()>;
    fn setdomainname(&self, name: &str) -> nix::Result<()>;
    fn write_file(&self, path: &Path, content: &str) -> std::io::Result<()>;
}

/// The real thing.
pub struct Linux;

impl Syscall for Linux {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn mount_setattr_recursive(&self, target: &Path, set: u64, clear: u64) -> nix::Result<()> {
        let path = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
            .map_err(|_| nix::Error::EINVAL)?;
        let attr = libc::mount_attr {
            attr_set: set,
            attr_clr: clear,
            propagation: 0,
            userns_fd: 0,
        };
        // SAFETY: mount_setattr(2) reads the NUL-terminated path and `attr` of the given
        // size; both outlive the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                libc::AT_FDCWD,
                path.as_ptr(),
                libc::AT_RECURSIVE,
                &attr as *const libc::mount_attr,
                std::mem::size_of::<libc::mount_attr>(),
            )
        };
        nix::Error::result(rc).map(drop)
    }

    fn pivot_root(&self, new_root: &Path) -> nix::Result<()> {
        use nix::fcntl::{OFlag, open};
        let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
        let old = open("/", flags, Mode::empty())?;
        let new = open(new_root, flags, Mode::empty())?;
        // pivot_root(".", ".") stacks the old root on top of the new one, so no directory
        // for it is needed in the container's file system.
        nix::unistd::fchdir(&new)?;
        nix::unistd::pivot_root(".", ".")?;
        nix::unistd::fchdir(&old)?;
        // The old root may be shared with the host: keep our unmount from propagating.
        nix::mount::mount(
            None::<&str>,
            ".",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )?;
        nix::mount::umount2(".", MntFlags::MNT_DETACH)?;
        nix::unistd::chdir("/")
    }

    fn move_root(&self, new_root: &Path) -> nix::Result<()> {
        nix::unistd::chdir(new_root)?;
        nix::mount::mount(
            Some(new_root),
            "/",
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )?;
        nix::unistd::chroot(".")?;
        nix::unistd::chdir("/")
    }

    fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, dev: u64) -> nix::Result<()> {
        nix::sys::stat::mknod(path, kind, perm, dev)
    }

    fn chown(&self, path: &Path, uid: Option<Uid>, gid: Option<Gid>) -> nix::Result<()> {
        nix::unistd::chown(path, uid, gid)
    }

    fn symlink(&self, target: &Path, link: &Path) -> nix::Result<()> {
        nix::unistd::symlinkat(target, nix::fcntl::AT_FDCWD, link)
    }

    fn sethostname(&self, name: &str) -> nix::Result<()> {
        nix::unistd::sethostname(name)
    }

    fn setdomainname(&self, name: &str) -> nix::Result<()> {
        // SAFETY: setdomainname(2) reads `len` bytes from the string's buffer.
        let rc = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
        nix::Error::result(rc).map(drop)
    }

    fn write_file(&self, path: &Path, content: &str) -> std::io::Result<()> {
        std::fs::write(path, content)
    }
}

/// A [`Syscall`] that records what the setup asks for instead of doing it; file-system
/// operations that need no privilege (directories, symlinks) still happen for real, so the
/// setup can walk a fake root file system in a temporary directory.
#[cfg(test)]
pub mod testing {
    use super::*;
    use std::cell::RefCell;
    use std::path::PathBuf;

    pub struct Recorder {
        /// Paths are shown relative to this directory (the fake root's parent).
        pub base: PathBuf,
        pub calls: RefCell<Vec<String>>,
    }

    impl Recorder {
        pub fn new(base: &Path) -> Recorder {
            Recorder {
                base: base.canonicalize().unwrap(),
                calls: RefCell::new(Vec::new()),
            }
        }

        /// `/proc/self/fd/N/...` and absolute paths shown relative to `base`.
        pub fn show(&self, path: &Path) -> String {
            let mut real = path.to_path_buf();
            let s = path.to_string_lossy();
            if let Some(rest) = s.strip_prefix("/proc/self/fd/") {
                let (fd, tail) = rest.split_once('/').unwrap_or((rest, ""));
                let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
                real = if tail.is_empty() {
                    link
                } else {
                    link.join(tail)
                };
            }
            match real.strip_prefix(&self.base) {
                Ok(rel) => format!("@/{}", rel.display()),
                Err(_) => real.display().to_string(),
            }
        }

        fn record(&self, call: String) {
            self.calls.borrow_mut().push(call);
        }

        pub fn calls(&self) -> Vec<String> {
            self.calls.borrow().clone()
        }
    }

    impl Syscall for Recorder {
        fn mount(
            &self,
            source: Option<&Path>,
            target: &Path,
            fstype: Option<&str>,
            flags: MsFlags,
            data: Option<&str>,
        ) -> nix::Result<()> {
            self.record(format!(
                "mount {} {} {} {:?} {}",
                source.map(|s| self.show(s)).unwrap_or("-".into()),
                self.show(target),
                fstype.unwrap_or("-"),
                flags,
                data.unwrap_or("-")
            ));
            Ok(())
        }
        fn mount_setattr_recursive(&self, target: &Path, set: u64, clear: u64) -> nix::Result<()> {
            self.record(format!(
                "mount_setattr {} set={set:#x} clear={clear:#x}",
                self.show(target)
            ));
            Ok(())
        }
        fn pivot_root(&self, new_root: &Path) -> nix::Result<()> {
            self.record(format!("pivot_root {}", self.show(new_root)));
            Ok(())
        }
        fn move_root(&self, new_root: &Path) -> nix::Result<()> {
            self.record(format!("move_root {}", self.show(new_root)));
            Ok(())
        }
        fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, dev: u64) -> nix::Result<()> {
            self.record(format!(
                "mknod {} {:o} {:o} {}:{}",
                self.show(path),
                kind.bits(),
                perm.bits(),
                nix::sys::stat::major(dev),
                nix::sys::stat::minor(dev)
            ));
            Ok(())
        }
        fn chown(&self, path: &Path, uid: Option<Uid>, gid: Option<Gid>) -> nix::Result<()> {
            self.record(format!("chown {} {uid:?} {gid:?}", self.show(path)));
            Ok(())
        }
        fn symlink(&self, target: &Path, link: &Path) -> nix::Result<()> {
            self.record(format!(
                "symlink {} -> {}",
                self.show(link),
                target.display()
            ));
            nix::unistd::symlinkat(target, nix::fcntl::AT_FDCWD, link)
        }
        fn sethostname(&self, name: &str) -> nix::Result<()> {
            self.record(format!("sethostname {name}"));
            Ok(())
        }
        fn setdomainname(&self, name: &str) -> nix::Result<()> {
            self.record(format!("setdomainname {name}"));
            Ok(())
        }
        fn write_file(&self, path: &Path, content: &str) -> std::io::Result<()> {
            self.record(format!("write {} {content}", path.display()));
            Ok(())
        }
    }
}
