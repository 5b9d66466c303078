//! Containers under a state root: the [`Runtime`] finds and creates them, a
//! [`Container`] is one of them. Each verb lives in its own file.

mod create;
mod delete;
mod exec;
mod kill;
mod pause;
mod start;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub use create::{CreateOptions, Created, check_preserved_fds, stub_suffices};
pub use exec::{ExecOptions, ExecProcess};

use super::state::{OCI_VERSION, Record, StateDir, StateReport, Status, alive};
use super::{Error, Result};

/// Where a process's standard streams come from: each `None` keeps the caller's own.
#[derive(Debug, Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// Where the master of a new terminal goes (when `process.terminal` is true).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Console {
    /// Back to the caller, in [`Created::console`] / [`ExecProcess::console`].
    Return,
    /// Over the AF_UNIX socket at this path (runc's `--console-socket` protocol).
    Socket(PathBuf),
}

/// The OCI runtime over one state root.
#[derive(Debug, Clone)]
pub struct Runtime {
    root: PathBuf,
    systemd_cgroup: bool,
}

impl Runtime {
    /// A runtime keeping its containers' state under `root` (runc's `--root`).
    pub fn new(root: impl Into<PathBuf>) -> Runtime {
        Runtime {
            root: root.into(),
            systemd_cgroup: false,
        }
    }

    /// Read cgroupsPath as systemd's `slice:prefix:name` (runc's `--systemd-cgroup`);
    /// the cgroups are still made directly in the cgroup file system.
    pub fn with_systemd_cgroup(mut self, on: bool) -> Runtime {
        self.systemd_cgroup = on;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The container `id`.
    pub fn load(&self, id: &str) -> Result<Container> {
        if !super::config::validate_id(id) {
            return Err(Error::NotFound(id.to_string()));
        }
        let dir = StateDir::new(&self.root, id);
        match dir.read_record()? {
            Some(record) => Ok(Container { dir, record }),
            None => Err(Error::NotFound(id.to_string())),
        }
    }

    /// Every container under the root, sorted by id. Directories of containers still
    /// being created (no record yet) are skipped.
    pub fn list(&self) -> Result<Vec<Container>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("read {}", self.root.display()), e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str() else { continue };
            match self.load(id) {
                Ok(c) => out.push(c),
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.id().cmp(b.id()));
        Ok(out)
    }
}

/// A created container (its state record, read when it was loaded).
#[derive(Debug, Clone)]
pub struct Container {
    dir: StateDir,
    record: Record,
}

impl Container {
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// The init process's pid (in the caller's pid namespace).
    pub fn pid(&self) -> i32 {
        self.record.pid
    }

    pub fn bundle(&self) -> &Path {
        &self.record.bundle
    }

    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The status, read from the kernel now.
    pub fn status(&self) -> Status {
        if !alive(self.record.pid, self.record.pid_start) {
            Status::Stopped
        } else if self.dir.fifo_path().exists() {
            Status::Created
        } else if self.record.cgroup.is_frozen() {
            Status::Paused
        } else {
            Status::Running
        }
    }

    /// The state in runc's shape (`rbox-runc state`).
    pub fn state(&self) -> StateReport {
        let status = self.status();
        StateReport {
            oci_version: OCI_VERSION.to_string(),
            id: self.record.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.record.pid
            },
            status,
            bundle: self.record.bundle.clone(),
            rootfs: self.record.rootfs.clone(),
            created: self.record.created.clone(),
            annotations: self.record.annotations.clone(),
            owner: self.dir.owner(),
        }
    }

    /// The spec the container was created with.
    pub fn spec(&self) -> Result<oci_spec::runtime::Spec> {
        let path = self.dir.config_path();
        let text =
            std::fs::read(&path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        Ok(super::config::parse_spec(&text, &path)?)
    }

    /// Every process in the container's cgroup.
    pub fn pids(&self) -> Result<Vec<i32>> {
        Ok(self.record.cgroup.pids()?)
    }

    fn wrong_status(&self, action: &'static str, status: Status, hint: &'static str) -> Error {
        Error::WrongStatus {
            action,
            id: self.record.id.clone(),
            status,
            hint,
        }
    }

    /// The state a hook gets on stdin.
    fn hook_state(&self, status: Status) -> Vec<u8> {
        hook_state_json(&self.record, status)
    }
}

pub(crate) fn hook_state_json(r: &Record, status: Status) -> Vec<u8> {
    serde_json::to_vec(&super::state::HookState {
        oci_version: OCI_VERSION,
        id: &r.id,
        status,
        pid: r.pid,
        bundle: &r.bundle,
        annotations: &r.annotations,
    })
    .expect("hook state serializes")
}

/// pidfd_open(2): a handle on a process that stays valid if its pid is reused.
pub(crate) fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
