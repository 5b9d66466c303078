//! `-u USER[:GROUP]` resolved against the container's own `/etc/passwd` and
//! `/etc/group`, read with every path lookup confined to the container's root (a symlink
//! in the image cannot point rbox at a host file).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

use super::oci_config::ResolvedUser;

/// Reads `rel` (e.g. `etc/passwd`) inside `root`; `None` when it is missing.
pub fn read_in_root(root: &Path, rel: &str) -> Option<String> {
    let dir = File::open(root).ok()?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .mode(Mode::empty())
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(&dir, rel, how).ok()?;
    let mut text = String::new();
    File::from(fd)
        .take(4 << 20)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4).then_some(())?;
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
        })
    })
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3).then_some(())?;
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f
                .get(3)
                .map(|m| m.split(',').filter(|s| !s.is_empty()).collect())
                .unwrap_or_default(),
        })
    })
}

/// Resolves `spec` (`""` means root) from the given passwd and group contents: the user's
/// uid and gid, and its supplementary groups (those that list it as a member).
pub fn resolve_from(
    spec: &str,
    passwd: &str,
    group: &str,
) -> Result<(ResolvedUser, Vec<u32>), String> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let (uid, mut gid, name) = match user.parse::<u32>() {
        Ok(uid) => match passwd_entries(passwd).find(|e| e.uid == uid) {
            Some(e) => (uid, e.gid, Some(e.name)),
            None => (uid, 0, None),
        },
        Err(_) => {
            let e = passwd_entries(passwd)
                .find(|e| e.name == user)
                .ok_or_else(|| {
                    format!("unable to find user {user}: no matching entries in passwd file")
                })?;
            (e.uid, e.gid, Some(e.name))
        }
    };
    if let Some(g) = grp.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group_entries(group)
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        };
    }
    // The primary group leads the supplementary ones, as Docker sets them since
    // CVE-2022-36109: a group-denied file stays denied after setgroups.
    let mut additional = vec![gid];
    if let Some(n) = name.filter(|_| grp.is_none()) {
        additional.extend(
            group_entries(group)
                .filter(|e| e.members.contains(&n) && e.gid != gid)
                .map(|e| e.gid),
        );
    }
    additional.dedup();
    Ok((ResolvedUser { uid, gid }, additional))
}

/// Resolves `spec` against the container's root filesystem.
pub fn resolve(rootfs: &Path, spec: &str) -> Result<(ResolvedUser, Vec<u32>), String> {
    if spec.is_empty()
        || spec == "0"
        || spec == "root" && read_in_root(rootfs, "etc/passwd").is_none()
    {
        return Ok((ResolvedUser::default(), vec![0]));
    }
    let passwd = read_in_root(rootfs, "etc/passwd").unwrap_or_default();
    let group = read_in_root(rootfs, "etc/group").unwrap_or_default();
    resolve_from(spec, &passwd, &group)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\nalice:x:1000:1000::/home/alice:/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\nwheel:x:10:alice\nusers:x:100:alice,bob\nalice:x:1000:\nnogroup:x:65534:\n";

    #[test]
    fn users_and_groups() {
        let r = |s| resolve_from(s, PASSWD, GROUP).unwrap();
        assert_eq!(r(""), (ResolvedUser { uid: 0, gid: 0 }, vec![0]));
        assert_eq!(
            r("alice"),
            (
                ResolvedUser {
                    uid: 1000,
                    gid: 1000
                },
                vec![1000, 10, 100]
            )
        );
        assert_eq!(
            r("1000"),
            (
                ResolvedUser {
                    uid: 1000,
                    gid: 1000
                },
                vec![1000, 10, 100]
            )
        );
        assert_eq!(
            r("nobody:users"),
            (
                ResolvedUser {
                    uid: 65534,
                    gid: 100
                },
                vec![100]
            )
        );
        assert_eq!(r("4242"), (ResolvedUser { uid: 4242, gid: 0 }, vec![0]));
        assert_eq!(
            r("4242:77"),
            (ResolvedUser { uid: 4242, gid: 77 }, vec![77])
        );
        assert!(resolve_from("mallory", PASSWD, GROUP).is_err());
        assert!(resolve_from("alice:nosuch", PASSWD, GROUP).is_err());
    }

    #[test]
    fn files_are_read_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        // A symlink to an absolute path resolves inside the root, not on the host.
        std::os::unix::fs::symlink("/etc/real-passwd", root.path().join("etc/passwd")).unwrap();
        std::fs::write(root.path().join("etc/real-passwd"), PASSWD).unwrap();
        assert_eq!(
            read_in_root(root.path(), "etc/passwd").as_deref(),
            Some(PASSWD)
        );
        std::os::unix::fs::symlink("/../../../../etc/hostname", root.path().join("etc/group"))
            .unwrap();
        assert_eq!(read_in_root(root.path(), "etc/group"), None);
        assert_eq!(resolve(root.path(), "alice").unwrap().0.uid, 1000);
    }
}
