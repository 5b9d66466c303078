//! Container records, with name indexes (`.names/<name>` → id), in two places:
//! - `<root>/containers/<id>/container.json` for containers that outlive a reboot;
//! - `<runroot>/containers/<id>/container.json` (tmpfs) for `--rm` containers, which
//!   end with their process: Docker too removes them when it starts after a crash or
//!   reboot. On tmpfs a start writes no inode to disk for the record, the name, or their
//!   rewrites (each a millisecond's fraction on an ext4 without journal).
//!
//! Logs stay on disk: `<root>/containers/<id>/<id>-json.log` beside a lasting record,
//! `<root>/containers/<id>-json.log` for an ephemeral container (its one inode on disk).
//! `<runroot>/containers/<id>/` holds the monitor's lock and socket and the bundle. What
//! an ephemeral container left on disk when the runroot went (a reboot) is swept at the
//! first start after it (see [`Store::sweep_orphans`]).
//!
//! Creating and removing records (and so names) happens under a lock on
//! `<root>/containers`; changing one record happens under a lock on its own directory;
//! every write is write-to-temp + rename, so readers never take a lock.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use super::fsutil;
use super::ids;
use super::record::ContainerRecord;

const RECORD_FILE: &str = "container.json";
const NAMES_DIR: &str = ".names";
const LOG_SUFFIX: &str = "-json.log";

/// The name of a container's log file (Docker's).
fn log_name(id: &str) -> String {
    format!("{id}{LOG_SUFFIX}")
}

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    run_dir: PathBuf,
}

/// The store and whether its runroot part was just made (the first use after a boot).
pub struct Opened {
    pub store: Store,
    pub fresh_runroot: bool,
}

