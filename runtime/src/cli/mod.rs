//! The `rbox` command line: global options, the subcommands, and how errors reach the user.
//!
//! Each group of subcommands lives in its own module and adds its variants to
//! [`Command`]; `dispatch` is the one place that routes them.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod dns;
pub mod network;

/// Exit status for an error of rbox itself (as Docker's 125).
pub const EXIT_RBOX_ERROR: u8 = 125;

#[derive(Debug, Parser)]
#[command(
    name = "rbox",
    version,
    about = "A daemonless container runtime with networking built in"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,
    #[command(subcommand)]
    pub command: Command,
}

/// Where rbox keeps its state; one set per (simulated) host.
#[derive(Debug, Clone, Args)]
pub struct GlobalOptions {
    /// Persistent state: images, containers, networks.
    #[arg(
        long,
        global = true,
        env = "RBOX_ROOT",
        default_value = "/var/lib/rbox"
    )]
    pub root: PathBuf,
    /// Volatile state: sandboxes, leases, monitors, locks.
    #[arg(long, global = true, env = "RBOX_RUNROOT", default_value = "/run/rbox")]
    pub runroot: PathBuf,
    /// Cgroup under which containers' cgroups are made (unless `run --cgroup-parent`).
    #[arg(
        long,
        global = true,
        env = "RBOX_CGROUP_PARENT",
        default_value = "rbox"
    )]
    pub cgroup_parent: String,
    /// Log what rbox does to stderr.
    #[arg(long, global = true, env = "RBOX_DEBUG")]
    pub debug: bool,
}

impl GlobalOptions {
    /// netlib for this state, starting the DNS responder as this rbox binary with these
    /// options when a network needs it.
    pub fn open_netlib(&self) -> anyhow::Result<netlib::Netlib> {
        use anyhow::Context;
        let mut netlib =
            netlib::Netlib::open(&self.root, &self.runroot).context("open network state")?;
        netlib.set_dns_responder(dns::responder_command(self));
        Ok(netlib)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage networks.
    Network {
        #[command(subcommand)]
        command: network::NetworkCommand,
    },
    /// The embedded DNS responder's process (internal).
    #[command(name = "internal-dns", hide = true)]
    InternalDns(dns::InternalDnsArgs),
}

/// Runs the `rbox` command line and returns the process's exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("rbox: {err:#}");
            ExitCode::from(EXIT_RBOX_ERROR)
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let Cli { global, command } = cli;
    match command {
        Command::Network { command } => network::run(&global, command),
        Command::InternalDns(args) => dns::run(&global, args),
    }
}
