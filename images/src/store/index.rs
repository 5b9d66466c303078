//! The image records (`index.json`): which images exist, their names, blobs and
//! layers (the containers holding them are in `rootfs/`). Read freely (it is replaced atomically); every
//! change happens under `index.lock`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{self, FileLock};
use crate::reference::Reference;

/// One image in the store, identified by its config digest (Docker's image ID).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct ImageRecord {
    pub id: Digest,
    pub manifest: Digest,
    /// The multi-platform index the manifest was chosen from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Digest>,
    /// Tagged names, normalised (`docker.io/library/busybox:latest`).
    pub names: Vec<String>,
    /// `name@digest` forms the image was pulled by.
    pub repo_digests: Vec<String>,
    /// diffIDs, bottom layer first.
    pub layers: Vec<Digest>,
    /// Every blob the image needs: index, manifest, config, layer blobs.
    pub blobs: Vec<Digest>,
    /// Unpacked size of all layers.
    pub size: u64,
    /// When it entered the store (or was last tagged).
    pub added: DateTime<Utc>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Records {
    /// Keyed by the image ID's hex digits.
    pub images: BTreeMap<String, ImageRecord>,
}

impl Records {
    /// Adds or refreshes `record`. `name` (a tagged name) moves to it from any other
    /// image. Returns true when something changed for `name` (a new or moved tag).
    pub fn add(
        &mut self,
        record: ImageRecord,
        name: Option<&str>,
        repo_digest: Option<&str>,
    ) -> bool {
        let key = record.id.hex().to_string();
        let mut changed = !self.images.contains_key(&key);
        if let Some(name) = name {
            for other in self.images.values_mut() {
                if other.id != record.id && other.names.iter().any(|n| n == name) {
                    other.names.retain(|n| n != name);
                    changed = true;
                }
            }
        }
        let entry = self.images.entry(key).or_insert_with(|| ImageRecord {
            names: Vec::new(),
            repo_digests: Vec::new(),
            ..record.clone()
        });
        // The newest manifest of the same image wins; the old blobs become garbage.
        entry.manifest = record.manifest;
        entry.index = record.index;
        entry.blobs = record.blobs;
        entry.layers = record.layers;
        entry.size = record.size;
        if let Some(name) = name
            && !entry.names.iter().any(|n| n == name)
        {
            entry.names.push(name.to_string());
            entry.added = record.added;
            changed = true;
        }
        if let Some(rd) = repo_digest
            && !entry.repo_digests.iter().any(|r| r == rd)
        {
            entry.repo_digests.push(rd.to_string());
        }
        changed
    }

    /// Finds an image the way Docker does: by name (`busybox`, `busybox:1`,
    /// `busybox@sha256:…`), else by full or abbreviated ID (`sha256:…`, `3f57d9401f8d`).
    pub fn find(&self, query: &str) -> Result<&ImageRecord> {
        if let Ok(r) = Reference::parse(query)
            && let Some(found) = self.by_reference(&r)
        {
            return Ok(found);
        }
        let hex = query.strip_prefix("sha256:").unwrap_or(query);
        let is_hex = !hex.is_empty()
            && hex.len() <= 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if is_hex {
            let mut matches = self
                .images
                .range(hex.to_string()..)
                .take_while(|(k, _)| k.starts_with(hex));
            if let Some((_, first)) = matches.next() {
                if matches.next().is_some() {
                    return Err(Error::Ambiguous(query.to_string()));
                }
                return Ok(first);
            }
        }
        Err(Error::NotFound(query.to_string()))
    }

    fn by_reference(&self, r: &Reference) -> Option<&ImageRecord> {
        if let Some(digest) = r.digest() {
            let wanted = format!("{}@{digest}", r.name());
            return self.images.values().find(|i| {
                i.repo_digests.contains(&wanted)
                    || (i.manifest.as_str() == digest
                        || i.index.as_ref().is_some_and(|d| d.as_str() == digest))
                        && i.names
                            .iter()
                            .chain(&i.repo_digests)
                            .any(|n| name_part(n) == r.name())
            });
        }
        let tagged = r.tagged_name()?;
        self.images.values().find(|i| i.names.contains(&tagged))
    }
}

