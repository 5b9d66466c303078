//! netlib's state on disk.
//!
//! Persistent, under `<root>/networks/`:
//! - `<network-id>.json`: a [`Network`].
//!
//! Volatile, under `<runroot>/`:
//! - `netlib/lock`: the lock every read-modify-write below holds (flock, exclusive).
//! - `netlib/leases/<network-id>.json`: the network's [`Leases`] (IPAM).
//! - `netlib/endpoints/<network-id>.json`: [`NetworkEndpoints`], the records of the
//!   network's live endpoints. The embedded DNS and port publishing read these: one
//!   file per network, replaced atomically (rename) whenever an endpoint joins or
//!   leaves, so a reader never sees a partial file and can watch the directory.
//! - `netlib/sandboxes/<container-id>.json`: a [`Sandbox`].
//! - `netlib/links.json`: [`CreatedLinks`], the host links drivers made for networks
//!   (a macvlan parent's VLAN sub-interface), which go with their network.
//! - `netns/<container-id>`: the sandbox's pinned network namespace (see [`crate::netns`]).
//!
//! Every write goes to a temporary file in the same directory, then is renamed over the
//! old one. Reads need no lock.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::ipam::Leases;
use crate::model::{Endpoint, Network, Sandbox};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("corrupt state file {path}: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The endpoint records of one network, keyed by endpoint id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkEndpoints {
    pub endpoints: BTreeMap<String, Endpoint>,
}

/// Host links drivers made for networks (the VLAN sub-interface made as a macvlan or
/// ipvlan parent), as opposed to links they found there, which are the user's and never
/// removed. Volatile like the links themselves: after a reboot neither is left, and a
/// link of the same name the user makes then is not taken for ours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedLinks {
    /// By link name.
    pub links: BTreeMap<String, CreatedLink>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedLink {
    /// The link's index when it was made: a link of that name with another index was
    /// made by someone else since.
    pub index: u32,
    /// The network it was made for.
    pub network_id: String,
}

/// Paths of netlib's state for one (simulated) host.
#[derive(Debug, Clone)]
pub struct Store {
    networks_dir: PathBuf,
    run_dir: PathBuf,
    netns_dir: PathBuf,
    /// The network definitions as last read, with the generation they were read at:
    /// a `run` asks for them about ten times, each a read of every network's file.
    networks_cache: Arc<Mutex<Option<CachedNetworks>>>,
}

/// Network definitions and the generation they were read at.
type CachedNetworks = (u64, Vec<Network>);

impl Store {
    /// Opens (and creates if needed) the state directories under `root` and `runroot`.
    pub fn open(root: &Path, runroot: &Path) -> Result<Store> {
        let store = Store {
            networks_dir: root.join("networks"),
            run_dir: runroot.join("netlib"),
            netns_dir: runroot.join("netns"),
            networks_cache: Arc::default(),
        };
        for dir in [
            store.networks_dir.clone(),
            store.run_dir.join("leases"),
            store.run_dir.join("endpoints"),
            store.run_dir.join("sandboxes"),
            store.netns_dir.clone(),
        ] {
            fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        }
        Ok(store)
    }

    /// Directory of pinned network namespaces.
    pub fn netns_dir(&self) -> &Path {
        &self.netns_dir
    }

    /// Where the sandbox of `container_id` is pinned.
    pub fn netns_path(&self, container_id: &str) -> PathBuf {
        self.netns_dir.join(container_id)
    }

    /// Directory of the endpoint record files (`<network-id>.json`), for readers such as the DNS.
    pub fn endpoints_dir(&self) -> PathBuf {
        self.run_dir.join("endpoints")
    }

