//! Unpacked layers, one directory per diffID, shared by every image and container.
//!
//! ```text
//! layers/<hex>/diff        the layer's files (an overlayfs lower directory)
//! layers/<hex>/meta.json   its size and short link name; present = complete
//! l/<short>                symlink to ../layers/<hex>/diff
//! ```
//!
//! The short links keep overlayfs mount options small: the option string is limited
//! to a page, and 100+ full paths would not fit (see `rootfs`).
//! A layer is unpacked into `layers/<hex>.tmp` and renamed into place whole.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{self, FileLock};
use crate::unpack::{self, UnpackError};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LayerMeta {
    pub size: u64,
    pub link: String,
}

#[derive(Clone)]
pub(crate) struct Layers {
    dir: PathBuf,
    links: PathBuf,
    locks: PathBuf,
}

const TMP_SUFFIX: &str = ".tmp";
const DELETED_PREFIX: &str = ".del-";

impl Layers {
    pub fn open(images: &Path) -> Result<Layers> {
        let l = Layers {
            dir: images.join("layers"),
            links: images.join("l"),
            locks: images.join("locks"),
        };
        for d in [&l.dir, &l.links, &l.locks] {
            fs::create_dir_all(d).at(d)?;
        }
        Ok(l)
    }

    pub fn diff_dir(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join(diff_id.hex()).join("diff")
    }

    /// The layer's record, when it is completely unpacked.
    pub fn meta(&self, diff_id: &Digest) -> Option<LayerMeta> {
        let bytes = fs::read(self.dir.join(diff_id.hex()).join("meta.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Unpacks the layer `diff_id` from `blob` unless it already is. The result is
    /// checked against `diff_id`; a refused layer leaves nothing behind.
    pub fn ensure(&self, diff_id: &Digest, blob: impl Read) -> Result<LayerMeta> {
        if let Some(meta) = self.meta(diff_id) {
            return Ok(meta);
        }
        let lock_path = self.locks.join(format!("layer-{}", diff_id.hex()));
        let _lock = FileLock::exclusive(&lock_path).at(&lock_path)?;
        if let Some(meta) = self.meta(diff_id) {
            return Ok(meta); // another process finished it while we waited
        }
        let tmp = self.dir.join(format!("{}{TMP_SUFFIX}", diff_id.hex()));
        fsutil::remove_tree(&tmp).at(&tmp)?; // left by a process that died mid-way
        let result = self.unpack_into(diff_id, blob, &tmp);
        if result.is_err() {
            let _ = fsutil::remove_tree(&tmp);
        }
        result
    }

    fn unpack_into(&self, diff_id: &Digest, blob: impl Read, tmp: &Path) -> Result<LayerMeta> {
        let diff = tmp.join("diff");
        fs::create_dir_all(&diff).at(&diff)?;
        let layer_err = |error| Error::Layer {
            layer: diff_id.to_string(),
            error,
        };
        let stats = unpack::unpack(blob, &diff).map_err(layer_err)?;
        if &stats.diff_id != diff_id {
            return Err(layer_err(UnpackError::DiffIdMismatch {
                expected: diff_id.clone(),
                actual: stats.diff_id,
            }));
        }
        let meta = LayerMeta {
            size: stats.size,
            link: self.make_link(diff_id)?,
        };
        let meta_path = tmp.join("meta.json");
        fs::write(
            &meta_path,
            serde_json::to_vec(&meta).expect("meta serialises"),
        )
        .at(&meta_path)?;
        let dest = self.dir.join(diff_id.hex());
        fs::rename(tmp, &dest).at(&dest)?;
        Ok(meta)
    }

    /// Creates `l/<short>` → the layer's diff directory: the shortest prefix of the
    /// diffID (12 digits and up) that no other layer's link uses.
    fn make_link(&self, diff_id: &Digest) -> Result<String> {
        let target = PathBuf::from(format!("../layers/{}/diff", diff_id.hex()));
        for len in (12..=64).step_by(4) {
            let name = &diff_id.hex()[..len];
            let path = self.links.join(name);
            match symlink(&target, &path) {
                Ok(()) => return Ok(name.to_string()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if fs::read_link(&path).at(&path)? == target {
                        return Ok(name.to_string());
                    }
                }
                Err(e) => return Err(e).at(&path),
            }
        }
        unreachable!("the full 64-digit name is unique to this layer")
    }

    /// Every layer directory name: complete layers, temporaries and deleted ones.
    pub fn entries(&self) -> Vec<String> {
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Takes a layer directory (complete or temporary) out of use; it is deleted by
    /// [`Layers::purge_deleted`]. Returns the layer's size when known.
    pub fn retire(&self, name: &str) -> Result<u64> {
        let path = self.dir.join(name);
        let mut size = 0;
        if let Some(meta) = Digest::from_hex(name).and_then(|d| self.meta(&d)) {
            size = meta.size;
            let link = self.links.join(&meta.link);
            fsutil::remove_file(&link).at(&link)?;
        }
        let dest = self.dir.join(format!(
            "{DELETED_PREFIX}{name}-{}",
            fsutil::unique_suffix()
        ));
        match fs::rename(&path, &dest) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            other => other.at(&path).map(|_| size),
        }
    }

    pub fn is_complete_name(name: &str) -> bool {
        Digest::from_hex(name).is_some()
    }

    pub fn is_temporary_name(name: &str) -> bool {
        name.ends_with(TMP_SUFFIX)
    }

    /// Deletes retired layer directories (slow for big layers: done outside locks).
    pub fn purge_deleted(&self) {
        for name in self.entries() {
            if name.starts_with(DELETED_PREFIX) {
                let _ = fsutil::remove_tree(&self.dir.join(name));
            }
        }
    }

    /// Removes lock files of layers that are not stored (under the GC lock only).
    pub fn clear_locks(&self) {
        for e in fs::read_dir(&self.locks).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(hex) = name.strip_prefix("layer-")
                && !self.dir.join(hex).exists()
            {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}
