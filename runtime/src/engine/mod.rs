//! The engine level: image + flags in, an OCI bundle and a supervised container out.
//!
//! `rbox run` parses its flags into [`options::ContainerOptions`], resolves the image,
//! records the container ([`store`]), and hands it to a monitor ([`monitor`]) that
//! mounts the rootfs, builds the network sandbox, writes the bundle ([`oci_config`]),
//! creates and starts the process through the OCI level, and supervises it until it
//! exits. The OCI level (`crate::oci`) knows nothing of images or networks.

pub mod caps;
pub mod ids;
pub mod oci_config;
pub mod options;
pub mod record;
pub mod seccomp;
pub mod attach;
pub mod error;
pub mod fsutil;
pub mod logfile;
pub mod store;
pub mod user;
