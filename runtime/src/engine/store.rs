//! Container records under `<root>/containers/<id>/container.json`, with a name index
//! (`<root>/containers/.names/<name>` → id) and per-container volatile files under
//! `<runroot>/containers/<id>/`.
//!
//! Creating and removing records (and so names) happens under a lock on the
//! `containers` directory; changing one record happens under a lock on its own
//! directory; every write is write-to-temp + rename, so readers never take a lock.

use std::fs;
use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use super::fsutil;
use super::ids;
use super::record::ContainerRecord;

const RECORD_FILE: &str = "container.json";
const NAMES_DIR: &str = ".names";

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    run_dir: PathBuf,
}

impl Store {
    /// The store under `root` (persistent) and `runroot` (volatile), created if missing.
    pub fn open(root: &Path, runroot: &Path) -> Result<Store> {
        let store = Store {
            dir: root.join("containers"),
            run_dir: runroot.join("containers"),
        };
        for d in [store.dir.join(NAMES_DIR), store.run_dir.clone()] {
            fs::create_dir_all(&d).map_err(Error::io("cannot create", &d))?;
        }
        Ok(store)
    }

    /// `<root>/containers/<id>`: the record, the log, the container's /etc files.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// `<runroot>/containers/<id>`: the monitor's lock and socket, the bundle.
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.run_dir.join(id)
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.dir(id).join(RECORD_FILE)
    }

    fn name_link(&self, name: &str) -> PathBuf {
        self.dir.join(NAMES_DIR).join(name)
    }

    /// The id a name points to, when that container still exists.
    fn id_of_name(&self, name: &str) -> Option<String> {
        let target = fs::read_link(self.name_link(name)).ok()?;
        let id = target.to_str()?.to_string();
        self.record_path(&id).exists().then_some(id)
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
        let dir = self.dir(&rec.id);
        fs::create_dir(&dir).map_err(Error::io("cannot create", &dir))?;
        let written = self.write(rec).and_then(|()| {
            let link = self.name_link(&rec.name);
            let _ = fs::remove_file(&link); // a stale name of a container that is gone
            std::os::unix::fs::symlink(&rec.id, &link).map_err(Error::io("cannot create", &link))
        });
        if written.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        written
    }

    fn write(&self, rec: &ContainerRecord) -> Result<()> {
        let data = serde_json::to_vec(rec).expect("a record always serialises");
        fsutil::replace_locked(&self.record_path(&rec.id), &data)
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
        let entries = fs::read_dir(&self.dir).map_err(Error::io("cannot list", &self.dir))?;
        Ok(entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| ids::is_full_id(n))
            .collect())
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
        let dir = self.dir(id);
        let _lock = fsutil::lock_exclusive(&dir).map_err(|e| match e {
            Error::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Error::NoSuchContainer(id.to_string())
            }
            e => e,
        })?;
        let mut rec = self.load(id)?;
        let out = f(&mut rec)?;
        self.write(&rec)?;
        Ok(out)
    }

    /// Removes a container's record, name, log and volatile files.
    pub fn remove(&self, id: &str) -> Result<()> {
        let _lock = fsutil::lock_exclusive(&self.dir)?;
        if let Ok(rec) = self.load(id)
            && fs::read_link(self.name_link(&rec.name)).ok().as_deref() == Some(Path::new(id))
        {
            let _ = fs::remove_file(self.name_link(&rec.name));
        }
        for d in [self.dir(id), self.run_dir(id)] {
            match fs::remove_dir_all(&d) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io("cannot remove", &d)(e));
                }
                _ => {}
            }
        }
        Ok(())
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
        let store = Store::open(root.path(), run.path()).unwrap();
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
    fn ambiguous_prefix() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path(), root.path()).unwrap();
        let mut a = rec("a1");
        let mut b = rec("b1");
        a.id = format!("ab{}", &a.id[2..]);
        b.id = format!("ab{}", &b.id[2..]);
        store.create(&a).unwrap();
        store.create(&b).unwrap();
        assert!(matches!(store.resolve("ab"), Err(Error::AmbiguousId(_))));
    }
}
