//! Unpacking a layer (gzip, zstd or plain tar) into an empty directory, safely.
//!
//! The data streams once: blob → decompressor → hasher (the diffID) → tar parser →
//! files; nothing is copied to a temporary. Every entry is created relative to a
//! directory file descriptor reached by walking its parent components one at a time
//! with `O_NOFOLLOW`, so an entry can never land outside the layer: `..` and absolute
//! names are refused ([`path::components`]), a symlink met on the way is refused rather
//! than followed, and hard links may only point at entries of the layer itself.
//! OCI whiteouts become overlayfs ones: `.wh.NAME` a 0/0 character device, and
//! `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory.

pub mod path;

use std::cell::Cell;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{self, FchmodatFlags, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags};
use thiserror::Error;

use crate::digest::{Digest, HashingReader};
use path::Whiteout;

/// Why a layer was refused or could not be unpacked.
#[derive(Debug, Error)]
pub enum UnpackError {
    #[error("layer entry {path:?} climbs out of the layer with \"..\"")]
    Traversal { path: String },
    #[error("layer entry {path:?} is an absolute path")]
    Absolute { path: String },
    #[error(
        "layer entry {path:?} goes through the symlink {symlink:?}; a layer may not write through a symlink"
    )]
    ThroughSymlink { path: String, symlink: String },
    #[error("layer entry {path:?}: {parent:?} is not a directory")]
    NotADirectory { path: String, parent: String },
    #[error("layer entry {path:?} is a hard link to {target:?}, outside the layer")]
    LinkEscape { path: String, target: String },
    #[error("layer entry {path:?} is a hard link to {target:?}, which is not in the layer")]
    LinkMissing { path: String, target: String },
    #[error("layer entry {path:?} is an invalid whiteout")]
    BadWhiteout { path: String },
    #[error("layer entry {path:?} has an unsupported type ({kind})")]
    UnsupportedType { path: String, kind: String },
    #[error("layer entry {path:?} would replace a non-empty directory")]
    ReplacesDirectory { path: String },
    #[error("layer content does not match its diffID: expected {expected}, got {actual}")]
    DiffIdMismatch { expected: Digest, actual: Digest },
    #[error("reading the layer (corrupt or truncated archive?): {0}")]
    Read(io::Error),
    #[error("layer entry {path:?}: {error}")]
    Write { path: String, error: io::Error },
}

/// What unpacking found out about the layer.
#[derive(Debug, Clone)]
pub struct UnpackStats {
    /// Digest of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Sum of the sizes of its regular files.
    pub size: u64,
}

/// Wraps `reader` in the decompressor its first bytes call for (gzip, zstd or none).
pub fn decompress<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let head = buffered.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?)
    } else {
        Box::new(buffered)
    })
}

/// Unpacks the layer read from `blob` into the empty directory `dest`.
/// On error, `dest` may hold part of the layer: the caller removes it.
pub fn unpack(blob: impl Read, dest: &Path) -> Result<UnpackStats, UnpackError> {
    let root = File::open(dest)
        .map(OwnedFd::from)
        .map_err(|error| UnpackError::Write {
            path: ".".into(),
            error,
        })?;
    let decompressed = decompress(blob).map_err(UnpackError::Read)?;
    let ended = Rc::new(Cell::new(false));
    let stream = EndAware {
        inner: HashingReader::new(decompressed),
        ended: ended.clone(),
    };
    let mut archive = tar::Archive::new(stream);
    let mut unpacker = Unpacker {
        walker: Walker {
            root,
            stack: Vec::new(),
        },
        dir_times: Vec::new(),
        size: 0,
        buf: vec![0; 1 << 20],
    };
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = match entry {
            Ok(entry) => entry,
            // Some tools (umoci) end a layer right after the last entry's data, without
            // padding or end-of-archive blocks: every entry is complete (file sizes are
            // checked), and the diffID below still vouches for every byte.
            Err(_) if ended.get() => break,
            Err(e) => return Err(UnpackError::Read(e)),
        };
        unpacker.entry(&mut entry)?;
    }
    unpacker.finish()?;
    let (diff_id, _) = archive
        .into_inner()
        .inner
        .finish()
        .map_err(UnpackError::Read)?;
    Ok(UnpackStats {
        diff_id,
        size: unpacker.size,
    })
}

/// Notes when the stream behind the tar parser has ended.
struct EndAware<R> {
    inner: R,
    ended: Rc<Cell<bool>>,
}

impl<R: Read> Read for EndAware<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.ended.set(true);
        }
        Ok(n)
    }
}