    /// Takes the state lock; it is released when the guard is dropped.
    pub fn lock(&self) -> Result<Locked<'_>> {
        let path = self.run_dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open lock", &path))?;
        let lock =
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| StoreError::Io {
                action: "lock",
                path: path.clone(),
                source: errno.into(),
            })?;
        Ok(Locked {
            store: self,
            _lock: lock,
        })
    }

    /// All network definitions, sorted by name. Read again only when their generation
    /// (bumped by every change, under the lock) moved since the last read; it is read
    /// first, so a change during the read makes the next call read again.
    pub fn networks(&self) -> Result<Vec<Network>> {
        let generation = self.networks_generation()?;
        let mut cache = self
            .networks_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((cached, nets)) = cache.as_ref()
            && *cached == generation
        {
            return Ok(nets.clone());
        }
        let nets = self.read_networks()?;
        *cache = Some((generation, nets.clone()));
        Ok(nets)
    }

    /// `<runroot>/netlib/networks.generation`: it only has to move while processes
    /// that cached definitions live, so it lives on the runroot.
    fn generation_path(&self) -> PathBuf {
        self.run_dir.join("networks.generation")
    }

    fn networks_generation(&self) -> Result<u64> {
        let path = self.generation_path();
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text.trim().parse().unwrap_or(0)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    fn read_networks(&self) -> Result<Vec<Network>> {
        let mut nets: Vec<Network> = Vec::new();
        let dir = &self.networks_dir;
        for entry in fs::read_dir(dir).map_err(io_err("read directory", dir))? {
            let path = entry.map_err(io_err("read directory", dir))?.path();
            if path.extension().is_some_and(|e| e == "json")
                && let Some(net) = read_json(&path)?
            {
                nets.push(net);
            }
        }
        nets.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(nets)
    }

    pub fn leases(&self, network_id: &str) -> Result<Leases> {
        Ok(read_json(&self.leases_path(network_id))?.unwrap_or_default())
    }

    pub fn endpoints(&self, network_id: &str) -> Result<NetworkEndpoints> {
        Ok(read_json(&self.endpoints_path(network_id))?.unwrap_or_default())
    }

    pub fn sandbox(&self, container_id: &str) -> Result<Option<Sandbox>> {
        read_json(&self.sandbox_path(container_id))
    }

    pub fn created_links(&self) -> Result<CreatedLinks> {
        Ok(read_json(&self.created_links_path())?.unwrap_or_default())
    }

    /// Every sandbox record.
    pub fn sandboxes(&self) -> Result<Vec<Sandbox>> {
        let dir = self.run_dir.join("sandboxes");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("read directory", &dir))? {
            let path = entry.map_err(io_err("read directory", &dir))?.path();
            if path.extension().is_some_and(|e| e == "json")
                && let Some(sb) = read_json(&path)?
            {
                out.push(sb);
            }
        }
        Ok(out)
    }

    fn network_path(&self, id: &str) -> PathBuf {
        self.networks_dir.join(format!("{id}.json"))
    }
    fn leases_path(&self, network_id: &str) -> PathBuf {
        self.run_dir
            .join("leases")
            .join(format!("{network_id}.json"))
    }
    fn endpoints_path(&self, network_id: &str) -> PathBuf {
        self.run_dir
            .join("endpoints")
            .join(format!("{network_id}.json"))
    }
    fn created_links_path(&self) -> PathBuf {
        self.run_dir.join("links.json")
    }
    fn sandbox_path(&self, container_id: &str) -> PathBuf {
        self.run_dir
            .join("sandboxes")
            .join(format!("{container_id}.json"))
    }
}

/// The state lock is held: writes are allowed.
pub struct Locked<'s> {
    store: &'s Store,
    _lock: Flock<File>,
}

impl std::ops::Deref for Locked<'_> {
    type Target = Store;
    fn deref(&self) -> &Store {
        self.store
    }
}

