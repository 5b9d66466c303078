//! `rbox load`: one streaming pass over the archive stores every file as a verified
//! blob (OCI `blobs/sha256/<hex>` are checked against their names; other files are
//! stored by the digest of their content), then the image descriptions
//! (`index.json` or `manifest.json`) are read and their layers unpacked.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use serde_json::json;

use super::{ArchiveError, NAME_ANNOTATION, OCI_CONFIG, OCI_MANIFEST, REF_NAME_ANNOTATION};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::platform::{self, Platform};
use crate::reference::Reference;
use crate::store::{ImageStore, NewImage};

/// An image taken from an archive.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub id: Digest,
    /// The names it was given (familiar form), empty when the archive had none.
    pub names: Vec<String>,
}

/// Files small enough to keep in memory: the archive's descriptions.
const DESCRIPTIONS: &[&str] = &["index.json", "manifest.json", "oci-layout", "repositories"];
const MAX_DESCRIPTION: u64 = 16 << 20;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// `a/./b/../c` → `a/c`; None when it climbs above the archive's root.
fn clean(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir if !out.pop() => return None,
            _ => {}
        }
    }
    Some(out)
}

fn archive_err(path: &str, reason: impl std::fmt::Display) -> Error {
    ArchiveError::Invalid {
        path: path.to_string(),
        reason: reason.to_string(),
    }
    .into()
}

struct Contents {
    /// Regular files (other than descriptions and OCI blobs) by path → their digest.
    files: HashMap<PathBuf, Digest>,
    /// Symlinks by path → target path (docker save links repeated layers).
    links: HashMap<PathBuf, PathBuf>,
    descriptions: HashMap<String, Vec<u8>>,
}

impl Contents {
    fn blob_at(&self, path: &str) -> Result<Digest> {
        let mut p =
            clean(Path::new(path)).ok_or_else(|| ArchiveError::Missing(path.to_string()))?;
        for _ in 0..16 {
            if let Some(target) = self.links.get(&p) {
                let base = p.parent().unwrap_or(Path::new(""));
                p = clean(&base.join(target))
                    .ok_or_else(|| ArchiveError::Missing(path.to_string()))?;
                continue;
            }
            if let Some(d) = self.files.get(&p) {
                return Ok(d.clone());
            }
            // An OCI blob path names its digest.
            if let Ok(rest) = p.strip_prefix("blobs/sha256")
                && let Some(d) = Digest::from_hex(&rest.to_string_lossy())
            {
                return Ok(d);
            }
            break;
        }
        Err(ArchiveError::Missing(path.to_string()).into())
    }
}

impl ImageStore {
    /// Loads the images of a `docker save` or OCI layout archive read from `reader`.
    pub fn load(&self, reader: impl Read) -> Result<Vec<Loaded>> {
        let _adding = self.adding()?;
        let contents = self.ingest_archive(reader)?;
        if let Some(index) = contents.descriptions.get("index.json") {
            self.load_oci(index)
        } else if let Some(manifest) = contents.descriptions.get("manifest.json") {
            self.load_docker(&contents, manifest)
        } else {
            Err(ArchiveError::UnknownFormat.into())
        }
    }

