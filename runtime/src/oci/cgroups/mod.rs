//! Cgroups for v1, v2 and the hybrid of both, behind one code path: the hierarchies
//! mounted on the host are read from /proc/self/mountinfo, the container gets one
//! directory in each, and every resource is written to the hierarchy that has its
//! controller, in that hierarchy's version of the file.

mod resources;

use std::io::ErrorKind;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

pub use resources::Write;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup file system is mounted (looked in /proc/self/mountinfo)")]
    NoCgroupFs,
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the {controller} controller is not available for {path}: the config's linux.resources need it"
    )]
    MissingController { controller: String, path: PathBuf },
    #[error("linux.resources.{0} is not supported by rbox-runc")]
    Unsupported(&'static str),
    #[error("cgroupsPath {0:?} is not of the form slice:prefix:name (as --systemd-cgroup wants)")]
    BadSystemdPath(String),
    #[error("processes of {path} did not {what} within {secs} s")]
    Timeout {
        path: PathBuf,
        what: &'static str,
        secs: u64,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError {
    let path = path.to_path_buf();
    move |source| CgroupError::Io {
        action,
        path,
        source,
    }
}

/// Resources rbox-runc cannot apply: refused while validating the config.
pub fn check_resources(res: &LinuxResources) -> Result<(), CgroupError> {
    let unsupported = [
        (res.block_io().is_some(), "blockIO"),
        (
            res.hugepage_limits()
                .as_ref()
                .is_some_and(|h| !h.is_empty()),
            "hugepageLimits",
        ),
        (res.network().is_some(), "network"),
        (res.rdma().as_ref().is_some_and(|r| !r.is_empty()), "rdma"),
    ];
    for (present, name) in unsupported {
        if present {
            return Err(CgroupError::Unsupported(name));
        }
    }
    if let Some(unified) = res.unified() {
        for key in unified.keys() {
            if key.contains('/') || key.starts_with('.') || key.is_empty() {
                return Err(CgroupError::Unsupported(
                    "unified (a key that is not a file name)",
                ));
            }
        }
    }
    Ok(())
}

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub version: u8,
    /// v1: the controllers (or `name=...`) it was mounted with; v2: empty.
    pub controllers: Vec<String>,
    pub mountpoint: PathBuf,
    /// The cgroup shown at the mount point (not "/" inside a cgroup namespace).
    pub mount_root: PathBuf,
    /// The mount's device number (mountinfo's major:minor).
    pub dev: u64,
}

const V1_CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// The hierarchies mounted in this mount namespace, from /proc/self/mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    let mut out: Vec<Hierarchy> = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if fields.len() < 5 || right.len() < 3 {
            continue;
        }
        let (mount_root, mountpoint) = (unescape(fields[3]), unescape(fields[4]));
        let dev = fields[2]
            .split_once(':')
            .and_then(|(a, b)| Some(nix::sys::stat::makedev(a.parse().ok()?, b.parse().ok()?)))
            .unwrap_or(0);
        let h = match right[0] {
            "cgroup2" => Hierarchy {
                version: 2,
                controllers: Vec::new(),
                mountpoint,
                mount_root,
                dev,
            },
            "cgroup" => Hierarchy {
                version: 1,
                controllers: right[2]
                    .split(',')
                    .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                    .map(String::from)
                    .collect(),
                mountpoint,
                mount_root,
                dev,
            },
            _ => continue,
        };
        // A hierarchy mounted twice (or over-mounted) is used through one mount point.
        if let Some(prev) = out
            .iter_mut()
            .find(|p| p.version == h.version && p.controllers == h.controllers)
        {
            *prev = h;
        } else {
            out.push(h);
        }
    }
    out
}