/// `docker.io/library/busybox` of `docker.io/library/busybox:latest` or `…@sha256:…`.
pub(crate) fn name_part(full: &str) -> &str {
    if let Some((name, _)) = full.split_once('@') {
        return name;
    }
    match full.rfind(':') {
        Some(i) if !full[i..].contains('/') => &full[..i],
        _ => full,
    }
}

pub(crate) struct Index {
    path: PathBuf,
    lock: PathBuf,
}

impl Index {
    pub fn new(images: &Path) -> Index {
        Index {
            path: images.join("index.json"),
            lock: images.join("index.lock"),
        }
    }

    pub fn read(&self) -> Result<Records> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Io {
                path: self.path.clone(),
                error: io::Error::new(io::ErrorKind::InvalidData, e),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Records::default()),
            Err(e) => Err(e).at(&self.path),
        }
    }

    /// Read-modify-write under the index lock; nothing is written when `f` fails.
    pub fn update<T>(&self, f: impl FnOnce(&mut Records) -> Result<T>) -> Result<T> {
        let _lock = FileLock::exclusive(&self.lock).at(&self.lock)?;
        let mut records = self.read()?;
        let out = f(&mut records)?;
        let bytes = serde_json::to_vec_pretty(&records).expect("records serialise");
        fsutil::write_atomic(&self.path, &bytes).at(&self.path)?;
        Ok(out)
    }

    /// Holds the index lock (for the garbage collector's consistent view).
    pub fn lock(&self) -> Result<FileLock> {
        FileLock::exclusive(&self.lock).at(&self.lock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u8) -> ImageRecord {
        let id = Digest::from_hex(&format!("{n:02x}").repeat(32)).unwrap();
        ImageRecord {
            id: id.clone(),
            manifest: Digest::of(&[n]),
            index: None,
            names: vec![],
            repo_digests: vec![],
            layers: vec![],
            blobs: vec![id],
            size: 1,
            added: Utc::now(),
        }
    }

    #[test]
    fn names_move_between_images_and_lookup_works() {
        let mut r = Records::default();
        let bb = "docker.io/library/busybox:latest";
        assert!(r.add(
            rec(1),
            Some(bb),
            Some("docker.io/library/busybox@sha256:aa")
        ));
        assert!(
            !r.add(rec(1), Some(bb), None),
            "same tag again is no change"
        );
        assert!(r.add(rec(2), Some(bb), None), "the tag moves");
        let one = r.find(&"01".repeat(32)).unwrap();
        assert!(one.names.is_empty());
        assert_eq!(r.find("busybox").unwrap().id, rec(2).id);
        assert_eq!(
            r.find("docker.io/library/busybox:latest").unwrap().id,
            rec(2).id
        );
        assert_eq!(r.find("0202").unwrap().id, rec(2).id);
        assert_eq!(
            r.find(&format!("sha256:{}", "02".repeat(32))).unwrap().id,
            rec(2).id
        );
        assert!(matches!(r.find("busybox:1"), Err(Error::NotFound(_))));
        assert!(matches!(r.find("nothing"), Err(Error::NotFound(_))));
        r.add(rec(0x0a), None, None);
        r.add(rec(0x0b), None, None);
        assert!(matches!(r.find("0"), Err(Error::Ambiguous(_))));
        // By digest: the manifest digest within the same repository.
        let m = rec(2).manifest;
        assert_eq!(r.find(&format!("busybox@{m}")).unwrap().id, rec(2).id);
        assert!(r.find(&format!("other@{m}")).is_err());
    }

    #[test]
    fn name_part_strips_tag_or_digest() {
        assert_eq!(
            name_part("docker.io/library/busybox:latest"),
            "docker.io/library/busybox"
        );
        assert_eq!(name_part("localhost:5000/x:1"), "localhost:5000/x");
        assert_eq!(name_part("localhost:5000/x"), "localhost:5000/x");
        assert_eq!(name_part("a/b@sha256:00"), "a/b");
    }
}
