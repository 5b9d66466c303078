//! The content-addressed image store under `<root>/images/`:
//!
//! ```text
//! blobs/sha256/<hex>   manifests, indexes, configs, layer blobs (verified)
//! ingest/<hex>         partial downloads, continued by the next pull
//! layers/, l/          unpacked layers (see `layers`)
//! rootfs/<container>/  containers' upper layers (see `rootfs`)
//! work/<container>/    their overlayfs work directories
//! holders/<container>  the image each container holds (so `rmi` refuses to delete it)
//! holds/<hex>          per held image, the file holders are hard links to
//! merged/<container>/  mount points, unless they live elsewhere (`mount_under`)
//! index.json           image records: names, blobs, layers
//! index.lock           taken for every change of index.json
//! gc.lock              shared by pulls and loads, exclusive for garbage collection
//! locks/               one lock per blob or layer being written
//! ```
//!
//! Garbage (blobs and layers no image needs) is collected after `rmi` and `prune`,
//! when no pull or load is running; otherwise the next collection takes it.

pub(crate) mod blobs;
pub(crate) mod index;
pub(crate) mod layers;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::FileLock;
use crate::reference::Reference;
use blobs::Blobs;
use index::{ImageRecord, Index, Records};
use layers::Layers;

/// The parts of an image's config that shape a container's process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageConfig {
    pub user: Option<String>,
    pub env: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub working_dir: Option<String>,
    /// `80/tcp`, `53/udp`, …
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
}

/// An image in the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// The config digest, Docker's image ID.
    pub id: Digest,
    /// Tagged names, normalised (`docker.io/library/busybox:latest`).
    pub names: Vec<String>,
    /// `name@sha256:…` forms it was pulled by.
    pub repo_digests: Vec<String>,
    pub manifest_digest: Digest,
    pub created: Option<DateTime<Utc>>,
    /// When it was pulled, loaded or last tagged.
    pub added: DateTime<Utc>,
    /// Unpacked size of all layers, in bytes.
    pub size: u64,
    /// diffIDs, bottom layer first.
    pub layers: Vec<Digest>,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    pub config: ImageConfig,
}

/// `image inspect` output, in Docker's field order.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub parent: String,
    pub comment: String,
    pub created: Value,
    pub author: String,
    pub config: Value,
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub os: String,
    pub size: u64,
    pub graph_driver: Value,
    #[serde(rename = "RootFS")]
    pub root_fs: Value,
    pub metadata: Value,
    /// Containers whose root filesystem uses the image (not in Docker's output).
    pub containers: Vec<String>,
}

/// What `prune` removed.
#[derive(Debug, Default)]
pub struct PruneReport {
    /// `Untagged: …` and `Deleted: sha256:…` lines, as Docker prints them.
    pub lines: Vec<String>,
    pub reclaimed_bytes: u64,
}

/// An image about to be registered by a pull or a load.
pub(crate) struct NewImage {
    pub id: Digest,
    pub manifest: Digest,
    pub index: Option<Digest>,
    pub layers: Vec<Digest>,
    pub blobs: Vec<Digest>,
    pub size: u64,
}

/// The image store of one rbox root. Cheap to open; safe to use from many processes.
pub struct ImageStore {
    pub(crate) dir: PathBuf,
    pub(crate) blobs: Blobs,
    pub(crate) layers: Layers,
    pub(crate) index: Index,
    gc_lock: PathBuf,
    /// Where containers' root filesystems are mounted ([`ImageStore::mount_under`]).
    pub(crate) mount_root: Option<PathBuf>,
}

impl ImageStore {
    /// Opens (creating if needed) the store under `<root>/images`.
    pub fn open(root: &Path) -> Result<ImageStore> {
        let dir = root.join("images");
        fs::create_dir_all(&dir).at(&dir)?;
        Ok(ImageStore {
            blobs: Blobs::open(&dir)?,
            layers: Layers::open(&dir)?,
            index: Index::new(&dir),
            gc_lock: dir.join("gc.lock"),
            dir,
            mount_root: None,
        })
    }

    /// Mounts containers' root filesystems at `dir/<container>` rather than in the
    /// store (`merged/<container>`): on a tmpfs (a runroot), a mount point costs the
    /// store's disk nothing.
    pub fn mount_under(self, dir: PathBuf) -> ImageStore {
        ImageStore {
            mount_root: Some(dir),
            ..self
        }
    }

    /// The store's directory (`<root>/images`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Held (shared) while blobs and layers are added, so that garbage collection
    /// never removes what an unregistered image is about to use.
    pub(crate) fn adding(&self) -> Result<FileLock> {
        FileLock::shared(&self.gc_lock).at(&self.gc_lock)
    }

