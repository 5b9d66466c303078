//! `rbox internal-dns`: the process of the embedded DNS responder (started by rbox itself,
//! detached, one per runroot), and its client side for labs and scripts.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use netlib::dns::{self, LoadError, ResponderCommand, ServeConfig, Snapshot};

use super::GlobalOptions;

#[derive(Debug, Args)]
pub struct InternalDnsArgs {
    #[command(subcommand)]
    pub action: InternalDnsAction,
}

#[derive(Debug, Subcommand)]
pub enum InternalDnsAction {
    /// Run the responder in this process (rbox starts it detached when DNS is needed).
    Serve(SnapshotSource),
    /// Make the responder serve the current records: reload it, or start it.
    Sync(SnapshotSource),
    /// Start the responder if it is not running (what a container monitor does).
    Ensure(SnapshotSource),
    /// Stop the responder.
    Stop,
}

/// Where the records come from.
#[derive(Debug, Args)]
pub struct SnapshotSource {
    /// A JSON snapshot of the records (default: `<runroot>/dns/snapshot.json`), read at
    /// every reload; a responder already running keeps the file it was started with.
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
}

impl SnapshotSource {
    fn path(&self, runroot: &Path) -> PathBuf {
        self.snapshot
            .clone()
            .unwrap_or_else(|| runroot.join("dns/snapshot.json"))
    }
}

pub fn run(global: &GlobalOptions, args: InternalDnsArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        InternalDnsAction::Serve(source) => {
            let path = source.path(&global.runroot);
            let loader = move || Snapshot::read_json(&path).map_err(|e| Box::new(e) as LoadError);
            dns::serve(ServeConfig::new(&global.runroot), loader)
                .context("the DNS responder stopped")?;
        }
        InternalDnsAction::Sync(source) => {
            let report = dns::sync(&global.runroot, &responder_command(global, &source)?)
                .context("the DNS responder did not take the records")?;
            println!("{}", serde_json::to_string(&report)?);
        }
        InternalDnsAction::Ensure(source) => {
            dns::ensure_running(&global.runroot, &responder_command(global, &source)?)
                .context("the DNS responder is not running")?;
        }
        InternalDnsAction::Stop => {
            if !dns::stop(&global.runroot).context("cannot stop the DNS responder")? {
                eprintln!("rbox: no DNS responder is running");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// This binary, serving the same runroot and records.
fn responder_command(
    global: &GlobalOptions,
    source: &SnapshotSource,
) -> anyhow::Result<ResponderCommand> {
    let program = std::env::current_exe().context("cannot find the rbox binary")?;
    let args: Vec<OsString> = vec![
        "--root".into(),
        global.root.clone().into(),
        "--runroot".into(),
        global.runroot.clone().into(),
        "internal-dns".into(),
        "serve".into(),
        "--snapshot".into(),
        source.path(&global.runroot).into(),
    ];
    Ok(ResponderCommand { program, args })
}
