//! `rbox-netlab`: makes container network sandboxes through netlib, as the engine does
//! for `rbox run`, for benchmarks and manual checks in a lab (no container process).
//!
//!     rbox-netlab sandbox HOSTNAME                  # prints the new sandbox's id
//!     rbox-netlab join ID NETWORK NAME [ALIAS...]   # prints its address there
//!     rbox-netlab destroy ID
//!
//! State is where rbox keeps it (`RBOX_ROOT`, `RBOX_RUNROOT`, or the defaults); the
//! sandbox's files go to `<runroot>/netlab/<id>/`. The DNS responder is the `rbox`
//! binary beside this one.

use std::path::PathBuf;
use std::process::ExitCode;

use netlib::dns::ResponderCommand;
use netlib::model::new_id;
use netlib::{EndpointConfig, Netlib, SandboxConfig};

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rbox-netlab: {e}");
            ExitCode::from(125)
        }
    }
}

fn run(args: Vec<String>) -> Result<(), Box<dyn std::error::Error>> {
    let dir = |var: &str, default: &str| {
        PathBuf::from(std::env::var_os(var).unwrap_or_else(|| default.into()))
    };
    let (root, runroot) = (
        dir("RBOX_ROOT", "/var/lib/rbox"),
        dir("RBOX_RUNROOT", "/run/rbox"),
    );
    let mut netlib = Netlib::open(&root, &runroot)?;
    let rbox = std::env::current_exe()?.with_file_name("rbox");
    netlib.set_dns_responder(ResponderCommand::rbox(
        rbox,
        &root,
        &runroot,
        std::iter::empty::<&str>(),
    ));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["sandbox", hostname] => {
            let id = new_id();
            let config = SandboxConfig {
                hostname: hostname.to_string(),
                files_dir: runroot.join("netlab").join(&id),
                ..Default::default()
            };
            netlib.create_sandbox(&id, config)?;
            println!("{id}");
        }
        ["join", id, network, name, aliases @ ..] => {
            let config = EndpointConfig {
                container_name: name.to_string(),
                aliases: aliases.iter().map(|a| a.to_string()).collect(),
                ..Default::default()
            };
            let endpoint = netlib.join(id, network, config)?;
            let addr = endpoint.ipv4().map(|a| a.addr().to_string());
            println!("{}", addr.unwrap_or_default());
        }
        ["destroy", id] => netlib.destroy_sandbox(id)?,
        _ => {
            return Err(
                "usage: rbox-netlab sandbox HOSTNAME | join ID NETWORK NAME [ALIAS...] | destroy ID"
                    .into(),
            );
        }
    }
    Ok(())
}
