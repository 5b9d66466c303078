//! `rbox port CONTAINER [PRIVATE_PORT[/PROTO]]`: a container's published ports, in
//! Docker's lines (`80/tcp -> 0.0.0.0:5000`, or only `0.0.0.0:5000` for one port).

use std::process::ExitCode;

use clap::Args;

use super::GlobalOptions;
use crate::engine::{Engine, lifecycle, ports};

#[derive(Debug, Args)]
pub struct PortArgs {
    pub container: String,
    /// A container port, `80` or `80/udp`.
    pub port: Option<String>,
}

pub fn run(global: &GlobalOptions, args: PortArgs) -> anyhow::Result<ExitCode> {
    let engine = Engine::open(
        global.root.clone(),
        global.runroot.clone(),
        global.cgroup_parent.clone(),
        global.debug,
    )?;
    let id = lifecycle::resolve_live(&engine, &args.container)?;
    let rec = engine.store.load(&id)?;
    for line in ports::port_lines(&rec, args.port.as_deref())? {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
