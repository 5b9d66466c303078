//! Containers' root filesystems: overlayfs over an image's unpacked layers, with the
//! container's own layer in `rootfs/<container>/` and overlayfs's work directory in
//! `work/<container>/`; `holders/<container>` names the image the container holds (a
//! hard link, see [`ImageStore::mount_rootfs`]). Two directories per container: every
//! inode a start makes and its removal deletes costs (an ext4 without journal scans
//! past every inode freed in the last half minute to allocate one).
//!
//! Above the image's layers sits the store's init layer (as Docker's): the empty files
//! `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` that a runtime bind-mounts its
//! own over. Without it, every container would create them in its upper layer (or copy
//! `/etc` up), for files it never sees.
//!
//! Mount options are limited to one page (4096 bytes), which 100+ absolute layer
//! paths would overflow. So the mount runs in a helper thread that unshares its
//! filesystem context (`unshare(CLONE_FS)`: its working directory is its own, the
//! process's is untouched), changes into the store, and names each layer by its
//! short link (`l/<12 hex>`, 15 bytes a layer): about 250 layers fit, more than
//! overlayfs stacks in practice. This works on every kernel with overlayfs, unlike
//! `fsconfig(lowerdir+)`, which needs Linux 6.8.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use thiserror::Error;

use crate::error::{IoContext, Result};
use crate::fsutil;
use crate::store::index::ImageRecord;
use crate::store::{Image, ImageStore};

#[derive(Debug, Error)]
pub enum RootfsError {
    #[error("invalid container ID {0:?}: use letters, digits, '_', '-' and '.' (at most 128)")]
    InvalidContainerId(String),
    #[error("image {image} has {layers} layers: too many for one overlayfs mount")]
    TooManyLayers { image: String, layers: usize },
    #[error("layer {0} of the image is missing from the store: pull or load the image again")]
    MissingLayer(String),
    #[error("mounting the root filesystem of container {container}: {error}")]
    Mount { container: String, error: io::Error },
    #[error("unmounting the root filesystem of container {container}: {error}")]
    Unmount { container: String, error: io::Error },
}

/// A container's mounted root filesystem.
#[derive(Debug, Clone)]
pub struct Rootfs {
    /// The merged view: the container's `/`.
    pub path: PathBuf,
    /// Where the container's own changes land.
    pub upper: PathBuf,
    /// The image it was built from.
    pub image: Image,
}

/// Containers' upper layers, work directories, holds and default mount points.
const UPPER_DIR: &str = "rootfs";
const WORK_DIR: &str = "work";
const HOLDERS_DIR: &str = "holders";
const MERGED_DIR: &str = "merged";
/// Per image, the file its holds link to (relative to the store): `holds/<hex>`.
pub(crate) const HOLDS_DIR: &str = "holds";
/// The init layer, relative to the store.
const INIT_LAYER: &str = "init";
const INIT_FILES: [&str; 3] = ["hosts", "hostname", "resolv.conf"];

fn check_container_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(RootfsError::InvalidContainerId(id.to_string()).into())
    }
}

impl ImageStore {
    fn upper_dir(&self, container: &str) -> PathBuf {
        self.dir.join(UPPER_DIR).join(container)
    }

    fn work_dir(&self, container: &str) -> PathBuf {
        self.dir.join(WORK_DIR).join(container)
    }

    fn holder_file(&self, container: &str) -> PathBuf {
        self.dir.join(HOLDERS_DIR).join(container)
    }

    /// Where `container`'s root filesystem is (or would be) mounted.
    pub fn rootfs_path(&self, container: &str) -> PathBuf {
        match &self.mount_root {
            Some(dir) => dir.join(container),
            None => self.dir.join(MERGED_DIR).join(container),
        }
    }

    /// Mounts a root filesystem for `container` from `image` (a name or ID); its
    /// directory names the image, and so holds it (`rmi` refuses to delete it).
    /// Mounting again (e.g. after a reboot) keeps the container's earlier changes.
    pub fn mount_rootfs(&self, image: &str, container: &str) -> Result<Rootfs> {
        self.mount_rootfs_with(image, container, false)
    }

    /// [`mount_rootfs`](Self::mount_rootfs) for a container whose changes are thrown
    /// away when it stops (`run --rm`): overlayfs's `volatile` option skips every sync
    /// of the upper layer, the one its unmount does in particular (podman does the
    /// same). After a host crash such an upper layer is not to be trusted; it is
    /// discarded anyway. Kernels without the option (< 5.10) mount it plainly.
    pub fn mount_rootfs_volatile(&self, image: &str, container: &str) -> Result<Rootfs> {
        self.mount_rootfs_with(image, container, true)
    }