    /// Every image, newest first.
    pub fn list(&self) -> Result<Vec<Image>> {
        let records = self.index.read()?;
        let mut images = records
            .images
            .values()
            .map(|r| self.image(r))
            .collect::<Result<Vec<_>>>()?;
        images.sort_by(|a, b| b.added.cmp(&a.added).then(a.id.cmp(&b.id)));
        Ok(images)
    }

    /// Finds an image by name (`busybox`, `host:5000/app:1`, `app@sha256:…`) or by
    /// full or abbreviated ID.
    pub fn resolve(&self, query: &str) -> Result<Image> {
        let records = self.index.read()?;
        self.image(records.find(query)?)
    }

    /// Docker's `image inspect` view of one image (serialise it to JSON).
    pub fn inspect(&self, query: &str) -> Result<ImageInspect> {
        let image = self.resolve(query)?;
        let raw: Value = serde_json::from_slice(&self.blobs.read(&image.id)?)
            .map_err(|e| Error::invalid("config", e))?;
        let field = |k: &str| raw.get(k).cloned().unwrap_or(Value::Null);
        let text = |k: &str| raw.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let lower: Vec<String> = image
            .layers
            .iter()
            .rev()
            .map(|l| self.layers.diff_dir(l).display().to_string())
            .collect();
        Ok(ImageInspect {
            id: image.id.to_string(),
            repo_tags: image.names.iter().map(|n| familiar(n)).collect(),
            repo_digests: image.repo_digests.iter().map(|n| familiar(n)).collect(),
            parent: String::new(),
            comment: text("comment"),
            created: field("created"),
            author: text("author"),
            config: raw.get("config").cloned().unwrap_or(json!({})),
            architecture: image.architecture.clone(),
            variant: image.variant.clone(),
            os: image.os.clone(),
            size: image.size,
            graph_driver: json!({"Name": "overlay", "Data": {"LowerDir": lower.join(":")}}),
            root_fs: json!({"Type": "layers", "Layers": image.layers}),
            metadata: json!({"LastTagTime": image.added.to_rfc3339()}),
            containers: self
                .holders()
                .remove(image.id.hex())
                .unwrap_or_default()
                .into_iter()
                .collect(),
        })
    }