/// mountinfo escapes spaces and friends as octal.
fn unescape(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

/// This process's cgroup in a hierarchy, from /proc/self/cgroup text.
pub fn own_cgroup(proc_self_cgroup: &str, h: &Hierarchy) -> PathBuf {
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let matches = if h.version == 2 {
            ctrls.is_empty()
        } else {
            let mut a: Vec<&str> = ctrls.split(',').collect();
            let mut b: Vec<&str> = h.controllers.iter().map(String::as_str).collect();
            a.sort_unstable();
            b.sort_unstable();
            !ctrls.is_empty() && a == b
        };
        if matches {
            return PathBuf::from(path);
        }
    }
    PathBuf::from("/")
}

/// Expands a systemd `slice:prefix:name` cgroupsPath to the cgroupfs path systemd would
/// use (`--systemd-cgroup` is accepted; rbox-runc manages the directories itself).
pub fn systemd_path(spec: &str) -> Result<String, CgroupError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let [slice, prefix, name] = parts[..] else {
        return Err(CgroupError::BadSystemdPath(spec.to_string()));
    };
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let Some(stem) = slice.strip_suffix(".slice") else {
        return Err(CgroupError::BadSystemdPath(spec.to_string()));
    };
    // "a-b.slice" lives in "a.slice/a-b.slice".
    let mut path = String::new();
    let mut acc = String::new();
    for (i, part) in stem.split('-').enumerate() {
        if i > 0 {
            acc.push('-');
        }
        acc.push_str(part);
        path.push('/');
        path.push_str(&acc);
        path.push_str(".slice");
    }
    if stem == "-" || stem.is_empty() {
        path.clear();
    }
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    Ok(format!("{path}/{unit}"))
}

/// The container's directory in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupDir {
    pub version: u8,
    pub controllers: Vec<String>,
    pub mountpoint: PathBuf,
    /// The container's cgroup as the hierarchy names it (as in /proc/PID/cgroup).
    pub cgroup: PathBuf,
    /// Where that is in this mount namespace.
    pub path: PathBuf,
}

impl CgroupDir {
    fn has(&self, controller: &str) -> bool {
        if self.version == 1 {
            self.controllers.iter().any(|c| c == controller)
        } else {
            std::fs::read_to_string(self.path.join("cgroup.controllers"))
                .map(|s| s.split_whitespace().any(|c| c == controller))
                .unwrap_or(false)
        }
    }
}

/// A container's cgroup: its directory in every mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    pub dirs: Vec<CgroupDir>,
}

/// Where a cgroup of the host's hierarchies is (mount points and own cgroups).
pub struct Layout {
    hierarchies: Vec<Hierarchy>,
    own: Vec<PathBuf>,
}

impl Layout {
    /// Reads the mounted hierarchies and this process's cgroups.
    pub fn detect() -> Result<Layout, CgroupError> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(io_err("read", Path::new("/proc/self/mountinfo")))?;
        let cgroup = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(io_err("read", Path::new("/proc/self/cgroup")))?;
        // A mount covered by a later one is listed but unreachable: keep those whose
        // mount point is really them.
        let hierarchies: Vec<Hierarchy> = parse_mountinfo(&mountinfo)
            .into_iter()
            .filter(|h| {
                std::fs::metadata(&h.mountpoint)
                    .map(|m| std::os::unix::fs::MetadataExt::dev(&m) == h.dev)
                    .unwrap_or(false)
            })
            .collect();
        if hierarchies.is_empty() {
            return Err(CgroupError::NoCgroupFs);
        }
        let own = hierarchies.iter().map(|h| own_cgroup(&cgroup, h)).collect();
        Ok(Layout { hierarchies, own })
    }

    /// The container's cgroup for a config's cgroupsPath: absolute paths are taken from
    /// each hierarchy's root, relative ones (and the default, the container id) from this
    /// process's own cgroup, as runc does.
    pub fn cgroup_for(&self, cgroups_path: Option<&str>, id: &str) -> Cgroup {
        let wanted = PathBuf::from(cgroups_path.unwrap_or(id));
        let dirs = self
            .hierarchies
            .iter()
            .zip(&self.own)
            .map(|(h, own)| {
                let cgroup = normalize(&if wanted.is_absolute() {
                    wanted.clone()
                } else {
                    own.join(&wanted)
                });
                let below_mount = cgroup.strip_prefix(&h.mount_root).unwrap_or(&cgroup);
                CgroupDir {
                    version: h.version,
                    controllers: h.controllers.clone(),
                    mountpoint: h.mountpoint.clone(),
                    path: h.mountpoint.join(below_mount),
                    cgroup,
                }
            })
            .collect();
        Cgroup { dirs }
    }
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        if let Component::Normal(n) = c {
            out.push(n);
        }
    }
    out
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(io_err("write", path))
}

