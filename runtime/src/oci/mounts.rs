//! Translation of the config's `mounts` (fstab-style options) into what mount(2) and
//! mount_setattr(2) take. Pure functions: no system call happens here.

use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::Mount;

/// What the container setup does for one entry of `mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    /// Absolute, normalised path inside the container.
    pub destination: PathBuf,
    pub kind: MountKind,
    pub source: Option<PathBuf>,
    /// Flags for mount(2) (no propagation flags; `MS_BIND`/`MS_REC` for binds).
    pub flags: MsFlags,
    /// Propagation changes, applied one by one after the mount.
    pub propagation: Vec<MsFlags>,
    /// Options mount(2) does not know as flags, passed as its data argument.
    pub data: String,
    /// `MOUNT_ATTR_*` bits set and cleared recursively (`rro`, `rnosuid`, ...).
    pub attr_set: u64,
    pub attr_clear: u64,
    /// `tmpcopyup`: copy what the destination held into the new tmpfs.
    pub copy_up: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A bind mount (`bind`/`rbind` option or type `bind`).
    Bind { recursive: bool },
    /// Type `cgroup`: the container's own cgroups, shown at the destination.
    Cgroup,
    /// Any file system type given to mount(2) (proc, sysfs, tmpfs, devpts, mqueue, ...).
    Fs { fstype: String },
}

/// A mount entry that cannot be honoured, in one sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    #[error("mount destination {0:?} must be an absolute path other than \"/\"")]
    BadDestination(PathBuf),
    #[error("mount on {0:?} has no type and is not a bind mount")]
    NoType(PathBuf),
    #[error("bind mount on {0:?} has no source")]
    NoSource(PathBuf),
    #[error("mount option {option:?} on {destination:?} is not supported by rbox-runc")]
    Unsupported {
        option: String,
        destination: PathBuf,
    },
    #[error("mount on {0:?} has uidMappings/gidMappings: ID-mapped mounts are not supported")]
    IdMapped(PathBuf),
}

/// `MOUNT_ATTR_*` values (linux/mount.h).
pub mod attr {
    pub const RDONLY: u64 = 0x1;
    pub const NOSUID: u64 = 0x2;
    pub const NODEV: u64 = 0x4;
    pub const NOEXEC: u64 = 0x8;
    pub const RELATIME: u64 = 0x0;
    pub const NOATIME: u64 = 0x10;
    pub const STRICTATIME: u64 = 0x20;
    pub const ATIME_MASK: u64 = 0x70;
    pub const NODIRATIME: u64 = 0x80;
    pub const NOSYMFOLLOW: u64 = 0x200000;
}

/// MS_NOSYMFOLLOW (Linux 5.10), which nix does not name.
const NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(256);

/// Plain flag options: (name, clears the flag?, flag).
const FLAGS: &[(&str, bool, MsFlags)] = &[
    ("acl", false, MsFlags::MS_POSIXACL),
    ("async", true, MsFlags::MS_SYNCHRONOUS),
    ("atime", true, MsFlags::MS_NOATIME),
    ("bind", false, MsFlags::MS_BIND),
    ("defaults", false, MsFlags::empty()),
    ("dev", true, MsFlags::MS_NODEV),
    ("diratime", true, MsFlags::MS_NODIRATIME),
    ("dirsync", false, MsFlags::MS_DIRSYNC),
    ("exec", true, MsFlags::MS_NOEXEC),
    ("iversion", false, MsFlags::MS_I_VERSION),
    ("lazytime", false, MsFlags::MS_LAZYTIME),
    ("loud", true, MsFlags::MS_SILENT),
    ("mand", false, MsFlags::MS_MANDLOCK),
    ("noacl", true, MsFlags::MS_POSIXACL),
    ("noatime", false, MsFlags::MS_NOATIME),
    ("nodev", false, MsFlags::MS_NODEV),
    ("nodiratime", false, MsFlags::MS_NODIRATIME),
    ("noexec", false, MsFlags::MS_NOEXEC),
    ("noiversion", true, MsFlags::MS_I_VERSION),
    ("nolazytime", true, MsFlags::MS_LAZYTIME),
    ("nomand", true, MsFlags::MS_MANDLOCK),
    ("norelatime", true, MsFlags::MS_RELATIME),
    ("nostrictatime", true, MsFlags::MS_STRICTATIME),
    ("nosuid", false, MsFlags::MS_NOSUID),
    ("nosymfollow", false, NOSYMFOLLOW),
    ("rbind", false, MsFlags::MS_BIND.union(MsFlags::MS_REC)),
    ("relatime", false, MsFlags::MS_RELATIME),
    ("remount", false, MsFlags::MS_REMOUNT),
    ("ro", false, MsFlags::MS_RDONLY),
    ("rw", true, MsFlags::MS_RDONLY),
    ("silent", false, MsFlags::MS_SILENT),
    ("strictatime", false, MsFlags::MS_STRICTATIME),
    ("suid", true, MsFlags::MS_NOSUID),
    ("symfollow", true, NOSYMFOLLOW),
    ("sync", false, MsFlags::MS_SYNCHRONOUS),
];

