//! Network namespaces pinned at a path (bind mounts of nsfs files), and netlink sockets
//! opened inside them.
//!
//! A helper thread enters (or creates) the namespace, so the calling thread never leaves
//! the host's namespace; a socket keeps the namespace it was made in, so the host
//! process then configures the sandbox through that one socket without forking.

use std::fs::{self, File};
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("network namespace pinned at {0} does not exist")]
    Missing(PathBuf),
}

type Result<T> = std::result::Result<T, NetnsError>;

fn err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(nix::Error) -> NetnsError + 'a {
    move |e| NetnsError::Io {
        action,
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// Makes `dir` a shared mount point (as iproute2 does for `/run/netns`), so that a pin
/// removed here also disappears from mount namespaces copied after it was made.
/// Call under the state lock (two callers would stack two bind mounts).
pub fn prepare_dir(dir: &Path) -> Result<()> {
    let shared = |d: &Path| {
        mount(
            None::<&str>,
            d,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared(dir) {
        Ok(()) => Ok(()),
        // EINVAL: not a mount point yet.
        Err(nix::Error::EINVAL) => {
            mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(err("bind mount", dir))?;
            shared(dir).map_err(err("make shared", dir))
        }
        Err(e) => Err(err("make shared", dir)(e)),
    }
}

/// Creates a network namespace pinned at `pin`, with IPv4 forwarding off and `lo` left
/// for the caller to bring up; returns a NETLINK_ROUTE socket inside it. On error nothing is left at `pin`.
pub fn create(pin: &Path) -> Result<OwnedFd> {
    in_helper_thread(|| {
        unshare(CloneFlags::CLONE_NEWNET).map_err(err("create network namespace for", pin))?;
        File::create_new(pin).map_err(|source| NetnsError::Io {
            action: "create pin",
            path: pin.to_path_buf(),
            source,
        })?;
        let pinned = mount(
            Some("/proc/thread-self/ns/net"),
            pin,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(err("pin network namespace at", pin));
        // A new namespace may inherit forwarding from the host's: a container on two
        // networks must not route between them.
        let socket = pinned
            .and_then(|()| {
                fs::write("/proc/sys/net/ipv4/ip_forward", "0").map_err(|source| NetnsError::Io {
                    action: "turn off forwarding in",
                    path: pin.to_path_buf(),
                    source,
                })
            })
            .and_then(|()| route_socket(pin));
        if socket.is_err() {
            let _ = remove(pin);
        }
        socket
    })
}

/// A NETLINK_ROUTE socket inside the namespace pinned at `pin`.
pub fn route_socket_in(pin: &Path) -> Result<OwnedFd> {
    let ns = open(pin)?;
    in_helper_thread(move || {
        setns(&ns, CloneFlags::CLONE_NEWNET).map_err(err("enter network namespace", pin))?;
        route_socket(pin)
    })
}

/// Opens the namespace file at `pin` (for `setns` or a link's `IFLA_NET_NS_FD`).
pub fn open(pin: &Path) -> Result<File> {
    File::open(pin).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            NetnsError::Missing(pin.to_path_buf())
        } else {
            NetnsError::Io {
                action: "open",
                path: pin.to_path_buf(),
                source,
            }
        }
    })
}

/// Unpins the namespace at `pin` and removes the file; missing is fine. The namespace
/// itself goes when its last user (a process, a socket) does.
pub fn remove(pin: &Path) -> Result<()> {
    match umount2(pin, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(err("unpin network namespace at", pin)(e)),
    }
    match fs::remove_file(pin) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(NetnsError::Io {
            action: "remove",
            path: pin.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn route_socket(pin: &Path) -> Result<OwnedFd> {
    let socket =
        netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE).map_err(|source| {
            NetnsError::Io {
                action: "open netlink socket in",
                path: pin.to_path_buf(),
                source,
            }
        })?;
    // SAFETY: `into_raw_fd` hands over sole ownership of a valid open descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(socket.into_raw_fd()) })
}

/// Runs `f` on a fresh thread, whose namespaces it may change; the thread ends with it.
fn in_helper_thread<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| s.spawn(f).join().expect("netns helper thread panicked"))
}

/// For kernel tests: runs `f` on a thread inside a fresh network namespace (needs root);
/// commands it spawns run there too, and the namespace goes with the thread.
#[cfg(test)]
pub(crate) fn in_private_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("unshare (needs root)");
            f()
        })
        .join()
        .unwrap()
    })
}
