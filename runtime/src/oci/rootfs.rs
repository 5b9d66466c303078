//! The container's file system view, built in its new mount namespace: propagation,
//! the root bind, the config's mounts, /dev, then pivot_root and what must happen on the
//! final root (read-only root, masked and read-only paths). Every step goes through
//! [`Syscall`], and every path inside the root is resolved with [`pathres`], so a hostile
//! image cannot redirect a mount outside the container.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag};

use super::config::{ContainerConfig, Device};
use super::init::{Ctx, SetupError};
use super::mounts::{MountKind, MountPlan, locked_flags};
use super::pathres::{Create, create_in_root, fd_path, open_in_root};
use super::syscall::Syscall;

/// Devices every container with its own /dev gets (runc's list).
const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// What the root file system setup needs besides the config.
pub struct RootfsContext<'a> {
    /// (name, host directory) of the container's cgroups, for `cgroup` mounts.
    pub cgroup_sources: &'a [(String, PathBuf)],
    /// In a new user namespace: device nodes cannot be made, so they are bind-mounted.
    pub user_ns: bool,
}

fn open_root(rootfs: &Path) -> Result<OwnedFd, SetupError> {
    nix::fcntl::open(
        rootfs,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("open root file system {}", rootfs.display()))
}

/// Everything before pivot_root: propagation, the root bind, mounts, devices, cwd.
pub fn prepare(
    sys: &dyn Syscall,
    cfg: &ContainerConfig,
    ctx: &RootfsContext<'_>,
) -> Result<(), SetupError> {
    // Nothing we mount may leak back to the host: make our whole tree private (or what
    // the config asks) before touching anything.
    let propagation = cfg
        .rootfs_propagation
        .unwrap_or(MsFlags::MS_PRIVATE | MsFlags::MS_REC);
    let first = if propagation.contains(MsFlags::MS_SHARED) {
        // pivot_root refuses shared mounts: start private, share once the root is ours.
        MsFlags::MS_PRIVATE | MsFlags::MS_REC
    } else {
        propagation | MsFlags::MS_REC
    };
    sys.mount(None, Path::new("/"), None, first, None)
        .ctx(|| "make / private in the container's mount namespace".to_string())?;
    // pivot_root needs the new root to be a mount point.
    sys.mount(
        Some(&cfg.rootfs),
        &cfg.rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .ctx(|| format!("bind {} onto itself", cfg.rootfs.display()))?;
    let root = open_root(&cfg.rootfs)?;
    for m in &cfg.mounts {
        mount_one(sys, root.as_fd(), cfg, m, ctx)?;
    }
    make_devices(sys, root.as_fd(), cfg, ctx)?;
    // runc creates a missing working directory; images rely on it.
    create_in_root(root.as_fd(), &cfg.process.cwd, Create::Dir)
        .ctx(|| format!("create the working directory {}", cfg.process.cwd.display()))?;
    Ok(())
}

fn mount_one(
    sys: &dyn Syscall,
    root: std::os::fd::BorrowedFd<'_>,
    cfg: &ContainerConfig,
    m: &MountPlan,
    ctx: &RootfsContext<'_>,
) -> Result<(), SetupError> {
    let dest = &m.destination;
    let what = || format!("mount {}", dest.display());
    match &m.kind {
        MountKind::Bind { recursive } => {
            let source = bind_source(cfg, m);
            let is_dir = std::fs::metadata(&source)
                .ctx(|| format!("bind mount source {}", source.display()))?
                .is_dir();
            let target =
                create_in_root(root, dest, if is_dir { Create::Dir } else { Create::File })
                    .ctx(what)?;
            let mut flags = MsFlags::MS_BIND;
            if *recursive {
                flags |= MsFlags::MS_REC;
            }
            sys.mount(Some(&source), &fd_path(&target), None, flags, None)
                .ctx(what)?;
            let extra = m.flags - (MsFlags::MS_BIND | MsFlags::MS_REC);
            if !extra.is_empty() {
                remount_bind(sys, root, dest, extra)?;
            }
        }
        MountKind::Cgroup => mount_cgroups(sys, root, m, ctx)?,
        MountKind::Fs { fstype } => {
            let target = create_in_root(root, dest, Create::Dir).ctx(what)?;
            // tmpcopyup: keep a handle on what the mount will hide, to copy it up.
            let below = if m.copy_up {
                Some(
                    nix::fcntl::open(
                        &fd_path(&target),
                        nix::fcntl::OFlag::O_RDONLY
                            | nix::fcntl::OFlag::O_DIRECTORY
                            | nix::fcntl::OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .ctx(what)?,
                )
            } else {
                None
            };
            let source = m
                .source
                .clone()
                .unwrap_or_else(|| PathBuf::from(fstype.as_str()));
            let data = (!m.data.is_empty()).then_some(m.data.as_str());
            let res = sys.mount(
                Some(&source),
                &fd_path(&target),
                Some(fstype),
                m.flags,
                data,
            );
            match res {
                // In a user namespace the kernel refuses sysfs and mqueue mounts that the
                // namespace does not own: show the host's, read-only as asked, as runc does.
                Err(nix::Error::EPERM)
                    if ctx.user_ns && matches!(fstype.as_str(), "sysfs" | "mqueue") =>
                {
                    let host = if fstype == "sysfs" {
                        "/sys"
                    } else {
                        "/dev/mqueue"
                    };
                    sys.mount(
                        Some(Path::new(host)),
                        &fd_path(&target),
                        None,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                        None,
                    )
                    .ctx(what)?;
                    let extra = m.flags - (MsFlags::MS_BIND | MsFlags::MS_REC);
                    if !extra.is_empty() {
                        remount_bind(sys, root, dest, extra)?;
                    }
                }
                other => other.ctx(what)?,
            }
            if let Some(below) = below {
                let top = open_in_root(root, dest).ctx(what)?;
                copy_tree(&fd_path(&below), &fd_path(&top))
                    .ctx(|| format!("copy up {}", dest.display()))?;
            }
        }
    }
    if !m.propagation.is_empty() || m.attr_set != 0 || m.attr_clear != 0 {
        // Reopen: the descriptor from before the mount names what is under it.
        let top = open_in_root(root, dest).ctx(what)?;
        for p in &m.propagation {
            sys.mount(None, &fd_path(&top), None, *p, None).ctx(what)?;
        }
        if m.attr_set != 0 || m.attr_clear != 0 {
            sys.mount_setattr_recursive(&fd_path(&top), m.attr_set, m.attr_clear)
                .ctx(what)?;
        }
    }
    Ok(())
}

/// Relative bind sources are relative to the bundle (runc runs in the bundle directory).
fn bind_source(cfg: &ContainerConfig, m: &MountPlan) -> PathBuf {
    let source = m.source.clone().unwrap_or_default();
    if source.is_absolute() {
        source
    } else {
        cfg.bundle.join(source)
    }
}

/// Applies flags to a bind mount (a bind takes them only on a remount), keeping the
/// flags the kernel has locked on the source.
fn remount_bind(
    sys: &dyn Syscall,
    root: std::os::fd::BorrowedFd<'_>,
    dest: &Path,
    flags: MsFlags,
) -> Result<(), SetupError> {
    let what = || format!("remount {} with {flags:?}", dest.display());
    let top = open_in_root(root, dest).ctx(what)?;
    let path = fd_path(&top);
    let base = MsFlags::MS_REMOUNT | MsFlags::MS_BIND;
    match sys.mount(None, &path, None, base | flags, None) {
        Err(nix::Error::EPERM) => {
            let locked = nix::sys::statvfs::statvfs(&path)
                .map(|s| locked_flags(s.flags()))
                .unwrap_or(MsFlags::empty());
            sys.mount(None, &path, None, base | flags | locked, None)
                .ctx(what)
        }
        other => other.ctx(what),
    }
}

/// Type `cgroup`: the container's own cgroup directories. With only cgroup v2, one bind;
/// with v1 (or hybrid), a tmpfs holding one bind per hierarchy, as the host lays it out.
fn mount_cgroups(
    sys: &dyn Syscall,
    root: std::os::fd::BorrowedFd<'_>,
    m: &MountPlan,
    ctx: &RootfsContext<'_>,
) -> Result<(), SetupError> {
    let dest = &m.destination;
    let what = || format!("mount cgroups on {}", dest.display());
    let bind_flags = m.flags
        & (MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    let bind = |sub: &Path, source: &Path| -> Result<(), SetupError> {
        let target = create_in_root(root, sub, Create::Dir).ctx(what)?;
        sys.mount(
            Some(source),
            &fd_path(&target),
            None,
            MsFlags::MS_BIND,
            None,
        )
        .ctx(what)?;
        if !bind_flags.is_empty() {
            remount_bind(sys, root, sub, bind_flags)?;
        }
        Ok(())
    };
    if let [(name, source)] = ctx.cgroup_sources
        && name.is_empty()
    {
        return bind(dest, source);
    }
    let target = create_in_root(root, dest, Create::Dir).ctx(what)?;
    sys.mount(
        Some(Path::new("tmpfs")),
        &fd_path(&target),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=755"),
    )
    .ctx(what)?;
    for (name, source) in ctx.cgroup_sources {
        bind(&dest.join(name), source)?;
        // Co-mounted controllers ("cpu,cpuacct") are also reachable by each name.
        if name.contains(',') {
            for part in name.split(',') {
                let parent = open_in_root(root, dest).ctx(what)?;
                let link = fd_path(&parent).join(part);
                sys.symlink(Path::new(name), &link).ctx(what)?;
            }
        }
    }
    if m.flags.contains(MsFlags::MS_RDONLY) {
        remount_bind(
            sys,
            root,
            dest,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        )?;
    }
    Ok(())
}

/// Device nodes (the config's, and the defaults when /dev is the container's own tmpfs)
/// and the standard /dev symlinks.
fn make_devices(
    sys: &dyn Syscall,
    root: std::os::fd::BorrowedFd<'_>,
    cfg: &ContainerConfig,
    ctx: &RootfsContext<'_>,
) -> Result<(), SetupError> {
    let own_dev = cfg
        .mounts
        .iter()
        .any(|m| m.destination == Path::new("/dev") && !matches!(m.kind, MountKind::Bind { .. }));
    let mut devices: Vec<Device> = cfg.devices.clone();
    if own_dev {
        for &(path, major, minor) in DEFAULT_DEVICES {
            if !devices.iter().any(|d| d.path == Path::new(path)) {
                devices.push(Device {
                    path: path.into(),
                    kind: SFlag::S_IFCHR,
                    major,
                    minor,
                    mode: 0o666,
                    uid: 0,
                    gid: 0,
                });
            }
        }
    }
    for d in &devices {
        make_device(sys, root, d, ctx.user_ns)?;
    }
    if !own_dev {
        return Ok(());
    }
    let dev = open_in_root(root, Path::new("/dev")).ctx(|| "open /dev".to_string())?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    if cfg
        .mounts
        .iter()
        .any(|m| m.destination == Path::new("/dev/pts"))
    {
        links.push(("pts/ptmx", "ptmx"));
    }
    for (target, name) in links {
        match sys.symlink(Path::new(target), &fd_path(&dev).join(name)) {
            Ok(()) | Err(nix::Error::EEXIST) => {}
            Err(e) => return Err(SetupError::new(format!("create /dev/{name}: {e}"))),
        }
    }
    Ok(())
}

fn make_device(
    sys: &dyn Syscall,
    root: std::os::fd::BorrowedFd<'_>,
    d: &Device,
    user_ns: bool,
) -> Result<(), SetupError> {
    let what = || format!("create device {}", d.path.display());
    if user_ns {
        // mknod is not allowed in a user namespace: show the host's node instead.
        let target = create_in_root(root, &d.path, Create::File).ctx(what)?;
        return sys
            .mount(
                Some(&d.path),
                &fd_path(&target),
                None,
                MsFlags::MS_BIND,
                None,
            )
            .ctx(what);
    }
    let (Some(parent), Some(name)) = (d.path.parent(), d.path.file_name()) else {
        return Err(SetupError::new(what()));
    };
    let dir = create_in_root(root, parent, Create::Dir).ctx(what)?;
    let path = fd_path(&dir).join(name);
    let dev = nix::sys::stat::makedev(d.major, d.minor);
    match sys.mknod(&path, d.kind, Mode::from_bits_truncate(d.mode), dev) {
        Ok(()) => {}
        Err(nix::Error::EEXIST) => return Ok(()),
        Err(e) => return Err(SetupError::new(format!("{}: {e}", what()))),
    }
    sys.chown(
        &path,
        Some(nix::unistd::Uid::from_raw(d.uid)),
        Some(nix::unistd::Gid::from_raw(d.gid)),
    )
    .ctx(what)
}

/// Makes the prepared root the process's root.
pub fn enter(sys: &dyn Syscall, cfg: &ContainerConfig, no_pivot: bool) -> Result<(), SetupError> {
    if no_pivot {
        sys.move_root(&cfg.rootfs)
            .ctx(|| "move the root file system onto /".to_string())
    } else {
        sys.pivot_root(&cfg.rootfs).ctx(|| "pivot_root".to_string())
    }
}

/// After pivot_root: read-only root, read-only and masked paths, final propagation.
pub fn finish(sys: &dyn Syscall, cfg: &ContainerConfig) -> Result<(), SetupError> {
    let ro = MsFlags::MS_RDONLY;
    if cfg.root_readonly {
        let base = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | ro;
        match sys.mount(None, Path::new("/"), None, base, None) {
            Err(nix::Error::EPERM) => {
                let locked = nix::sys::statvfs::statvfs("/")
                    .map(|s| locked_flags(s.flags()))
                    .unwrap_or(MsFlags::empty());
                sys.mount(None, Path::new("/"), None, base | locked, None)
            }
            other => other,
        }
        .ctx(|| "make the root file system read-only".to_string())?;
    }
    for p in &cfg.readonly_paths {
        if std::fs::symlink_metadata(p).is_err() {
            continue; // nothing to protect
        }
        let what = || format!("make {} read-only", p.display());
        sys.mount(Some(p), p, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)
            .ctx(what)?;
        let base = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | ro;
        let locked = nix::sys::statvfs::statvfs(p)
            .map(|s| locked_flags(s.flags()))
            .unwrap_or(MsFlags::empty());
        sys.mount(None, p, None, base | locked, None).ctx(what)?;
    }
    for p in &cfg.masked_paths {
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            continue;
        };
        let what = || format!("mask {}", p.display());
        if meta.is_dir() {
            sys.mount(Some(Path::new("tmpfs")), p, Some("tmpfs"), ro, None)
                .ctx(what)?;
        } else {
            sys.mount(
                Some(Path::new("/dev/null")),
                p,
                None,
                MsFlags::MS_BIND,
                None,
            )
            .ctx(what)?;
        }
    }
    if let Some(p) = cfg.rootfs_propagation {
        sys.mount(None, Path::new("/"), None, p, None)
            .ctx(|| "set the root's propagation".to_string())?;
    }
    Ok(())
}

/// Copies a directory tree (tmpcopyup): files, directories and symlinks with their modes
/// and owners.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(from)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    let _ = std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid()));
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let m = entry.metadata()?;
        let t = m.file_type();
        if t.is_dir() {
            std::fs::create_dir(&dst)?;
            copy_tree(&src, &dst)?;
        } else if t.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
            let _ = std::os::unix::fs::lchown(&dst, Some(m.uid()), Some(m.gid()));
        } else if t.is_file() {
            std::fs::copy(&src, &dst)?;
            let _ = std::os::unix::fs::chown(&dst, Some(m.uid()), Some(m.gid()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::config::parse_spec;
    use crate::oci::syscall::testing::Recorder;

    fn config(rootfs: &Path, extra: serde_json::Value) -> ContainerConfig {
        let mut v = serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": rootfs},
            "process": {"args": ["sh"], "cwd": "/work", "user": {"uid": 0, "gid": 0}},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["newinstance", "ptmxmode=0666"]},
                {"destination": "/data", "type": "bind", "source": "/tmp", "options": ["rbind", "ro", "rslave"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]}
            ],
            "linux": {"namespaces": [{"type": "mount"}],
                      "maskedPaths": ["/proc/kcore", "/nothing/here"],
                      "readonlyPaths": ["/proc/sys"]}
        });
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        let spec = parse_spec(v.to_string().as_bytes(), Path::new("config.json")).unwrap();
        ContainerConfig::new(spec, rootfs.parent().unwrap()).unwrap()
    }

    #[test]
    fn prepare_mounts_in_order_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        // A hostile image: /data is a link that points out of the root.
        std::os::unix::fs::symlink("../../../../escape", rootfs.join("data")).unwrap();
        let cfg = config(&rootfs, serde_json::json!({}));
        let sys = Recorder::new(tmp.path());
        let sources = vec![
            (
                "memory".to_string(),
                PathBuf::from("/sys/fs/cgroup/memory/c1"),
            ),
            (
                "cpu,cpuacct".to_string(),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/c1"),
            ),
        ];
        let ctx = RootfsContext {
            cgroup_sources: &sources,
            user_ns: false,
        };
        prepare(&sys, &cfg, &ctx).unwrap();
        let calls = sys.calls();
        let expect_in_order = [
            "mount - / - MsFlags(MS_REC | MS_PRIVATE) -",
            "mount @/rootfs @/rootfs - MsFlags(MS_BIND | MS_REC) -",
            "mount proc @/rootfs/proc proc MsFlags(0x0) -",
            "mount tmpfs @/rootfs/dev tmpfs MsFlags(MS_NOSUID) mode=755",
            "mount devpts @/rootfs/dev/pts devpts MsFlags(0x0) newinstance,ptmxmode=0666",
            "mount /tmp @/rootfs/escape - MsFlags(MS_BIND | MS_REC) -",
            "mount - @/rootfs/escape - MsFlags(MS_RDONLY | MS_REMOUNT | MS_BIND) -",
            "mount - @/rootfs/escape - MsFlags(MS_REC | MS_SLAVE) -",
            "mount tmpfs @/rootfs/sys/fs/cgroup tmpfs MsFlags(MS_NOSUID | MS_NODEV | MS_NOEXEC) mode=755",
            "mount /sys/fs/cgroup/memory/c1 @/rootfs/sys/fs/cgroup/memory - MsFlags(MS_BIND) -",
            "symlink @/rootfs/sys/fs/cgroup/cpu -> cpu,cpuacct",
            "mknod @/rootfs/dev/null 20000 666 1:3",
            "mknod @/rootfs/dev/tty 20000 666 5:0",
            "symlink @/rootfs/dev/ptmx -> pts/ptmx",
        ];
        let mut pos = 0;
        for want in expect_in_order {
            let found = calls[pos..].iter().position(|c| c == want);
            assert!(
                found.is_some(),
                "missing or out of order: {want}\ncalls: {calls:#?}"
            );
            pos += found.unwrap() + 1;
        }
        // The hostile link was followed inside the root, and the cwd was created.
        assert!(rootfs.join("work").is_dir());
        assert!(rootfs.join("escape").is_dir());
        assert!(!tmp.path().join("escape").exists());
    }

    #[test]
    fn user_namespace_binds_devices() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        let cfg = config(&rootfs, serde_json::json!({}));
        let sys = Recorder::new(tmp.path());
        let ctx = RootfsContext {
            cgroup_sources: &[],
            user_ns: true,
        };
        prepare(&sys, &cfg, &ctx).unwrap();
        let calls = sys.calls();
        assert!(
            calls.contains(&"mount /dev/null @/rootfs/dev/null - MsFlags(MS_BIND) -".to_string())
        );
        assert!(!calls.iter().any(|c| c.starts_with("mknod")));
    }

    #[test]
    fn finish_masks_and_protects() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        let mut cfg = config(
            &rootfs,
            serde_json::json!({"root": {"path": rootfs, "readonly": true}}),
        );
        // finish() works on the final root; here the host's paths stand in for it.
        cfg.masked_paths = vec![
            "/proc/keys".into(),
            "/proc/acpi-nope".into(),
            "/proc/bus".into(),
        ];
        let sys = Recorder::new(tmp.path());
        finish(&sys, &cfg).unwrap();
        let calls = sys.calls();
        assert_eq!(
            calls[0],
            "mount - / - MsFlags(MS_RDONLY | MS_REMOUNT | MS_BIND) -"
        );
        assert!(
            calls.contains(&"mount /proc/sys /proc/sys - MsFlags(MS_BIND | MS_REC) -".to_string())
        );
        assert!(calls.contains(&"mount /dev/null /proc/keys - MsFlags(MS_BIND) -".to_string()));
        assert!(calls.contains(&"mount tmpfs /proc/bus tmpfs MsFlags(MS_RDONLY) -".to_string()));
        assert!(!calls.iter().any(|c| c.contains("acpi-nope")));
    }

    #[test]
    fn copy_up_keeps_contents_and_modes() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(a.join("sub")).unwrap();
        std::fs::write(a.join("sub/f"), "x").unwrap();
        std::fs::set_permissions(a.join("sub/f"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink("sub/f", a.join("l")).unwrap();
        std::fs::create_dir(&b).unwrap();
        copy_tree(&a, &b).unwrap();
        assert_eq!(std::fs::read_to_string(b.join("l")).unwrap(), "x");
        let mode = std::fs::metadata(b.join("sub/f"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
    }
}
