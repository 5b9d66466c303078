//! The responder's control channel: where its files live and what is said on its socket
//! (one JSON request line, one JSON reply line, per connection).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Longest request or reply line accepted.
pub const MAX_LINE: usize = 64 * 1024;

/// The responder's files under `<runroot>/dns/`.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
    pub socket: PathBuf,
    /// Held (exclusively) by the running responder: free means none runs.
    pub lock: PathBuf,
    pub pid: PathBuf,
    /// Held by a command while it starts a responder.
    pub spawn_lock: PathBuf,
    pub log: PathBuf,
}

impl Paths {
    pub fn new(runroot: &Path) -> Paths {
        let dir = runroot.join("dns");
        Paths {
            socket: dir.join("control.sock"),
            lock: dir.join("responder.lock"),
            pid: dir.join("responder.pid"),
            spawn_lock: dir.join("spawn.lock"),
            log: dir.join("responder.log"),
            dir,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Request {
    /// Load the state again and serve it; the reply comes once it is served.
    Reload,
    /// Exit now.
    Stop,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reply {
    Done(SyncReport),
    Failed(String),
}

/// What the responder serves after a load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Sandboxes now answered in.
    pub served: usize,
    /// Sandboxes the responder could not listen in (e.g. their namespace is gone); it
    /// tries again at the next load.
    pub unbound: Vec<UnboundSandbox>,
    /// No DNS-enabled network is left, so the responder is exiting.
    pub exiting: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnboundSandbox {
    pub id: String,
    pub error: String,
}

/// First word of the line a starting responder prints once it serves, then the report.
pub const READY: &str = "ready";