    /// Builds the public view of a record from its config blob.
    pub(crate) fn image(&self, r: &ImageRecord) -> Result<Image> {
        let bytes = self.blobs.read(&r.id)?;
        let cfg: oci_spec::image::ImageConfiguration = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(format!("config {}", r.id), e))?;
        let c = cfg.config().clone().unwrap_or_default();
        Ok(Image {
            id: r.id.clone(),
            names: r.names.clone(),
            repo_digests: r.repo_digests.clone(),
            manifest_digest: r.manifest.clone(),
            created: cfg
                .created()
                .as_deref()
                .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
                .map(|d| d.with_timezone(&Utc)),
            added: r.added,
            size: r.size,
            layers: r.layers.clone(),
            os: cfg.os().to_string(),
            architecture: cfg.architecture().to_string(),
            variant: cfg.variant().clone(),
            config: ImageConfig {
                user: c.user().clone().filter(|u| !u.is_empty()),
                env: c.env().clone().unwrap_or_default(),
                entrypoint: c.entrypoint().clone(),
                cmd: c.cmd().clone(),
                working_dir: c.working_dir().clone().filter(|w| !w.is_empty()),
                exposed_ports: c.exposed_ports().clone().unwrap_or_default(),
                volumes: c.volumes().clone().unwrap_or_default(),
                labels: c.labels().clone().unwrap_or_default().into_iter().collect(),
                stop_signal: c.stop_signal().clone(),
            },
        })
    }

    /// Records a fully stored image, tagging it `name`. Returns the image and whether
    /// the name is new or moved (Docker's "Downloaded newer image").
    pub(crate) fn register(
        &self,
        new: NewImage,
        name: Option<&Reference>,
        repo_digest: Option<String>,
    ) -> Result<(Image, bool)> {
        let tagged = name.and_then(Reference::tagged_name);
        let record = ImageRecord {
            id: new.id.clone(),
            manifest: new.manifest,
            index: new.index,
            names: Vec::new(),
            repo_digests: Vec::new(),
            layers: new.layers,
            blobs: new.blobs,
            size: new.size,
            added: Utc::now(),
        };
        let changed = self
            .index
            .update(|r| Ok(r.add(record, tagged.as_deref(), repo_digest.as_deref())))?;
        Ok((self.resolve(new.id.as_str())?, changed))
    }

    /// Unpacks every layer not unpacked yet (sequentially); returns the total size.
    pub(crate) fn ensure_layers(&self, layer_blobs: &[Digest], diff_ids: &[Digest]) -> Result<u64> {
        let mut size = 0;
        for (blob, diff_id) in layer_blobs.iter().zip(diff_ids) {
            let meta = match self.layers.meta(diff_id) {
                Some(meta) => meta,
                None => self.layers.ensure(diff_id, self.blobs.open_blob(blob)?)?,
            };
            size += meta.size;
        }
        Ok(size)
    }

    /// `rmi`: untags `query` when the image has other names; otherwise deletes the
    /// image, unless a container uses it (then only `force` untags it, and it stays
    /// as `<none>` until the container is removed). Returns Docker's output lines.
    pub fn remove(&self, query: &str, force: bool) -> Result<Vec<String>> {
        let lines = self
            .index
            .update(|records| remove_record(records, &self.holders(), query, force))?;
        self.collect_garbage()?;
        Ok(lines)
    }

    /// `image prune`: deletes untagged images (all unused ones with `all`) that no
    /// container uses, and partial downloads.
    pub fn prune(&self, all: bool) -> Result<PruneReport> {
        let lines = self.index.update(|records| {
            let holders = self.holders();
            let doomed: Vec<String> = records
                .images
                .iter()
                .filter(|(k, i)| !holders.contains_key(*k) && (all || i.names.is_empty()))
                .map(|(k, _)| k.clone())
                .collect();
            let mut lines = Vec::new();
            for key in doomed {
                let image = records.images.remove(&key).expect("listed above");
                lines.extend(
                    image
                        .names
                        .iter()
                        .map(|n| format!("untagged: {}", familiar(n))),
                );
                lines.push(format!("deleted: {}", image.id));
            }
            Ok(lines)
        })?;
        let reclaimed_bytes = self.collect_garbage_with(true)?;
        Ok(PruneReport {
            lines,
            reclaimed_bytes,
        })
    }

    /// Removes blobs and layers no image needs. Skipped (left for the next time) while
    /// a pull or load is adding content. Returns the bytes freed.
    pub fn collect_garbage(&self) -> Result<u64> {
        self.collect_garbage_with(false)
    }

    fn collect_garbage_with(&self, drop_partials: bool) -> Result<u64> {
        let Some(_gc) = FileLock::try_exclusive(&self.gc_lock).at(&self.gc_lock)? else {
            return Ok(0);
        };
        let mut freed = 0;
        {
            let _index = self.index.lock()?;
            let records = self.index.read()?;
            let (blobs, layers) = referenced(&records);
            for d in self.blobs.list() {
                if !blobs.contains(&d) {
                    freed += self.blobs.size(&d).unwrap_or(0);
                    self.blobs.remove(&d)?;
                }
            }
            for name in self.layers.entries() {
                let keep = Layers::is_complete_name(&name) && layers.contains(&name);
                if (Layers::is_complete_name(&name) || Layers::is_temporary_name(&name)) && !keep {
                    freed += self.layers.retire(&name)?;
                }
            }
            // Hold files of deleted images (no container holds them: rmi refuses).
            let holds = self.dir.join(crate::rootfs::HOLDS_DIR);
            for entry in fs::read_dir(&holds).into_iter().flatten().flatten() {
                if !records
                    .images
                    .contains_key(&*entry.file_name().to_string_lossy())
                {
                    let _ = fs::remove_file(entry.path());
                }
            }
            // Nobody is adding content: lock files of absent blobs and layers are idle.
            self.blobs.clear_ingest(!drop_partials);
            self.blobs.clear_locks();
            self.layers.clear_locks();
        }
        self.layers.purge_deleted();
        Ok(freed)
    }
}

/// Blobs and layer names that some image needs.
fn referenced(records: &Records) -> (BTreeSet<Digest>, BTreeSet<String>) {
    let mut blobs = BTreeSet::new();
    let mut layers = BTreeSet::new();
    for r in records.images.values() {
        blobs.extend(r.blobs.iter().cloned());
        blobs.insert(r.id.clone());
        blobs.insert(r.manifest.clone());
        blobs.extend(r.index.iter().cloned());
        layers.extend(r.layers.iter().map(|l| l.hex().to_string()));
    }
    (blobs, layers)
}

