//! The crate's error: each module's error rolled up, plus the store's own cases.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::archive::ArchiveError;
use crate::digest::DigestError;
use crate::platform::PlatformError;
use crate::reference::ReferenceError;
use crate::registry::RegistryError;
use crate::rootfs::RootfsError;
use crate::unpack::UnpackError;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error("refusing layer {layer}: {error}")]
    Layer { layer: String, error: UnpackError },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error("no such image: {0}")]
    NotFound(String),
    #[error("image reference {0:?} is ambiguous: it matches several image IDs; give more digits")]
    Ambiguous(String),
    #[error(
        "unable to remove {name}: image {id} is in use by container {container} \
         (remove the container first, or use -f to untag the image anyway)"
    )]
    InUse {
        name: String,
        id: String,
        container: String,
    },
    #[error(
        "unable to delete {id} (must be forced): the image is referenced by {count} names; \
         remove them one by one, or use -f"
    )]
    MultipleNames { id: String, count: usize },
    #[error("invalid image {what}: {reason}")]
    InvalidImage { what: String, reason: String },
    #[error("image store at {path}: {error}")]
    Io { path: PathBuf, error: io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches the path an I/O error happened on.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|error| Error::Io {
            path: path.to_path_buf(),
            error,
        })
    }
}

impl Error {
    pub(crate) fn invalid(what: impl Into<String>, reason: impl std::fmt::Display) -> Error {
        Error::InvalidImage {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