    fn ingest_archive(&self, reader: impl Read) -> Result<Contents> {
        let mut contents = Contents {
            files: HashMap::new(),
            links: HashMap::new(),
            descriptions: HashMap::new(),
        };
        let read_err = |e| Error::from(ArchiveError::Read(e));
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            let raw = entry.path().map_err(read_err)?.into_owned();
            let Some(path) = clean(&raw) else {
                return Err(archive_err(
                    &raw.display().to_string(),
                    "path climbs out of the archive",
                ));
            };
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                if let Some(target) = entry.link_name().map_err(read_err)? {
                    // Hard link names are archive paths; symlinks are relative to their dir.
                    let target = if kind.is_hard_link() {
                        Path::new("/").join(target)
                    } else {
                        target.into_owned()
                    };
                    let target = if target.is_absolute() {
                        let rel = target.strip_prefix("/").unwrap_or(&target).to_path_buf();
                        let depth = path.components().count().saturating_sub(1);
                        let mut up = PathBuf::new();
                        for _ in 0..depth {
                            up.push("..");
                        }
                        up.join(rel)
                    } else {
                        target
                    };
                    contents.links.insert(path, target);
                }
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let name = path.to_string_lossy().into_owned();
            if DESCRIPTIONS.contains(&name.as_str()) {
                if entry.size() > MAX_DESCRIPTION {
                    return Err(archive_err(&name, "too large"));
                }
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).map_err(read_err)?;
                contents.descriptions.insert(name, bytes);
            } else if let Some(d) = path
                .strip_prefix("blobs/sha256")
                .ok()
                .and_then(|rest| Digest::from_hex(&rest.to_string_lossy()))
            {
                let size = entry.size();
                let mut ingest = self.blobs.ingest(&d)?;
                if !ingest.is_done() {
                    ingest.restart()?;
                    let mut buf = vec![0u8; 1 << 20];
                    loop {
                        let n = entry.read(&mut buf).map_err(read_err)?;
                        if n == 0 {
                            break;
                        }
                        ingest.write(&buf[..n])?;
                    }
                    ingest
                        .commit(Some(size))
                        .map_err(|e| archive_err(&name, e))?;
                }
            } else {
                let (d, _) = self.blobs.put_stream(&mut entry)?;
                contents.files.insert(path, d);
            }
        }
        Ok(contents)
    }

    fn load_oci(&self, index_bytes: &[u8]) -> Result<Vec<Loaded>> {
        let index: oci_spec::image::ImageIndex =
            serde_json::from_slice(index_bytes).map_err(|e| archive_err("index.json", e))?;
        let mut loaded = Vec::new();
        for desc in index.manifests() {
            let mut digest = Digest::try_from(desc.digest())?;
            let mut bytes = self.archive_blob(&digest)?;
            let mut from_index = None;
            if matches!(desc.media_type(), oci_spec::image::MediaType::ImageIndex)
                || desc.media_type().to_string().contains("manifest.list")
            {
                let nested: oci_spec::image::ImageIndex =
                    serde_json::from_slice(&bytes).map_err(|e| archive_err(digest.as_str(), e))?;
                let chosen = platform::select(&nested, &Platform::host())?;
                from_index = Some(digest);
                digest = Digest::try_from(chosen.digest())?;
                bytes = self.archive_blob(&digest)?;
            }
            let annotations = desc.annotations().clone().unwrap_or_default();
            let name = annotations
                .get(NAME_ANNOTATION)
                .or_else(|| {
                    annotations
                        .get(REF_NAME_ANNOTATION)
                        .filter(|n| n.contains(['/', ':']))
                })
                .and_then(|n| Reference::parse(n).ok());
            let (id, names) = self.load_manifest(digest, &bytes, from_index, name.as_slice())?;
            loaded.push(Loaded { id, names });
        }
        Ok(loaded)
    }

    fn archive_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        if !self.blobs.contains(d) {
            return Err(ArchiveError::Missing(d.to_string()).into());
        }
        self.blobs.read(d)
    }

    fn load_docker(&self, contents: &Contents, manifest: &[u8]) -> Result<Vec<Loaded>> {
        let entries: Vec<DockerEntry> =
            serde_json::from_slice(manifest).map_err(|e| archive_err("manifest.json", e))?;
        let mut loaded = Vec::new();
        for entry in entries {
            let config = contents.blob_at(&entry.config)?;
            let config_size = self.blobs.size(&config)?;
            let mut layers = Vec::new();
            for path in &entry.layers {
                let d = contents.blob_at(path)?;
                let size = self.blobs.size(&d)?;
                layers.push(json!({
                    "mediaType": layer_media_type(&mut self.blobs.open_blob(&d)?),
                    "digest": d,
                    "size": size,
                }));
            }
            // Docker archives carry no manifest: write the OCI one they imply.
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config, "size": config_size},
                "layers": layers,
            });
            let bytes = serde_json::to_vec(&manifest).expect("JSON serialises");
            let digest = Digest::of(&bytes);
            self.blobs.put(&digest, &bytes)?;
            let names = entry
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| Reference::parse(t))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let (id, names) = self.load_manifest(digest, &bytes, None, &names)?;
            loaded.push(Loaded { id, names });
        }
        Ok(loaded)
    }

    /// Unpacks and registers the image of a stored manifest.
    fn load_manifest(
        &self,
        digest: Digest,
        bytes: &[u8],
        index: Option<Digest>,
        names: &[Reference],
    ) -> Result<(Digest, Vec<String>)> {
        let manifest: oci_spec::image::ImageManifest =
            serde_json::from_slice(bytes).map_err(|e| archive_err(digest.as_str(), e))?;
        let config_digest = Digest::try_from(manifest.config().digest())?;
        let config: oci_spec::image::ImageConfiguration =
            serde_json::from_slice(&self.archive_blob(&config_digest)?)
                .map_err(|e| archive_err(config_digest.as_str(), e))?;
        let diff_ids = config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| Digest::parse(d))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let layer_blobs = manifest
            .layers()
            .iter()
            .map(|l| Digest::try_from(l.digest()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if layer_blobs.len() != diff_ids.len() {
            return Err(archive_err(
                digest.as_str(),
                format!(
                    "{} layers but {} diffIDs in the config",
                    layer_blobs.len(),
                    diff_ids.len()
                ),
            ));
        }
        for b in &layer_blobs {
            if !self.blobs.contains(b) {
                return Err(ArchiveError::Missing(b.to_string()).into());
            }
        }
        let size = self.ensure_layers(&layer_blobs, &diff_ids)?;
        let mut blobs = layer_blobs;
        blobs.push(digest.clone());
        blobs.push(config_digest.clone());
        blobs.extend(index.clone());
        let new = || NewImage {
            id: config_digest.clone(),
            manifest: digest.clone(),
            index: index.clone(),
            layers: diff_ids.clone(),
            blobs: blobs.clone(),
            size,
        };
        let mut familiar = Vec::new();
        if names.is_empty() {
            self.register(new(), None, None)?;
        }
        for name in names {
            self.register(new(), Some(name), None)?;
            if let Some(t) = name.tag() {
                familiar.push(format!("{}:{t}", name.familiar_name()));
            }
        }
        Ok((config_digest, familiar))
    }
}

/// The OCI media type of a layer blob, from its first bytes.
fn layer_media_type(file: &mut impl Read) -> &'static str {
    let mut head = [0u8; 4];
    let n = file.read(&mut head).unwrap_or(0);
    match &head[..n] {
        [0x1f, 0x8b, ..] => "application/vnd.oci.image.layer.v1.tar+gzip",
        [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.oci.image.layer.v1.tar+zstd",
        _ => "application/vnd.oci.image.layer.v1.tar",
    }
}
