//! The `rbox` command line: global options, the subcommands, and how errors reach the user.
//!
//! Each group of subcommands lives in its own module and adds its variants to
//! [`Command`]; `dispatch` is the one place that routes them.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use deferred::Deferred;

pub mod container;
mod deferred;
mod dns;
pub mod image;
pub mod netconnect;
pub mod network;
mod port;
pub mod ps;

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
    #[command(flatten)]
    Container(container::Verb),
    /// List containers.
    Ps(Deferred<container::PsArgs>),
    /// Manage containers.
    #[command(name = "container", subcommand)]
    Containers(Deferred<container::ContainerCommand>),
    /// The embedded DNS responder's process (internal).
    #[command(name = "internal-dns", hide = true)]
    InternalDns(Deferred<dns::InternalDnsArgs>),
    #[command(flatten)]
    Image(image::ImageCommand),
    /// List a container's published ports.
    Port(Deferred<port::PortArgs>),
    /// Manage networks.
    Network {
        #[command(subcommand)]
        command: Deferred<netconnect::NetworkGroup>,
    },
}

/// Runs the `rbox` command line and returns the process's exit status.
pub fn main() -> ExitCode {
    // Commands that need rbox sealed re-execute it (see container::dispatch). Spotted
    // before parsing, that first run of rbox does nothing else: the parser's work would
    // be thrown away with it.
    if needs_seal(std::env::args().skip(1))
        && let Err(e) = crate::oci::seal_current_exe()
    {
        eprintln!("rbox: {e}");
        return ExitCode::from(EXIT_RBOX_ERROR);
    }
    // Usage errors exit 125, as Docker's do (help and version are no errors).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(EXIT_RBOX_ERROR),
            };
        }
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("rbox: {err:#}");
            ExitCode::from(EXIT_RBOX_ERROR)
        }
    }
}

/// Whether the command line (without the program name) names a verb that needs rbox
/// sealed ([`container::verb_needs_seal`]), behind the global options. A guess for speed
/// only: whatever it misses, `container::dispatch` seals.
fn needs_seal(mut args: impl Iterator<Item = String>) -> bool {
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--root" | "--runroot" | "--cgroup-parent" => {
                args.next();
            }
            "container" => {}
            a if a.starts_with("--") => {}
            verb => return container::verb_needs_seal(verb),
        }
    }
    false
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let Cli { global, command } = cli;
    Ok(match command {
        Command::Container(v) => container::dispatch(&global, container::ContainerCommand::Verb(v)),
        Command::Ps(a) => container::dispatch(&global, container::ContainerCommand::Ls(a)),
        Command::Containers(c) => container::dispatch(&global, c.into_inner()),
        Command::InternalDns(args) => dns::run(&global, args.into_inner())?,
        Command::Image(c) => image::run(&global, c)?,
        Command::Network { command } => netconnect::run(&global, command.into_inner())?,
        Command::Port(args) => port::run(&global, args.into_inner())?,
    })
}

#[cfg(test)]
mod tests {
    use super::needs_seal;

    fn check(line: &str) -> bool {
        needs_seal(line.split_whitespace().map(String::from))
    }

    #[test]
    fn verbs_that_need_sealing_are_spotted_behind_global_options() {
        let stub = crate::oci::has_exec_stub();
        assert_eq!(check("run --rm busybox true"), !stub);
        assert!(check("--root /tmp/r --debug container exec -it c sh"));
        assert_eq!(check("--runroot=/run/x start c"), !stub);
        assert!(!check("ps -a"));
        assert!(!check("--root run ps"), "an option's value is no verb");
        assert!(!check("network create run"));
        assert!(!check(""));
    }
}