impl Store {
    /// The store under `root` (persistent) and `runroot` (volatile), created if missing.
    pub fn open(root: &Path, runroot: &Path) -> Result<Opened> {
        let store = Store {
            dir: root.join("containers"),
            run_dir: runroot.join("containers"),
        };
        let persistent = store.dir.join(NAMES_DIR);
        fs::create_dir_all(&persistent).map_err(Error::io("cannot create", &persistent))?;
        // One mkdir at every command; the runroot itself only after a boot.
        let made = fs::create_dir(&store.run_dir).or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => fs::create_dir_all(&store.run_dir),
            _ => Err(e),
        });
        let fresh_runroot = match made {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(Error::io("cannot create", &store.run_dir)(e)),
        };
        let names = store.run_dir.join(NAMES_DIR);
        fs::create_dir_all(&names).map_err(Error::io("cannot create", &names))?;
        Ok(Opened {
            store,
            fresh_runroot,
        })
    }

    /// `<root>/containers/<id>`: a lasting record and its log.
    fn dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Whether `id` has an ephemeral record (on the runroot).
    fn is_ephemeral(&self, id: &str) -> bool {
        self.run_dir(id).join(RECORD_FILE).exists()
    }

    /// The log file of container `id`.
    pub fn log_path(&self, id: &str) -> PathBuf {
        if self.is_ephemeral(id) {
            self.dir.join(log_name(id))
        } else {
            self.dir(id).join(log_name(id))
        }
    }

    /// `<runroot>/containers/<id>`: the monitor's lock and socket, the bundle, the
    /// record of an ephemeral container.
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.run_dir.join(id)
    }

    /// The directory holding the record of `id`, wherever it is.
    fn record_dir(&self, id: &str) -> PathBuf {
        if self.is_ephemeral(id) {
            self.run_dir(id)
        } else {
            self.dir(id)
        }
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.record_dir(id).join(RECORD_FILE)
    }

    /// Where a new record goes: `--rm` containers' on the runroot.
    fn home(&self, rec: &ContainerRecord) -> &Path {
        if rec.options.auto_remove {
            &self.run_dir
        } else {
            &self.dir
        }
    }

    /// The name links `name` may have (persistent first).
    fn name_links(&self, name: &str) -> [PathBuf; 2] {
        [&self.dir, &self.run_dir].map(|d| d.join(NAMES_DIR).join(name))
    }

    /// The id a name points to, when that container still exists.
    fn id_of_name(&self, name: &str) -> Option<String> {
        self.name_links(name).into_iter().find_map(|link| {
            let target = fs::read_link(link).ok()?;
            let id = target.to_str()?.to_string();
            self.record_path(&id).exists().then_some(id)
        })
    }

    /// The id of the container named `name`.
    pub fn resolve_name(&self, name: &str) -> Result<String> {
        let name = name.strip_prefix('/').unwrap_or(name);
        self.id_of_name(name)
            .ok_or_else(|| Error::NoSuchContainer(name.to_string()))
    }

    /// Records a new container; fails, changing nothing, when its name is taken.
    pub fn create(&self, rec: &ContainerRecord) -> Result<()> {
        let _lock = fsutil::lock_exclusive(&self.dir)?;
        if let Some(id) = self.id_of_name(&rec.name) {
            return Err(Error::NameInUse {
                name: rec.name.clone(),
                id: ids::short(&id).to_string(),
            });
        }
        let home = self.home(rec);
        let dir = home.join(&rec.id);
        fs::create_dir(&dir).map_err(Error::io("cannot create", &dir))?;
        let record = dir.join(RECORD_FILE);
        let written = self.write_at(&record, rec).and_then(|()| {
            // A stale name, of a container that is gone, in either index.
            for link in self.name_links(&rec.name) {
                let _ = fs::remove_file(link);
            }
            let link = home.join(NAMES_DIR).join(&rec.name);
            std::os::unix::fs::symlink(&rec.id, &link).map_err(Error::io("cannot create", &link))
        });
        if written.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        written
    }

    fn write_at(&self, path: &Path, rec: &ContainerRecord) -> Result<()> {
        let data = serde_json::to_vec(rec).expect("a record always serialises");
        fsutil::replace_locked(path, &data)
    }

    /// Reads a record by full id.
    pub fn load(&self, id: &str) -> Result<ContainerRecord> {
        let path = self.record_path(id);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoSuchContainer(id.to_string()));
            }
            Err(e) => return Err(Error::io("cannot read", &path)(e)),
        };
        serde_json::from_slice(&data).map_err(|source| Error::Record { path, source })
    }

    /// Ids of all containers, in no particular order.
    pub fn ids(&self) -> Result<Vec<String>> {
        let mut ids = BTreeSet::new();
        for dir in [&self.dir, &self.run_dir] {
            let entries = fs::read_dir(dir).map_err(Error::io("cannot list", dir))?;
            ids.extend(
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| ids::is_full_id(n) && self.record_path(n).exists()),
            );
        }
        Ok(ids.into_iter().collect())
    }

    /// All records, newest first (a record removed meanwhile is skipped).
    pub fn list(&self) -> Result<Vec<ContainerRecord>> {
        let mut out = Vec::new();
        for id in self.ids()? {
            match self.load(&id) {
                Ok(r) => out.push(r),
                Err(Error::NoSuchContainer(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.created));
        Ok(out)
    }

    /// Removes what containers that have no record left under `<root>/containers`
    /// (ephemeral ones, when the runroot went; a crash while creating one) and returns
    /// their ids, with those of `also` that have no record, for the caller to remove what
    /// else they own. Only for a fresh runroot: a container being created has its record
    /// before anything else of it exists.
    pub fn sweep_orphans(&self, also: impl IntoIterator<Item = String>) -> Result<Vec<String>> {
        let _lock = fsutil::lock_exclusive(&self.dir)?;
        let entries = fs::read_dir(&self.dir).map_err(Error::io("cannot list", &self.dir))?;
        let candidates: BTreeSet<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .map(|n| n.strip_suffix(LOG_SUFFIX).map(str::to_string).unwrap_or(n))
            .chain(also)
            .filter(|n| ids::is_full_id(n))
            .collect();
        let mut orphans = Vec::new();
        for id in candidates {
            if self.record_path(&id).exists() {
                continue;
            }
            remove_all(&self.dir(&id))?;
            remove_all(&self.dir.join(log_name(&id)))?;
            orphans.push(id);
        }
        Ok(orphans)
    }

    /// The id of the container a user named: a full id, a name, or a unique id prefix.
    pub fn resolve(&self, name_or_id: &str) -> Result<String> {
        let key = name_or_id.strip_prefix('/').unwrap_or(name_or_id);
        if ids::is_full_id(key) && self.record_path(key).exists() {
            return Ok(key.to_string());
        }
        if let Some(id) = self.id_of_name(key) {
            return Ok(id);
        }
        if !key.is_empty() && key.bytes().all(|c| c.is_ascii_hexdigit()) {
            let mut found = self.ids()?.into_iter().filter(|id| id.starts_with(key));
            if let Some(id) = found.next() {
                if found.next().is_some() {
                    return Err(Error::AmbiguousId(key.to_string()));
                }
                return Ok(id);
            }
        }
        Err(Error::NoSuchContainer(name_or_id.to_string()))
    }

    /// Changes a record under its lock: `f` sees the current record and its changes are
    /// written when it returns `Ok`.
    pub fn update<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerRecord) -> Result<T>,
    ) -> Result<T> {
        let dir = self.record_dir(id);
        let _lock = fsutil::lock_exclusive(&dir).map_err(|e| match e {
            Error::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Error::NoSuchContainer(id.to_string())
            }
            e => e,
        })?;
        let mut rec = self.load(id)?;
        let out = f(&mut rec)?;
        self.write_at(&dir.join(RECORD_FILE), &rec)?;
        Ok(out)
    }

    /// Removes a container's record, name, log and volatile files.
    pub fn remove(&self, id: &str) -> Result<()> {
        let _lock = fsutil::lock_exclusive(&self.dir)?;
        if let Ok(rec) = self.load(id) {
            for link in self.name_links(&rec.name) {
                if fs::read_link(&link).ok().as_deref() == Some(Path::new(id)) {
                    let _ = fs::remove_file(link);
                }
            }
        }
        remove_all(&self.dir(id))?;
        remove_all(&self.dir.join(log_name(id)))?;
        remove_all(&self.run_dir(id))
    }
}