const PROPAGATION: &[(&str, MsFlags)] = &[
    ("private", MsFlags::MS_PRIVATE),
    ("rprivate", MsFlags::MS_PRIVATE.union(MsFlags::MS_REC)),
    ("shared", MsFlags::MS_SHARED),
    ("rshared", MsFlags::MS_SHARED.union(MsFlags::MS_REC)),
    ("slave", MsFlags::MS_SLAVE),
    ("rslave", MsFlags::MS_SLAVE.union(MsFlags::MS_REC)),
    ("unbindable", MsFlags::MS_UNBINDABLE),
    ("runbindable", MsFlags::MS_UNBINDABLE.union(MsFlags::MS_REC)),
];

/// Recursive attribute options: (name, clears?, MOUNT_ATTR bit(s)).
const RECURSIVE_ATTRS: &[(&str, bool, u64)] = &[
    ("rro", false, attr::RDONLY),
    ("rrw", true, attr::RDONLY),
    ("rnosuid", false, attr::NOSUID),
    ("rsuid", true, attr::NOSUID),
    ("rnodev", false, attr::NODEV),
    ("rdev", true, attr::NODEV),
    ("rnoexec", false, attr::NOEXEC),
    ("rexec", true, attr::NOEXEC),
    ("rnodiratime", false, attr::NODIRATIME),
    ("rdiratime", true, attr::NODIRATIME),
    ("rnosymfollow", false, attr::NOSYMFOLLOW),
    ("rsymfollow", true, attr::NOSYMFOLLOW),
];

/// Every option name this module understands (for `features`).
pub fn option_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = FLAGS
        .iter()
        .map(|f| f.0)
        .chain(PROPAGATION.iter().map(|p| p.0))
        .chain(RECURSIVE_ATTRS.iter().map(|r| r.0))
        .chain([
            "rnoatime",
            "rstrictatime",
            "rrelatime",
            "ratime",
            "rnorelatime",
            "rnostrictatime",
            "tmpcopyup",
        ])
        .collect();
    names.sort_unstable();
    names
}

/// Parses a propagation name (`rootfsPropagation`, or a mount option).
pub fn propagation(name: &str) -> Option<MsFlags> {
    PROPAGATION
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, f)| f)
}