    fn mount_rootfs_with(&self, image: &str, container: &str, volatile: bool) -> Result<Rootfs> {
        check_container_id(container)?;
        let upper = self.upper_dir(container);
        let fresh = !upper.exists();
        let image = self.hold(image, container)?;
        let result = self.mount_layers(&image.layers, &image.id.to_string(), container, volatile);
        match result {
            Ok(()) => Ok(Rootfs {
                path: self.rootfs_path(container),
                upper,
                image: self.image(&image)?,
            }),
            Err(err) => {
                // Undo: the directories and the hold, if this call made them.
                if fresh {
                    let _ = self.remove_dirs(container);
                }
                Err(err)
            }
        }
    }

    /// Makes `container`'s directories and names `image` in them, under the index lock
    /// (so a concurrent `rmi` sees the hold, or the image is gone). Returns the record.
    fn hold(&self, image: &str, container: &str) -> Result<ImageRecord> {
        let _lock = self.index.lock()?;
        let record = self.index.read()?.find(image)?.clone();
        for p in [
            self.upper_dir(container),
            self.work_dir(container),
            self.rootfs_path(container),
        ] {
            fs::create_dir_all(&p).at(&p)?;
        }
        let holder = self.holder_file(container);
        let id = record.id.to_string();
        if fs::read(&holder).ok().as_deref() != Some(id.as_bytes()) {
            self.link_hold(&record.id, &holder)?;
        }
        Ok(record)
    }

