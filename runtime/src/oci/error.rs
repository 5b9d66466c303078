//! The OCI level's error type: one enum that the engine and `rbox-runc` match on, with
//! the errors of the submodules rolled up into it.

use std::path::PathBuf;

use super::cgroups::CgroupError;
use super::config::ConfigError;
use super::hooks::HookError;
use super::seccomp::SeccompError;
use super::state::StateError;

/// Everything that can go wrong at the OCI level. `Display` is one sentence for the user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No container with this id under the state root (runc's wording: clients match it).
    #[error("container \"{0}\" does not exist")]
    NotFound(String),
    #[error("container with id exists: {0}")]
    AlreadyExists(String),
    #[error(
        "invalid container id {0:?}: use 1 to 1024 letters, digits, '_', '+', '-' or '.', not starting with '.'"
    )]
    InvalidId(String),
    /// The operation does not fit the container's status (e.g. `start` of a running one).
    #[error("cannot {action} container {id}: it is {status}{hint}")]
    WrongStatus {
        action: &'static str,
        id: String,
        status: super::Status,
        hint: &'static str,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Hook(#[from] HookError),
    /// Setting up the container's process failed; the message comes from inside the new
    /// process (e.g. `exec: "foo": executable file not found in $PATH`).
    #[error("{0}")]
    Process(String),
    /// The child that sets up the container died without saying why.
    #[error("container process exited during setup ({0})")]
    SetupDied(String),
    #[error(
        "the runtime binary is not protected against overwrite from a container: call oci::seal_current_exe() at the start of main"
    )]
    ExeNotSealed,
    #[error(
        "the calling process has {0} threads: containers must be created from a single-threaded process"
    )]
    Threaded(usize),
    #[error("cannot use console socket {path}: {source}")]
    ConsoleSocket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: impl Into<std::io::Error>) -> Error {
        Error::Io {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// `Result` with the OCI level's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
