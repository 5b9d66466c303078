//! rbox's runtime: the `rbox` engine and, below it, the OCI level exposed as `rbox-runc`.

pub mod cli;
pub mod engine;
pub mod oci;
pub mod runc;
