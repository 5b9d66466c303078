//! What the runtime remembers of a container between commands: `<root>/<id>/` holds
//! `state.json` (the record), `config.json` (the spec it was created with, for `exec`)
//! and, until the container is started, `exec.fifo`. The status is never stored: it is
//! read from the kernel (is the init alive, is the fifo still there, is the cgroup frozen).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::cgroups::Cgroup;

/// The OCI runtime spec version of the state we report (as runc 1.1 does).
pub const OCI_VERSION: &str = "1.0.2";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged: {message}")]
    Corrupt { path: PathBuf, message: String },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StateError {
    let path = path.to_path_buf();
    move |source| StateError::Io {
        action,
        path,
        source,
    }
}

/// A container's status, as the OCI spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// `state.json`: what is known about a container once it is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// The init process, in the pid namespace of the state root's users.
    pub pid: i32,
    /// The init's start time (/proc/PID/stat field 22), so a reused PID is not mistaken
    /// for the container.
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 with nanoseconds, UTC.
    pub created: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub cgroup: Cgroup,
    /// Whether the init was given a terminal (its exec'd processes default to the same).
    #[serde(default)]
    pub terminal: bool,
    /// The hooks `start` and `delete` run (kept here so they need not reread the spec).
    #[serde(default)]
    pub poststart: Vec<oci_spec::runtime::Hook>,
    #[serde(default)]
    pub poststop: Vec<oci_spec::runtime::Hook>,
}

/// The state a client reads (`rbox-runc state`, `list --format json`): runc's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateReport {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub owner: String,
}

/// The state the OCI spec gives hooks on stdin.
#[derive(Debug, Clone, Serialize)]
pub struct HookState<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'static str,
    pub id: &'a str,
    pub status: Status,
    pub pid: i32,
    pub bundle: &'a Path,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: &'a BTreeMap<String, String>,
}

/// The directory of one container under the state root.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub path: PathBuf,
}

impl StateDir {
    pub fn new(root: &Path, id: &str) -> StateDir {
        StateDir {
            path: root.join(id),
        }
    }

    /// The state root this directory is in.
    pub fn state_root(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }

    pub fn record_path(&self) -> PathBuf {
        self.path.join("state.json")
    }
    pub fn config_path(&self) -> PathBuf {
        self.path.join("config.json")
    }
    pub fn fifo_path(&self) -> PathBuf {
        self.path.join("exec.fifo")
    }

    /// Creates the directory; `Ok(false)` if it already exists.
    pub fn create(&self) -> Result<bool, StateError> {
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("create", parent))?;
            // State roots hold pids, configs and exec fifos: for root only.
            let _ = std::fs::set_permissions(
                parent,
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            );
        }
        match std::fs::create_dir(&self.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err("create", &self.path)(e)),
        }
    }

    /// Takes the container's lock (released when the guard drops): every command that
    /// changes a container holds it.
    pub fn lock(&self) -> Result<Flock<File>, StateError> {
        let f = File::open(&self.path).map_err(io_err("open", &self.path))?;
        Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| io_err("lock", &self.path)(std::io::Error::from(e)))
    }

    /// The fifo the init blocks on until `start` opens it, owned by the container's root
    /// (the init may be an unprivileged user on the host; it reopens the fifo through
    /// its own descriptor, so only the fifo's permissions matter, not the directory's).
    pub fn make_fifo(&self, owner: Option<(u32, u32)>) -> Result<(), StateError> {
        let p = self.fifo_path();
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| io_err("create", &p)(e.into()))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).map_err(io_err("chown", &p))?;
        }
        Ok(())
    }

    pub fn write_record(&self, r: &Record) -> Result<(), StateError> {
        let json = serde_json::to_vec(r).expect("records serialize");
        write_atomic(&self.record_path(), &json)
    }

    /// The record, or `None` if the container is not (or not yet fully) created.
    pub fn read_record(&self) -> Result<Option<Record>, StateError> {
        let p = self.record_path();
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StateError::Corrupt {
                    path: p,
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &p)(e)),
        }
    }

    pub fn remove(&self) -> Result<(), StateError> {
        match std::fs::remove_dir_all(&self.path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io_err("remove", &self.path)(e)),
            _ => Ok(()),
        }
    }

    /// The owner of the state directory, by name (runc's `list` column).
    pub fn owner(&self) -> String {
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata(&self.path).map(|m| m.uid()).unwrap_or(0);
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| format!("#{uid}"))
    }
}

/// Writes `path` through a temporary file and a rename, so readers never see half a file.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StateError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, data).map_err(io_err("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err("write", path)(e)
    })
}

/// (state letter, start time) of a process from /proc/PID/stat.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<(char, u64)> {
    // The command name may hold anything, ')' included: fields follow the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 22 overall (starttime) is the 20th after the name.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Whether `pid` is still the process that started at `start` and has not exited.
pub fn alive(pid: i32, start: u64) -> bool {
    pid > 0
        && matches!(proc_stat(pid), Some((state, s)) if s == start && state != 'Z' && state != 'X')
}

/// Now, as RFC 3339 with nanoseconds (runc's `created`).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_names() {
        let line = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat(line), Some(('S', 987654)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_wrong_start_is_not() {
        let me = std::process::id() as i32;
        let (_, start) = proc_stat(me).unwrap();
        assert!(alive(me, start));
        assert!(!alive(me, start + 1));
        assert!(!alive(0, 0));
    }

    #[test]
    fn records_round_trip_and_report_json_is_runcs() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::new(dir.path(), "c1");
        assert!(sd.create().unwrap());
        assert!(!sd.create().unwrap());
        assert_eq!(sd.read_record().unwrap(), None);
        let r = Record {
            id: "c1".into(),
            pid: 7,
            pid_start: 9,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: now_rfc3339(),
            annotations: BTreeMap::new(),
            cgroup: Cgroup { dirs: vec![] },
            terminal: false,
            poststart: vec![],
            poststop: vec![],
        };
        sd.write_record(&r).unwrap();
        assert_eq!(sd.read_record().unwrap(), Some(r));
        let report = StateReport {
            oci_version: OCI_VERSION.into(),
            id: "c1".into(),
            pid: 7,
            status: Status::Running,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: "2024-01-01T00:00:00.000000001Z".into(),
            annotations: BTreeMap::new(),
            owner: "".into(),
        };
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["ociVersion"], "1.0.2");
        assert_eq!(v["status"], "running");
        assert!(v.get("annotations").is_none());
        std::fs::write(sd.record_path(), "{").unwrap();
        assert!(matches!(sd.read_record(), Err(StateError::Corrupt { .. })));
        sd.remove().unwrap();
        assert!(!sd.path.exists());
    }
}
