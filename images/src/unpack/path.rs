//! Layer entry names: the checks that keep every entry inside the layer's directory,
//! and the OCI whiteout names that become overlayfs whiteouts.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use super::UnpackError;

/// The components of a layer entry's path, relative to the layer's root. `.` and empty
/// components are dropped; `..` and absolute paths are refused, so no name built from
/// these components can point outside the layer by itself (symlinks are handled by the
/// walk, which never follows one).
pub fn components(path: &[u8]) -> Result<Vec<OsString>, UnpackError> {
    let display = || String::from_utf8_lossy(path).into_owned();
    if path.first() == Some(&b'/') {
        return Err(UnpackError::Absolute { path: display() });
    }
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(UnpackError::Traversal { path: display() }),
            _ if c.contains(&0) => return Err(UnpackError::Traversal { path: display() }),
            _ => out.push(OsStr::from_bytes(c).to_os_string()),
        }
    }
    Ok(out)
}

/// What an entry's base name means under the OCI whiteout convention.
#[derive(Debug, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// An ordinary entry.
    None,
    /// `.wh..wh..opq`: the directory hides everything below it in lower layers.
    Opaque,
    /// `.wh.NAME`: NAME is deleted from lower layers.
    Remove(&'a OsStr),
    /// Other `.wh..wh.` names: metadata of the tool that made the layer, ignored.
    Meta,
}

const PREFIX: &[u8] = b".wh.";
const META_PREFIX: &[u8] = b".wh..wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// Classifies a base name; a whiteout of `.`, `..` or nothing is refused.
pub fn whiteout<'a>(name: &'a OsStr, full_path: &[u8]) -> Result<Whiteout<'a>, UnpackError> {
    let b = name.as_bytes();
    if b == OPAQUE {
        return Ok(Whiteout::Opaque);
    }
    if b.starts_with(META_PREFIX) {
        return Ok(Whiteout::Meta);
    }
    let Some(target) = b.strip_prefix(PREFIX) else {
        return Ok(Whiteout::None);
    };
    if target.is_empty() || target == b"." || target == b".." {
        return Err(UnpackError::BadWhiteout {
            path: String::from_utf8_lossy(full_path).into_owned(),
        });
    }
    Ok(Whiteout::Remove(OsStr::from_bytes(target)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comps(p: &str) -> Result<Vec<String>, UnpackError> {
        components(p.as_bytes())
            .map(|v| v.iter().map(|c| c.to_string_lossy().into_owned()).collect())
    }

    #[test]
    fn normal_paths_are_split_and_cleaned() {
        assert_eq!(comps("./bin/sh").unwrap(), ["bin", "sh"]);
        assert_eq!(comps("etc//passwd").unwrap(), ["etc", "passwd"]);
        assert_eq!(comps("usr/./lib/").unwrap(), ["usr", "lib"]);
        assert_eq!(comps("./").unwrap(), Vec::<String>::new());
        assert_eq!(comps("a/..b/c..").unwrap(), ["a", "..b", "c.."]);
    }

    #[test]
    fn escapes_are_refused() {
        for p in ["../x", "a/../../x", "a/b/..", "./.."] {
            assert!(
                matches!(comps(p), Err(UnpackError::Traversal { .. })),
                "{p}"
            );
        }
        for p in ["/etc/passwd", "//x", "/"] {
            assert!(matches!(comps(p), Err(UnpackError::Absolute { .. })), "{p}");
        }
    }

    #[test]
    fn whiteouts_are_translated() {
        let w = |n: &'static str| whiteout(OsStr::new(n), n.as_bytes());
        assert_eq!(w("file").unwrap(), Whiteout::None);
        assert_eq!(w(".wh.file").unwrap(), Whiteout::Remove(OsStr::new("file")));
        assert_eq!(
            w(".wh..hidden").unwrap(),
            Whiteout::Remove(OsStr::new(".hidden"))
        );
        assert_eq!(w(".wh..wh..opq").unwrap(), Whiteout::Opaque);
        assert_eq!(w(".wh..wh.plnk").unwrap(), Whiteout::Meta);
        for bad in [".wh.", ".wh..", ".wh..."] {
            assert!(
                matches!(w(bad), Err(UnpackError::BadWhiteout { .. })),
                "{bad}"
            );
        }
    }
}
