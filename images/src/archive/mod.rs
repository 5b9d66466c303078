//! Image archives: `rbox load` reads `docker save` tarballs and OCI image layout
//! archives; `rbox save` writes OCI layout archives (with Docker's `manifest.json`
//! too, so `docker load` takes them).

mod load;
mod save;

use std::io;

use thiserror::Error;

pub use load::Loaded;

#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error("reading the archive: {0}")]
    Read(io::Error),
    #[error(
        "the archive is neither an OCI image layout (no index.json) nor a `docker save` \
         archive (no manifest.json)"
    )]
    UnknownFormat,
    #[error("the archive's {path} is invalid: {reason}")]
    Invalid { path: String, reason: String },
    #[error("the archive refers to {0}, which it does not contain")]
    Missing(String),
    #[error("writing the archive: {0}")]
    Write(io::Error),
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const NAME_ANNOTATION: &str = "io.containerd.image.name";
const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
