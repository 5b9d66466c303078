//! `rbox network connect`/`disconnect` (containers' side of networks, from the engine)
//! beside netlib's `rbox network` commands; every network command first reclaims the
//! containers whose monitor died, so their endpoints never hold a network.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::GlobalOptions;
use super::network::{self, NetworkCommand};
use crate::engine::options::{self, NetworkRequest};
use crate::engine::{Engine, lifecycle, network as engine_network};

#[derive(Debug, Subcommand)]
pub enum NetworkGroup {
    #[command(flatten)]
    Core(NetworkCommand),
    /// Connect a container to a network.
    Connect(ConnectArgs),
    /// Disconnect a container from a network.
    Disconnect(DisconnectArgs),
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    pub network: String,
    pub container: String,
    /// Network-scoped alias (repeatable).
    #[arg(long = "alias")]
    pub aliases: Vec<String>,
    /// IPv4 address on the network.
    #[arg(long)]
    pub ip: Option<String>,
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {
    pub network: String,
    pub container: String,
    /// Accepted for Docker compatibility.
    #[arg(short, long)]
    pub force: bool,
}

fn engine(global: &GlobalOptions) -> Result<Engine, crate::engine::Error> {
    Engine::open(
        global.root.clone(),
        global.runroot.clone(),
        global.cgroup_parent.clone(),
        global.debug,
    )
}

pub fn run(global: &GlobalOptions, cmd: NetworkGroup) -> anyhow::Result<ExitCode> {
    let engine = engine(global)?;
    lifecycle::list(&engine)?;
    match cmd {
        NetworkGroup::Core(c) => network::run(global, c),
        NetworkGroup::Connect(a) => {
            let req = NetworkRequest {
                name: a.network,
                aliases: a.aliases,
                ip: a
                    .ip
                    .as_deref()
                    .map(|ip| options::parse_ip("--ip", ip))
                    .transpose()?,
                mac: None,
            };
            engine_network::connect(&engine, &a.container, req)?;
            Ok(ExitCode::SUCCESS)
        }
        NetworkGroup::Disconnect(a) => {
            engine_network::disconnect(&engine, &a.container, &a.network)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
