//! The embedded DNS responder: containers on user-defined networks find each other by name.
//!
//! # Where it answers
//!
//! At `127.0.0.11` inside each sandbox, as Docker's embedded DNS does, not at a bridge
//! gateway (aardvark-dns's way). The responder's sockets are made inside the sandbox's
//! own network namespace, so:
//! - it works the same on bridge, macvlan and ipvlan networks: the host cannot reach its
//!   own macvlan children, and a macvlan network's gateway is an external router;
//! - the socket a query arrives on names the asking sandbox, so a container gets the names
//!   of exactly the networks it is attached to (two networks: both; others: none) with no
//!   address-to-container guessing;
//! - queries for other names leave from inside the sandbox too, so `--internal` networks
//!   have no way out and a macvlan container asks what its own LAN can reach.
//!
//! The sockets listen on a high port (see [`netns::PREFERRED_PORT`]); a tiny nftables
//! table in the sandbox's namespace DNATs `127.0.0.11:53` (UDP and TCP) to them, so a
//! container can still run its own DNS server on port 53. (Binding 127.0.0.11:53 itself
//! would take the port from a container server bound to the wildcard address; only
//! steering with an eBPF socket-lookup program would avoid the NAT, at the price of
//! hand-assembled BPF.) The port is the same in every sandbox when free, so a restarted
//! responder lands where conntrack's existing NAT mappings point.
//!
//! # Answers
//!
//! Names (container name, aliases, hostname) answer A/AAAA on the networks the asking
//! sandbox is on, case-insensitively, also as `NAME.NETWORK` and with a search domain
//! appended; shared names give every address, rotated per query; container addresses
//! answer PTR (`NAME.NETWORK.`); other types of our names are NODATA. Anything else is
//! forwarded: the client's query is passed on unchanged (but for a fresh random ID, from
//! a fresh random port) rather than re-asked through a resolver library, so flags, EDNS
//! options and the upstream's exact answer reach the client, with nothing cached.
//!
//! Bounds: queries over 4 KiB get FORMERR, answers never reflect a response, forwards in
//! flight and TCP connections are capped per sandbox and in all (beyond: SERVFAIL, or the
//! connection is closed), TCP connections idle for 5 s are closed, and one query's
//! upstream attempts share a 2 s budget.
//!
//! # One responder per runroot
//!
//! One process (`rbox internal-dns serve`, running [`serve`] with [`load`]) serves every
//! sandbox of every DNS-enabled network of a runroot. [`crate::Netlib`] changes the
//! endpoint state under its state lock, releases it, then calls [`sync`]: it starts the
//! responder if it is not running (detached, so it outlives the command; a lock file
//! prevents double starts), or asks it to reload over its control socket and waits for
//! the acknowledgement. So a name resolves, or stops resolving, before the rbox command
//! returns. The responder rebuilds its table from the state ([`load`] reads it under the
//! state lock: never a change half made), swaps it in atomically (queries are never
//! dropped nor answered from a half-built table), binds new sandboxes and releases gone
//! ones. It stays, idle, while a DNS-enabled network exists (its next container finds
//! it serving), and exits with the last one. Killed, it is brought back by the
//! next [`sync`] or by [`ensure_running`] (`Netlib::ensure_dns`), and binds every
//! sandbox again from the state.
//!
//! Locks, always taken in this order, never the other way round: `spawn.lock` (a
//! command starting a responder holds it until the responder has loaded), then
//! netlib's state lock (the loader). No one holding the state lock waits for the
//! responder.
//!
//! Layout under `<runroot>/dns/`: `control.sock`, `responder.lock` (held while it runs),
//! `responder.pid`, `spawn.lock` (serialises starts), `responder.log` (its stderr).

mod answer;
mod client;
mod control;
mod netns;
mod redirect;
mod server;
mod snapshot;
mod state;
mod table;
mod upstream;

use std::path::PathBuf;

pub use client::{ResponderCommand, ensure_running, is_running, stop, sync, wait_until_gone};
pub use control::{SyncReport, UnboundSandbox};
pub use netns::{PREFERRED_PORT, RESPONDER_ADDR};
pub use server::{LoadError, ServeConfig, serve};
pub use snapshot::{EndpointNames, NetworkRecords, SandboxView, Snapshot};
pub use state::load;

/// Errors of the DNS responder and of the commands that drive it.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("a DNS responder is already running for {0}")]
    AlreadyRunning(PathBuf),
    #[error("cannot load the DNS records: {0}")]
    Load(String),
    #[error("the DNS responder failed to start: {reason} (its log: {log})")]
    Start { reason: String, log: PathBuf },
    #[error("the DNS responder did not answer in time (its log: {0})")]
    Timeout(PathBuf),
    #[error("the DNS responder cannot answer in sandbox {id}: {error}")]
    Unbound { id: String, error: String },
}

impl DnsError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DnsError {
        let what = what.into();
        move |source| DnsError::Io { what, source }
    }
}
