//! rbox's networking, after Docker's Container Network Model: a [`Sandbox`] (a
//! container's network namespace) holds one [`Endpoint`] per [`Network`] it joined;
//! a [`drivers::Driver`] owns the kernel objects of its networks (`bridge`, `host`,
//! `null`, `macvlan`, `ipvlan`); IPAM, state, sandbox files and the firewall are shared
//! by all drivers.
//!
//! The engine uses [`Netlib`]; see `api.rs` for the calls and `store.rs` for the
//! on-disk records other parts (DNS, port publishing) read.

mod api;
pub mod defaults;
pub mod dns;
pub mod drivers;
pub mod files;
pub mod firewall;
pub mod inspect;
pub mod ipam;
pub mod kernel;
pub mod model;
pub mod netns;
pub mod nft;
pub mod publish;
pub mod store;
mod unlink;

pub use api::{Error, Netlib, NetworkCreate, Result};
pub use model::{Endpoint, EndpointConfig, Network, Sandbox, SandboxConfig, Subnet};