fn remove_record(
    records: &mut Records,
    holders: &BTreeMap<String, BTreeSet<String>>,
    query: &str,
    force: bool,
) -> Result<Vec<String>> {
    let found = records.find(query)?.clone();
    let key = found.id.hex().to_string();
    let by_name = Reference::parse(query)
        .ok()
        .and_then(|r| r.tagged_name())
        .filter(|n| found.names.contains(n));
    let mut lines = Vec::new();
    // A name of an image that has other names: only that name goes.
    if let Some(name) = &by_name
        && found.names.len() > 1
    {
        let image = records.images.get_mut(&key).expect("found above");
        image.names.retain(|n| n != name);
        lines.push(format!("Untagged: {}", familiar(name)));
        return Ok(lines);
    }
    if by_name.is_none() && found.names.len() > 1 && !force {
        return Err(Error::MultipleNames {
            id: found.id.short().to_string(),
            count: found.names.len(),
        });
    }
    if let Some(container) = holders.get(&key).and_then(|h| h.iter().next()) {
        if !force {
            return Err(Error::InUse {
                name: query.to_string(),
                id: found.id.short().to_string(),
                container: container[..container.len().min(12)].to_string(),
            });
        }
        // Forced while in use: untag only; the image stays for its containers.
        let image = records.images.get_mut(&key).expect("found above");
        lines.extend(
            image
                .names
                .drain(..)
                .map(|n| format!("Untagged: {}", familiar(&n))),
        );
        return Ok(lines);
    }
    let image = records.images.remove(&key).expect("found above");
    lines.extend(
        image
            .names
            .iter()
            .map(|n| format!("Untagged: {}", familiar(n))),
    );
    lines.extend(
        image
            .repo_digests
            .iter()
            .map(|n| format!("Untagged: {}", familiar(n))),
    );
    lines.push(format!("Deleted: {}", image.id));
    Ok(lines)
}

/// Docker's short form of a stored name: `busybox:latest`, `host:5000/app@sha256:…`.
pub fn familiar(full: &str) -> String {
    match Reference::parse(full) {
        Ok(r) => {
            let mut s = r.familiar_name();
            if let Some(t) = r.tag() {
                s.push(':');
                s.push_str(t);
            }
            if let Some(d) = r.digest() {
                s.push('@');
                s.push_str(d);
            }
            s
        }
        Err(_) => full.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `docker save` archive of one single-file image.
    fn archive(name: &str, content: &[u8]) -> Vec<u8> {
        let tar_of = |files: &[(&str, &[u8])]| {
            let mut b = tar::Builder::new(Vec::new());
            for (path, data) in files {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(0);
                b.append_data(&mut h, path, *data).unwrap();
            }
            b.into_inner().unwrap()
        };
        let layer = tar_of(&[("f", content)]);
        let config = json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(&layer)]}})
        .to_string();
        let manifest =
            json!([{"Config": "c.json", "RepoTags": [name], "Layers": ["l.tar"]}]).to_string();
        tar_of(&[
            ("c.json", config.as_bytes()),
            ("l.tar", &layer),
            ("manifest.json", manifest.as_bytes()),
        ])
    }

    #[test]
    fn garbage_is_kept_while_content_is_being_added_and_collected_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        store.load(&archive("a:1", b"one")[..]).unwrap();
        let blobs_before = store.blobs.list().len();
        assert_eq!(blobs_before, 3); // config, layer, manifest
        {
            let _pull_in_progress = store.adding().unwrap();
            store.remove("a:1", false).unwrap();
            assert!(store.resolve("a:1").is_err(), "the record goes at once");
            assert_eq!(
                store.blobs.list().len(),
                blobs_before,
                "content stays while adding"
            );
        }
        store.collect_garbage().unwrap();
        assert!(store.blobs.list().is_empty());
        assert!(store.layers.entries().is_empty());
    }

    #[test]
    fn a_layer_left_half_unpacked_is_redone() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let bytes = archive("a:1", b"one");
        // A process died while unpacking: its temporary directory is still there.
        store.load(&bytes[..]).unwrap();
        let image = store.resolve("a:1").unwrap();
        let layer = &image.layers[0];
        store.remove("a:1", false).unwrap();
        let tmp = store
            .dir()
            .join("layers")
            .join(format!("{}.tmp", layer.hex()));
        fs::create_dir_all(tmp.join("diff/junk")).unwrap();
        store.load(&bytes[..]).unwrap();
        assert!(!tmp.exists());
        let diff = store.layers.diff_dir(layer);
        assert_eq!(fs::read(diff.join("f")).unwrap(), b"one");
        assert!(!diff.join("junk").exists());
    }

    #[test]
    fn rmi_semantics() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        store.load(&archive("a:1", b"same")[..]).unwrap();
        store.load(&archive("a:2", b"same")[..]).unwrap();
        let id = store.resolve("a:1").unwrap().id;
        assert_eq!(store.resolve("a:2").unwrap().id, id);
        // By ID with two names: must be forced.
        let err = store.remove(id.short(), false).unwrap_err();
        assert!(
            matches!(err, Error::MultipleNames { count: 2, .. }),
            "{err}"
        );
        // By one name: untag only.
        assert_eq!(store.remove("a:2", false).unwrap(), vec!["Untagged: a:2"]);
        let lines = store.remove(id.short(), false).unwrap();
        assert_eq!(
            lines,
            vec!["Untagged: a:1".to_string(), format!("Deleted: {id}")]
        );
        assert!(store.list().unwrap().is_empty());
    }
}
