//! A container's record: what it was created with and what state it is in, kept as one
//! JSON file under `<root>/containers/<id>/`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::options::ContainerOptions;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    pub created: DateTime<Utc>,
    pub image: ImageInfo,
    /// The process and identity, with the image's defaults already applied.
    pub config: ProcessConfig,
    pub options: ContainerOptions,
    /// Cgroup under which the container's cgroup is made (fixed at creation).
    pub cgroup_parent: String,
    pub state: ContainerState,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageInfo {
    /// Normalised reference, e.g. `docker.io/library/busybox:latest`.
    pub reference: String,
    /// Image id (`sha256:` digest of its config).
    pub id: String,
}

/// The container's process as it will run: image config merged with flags.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProcessConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: String,
    pub user: String,
    pub hostname: String,
    pub stop_signal: String,
    /// Seconds; -1 waits forever.
    pub stop_timeout: i64,
    /// `80/tcp` …, from the image.
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

impl ProcessConfig {
    /// Entrypoint followed by the command: the argv of the container's process.
    pub fn argv(&self) -> Vec<String> {
        self.entrypoint.iter().chain(&self.cmd).cloned().collect()
    }
}

/// Docker's container statuses (those rbox uses).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ContainerState {
    pub status: Status,
    /// PID of the container's first process (0 when none).
    pub pid: i32,
    /// PID of the monitor that owns the container while set (0 when none). Whether that
    /// monitor still lives is told by its lock, never by this number.
    pub monitor_pid: i32,
    pub exit_code: i32,
    pub error: String,
    pub oom_killed: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub restart_count: u32,
    /// Attachments while running, by network name.
    pub networks: BTreeMap<String, Attachment>,
    /// Published ports while running (host ports picked at start).
    #[serde(default)]
    pub ports: Vec<netlib::publish::Binding>,
}

/// One endpoint of the container, as `inspect` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Attachment {
    pub network_id: String,
    pub endpoint_id: String,
    pub ip_address: Option<IpAddr>,
    pub ip_prefix_len: u8,
    pub gateway: Option<IpAddr>,
    pub mac_address: String,
    pub aliases: Vec<String>,
}