fn io_err(path: &[u8]) -> impl Fn(Errno) -> UnpackError + '_ {
    move |e| UnpackError::Write {
        path: String::from_utf8_lossy(path).into_owned(),
        error: io::Error::from(e),
    }
}

fn lossy(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// Directory descriptors along the path of the last entry, so that consecutive
/// entries of a sorted tar open each directory once.
struct Walker {
    root: OwnedFd,
    stack: Vec<(OsString, OwnedFd)>,
}

impl Walker {
    fn top(&self) -> BorrowedFd<'_> {
        self.stack
            .last()
            .map_or(self.root.as_fd(), |(_, fd)| fd.as_fd())
    }

    /// The directory `comps` (created when missing), never through a symlink.
    fn dir(&mut self, comps: &[OsString], path: &[u8]) -> Result<BorrowedFd<'_>, UnpackError> {
        let keep = self
            .stack
            .iter()
            .zip(comps)
            .take_while(|((name, _), c)| name == *c)
            .count();
        self.stack.truncate(keep);
        for (depth, c) in comps.iter().enumerate().skip(keep) {
            let fd = open_dir(self.top(), c, true, &comps[..=depth], path)?;
            self.stack.push((c.clone(), fd));
        }
        Ok(self.top())
    }

    /// Forgets cached directories deeper than `depth` (after an entry replaced one).
    fn forget_below(&mut self, depth: usize) {
        self.stack.truncate(depth);
    }

    /// Opens the existing directory `comps` without touching the cache.
    fn open_existing(&self, comps: &[OsString], path: &[u8]) -> Result<OwnedFd, UnpackError> {
        let mut fd = self.root.try_clone().map_err(|error| UnpackError::Write {
            path: lossy(path),
            error,
        })?;
        for (depth, c) in comps.iter().enumerate() {
            fd = open_dir(fd.as_fd(), c, false, &comps[..=depth], path)?;
        }
        Ok(fd)
    }
}

fn join(comps: &[OsString]) -> String {
    comps
        .iter()
        .map(|c| c.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Opens the directory `name` in `dir` without following a symlink; creates it when
/// missing and `create` is set.
fn open_dir(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    create: bool,
    so_far: &[OsString],
    path: &[u8],
) -> Result<OwnedFd, UnpackError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::ENOENT) if create => {
            match stat::mkdirat(dir, name, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(io_err(path)(e)),
            }
            openat(dir, name, flags, Mode::empty()).map_err(io_err(path))
        }
        Err(Errno::ELOOP | Errno::ENOTDIR) => {
            let is_symlink =
                stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|st| {
                    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK
                });
            Err(if is_symlink {
                UnpackError::ThroughSymlink {
                    path: lossy(path),
                    symlink: join(so_far),
                }
            } else {
                UnpackError::NotADirectory {
                    path: lossy(path),
                    parent: join(so_far),
                }
            })
        }
        Err(Errno::ENOENT) => Err(UnpackError::Write {
            path: lossy(path),
            error: io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} does not exist", join(so_far)),
            ),
        }),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Owner, mode, times and xattrs of an entry, from its header and PAX records.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: TimeSpec,
    xattrs: Vec<(CString, Vec<u8>)>,
}

impl Meta {
    fn of<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta, UnpackError> {
        let h = entry.header();
        let path = entry.path_bytes().into_owned();
        let bad = |e: io::Error| {
            UnpackError::Read(io::Error::new(e.kind(), format!("{}: {e}", lossy(&path))))
        };
        let mut meta = Meta {
            uid: h.uid().map_err(bad)? as u32,
            gid: h.gid().map_err(bad)? as u32,
            mode: h.mode().map_err(bad)? & 0o7777,
            mtime: TimeSpec::new(h.mtime().map_err(bad)? as i64, 0),
            xattrs: Vec::new(),
        };
        if let Some(pax) = entry.pax_extensions().map_err(bad)? {
            for ext in pax {
                let ext = ext.map_err(bad)?;
                let key = ext.key_bytes();
                let value = ext.value_bytes();
                let text = std::str::from_utf8(value).unwrap_or("");
                match key {
                    b"uid" => meta.uid = text.parse().unwrap_or(meta.uid),
                    b"gid" => meta.gid = text.parse().unwrap_or(meta.gid),
                    b"mtime" => {
                        if let Some(ts) = parse_pax_time(text) {
                            meta.mtime = ts;
                        }
                    }
                    _ => {
                        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                            // Overlay's own xattrs come only from whiteout translation:
                            // a layer may not forge redirects or opaque markers.
                            if !name.starts_with(b"trusted.overlay.")
                                && let Ok(name) = CString::new(name)
                            {
                                meta.xattrs.push((name, value.to_vec()));
                            }
                        }
                    }
                }
            }
        }
        Ok(meta)
    }

    /// Applies owner, mode and xattrs to an open file or directory (times separately).
    fn apply(&self, fd: BorrowedFd<'_>, path: &[u8]) -> Result<(), UnpackError> {
        // Owner first: chown clears set-id bits and file capabilities.
        nix::unistd::fchown(
            fd,
            Some(Uid::from_raw(self.uid)),
            Some(Gid::from_raw(self.gid)),
        )
        .map_err(io_err(path))?;
        stat::fchmod(fd, Mode::from_bits_retain(self.mode)).map_err(io_err(path))?;
        for (name, value) in &self.xattrs {
            set_xattr(fd, name, value).map_err(io_err(path))?;
        }
        Ok(())
    }
}