impl Locked<'_> {
    pub fn save_network(&self, net: &Network) -> Result<()> {
        let saved = write_json(&self.network_path(&net.id), net, true);
        self.bump_networks_generation()?;
        saved
    }

    pub fn remove_network(&self, id: &str) -> Result<()> {
        let removed = remove_file(&self.network_path(id));
        self.bump_networks_generation()?;
        removed
    }

    /// Marks the network definitions changed (after the change, whether it worked).
    fn bump_networks_generation(&self) -> Result<()> {
        let next = self.networks_generation()?.wrapping_add(1);
        write_atomic(&self.generation_path(), next.to_string().as_bytes(), false)
    }

    /// Writes a network's leases; an empty table removes the file.
    pub fn save_leases(&self, network_id: &str, leases: &Leases) -> Result<()> {
        let path = self.leases_path(network_id);
        if leases.addresses.is_empty() {
            remove_file(&path)
        } else {
            write_json(&path, leases, false)
        }
    }

    /// Writes a network's endpoint records; an empty set removes the file.
    pub fn save_endpoints(&self, network_id: &str, eps: &NetworkEndpoints) -> Result<()> {
        let path = self.endpoints_path(network_id);
        if eps.endpoints.is_empty() {
            remove_file(&path)
        } else {
            write_json(&path, eps, false)
        }
    }

    pub fn save_sandbox(&self, sb: &Sandbox) -> Result<()> {
        write_json(&self.sandbox_path(&sb.container_id), sb, false)
    }

    pub fn remove_sandbox(&self, container_id: &str) -> Result<()> {
        remove_file(&self.sandbox_path(container_id))
    }

    /// Writes the record of links drivers made; an empty one removes the file.
    pub fn save_created_links(&self, links: &CreatedLinks) -> Result<()> {
        let path = self.created_links_path();
        if links.links.is_empty() {
            remove_file(&path)
        } else {
            write_json(&path, links, false)
        }
    }
}

/// Reads a JSON file; `None` when it does not exist.
fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StoreError::Corrupt {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

/// Writes `value` to a temporary file next to `path`, then renames it over `path`;
/// `durable` files are synced first (persistent state survives a crash whole or not at all).
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T, durable: bool) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).expect("state serialises");
    write_atomic(path, &bytes, durable)
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    let mut file = File::create(&tmp).map_err(io_err("create", &tmp))?;
    file.write_all(bytes).map_err(io_err("write", &tmp))?;
    if durable {
        file.sync_all().map_err(io_err("sync", &tmp))?;
    }
    drop(file);
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("rename into place", path)(e)
    })
}

fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", path)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::{Lease, validate_subnet};

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        write_json(&path, &1u32, true).unwrap();
        write_json(&path, &2u32, false).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "2");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// A process's cached definitions follow another process's changes.
    #[test]
    fn cached_networks_follow_changes_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let (root, run) = (dir.path().join("root"), dir.path().join("run"));
        let reader = Store::open(&root, &run).unwrap();
        let writer = Store::open(&root, &run).unwrap();
        let names = |s: &Store| -> Vec<String> {
            s.networks().unwrap().into_iter().map(|n| n.name).collect()
        };
        assert!(names(&reader).is_empty());
        let net = crate::defaults::predefined("bridge");
        writer.lock().unwrap().save_network(&net).unwrap();
        assert_eq!(names(&reader), ["bridge"]);
        assert_eq!(names(&reader), ["bridge"], "from the cache, as read");
        let mut renamed = net.clone();
        renamed.name = "other".into();
        writer.lock().unwrap().save_network(&renamed).unwrap();
        assert_eq!(names(&reader), ["other"]);
        writer.lock().unwrap().remove_network(&net.id).unwrap();
        assert!(names(&reader).is_empty());
    }

    /// Twenty threads, each with its own open of the lock file (as separate rbox
    /// processes have), lease on one network at once: twenty distinct addresses.
    #[test]
    fn leases_are_unique_under_concurrency() {
        let dir = tempfile::tempdir().unwrap();
        let root = Arc::new(dir.path().to_path_buf());
        let subnet = validate_subnet("10.7.0.0/24".parse().unwrap(), None, None).unwrap();
        let threads: Vec<_> = (0..20)
            .map(|i| {
                let root = root.clone();
                let subnet = subnet.clone();
                std::thread::spawn(move || {
                    let store = Store::open(&root.join("root"), &root.join("run")).unwrap();
                    let locked = store.lock().unwrap();
                    let mut leases = locked.leases("net").unwrap();
                    let lease = Lease {
                        endpoint_id: format!("ep{i}"),
                        container_id: format!("c{i}"),
                        container_name: format!("c{i}"),
                    };
                    // Widen the window in which an unlocked allocator would race.
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    let got = leases
                        .allocate(std::slice::from_ref(&subnet), &[], &lease)
                        .unwrap();
                    locked.save_leases("net", &leases).unwrap();
                    got[0].addr()
                })
            })
            .collect();
        let mut got: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 20, "duplicate leases: {got:?}");
        let store = Store::open(&root.join("root"), &root.join("run")).unwrap();
        assert_eq!(store.leases("net").unwrap().addresses.len(), 20);
    }
}