    /// Names `image` in `file` as a hard link to the image's file under `holds/`, made
    /// at its first hold: a container's hold makes no inode (they cost most of a
    /// start's file work on some file systems).
    fn link_hold(&self, image: &crate::digest::Digest, file: &Path) -> Result<()> {
        let holds = self.dir.join(HOLDS_DIR);
        let shared = holds.join(image.hex());
        if !shared.exists() {
            fs::create_dir_all(&holds).at(&holds)?;
            fsutil::write_atomic_unsynced(&shared, image.to_string().as_bytes()).at(&shared)?;
        }
        // A file naming another image (a container's directory reused) goes first.
        match fs::remove_file(file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e).at(file),
            _ => {}
        }
        let holders = self.dir.join(HOLDERS_DIR);
        fs::create_dir_all(&holders).at(&holders)?;
        fs::hard_link(&shared, file).at(file)
    }

    /// Which containers hold which image (by the image ID's hex digits), from their
    /// files under `holders/`. Callers that act on it hold the lock.
    pub(crate) fn holders(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut holders: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let Ok(entries) = fs::read_dir(self.dir.join(HOLDERS_DIR)) else {
            return holders;
        };
        for entry in entries.flatten() {
            let Ok(id) = fs::read_to_string(entry.path()) else {
                continue;
            };
            let hex = id.trim().trim_start_matches("sha256:").to_string();
            holders
                .entry(hex)
                .or_default()
                .insert(entry.file_name().to_string_lossy().into_owned());
        }
        holders
    }

    /// The containers that have something of a root filesystem in the store.
    pub fn rootfs_containers(&self) -> Vec<String> {
        let mut ids = BTreeSet::new();
        for dir in [UPPER_DIR, WORK_DIR, HOLDERS_DIR] {
            if let Ok(entries) = fs::read_dir(self.dir.join(dir)) {
                ids.extend(
                    entries
                        .flatten()
                        .filter_map(|e| e.file_name().into_string().ok())
                        .filter(|id| check_container_id(id).is_ok()),
                );
            }
        }
        ids.into_iter().collect()
    }

    /// The containers whose root filesystem is built on `image`.
    pub fn containers_using(&self, image: &Image) -> Vec<String> {
        self.holders()
            .remove(image.id.hex())
            .map(|h| h.into_iter().collect())
            .unwrap_or_default()
    }

    fn mount_layers(
        &self,
        layers: &[crate::digest::Digest],
        image: &str,
        container: &str,
        volatile: bool,
    ) -> Result<()> {
        let merged = self.rootfs_path(container);
        if is_mountpoint(&merged)? {
            return Ok(());
        }
        let mut lower = Vec::with_capacity(layers.len() + 1);
        if self.init_layer_fits(layers) {
            self.ensure_init_layer()?;
            lower.push(INIT_LAYER.to_string());
        }
        for l in layers.iter().rev() {
            let meta = self
                .layers
                .meta(l)
                .ok_or_else(|| RootfsError::MissingLayer(l.to_string()))?;
            lower.push(format!("l/{}", meta.link));
        }
        if layers.is_empty() {
            // An image without layers: an empty lower directory.
            let empty = self.dir.join("empty");
            fs::create_dir_all(&empty).at(&empty)?;
            lower.push("empty".into());
        }
        let options = format!(
            "lowerdir={},upperdir={UPPER_DIR}/{container},workdir={WORK_DIR}/{container}",
            lower.join(":")
        );
        if options.len() + ",volatile".len() >= page_size() {
            return Err(RootfsError::TooManyLayers {
                image: image.to_string(),
                layers: layers.len(),
            }
            .into());
        }
        let mounted = if volatile {
            // A volatile mount leaves a marker that makes overlayfs refuse the next
            // mount of this upper layer; a disposable container mounted again (a
            // restart) takes its layer as it is.
            let _ = fs::remove_dir_all(self.work_dir(container).join("work/incompat/volatile"));
            mount_overlay_from(&self.dir, &format!("{options},volatile"), &merged).or_else(|e| {
                match e.raw_os_error() {
                    Some(libc::EINVAL) => mount_overlay_from(&self.dir, &options, &merged),
                    _ => Err(e),
                }
            })
        } else {
            mount_overlay_from(&self.dir, &options, &merged)
        };
        mounted.map_err(|error| {
            RootfsError::Mount {
                container: container.to_string(),
                error,
            }
            .into()
        })
    }

    /// Whether the init layer can sit on `layers`: the image's `/etc` is a directory (or
    /// missing). An `/etc` that is a link or a file would be hidden by the layer's.
    fn init_layer_fits(&self, layers: &[crate::digest::Digest]) -> bool {
        for l in layers.iter().rev() {
            match fs::symlink_metadata(self.layers.diff_dir(l).join("etc")) {
                Ok(m) if m.is_dir() => return true,
                // A whiteout: the image deleted /etc.
                Ok(m) if m.file_type().is_char_device() && m.rdev() == 0 => return true,
                Ok(_) => return false,
                Err(_) => continue,
            }
        }
        true
    }

    /// Makes the init layer unless it exists (built aside, then renamed into place, so
    /// a racing mount sees all of it or nothing).
    fn ensure_init_layer(&self) -> Result<()> {
        let dir = self.dir.join(INIT_LAYER);
        if dir.exists() {
            return Ok(());
        }
        let tmp = self
            .dir
            .join(format!(".{INIT_LAYER}.tmp-{}", std::process::id()));
        let _ = fsutil::remove_tree(&tmp);
        let etc = tmp.join("etc");
        fs::create_dir_all(&etc).at(&etc)?;
        for f in INIT_FILES {
            let p = etc.join(f);
            fs::write(&p, b"").at(&p)?;
        }
        match fs::rename(&tmp, &dir) {
            Ok(()) => Ok(()),
            // Made by a racing mount meanwhile.
            Err(_) if dir.exists() => {
                let _ = fsutil::remove_tree(&tmp);
                Ok(())
            }
            Err(e) => Err(e).at(&dir),
        }
    }

    /// Unmounts `container`'s root filesystem; its directories and changes stay.
    pub fn unmount_rootfs(&self, container: &str) -> Result<()> {
        check_container_id(container)?;
        let merged = self.rootfs_path(container);
        let unmount_err = |e: nix::Error| RootfsError::Unmount {
            container: container.to_string(),
            error: io::Error::from(e),
        };
        match nix::mount::umount2(&merged, MntFlags::empty()) {
            Ok(()) | Err(nix::Error::EINVAL | nix::Error::ENOENT) => Ok(()),
            // Still busy (a process inside): detach; the kernel finishes when it is free.
            Err(nix::Error::EBUSY) => nix::mount::umount2(&merged, MntFlags::MNT_DETACH)
                .map_err(|e| unmount_err(e).into()),
            Err(e) => Err(unmount_err(e).into()),
        }
    }

    /// Unmounts and deletes `container`'s root filesystem (its upper layer with all
    /// its changes), and with it its hold on the image.
    pub fn remove_rootfs(&self, container: &str) -> Result<()> {
        self.unmount_rootfs(container)?;
        self.remove_dirs(container)
    }

    /// Deletes `container`'s directories, its hold last (an image is not collected while
    /// a layer that needs it remains).
    fn remove_dirs(&self, container: &str) -> Result<()> {
        for dir in [self.upper_dir(container), self.work_dir(container)] {
            fsutil::remove_tree(&dir).at(&dir)?;
        }
        let merged = self.rootfs_path(container);
        match fs::remove_dir(&merged) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e).at(&merged),
            _ => {}
        }
        let holder = self.holder_file(container);
        fsutil::remove_file(&holder).at(&holder)
    }
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as usize)
}

/// True when `path` is the root of a mount other than its parent directory's.
fn is_mountpoint(path: &Path) -> Result<bool> {
    let parent = path.parent().unwrap_or(path);
    let a = fs::metadata(path).at(path)?;
    let b = fs::metadata(parent).at(parent)?;
    Ok(a.dev() != b.dev())
}

/// Mounts overlayfs at `target` with `options` whose paths are relative to `base`.
fn mount_overlay_from(base: &Path, options: &str, target: &Path) -> io::Result<()> {
    let base = base.to_path_buf();
    let options = options.to_string();
    let target = target.to_path_buf();
    std::thread::spawn(move || -> io::Result<()> {
        // This thread's working directory becomes its own, so the chdir below is
        // invisible to the rest of the process.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)?;
        nix::unistd::chdir(&base)?;
        nix::mount::mount(
            Some("overlay"),
            &target,
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        )?;
        Ok(())
    })
    .join()
    .map_err(|_| io::Error::other("the mount thread panicked"))?
}
