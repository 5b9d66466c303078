//! Capabilities: Docker's default set, name normalisation, and `--cap-add`/`--cap-drop`
//! applied the way Docker applies them.

use std::collections::BTreeSet;
use std::str::FromStr;

/// The capabilities Docker gives a container by default.
pub const DOCKER_DEFAULT: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// `net_admin`, `NET_ADMIN`, `cap_net_admin` → `CAP_NET_ADMIN`; `all` → `ALL`;
/// `None` for a name that is no capability.
pub fn normalize(name: &str) -> Option<String> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Some(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    caps::Capability::from_str(&full).ok().map(|_| full)
}

/// Every capability rbox itself holds in its bounding set: what "all" can mean here
/// (a container cannot be given what its runtime does not have).
pub fn all_available() -> BTreeSet<String> {
    caps::read(None, caps::CapSet::Bounding)
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.to_string())
        .collect()
}

/// The container's capability set from Docker's rules: privileged gets everything;
/// `ALL` in `add` starts from everything, `ALL` in `drop` from nothing; otherwise the
/// default set minus `drop` plus `add`. Adding a capability rbox lacks is an error.
pub fn effective(
    privileged: bool,
    add: &[String],
    drop: &[String],
    available: &BTreeSet<String>,
) -> Result<BTreeSet<String>, String> {
    if privileged {
        return Ok(available.clone());
    }
    let has_all = |list: &[String]| list.iter().any(|c| c == "ALL");
    let mut set: BTreeSet<String> = if has_all(add) {
        available.clone()
    } else if has_all(drop) {
        BTreeSet::new()
    } else {
        DOCKER_DEFAULT.iter().map(|c| c.to_string()).collect()
    };
    if !has_all(add) {
        for c in drop.iter().filter(|c| *c != "ALL") {
            set.remove(c);
        }
        for c in add {
            if !available.contains(c) {
                return Err(format!("cannot add {c}: rbox itself does not hold it"));
            }
            set.insert(c.clone());
        }
    } else {
        for c in drop.iter().filter(|c| *c != "ALL") {
            set.remove(c);
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avail() -> BTreeSet<String> {
        [
            "CAP_CHOWN",
            "CAP_NET_ADMIN",
            "CAP_SYS_ADMIN",
            "CAP_KILL",
            "CAP_NET_RAW",
        ]
        .iter()
        .chain(DOCKER_DEFAULT)
        .map(|s| s.to_string())
        .collect()
    }

    #[test]
    fn names() {
        assert_eq!(normalize("net_admin").as_deref(), Some("CAP_NET_ADMIN"));
        assert_eq!(normalize("CAP_SYS_ADMIN").as_deref(), Some("CAP_SYS_ADMIN"));
        assert_eq!(normalize("all").as_deref(), Some("ALL"));
        assert_eq!(normalize("bogus"), None);
    }

    #[test]
    fn docker_rules() {
        let a = avail();
        let d = effective(false, &[], &[], &a).unwrap();
        assert_eq!(d.len(), DOCKER_DEFAULT.len());
        let s = effective(
            false,
            &["CAP_NET_ADMIN".into()],
            &["CAP_NET_RAW".into()],
            &a,
        )
        .unwrap();
        assert!(s.contains("CAP_NET_ADMIN") && !s.contains("CAP_NET_RAW"));
        let s = effective(false, &["CAP_KILL".into()], &["ALL".into()], &a).unwrap();
        assert_eq!(s.into_iter().collect::<Vec<_>>(), ["CAP_KILL"]);
        let s = effective(false, &["ALL".into()], &["CAP_SYS_ADMIN".into()], &a).unwrap();
        assert!(s.contains("CAP_NET_ADMIN") && !s.contains("CAP_SYS_ADMIN"));
        assert_eq!(effective(true, &[], &["ALL".into()], &a).unwrap(), a);
        assert!(effective(false, &["CAP_SYS_RESOURCE".into()], &[], &a).is_err());
    }
}