/// Removes a file or a directory tree; one that is not there is fine.
fn remove_all(path: &Path) -> Result<()> {
    let removed = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io("cannot remove", path)(e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::options::ContainerOptions;
    use crate::engine::record::{ContainerState, ImageInfo, ProcessConfig, Status};

    fn rec(name: &str) -> ContainerRecord {
        ContainerRecord {
            id: ids::new_id(),
            name: name.into(),
            created: chrono::Utc::now(),
            image: ImageInfo {
                reference: "busybox".into(),
                id: "sha256:1".into(),
            },
            config: ProcessConfig::default(),
            options: ContainerOptions::default(),
            cgroup_parent: "rbox".into(),
            state: ContainerState::default(),
        }
    }

    #[test]
    fn create_resolve_update_remove() {
        let root = tempfile::tempdir().unwrap();
        let run = tempfile::tempdir().unwrap();
        let store = Store::open(root.path(), run.path()).unwrap().store;
        let a = rec("alpha");
        store.create(&a).unwrap();
        assert_eq!(store.resolve("alpha").unwrap(), a.id);
        assert_eq!(store.resolve(&a.id).unwrap(), a.id);
        assert_eq!(store.resolve(&a.id[..6]).unwrap(), a.id);
        assert!(matches!(
            store.resolve("nope"),
            Err(Error::NoSuchContainer(_))
        ));
        // A duplicate name fails and leaves nothing behind.
        let dup = rec("alpha");
        assert!(matches!(store.create(&dup), Err(Error::NameInUse { .. })));
        assert!(!store.dir(&dup.id).exists());
        store
            .update(&a.id, |r| {
                r.state.status = Status::Running;
                Ok(())
            })
            .unwrap();
        assert_eq!(store.load(&a.id).unwrap().state.status, Status::Running);
        assert_eq!(store.list().unwrap().len(), 1);
        store.remove(&a.id).unwrap();
        assert!(matches!(
            store.resolve("alpha"),
            Err(Error::NoSuchContainer(_))
        ));
        assert!(matches!(
            store.update(&a.id, |_| Ok(())),
            Err(Error::NoSuchContainer(_))
        ));
        // The name is free again.
        store.create(&rec("alpha")).unwrap();
    }

    #[test]
    fn rm_containers_are_recorded_on_the_runroot_only() {
        let root = tempfile::tempdir().unwrap();
        let run = tempfile::tempdir().unwrap();
        let opened = Store::open(root.path(), run.path()).unwrap();
        assert!(opened.fresh_runroot);
        let store = opened.store;
        let mut e = rec("eph");
        e.options.auto_remove = true;
        store.create(&e).unwrap();
        assert!(store.run_dir(&e.id).join(RECORD_FILE).exists());
        assert!(!store.dir(&e.id).exists(), "nothing of it on disk yet");
        assert!(fs::symlink_metadata(run.path().join("containers/.names/eph")).is_ok());
        // Names are one namespace over both places.
        let p = rec("eph");
        assert!(matches!(store.create(&p), Err(Error::NameInUse { .. })));
        assert_eq!(store.resolve("eph").unwrap(), e.id);
        // Its log, beside the records' directories, does not make it a second container.
        assert_eq!(
            store.log_path(&e.id),
            root.path().join("containers").join(log_name(&e.id))
        );
        fs::write(store.log_path(&e.id), b"{}").unwrap();
        assert_eq!(store.ids().unwrap(), vec![e.id.clone()]);
        assert_eq!(store.resolve(&e.id[..5]).unwrap(), e.id);
        store
            .update(&e.id, |r| {
                r.state.pid = 42;
                Ok(())
            })
            .unwrap();
        assert_eq!(store.load(&e.id).unwrap().state.pid, 42);
        assert!(!store.dir(&e.id).join(RECORD_FILE).exists());
        store.remove(&e.id).unwrap();
        assert!(!store.log_path(&e.id).exists() && !store.run_dir(&e.id).exists());
        assert!(store.ids().unwrap().is_empty());
        store.create(&rec("eph")).unwrap();
        assert!(!Store::open(root.path(), run.path()).unwrap().fresh_runroot);
    }

    #[test]
    fn a_new_runroot_sweeps_what_ephemeral_containers_left() {
        let root = tempfile::tempdir().unwrap();
        let run = tempfile::tempdir().unwrap();
        let store = Store::open(root.path(), run.path()).unwrap().store;
        let kept = rec("kept");
        store.create(&kept).unwrap();
        let mut gone = rec("gone");
        gone.options.auto_remove = true;
        store.create(&gone).unwrap();
        let log = store.log_path(&gone.id);
        fs::write(&log, b"{}").unwrap();
        // Left by a crash between a lasting record's directory and the record.
        let empty = ids::new_id();
        fs::create_dir(store.dir(&empty)).unwrap();
        // A reboot: the runroot is new.
        let run = tempfile::tempdir().unwrap();
        let opened = Store::open(root.path(), run.path()).unwrap();
        assert!(opened.fresh_runroot);
        let store = opened.store;
        let only_rootfs = ids::new_id();
        let mut swept = store
            .sweep_orphans([only_rootfs.clone(), kept.id.clone(), "lost+found".into()])
            .unwrap();
        swept.sort();
        let mut expected = vec![gone.id.clone(), only_rootfs, empty.clone()];
        expected.sort();
        assert_eq!(swept, expected);
        assert!(!log.exists() && !store.dir(&empty).exists());
        assert_eq!(store.ids().unwrap(), vec![kept.id.clone()]);
        // Its name is free again; the kept one's is not.
        store.create(&rec("gone")).unwrap();
        assert!(store.create(&rec("kept")).is_err());
    }

    #[test]
    fn ambiguous_prefix() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path(), root.path()).unwrap().store;
        let mut a = rec("a1");
        let mut b = rec("b1");
        a.id = format!("ab{}", &a.id[2..]);
        b.id = format!("ab{}", &b.id[2..]);
        store.create(&a).unwrap();
        store.create(&b).unwrap();
        assert!(matches!(store.resolve("ab"), Err(Error::AmbiguousId(_))));
    }
}
