//! rbox images: references, the registry client, the content store, layer unpacking
//! and overlay root filesystems.
//!
//! Everything goes through an [`ImageStore`] opened on rbox's root:
//!
//! ```no_run
//! use rbox_images::{ImageStore, PullOptions, ConsoleProgress, Console};
//! let store = ImageStore::open("/var/lib/rbox".as_ref())?;
//! let image = store.resolve_or_pull("busybox", &PullOptions::default(),
//!                                   &ConsoleProgress::new(Console::Stderr))?;
//! let rootfs = store.mount_rootfs(image.id.as_str(), "0123abcd")?;
//! println!("{} {:?}", rootfs.path.display(), image.config.cmd);
//! store.remove_rootfs("0123abcd")?;
//! # Ok::<(), rbox_images::Error>(())
//! ```
//!
//! The API is synchronous; network work runs on a private tokio runtime.

pub mod archive;
pub mod digest;
mod error;
mod fsutil;
pub mod platform;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod rootfs;
mod store;
pub mod unpack;

pub use archive::{ArchiveError, Loaded};
pub use digest::{Digest, DigestError};
pub use error::{Error, Result};
pub use platform::{Platform, PlatformError};
pub use progress::{Console, ConsoleProgress, LayerState, NoProgress, Progress, PullEvent};
pub use reference::{Reference, ReferenceError};
pub use registry::{Credentials, PullOptions, RegistryError};
pub use rootfs::{Rootfs, RootfsError};
pub use store::{Image, ImageConfig, ImageInspect, ImageStore, PruneReport, familiar};
pub use unpack::UnpackError;