/// `1700000000.5` → seconds and nanoseconds.
fn parse_pax_time(s: &str) -> Option<TimeSpec> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos = if digits.is_empty() {
        0
    } else {
        digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32)
    };
    Some(TimeSpec::new(secs, nanos))
}

fn set_xattr(fd: BorrowedFd<'_>, name: &CString, value: &[u8]) -> Result<(), Errno> {
    // SAFETY: fsetxattr reads `name` (NUL-terminated) and `value.len()` bytes of `value`,
    // both valid for the call; `fd` is an open descriptor we borrow.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    match Errno::result(r) {
        // A filesystem that does not know a namespace (e.g. security.selinux) is not fatal.
        Err(Errno::EOPNOTSUPP) => Ok(()),
        other => other.map(drop),
    }
}

fn file_type(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<SFlag>, Errno> {
    match stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Makes room for a new entry `name`: removes what is there, except a directory when
/// `keep_dir` (a directory entry over an existing directory only updates it).
/// Returns whether an existing directory was kept.
fn clear(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    keep_dir: bool,
    path: &[u8],
) -> Result<bool, UnpackError> {
    match file_type(dir, name).map_err(io_err(path))? {
        None => Ok(false),
        Some(SFlag::S_IFDIR) if keep_dir => Ok(true),
        Some(SFlag::S_IFDIR) => match nix::unistd::unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
            Ok(()) => Ok(false),
            Err(Errno::ENOTEMPTY | Errno::EEXIST) => {
                Err(UnpackError::ReplacesDirectory { path: lossy(path) })
            }
            Err(e) => Err(io_err(path)(e)),
        },
        Some(_) => {
            nix::unistd::unlinkat(dir, name, UnlinkatFlags::NoRemoveDir).map_err(io_err(path))?;
            Ok(false)
        }
    }
}

struct Unpacker {
    walker: Walker,
    /// Directory times, set last: creating entries inside a directory changes its mtime.
    dir_times: Vec<(Vec<OsString>, TimeSpec)>,
    size: u64,
    buf: Vec<u8>,
}

impl Unpacker {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let comps = path::components(&raw)?;
        let meta = Meta::of(entry)?;
        let Some((name, parents)) = comps.split_last() else {
            // The layer's root directory itself.
            if kind.is_dir() {
                meta.apply(self.walker.root.as_fd(), &raw)?;
                self.dir_times.push((Vec::new(), meta.mtime));
            }
            return Ok(());
        };
        let name = name.as_os_str();

        match path::whiteout(name, &raw)? {
            Whiteout::Meta => return Ok(()),
            Whiteout::Opaque => {
                let dir = self.walker.dir(parents, &raw)?;
                return set_xattr(dir, &CString::new("trusted.overlay.opaque").unwrap(), b"y")
                    .map_err(io_err(&raw));
            }
            Whiteout::Remove(target) => {
                let dir = self.walker.dir(parents, &raw)?;
                clear(dir, target, false, &raw)?;
                stat::mknodat(
                    dir,
                    target,
                    SFlag::S_IFCHR,
                    Mode::empty(),
                    stat::makedev(0, 0),
                )
                .map_err(io_err(&raw))?;
                self.walker.forget_below(parents.len());
                return Ok(());
            }
            Whiteout::None => {}
        }

        if kind.is_hard_link() {
            return self.hard_link(entry, &raw, parents, name);
        }
        let dir = self.walker.dir(parents, &raw)?;
        if kind.is_dir() {
            if !clear(dir, name, true, &raw)? {
                stat::mkdirat(dir, name, Mode::from_bits_truncate(0o700)).map_err(io_err(&raw))?;
            }
            let fd = openat(
                dir,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(io_err(&raw))?;
            meta.apply(fd.as_fd(), &raw)?;
            self.dir_times.push((comps.clone(), meta.mtime));
            return Ok(());
        }

        clear(dir, name, false, &raw)?;
        if kind.is_file() || kind == tar::EntryType::Continuous {
            let fd = openat(
                dir,
                name,
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .map_err(io_err(&raw))?;
            let mut file = File::from(fd);
            let expected = entry.size();
            let mut written = 0u64;
            loop {
                let n = match entry.read(&mut self.buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(UnpackError::Read(e)),
                };
                file.write_all(&self.buf[..n])
                    .map_err(|error| UnpackError::Write {
                        path: lossy(&raw),
                        error,
                    })?;
                self.size += n as u64;
                written += n as u64;
            }
            if written != expected {
                return Err(UnpackError::Read(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{}: {written} of {expected} bytes: the layer is truncated",
                        lossy(&raw)
                    ),
                )));
            }
            meta.apply(file.as_fd(), &raw)?;
            stat::futimens(file.as_fd(), &meta.mtime, &meta.mtime).map_err(io_err(&raw))?;
        } else if kind.is_symlink() {
            let target = entry.link_name_bytes().unwrap_or_default().into_owned();
            nix::unistd::symlinkat(OsStr::from_bytes(&target), dir, name).map_err(io_err(&raw))?;
            nix::unistd::fchownat(
                dir,
                name,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(io_err(&raw))?;
            stat::utimensat(
                dir,
                name,
                &meta.mtime,
                &meta.mtime,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(io_err(&raw))?;
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            let sflag = if kind.is_character_special() {
                SFlag::S_IFCHR
            } else if kind.is_block_special() {
                SFlag::S_IFBLK
            } else {
                SFlag::S_IFIFO
            };
            let h = entry.header();
            let major = h.device_major().ok().flatten().unwrap_or(0);
            let minor = h.device_minor().ok().flatten().unwrap_or(0);
            stat::mknodat(
                dir,
                name,
                sflag,
                Mode::from_bits_truncate(0o600),
                stat::makedev(major.into(), minor.into()),
            )
            .map_err(io_err(&raw))?;
            nix::unistd::fchownat(
                dir,
                name,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(io_err(&raw))?;
            stat::fchmodat(
                dir,
                name,
                Mode::from_bits_retain(meta.mode),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(io_err(&raw))?;
            stat::utimensat(
                dir,
                name,
                &meta.mtime,
                &meta.mtime,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(io_err(&raw))?;
        } else {
            return Err(UnpackError::UnsupportedType {
                path: lossy(&raw),
                kind: format!("{kind:?}"),
            });
        }
        // The entry may have replaced a directory cached in the walk.
        self.walker.forget_below(parents.len());
        Ok(())
    }

    fn hard_link<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        raw: &[u8],
        parents: &[OsString],
        name: &OsStr,
    ) -> Result<(), UnpackError> {
        let target_raw = entry.link_name_bytes().unwrap_or_default().into_owned();
        let escape = || UnpackError::LinkEscape {
            path: lossy(raw),
            target: lossy(&target_raw),
        };
        let target = path::components(&target_raw).map_err(|_| escape())?;
        let Some((target_name, target_parents)) = target.split_last() else {
            return Err(escape());
        };
        let target_name = target_name.as_os_str();
        let missing = || UnpackError::LinkMissing {
            path: lossy(raw),
            target: lossy(&target_raw),
        };
        let target_dir = match self.walker.open_existing(target_parents, raw) {
            Ok(fd) => fd,
            Err(UnpackError::Write { .. }) => return Err(missing()),
            Err(e) => return Err(e),
        };
        let dir = self.walker.dir(parents, raw)?;
        clear(dir, name, false, raw)?;
        // Without AT_SYMLINK_FOLLOW, linkat links a symlink itself, never its target.
        match nix::unistd::linkat(target_dir.as_fd(), target_name, dir, name, AtFlags::empty()) {
            Ok(()) => {}
            Err(Errno::ENOENT) => return Err(missing()),
            Err(e) => return Err(io_err(raw)(e)),
        }
        self.walker.forget_below(parents.len());
        Ok(())
    }

    /// Sets directory times, now that nothing more is created inside them.
    fn finish(&mut self) -> Result<(), UnpackError> {
        for (comps, time) in self.dir_times.drain(..).rev() {
            let raw = join(&comps).into_bytes();
            // A directory that a later entry replaced keeps no time of its own.
            let Ok(fd) = self.walker.open_existing(&comps, &raw) else {
                continue;
            };
            stat::futimens(fd.as_fd(), &time, &time).map_err(io_err(&raw))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
