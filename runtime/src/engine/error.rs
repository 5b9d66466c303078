//! The engine's error type: what went wrong, in one sentence a user can act on.

use std::path::PathBuf;

use super::options::InvalidOption;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    InvalidOption(#[from] InvalidOption),
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error("container id prefix {0:?} is ambiguous: give more of the id or the name")]
    AmbiguousId(String),
    #[error(
        "the container name {name:?} is already in use by container {id}: remove that container or choose another name"
    )]
    NameInUse { name: String, id: String },
    #[error("container {0} is running: stop it first, or use --force")]
    Running(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {0} is already running")]
    AlreadyRunning(String),
    #[error("{0}")]
    Image(String),
    #[error("{0}")]
    Network(String),
    #[error("{0}")]
    Runtime(String),
    /// The container's command could not be run: 126 (not executable) or 127 (not found).
    #[error("{message}")]
    Exec { message: String, exit_code: u8 },
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container record {} is damaged: {source}", path.display())]
    Record {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Builds an I/O error that names the file it concerns.
    pub fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            context,
            path,
            source,
        }
    }

    /// The exit status Docker gives this error: 126/127 for a command that could not be
    /// run, 125 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Exec { exit_code, .. } => *exit_code,
            _ => 125,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