impl Cgroup {
    /// Creates the directories and applies the limits. Undo with [`Cgroup::destroy`].
    pub fn create(&self, res: Option<&LinuxResources>) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            self.create_dir(dir)?;
        }
        if let Some(res) = res {
            self.apply(res)?;
        }
        Ok(())
    }

    fn create_dir(&self, dir: &CgroupDir) -> Result<(), CgroupError> {
        // Walk down from the mount point so that each new level can be prepared.
        let rel = dir
            .path
            .strip_prefix(&dir.mountpoint)
            .unwrap_or(Path::new(""));
        let mut cur = dir.mountpoint.clone();
        for comp in rel.components() {
            let parent = cur.clone();
            cur.push(comp);
            if dir.version == 2 {
                enable_controllers(&parent);
            }
            match std::fs::create_dir(&cur) {
                Ok(()) => {
                    if dir.version == 1 && dir.controllers.iter().any(|c| c == "cpuset") {
                        // A new v1 cpuset is empty: it takes no task until it has CPUs.
                        for f in ["cpuset.cpus", "cpuset.mems"] {
                            let v = std::fs::read_to_string(parent.join(f))
                                .map_err(io_err("read", &parent.join(f)))?;
                            write(&cur.join(f), v.trim())?;
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("create", &cur)(e)),
            }
        }
        Ok(())
    }

    /// Writes the limits to the hierarchies that have their controllers: a v1 hierarchy
    /// of the controller if there is one, else the v2 hierarchy.
    pub fn apply(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        let v1_writes = resources::v1(res);
        let mut missing: Vec<&str> = Vec::new();
        let mut i = 0;
        while i < v1_writes.len() {
            let wr = &v1_writes[i];
            let Some(dir) = self
                .dirs
                .iter()
                .find(|d| d.version == 1 && d.has(wr.controller))
            else {
                if !missing.contains(&wr.controller) {
                    missing.push(wr.controller);
                }
                i += 1;
                continue;
            };
            if wr.file == "memory.limit_in_bytes" {
                i += self.write_memory_pair(dir, &v1_writes[i..])?;
                continue;
            }
            // Without swap accounting there is no memory+swap limit to set.
            if wr.file != "memory.memsw.limit_in_bytes" || dir.path.join(&wr.file).exists() {
                write(&dir.path.join(&wr.file), &wr.value)?;
            }
            i += 1;
        }
        // cgroup v2 controls devices with eBPF programs, which rbox-runc does not load:
        // the container still gets only the device nodes its config lists.
        missing.retain(|c| *c != "devices");
        let unified = res.unified().as_ref().is_some_and(|u| !u.is_empty());
        if missing.is_empty() && !unified {
            return Ok(());
        }
        let Some(dir) = self.dirs.iter().find(|d| d.version == 2) else {
            return Err(CgroupError::MissingController {
                controller: missing.first().unwrap_or(&"unified").to_string(),
                path: self
                    .dirs
                    .first()
                    .map(|d| d.path.clone())
                    .unwrap_or_default(),
            });
        };
        for wr in resources::v2(res) {
            if wr.controller != "unified" {
                if !missing.contains(&wr.controller) {
                    continue;
                }
                if !dir.has(wr.controller) {
                    return Err(CgroupError::MissingController {
                        controller: wr.controller.to_string(),
                        path: dir.path.clone(),
                    });
                }
            }
            write(&dir.path.join(&wr.file), &wr.value)?;
        }
        Ok(())
    }

    /// memory.limit_in_bytes and memory.memsw.limit_in_bytes, in the order the kernel
    /// accepts (memsw may never be below the limit). Returns how many writes it consumed.
    fn write_memory_pair(&self, dir: &CgroupDir, writes: &[Write]) -> Result<usize, CgroupError> {
        let limit = &writes[0];
        let swap = writes
            .get(1)
            .filter(|w| w.file == "memory.memsw.limit_in_bytes")
            .filter(|w| dir.path.join(&w.file).exists());
        let consumed = if writes
            .get(1)
            .is_some_and(|w| w.file == "memory.memsw.limit_in_bytes")
        {
            2
        } else {
            1
        };
        let lp = dir.path.join(&limit.file);
        match swap {
            None => write(&lp, &limit.value)?,
            Some(s) => {
                let sp = dir.path.join(&s.file);
                if std::fs::write(&lp, &limit.value).is_ok() {
                    write(&sp, &s.value)?;
                } else {
                    write(&sp, &s.value)?;
                    write(&lp, &limit.value)?;
                }
            }
        }
        Ok(consumed)
    }

    /// The v2 directory (if the host has one), opened for clone3's CLONE_INTO_CGROUP.
    pub fn open_v2(&self) -> Result<Option<OwnedFd>, CgroupError> {
        let Some(dir) = self.dirs.iter().find(|d| d.version == 2) else {
            return Ok(None);
        };
        nix::fcntl::open(
            &dir.path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map(Some)
        .map_err(|e| io_err("open", &dir.path)(e.into()))
    }

    /// Moves the calling process, which must be single-threaded, into the cgroup in
    /// every hierarchy (but v2 if it was born there). In v1 it moves its only thread
    /// (`tasks`, 0): unlike writing a pid to `cgroup.procs`, that does not take the
    /// kernel's global threadgroup lock, whose every write waits for an RCU grace period.
    pub fn enter(&self, born_in_v2: bool) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            match dir.version {
                1 => write(&dir.path.join("tasks"), "0")?,
                _ if !born_in_v2 => write(&dir.path.join("cgroup.procs"), "0")?,
                _ => {}
            }
        }
        Ok(())
    }

    /// The directory that best tracks the container's processes.
    fn tracking_dir(&self) -> Option<&CgroupDir> {
        let v1 = |c: &str| self.dirs.iter().find(|d| d.version == 1 && d.has(c));
        v1("freezer")
            .or_else(|| v1("pids"))
            .or_else(|| self.dirs.iter().find(|d| d.version == 2))
            .or_else(|| self.dirs.first())
    }

    /// Every process in the container's cgroup (and its sub-cgroups).
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let Some(dir) = self.tracking_dir() else {
            return Ok(Vec::new());
        };
        let mut pids = Vec::new();
        for d in walk(&dir.path) {
            let f = d.join("cgroup.procs");
            match std::fs::read_to_string(&f) {
                Ok(text) => pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("read", &f)(e)),
            }
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    fn freezer(&self) -> Option<&CgroupDir> {
        self.dirs
            .iter()
            .find(|d| d.version == 1 && d.has("freezer"))
            .or_else(|| self.dirs.iter().find(|d| d.version == 2))
    }

    /// Freezes (`true`) or thaws every process, and waits until the kernel says it is done.
    pub fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        let Some(dir) = self.freezer() else {
            return Err(CgroupError::MissingController {
                controller: "freezer".into(),
                path: self
                    .dirs
                    .first()
                    .map(|d| d.path.clone())
                    .unwrap_or_default(),
            });
        };
        if dir.version == 1 {
            let f = dir.path.join("freezer.state");
            let want = if frozen { "FROZEN" } else { "THAWED" };
            write(&f, want)?;
            self.wait(&dir.path, "freeze", || {
                Ok(std::fs::read_to_string(&f)
                    .map_err(io_err("read", &f))?
                    .trim()
                    == want)
            })
        } else {
            write(
                &dir.path.join("cgroup.freeze"),
                if frozen { "1" } else { "0" },
            )?;
            let f = dir.path.join("cgroup.events");
            let want = if frozen { "frozen 1" } else { "frozen 0" };
            self.wait(&dir.path, "freeze", || {
                Ok(std::fs::read_to_string(&f)
                    .map_err(io_err("read", &f))?
                    .lines()
                    .any(|l| l == want))
            })
        }
    }

    /// Whether the container's processes are frozen.
    pub fn is_frozen(&self) -> bool {
        match self.freezer() {
            Some(d) if d.version == 1 => std::fs::read_to_string(d.path.join("freezer.state"))
                .map(|s| s.trim() != "THAWED")
                .unwrap_or(false),
            Some(d) => std::fs::read_to_string(d.path.join("cgroup.freeze"))
                .map(|s| s.trim() == "1")
                .unwrap_or(false),
            None => false,
        }
    }

    /// Sends `signal` to every process in the cgroup.
    pub fn signal_all(&self, signal: nix::sys::signal::Signal) -> Result<(), CgroupError> {
        for pid in self.pids()? {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
        Ok(())
    }

    /// Kills every process (thawing a frozen cgroup so they can die) and waits until the
    /// cgroup is empty.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        let killed = self
            .dirs
            .iter()
            .find(|d| d.version == 2)
            .map(|d| std::fs::write(d.path.join("cgroup.kill"), "1").is_ok())
            .unwrap_or(false);
        if !killed {
            self.signal_all(nix::sys::signal::Signal::SIGKILL)?;
        }
        if self.is_frozen() {
            self.set_frozen(false)?;
        }
        let path = self
            .tracking_dir()
            .map(|d| d.path.clone())
            .unwrap_or_default();
        self.wait(&path, "exit", || {
            let pids = self.pids()?;
            for &pid in &pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            Ok(pids.is_empty())
        })
    }

    fn wait(
        &self,
        path: &Path,
        what: &'static str,
        mut done: impl FnMut() -> Result<bool, CgroupError>,
    ) -> Result<(), CgroupError> {
        let limit = Duration::from_secs(10);
        let start = Instant::now();
        let mut pause = Duration::from_micros(100);
        while !done()? {
            if start.elapsed() > limit {
                return Err(CgroupError::Timeout {
                    path: path.to_path_buf(),
                    what,
                    secs: limit.as_secs(),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Removes the container's directories (and any the container made below them).
    /// Parents made on the way are left, as runc does: others may share them.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        let mut first_error = None;
        for dir in &self.dirs {
            let mut dirs = walk(&dir.path);
            dirs.reverse(); // children first
            for d in dirs {
                if let Err(e) = rmdir_retrying(&d) {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// (name below the cgroup mount's destination, host directory) for the `cgroup`
    /// mount type: each hierarchy's own directory, shown where the host mounts it.
    pub fn mount_sources(&self) -> Vec<(String, PathBuf)> {
        let only_v2 = self.dirs.len() == 1 && self.dirs[0].version == 2;
        self.dirs
            .iter()
            .map(|d| {
                let name = if only_v2 {
                    String::new()
                } else {
                    d.mountpoint
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                };
                (name, d.path.clone())
            })
            .collect()
    }
}

/// Enables in `parent` every controller it has, so that its children get them (v2).
/// Errors are ignored: a parent holding processes cannot delegate, and then a needed
/// controller is reported missing when a limit is written.
fn enable_controllers(parent: &Path) {
    let Ok(available) = std::fs::read_to_string(parent.join("cgroup.controllers")) else {
        return;
    };
    let enabled =
        std::fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
    let missing: Vec<String> = available
        .split_whitespace()
        .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        .map(|c| format!("+{c}"))
        .collect();
    if !missing.is_empty() {
        let _ = std::fs::write(parent.join("cgroup.subtree_control"), missing.join(" "));
    }
}

fn rmdir_retrying(d: &Path) -> Result<(), CgroupError> {
    let start = Instant::now();
    loop {
        match std::fs::remove_dir(d) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            // A process that just died may still be counted for a moment.
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && start.elapsed() < Duration::from_secs(5) =>
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(io_err("remove", d)(e)),
        }
    }
}

/// `dir` and the directories below it, parents first.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(entries) = std::fs::read_dir(&out[i]) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    if !out[0].exists() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
90 80 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
";
    const SELF_CGROUP: &str = "\
9:name=systemd:/
4:memory:/session/abc
1:cpu,cpuacct:/
0::/user.slice
";

    #[test]
    fn reads_hybrid_layout() {
        let h = parse_mountinfo(HYBRID);
        let names: Vec<(u8, Vec<String>)> = h
            .iter()
            .map(|h| (h.version, h.controllers.clone()))
            .collect();
        assert_eq!(
            names,
            vec![
                (1, vec!["cpu".to_string()]),
                (1, vec!["cpu".into(), "cpuacct".into()]),
                (1, vec!["memory".into()]),
                (1, vec!["name=systemd".into()]),
                (2, vec![]),
            ]
        );
        let mem = &h[2];
        assert_eq!(own_cgroup(SELF_CGROUP, mem), PathBuf::from("/session/abc"));
        assert_eq!(own_cgroup(SELF_CGROUP, &h[1]), PathBuf::from("/"));
        assert_eq!(own_cgroup(SELF_CGROUP, &h[4]), PathBuf::from("/user.slice"));
    }

    #[test]
    fn absolute_and_relative_paths() {
        let hierarchies = parse_mountinfo(HYBRID);
        let own = hierarchies
            .iter()
            .map(|h| own_cgroup(SELF_CGROUP, h))
            .collect();
        let layout = Layout { hierarchies, own };
        let abs = layout.cgroup_for(Some("/lab/c1"), "c1");
        assert!(abs.dirs.iter().all(|d| d.cgroup == Path::new("/lab/c1")));
        assert_eq!(
            abs.dirs[2].path,
            PathBuf::from("/sys/fs/cgroup/memory/lab/c1")
        );
        let rel = layout.cgroup_for(None, "c1");
        assert_eq!(
            rel.dirs[2].path,
            PathBuf::from("/sys/fs/cgroup/memory/session/abc/c1")
        );
        assert_eq!(
            rel.dirs[4].path,
            PathBuf::from("/sys/fs/cgroup/unified/user.slice/c1")
        );
        let sources = rel.mount_sources();
        assert_eq!(sources[1].0, "cpu,cpuacct");
        assert_eq!(sources[4].0, "unified");
    }

    #[test]
    fn cgroup_namespace_root_is_stripped() {
        let text = "41 31 0:38 /ctr /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let hierarchies = parse_mountinfo(text);
        let own = vec![PathBuf::from("/ctr")];
        let layout = Layout { hierarchies, own };
        let c = layout.cgroup_for(Some("/ctr/sub"), "x");
        assert_eq!(c.dirs[0].path, PathBuf::from("/sys/fs/cgroup/sub"));
        assert_eq!(c.mount_sources()[0].0, "");
    }

    #[test]
    fn systemd_paths() {
        assert_eq!(
            systemd_path("system.slice:libpod:abc").unwrap(),
            "/system.slice/libpod-abc.scope"
        );
        assert_eq!(
            systemd_path("machine-a.slice:crio:x").unwrap(),
            "/machine.slice/machine-a.slice/crio-x.scope"
        );
        assert_eq!(
            systemd_path(":runc:x").unwrap(),
            "/system.slice/runc-x.scope"
        );
        assert!(systemd_path("nope").is_err());
    }

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape("/a\\040b"), PathBuf::from("/a b"));
    }

    #[test]
    fn refuses_unsupported_resources() {
        let r: LinuxResources =
            serde_json::from_value(serde_json::json!({"blockIO": {"weight": 10}})).unwrap();
        assert!(check_resources(&r).is_err());
    }
}