/// Normalises an in-container path: absolute, no `.`/`..` (a `..` cannot climb above `/`).
pub fn clean_container_path(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for comp in path.components() {
        match comp {
            Component::Normal(c) => out.push(c),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Translates one `mounts` entry.
pub fn plan(mount: &Mount) -> Result<MountPlan, MountError> {
    let dest = mount.destination();
    let destination = clean_container_path(dest);
    if destination == Path::new("/") {
        return Err(MountError::BadDestination(dest.clone()));
    }
    if mount.uid_mappings().is_some() || mount.gid_mappings().is_some() {
        return Err(MountError::IdMapped(destination));
    }
    let mut flags = MsFlags::empty();
    let mut propagation_flags = Vec::new();
    let mut data = Vec::new();
    let (mut attr_set, mut attr_clear) = (0u64, 0u64);
    let mut copy_up = false;
    for option in mount.options().iter().flatten() {
        let o = option.as_str();
        if let Some(&(_, clear, f)) = FLAGS.iter().find(|(n, _, _)| *n == o) {
            if clear {
                flags.remove(f);
            } else {
                flags.insert(f);
            }
        } else if let Some(p) = propagation(o) {
            propagation_flags.push(p);
        } else if let Some(&(_, clear, bits)) = RECURSIVE_ATTRS.iter().find(|(n, _, _)| *n == o) {
            if clear {
                attr_clear |= bits;
                attr_set &= !bits;
            } else {
                attr_set |= bits;
                attr_clear &= !bits;
            }
        } else if o == "tmpcopyup" {
            copy_up = true;
        } else if matches!(o, "idmap" | "ridmap") {
            return Err(MountError::Unsupported {
                option: o.to_string(),
                destination,
            });
        } else if let Some((bits, clear)) = recursive_atime(o) {
            attr_clear |= attr::ATIME_MASK;
            if !clear {
                attr_set |= bits;
            }
        } else {
            data.push(o);
        }
    }
    let fstype = mount.typ().clone().filter(|t| !t.is_empty());
    let kind = if flags.contains(MsFlags::MS_BIND) || fstype.as_deref() == Some("bind") {
        flags.insert(MsFlags::MS_BIND);
        MountKind::Bind {
            recursive: flags.contains(MsFlags::MS_REC),
        }
    } else if fstype.as_deref() == Some("cgroup") || fstype.as_deref() == Some("cgroup2") {
        MountKind::Cgroup
    } else {
        match fstype {
            Some(t) => MountKind::Fs { fstype: t },
            None => return Err(MountError::NoType(destination)),
        }
    };
    if matches!(kind, MountKind::Bind { .. }) && mount.source().is_none() {
        return Err(MountError::NoSource(destination));
    }
    Ok(MountPlan {
        destination,
        kind,
        source: mount.source().clone(),
        flags,
        propagation: propagation_flags,
        data: data.join(","),
        attr_set,
        attr_clear,
        copy_up,
    })
}

/// `ratime`/`rnoatime`/`rstrictatime`/`rrelatime`: (bits, is-the-default-relatime).
fn recursive_atime(option: &str) -> Option<(u64, bool)> {
    match option {
        "rnoatime" => Some((attr::NOATIME, false)),
        "rstrictatime" => Some((attr::STRICTATIME, false)),
        "rrelatime" | "ratime" | "rnorelatime" | "rnostrictatime" => Some((attr::RELATIME, true)),
        _ => None,
    }
}

/// The flags that a bind remount must keep: mount(2) refuses (EPERM) to clear flags that
/// are locked on the source mount (nosuid, nodev, noexec, ro and atime flags), so a
/// remount carries over those the source has.
pub fn locked_flags(statvfs_flags: nix::sys::statvfs::FsFlags) -> MsFlags {
    use nix::sys::statvfs::FsFlags as F;
    let table = [
        (F::ST_NOSUID, MsFlags::MS_NOSUID),
        (F::ST_NODEV, MsFlags::MS_NODEV),
        (F::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (F::ST_RDONLY, MsFlags::MS_RDONLY),
        (F::ST_NOATIME, MsFlags::MS_NOATIME),
        (F::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (F::ST_RELATIME, MsFlags::MS_RELATIME),
    ];
    table
        .iter()
        .filter(|(st, _)| statvfs_flags.contains(*st))
        .fold(MsFlags::empty(), |acc, &(_, ms)| acc | ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::MountBuilder;

    fn mount(dest: &str, typ: Option<&str>, source: Option<&str>, opts: &[&str]) -> Mount {
        let mut b = MountBuilder::default().destination(dest);
        if let Some(t) = typ {
            b = b.typ(t);
        }
        if let Some(s) = source {
            b = b.source(s);
        }
        b.options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .build()
            .unwrap()
    }

    #[test]
    fn tmpfs_flags_and_data() {
        let p = plan(&mount(
            "/dev",
            Some("tmpfs"),
            Some("tmpfs"),
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ))
        .unwrap();
        assert_eq!(
            p.kind,
            MountKind::Fs {
                fstype: "tmpfs".into()
            }
        );
        assert_eq!(p.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(p.data, "mode=755,size=65536k");
        assert!(p.propagation.is_empty());
    }

    #[test]
    fn rbind_ro_with_propagation() {
        let p = plan(&mount(
            "/data/../vol",
            None,
            Some("/srv"),
            &["rbind", "ro", "rprivate", "nosuid"],
        ))
        .unwrap();
        assert_eq!(p.destination, PathBuf::from("/vol"));
        assert_eq!(p.kind, MountKind::Bind { recursive: true });
        assert!(p.flags.contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID));
        assert_eq!(p.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
    }

    #[test]
    fn later_options_override_earlier_ones() {
        let p = plan(&mount(
            "/x",
            Some("tmpfs"),
            None,
            &["ro", "rw", "noexec", "exec"],
        ))
        .unwrap();
        assert_eq!(p.flags, MsFlags::empty());
    }

    #[test]
    fn bind_type_without_option_is_a_bind() {
        let p = plan(&mount("/x", Some("bind"), Some("/tmp"), &[])).unwrap();
        assert_eq!(p.kind, MountKind::Bind { recursive: false });
        assert!(p.flags.contains(MsFlags::MS_BIND));
    }

    #[test]
    fn recursive_attributes() {
        let p = plan(&mount(
            "/x",
            None,
            Some("/tmp"),
            &["rbind", "rro", "rnoatime"],
        ))
        .unwrap();
        assert_eq!(p.attr_set, attr::RDONLY | attr::NOATIME);
        assert_eq!(p.attr_clear, attr::ATIME_MASK);
    }

    #[test]
    fn rejects_what_cannot_be_done() {
        assert_eq!(
            plan(&mount("/", Some("tmpfs"), None, &[])),
            Err(MountError::BadDestination("/".into()))
        );
        assert_eq!(
            plan(&mount("/..", Some("tmpfs"), None, &[])),
            Err(MountError::BadDestination("/..".into()))
        );
        assert_eq!(
            plan(&mount("/x", None, None, &["ro"])),
            Err(MountError::NoType("/x".into()))
        );
        assert_eq!(
            plan(&mount("/x", None, None, &["bind"])),
            Err(MountError::NoSource("/x".into()))
        );
        assert!(matches!(
            plan(&mount("/x", None, Some("/a"), &["bind", "idmap"])),
            Err(MountError::Unsupported { .. })
        ));
    }

    #[test]
    fn cleaning_never_escapes_root() {
        assert_eq!(
            clean_container_path(Path::new("../../etc/./passwd")),
            PathBuf::from("/etc/passwd")
        );
        assert_eq!(
            clean_container_path(Path::new("a/b/..")),
            PathBuf::from("/a")
        );
    }
}
