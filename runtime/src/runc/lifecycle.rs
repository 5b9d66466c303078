//! create, run, state, kill, delete.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use nix::sys::signal::Signal;

use super::foreground::Foreground;
use super::log::Logger;
use super::write_pid_file;
use crate::oci::{self, Console, CreateOptions, Runtime};

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The bundle: a directory with config.json and the root file system.
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// AF_UNIX socket to receive the master of the container's terminal.
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// File to write the init's pid to.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root (for a root on a ramdisk).
    #[arg(long)]
    no_pivot: bool,
    /// Accepted for runc compatibility (no session keyring is made).
    #[arg(long)]
    no_new_keyring: bool,
    /// Pass descriptors 3 .. 3+N (plus $LISTEN_FDS) to the container.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    id: String,
}

impl CreateArgs {
    /// Whether creating this container needs the runtime sealed: unless the exec stub
    /// suffices for its config (an unreadable one is refused later, sealed or not).
    pub fn needs_seal(&self) -> bool {
        oci::load_spec(&self.bundle).map_or(true, |spec| !oci::stub_suffices(&spec))
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Return once the container runs, leaving it running.
    #[arg(short, long)]
    detach: bool,
    /// Accepted for runc compatibility.
    #[arg(long)]
    no_subreaper: bool,
    /// Do not delete the container after it exits.
    #[arg(long)]
    keep: bool,
}

/// runc adds systemd's socket-activation descriptors to those preserved.
pub fn preserved(n: u32) -> u32 {
    let listen: u32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    n + listen
}

fn create_options(a: &CreateArgs, tty_here: bool) -> CreateOptions {
    CreateOptions {
        console: match (&a.console_socket, tty_here) {
            (Some(p), _) => Some(Console::Socket(p.clone())),
            (None, true) => Some(Console::Return),
            (None, false) => None,
        },
        preserve_fds: preserved(a.preserve_fds),
        no_pivot: a.no_pivot,
        ..Default::default()
    }
}

pub fn create(rt: &Runtime, a: CreateArgs) -> oci::Result<()> {
    let created = rt.create(&a.id, &a.bundle, create_options(&a, false))?;
    if let Some(p) = &a.pid_file {
        write_pid_file(p, created.container.pid())?;
    }
    Ok(())
}

pub fn run(rt: &Runtime, a: RunArgs, logger: &Logger) -> oci::Result<ExitCode> {
    let spec = oci::load_spec(&a.create.bundle)?;
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    // Without a console socket, a terminal is relayed here: only in the foreground.
    let tty_here = terminal && a.create.console_socket.is_none();
    if tty_here && a.detach {
        return Err(oci::ConfigError::Invalid(
            "process.terminal is true: with --detach, give a --console-socket".into(),
        )
        .into());
    }
    let fg = (!a.detach).then(Foreground::prepare).transpose()?;
    // Created and started in one go: no exec fifo to wait on.
    let opts = CreateOptions {
        start: true,
        ..create_options(&a.create, tty_here)
    };
    let created = rt.create_from_spec(&a.create.id, &a.create.bundle, spec, opts)?;
    let container = created.container;
    if let Some(p) = &a.create.pid_file {
        write_pid_file(p, container.pid())?;
    }
    let Some(fg) = fg else {
        return Ok(ExitCode::SUCCESS);
    };
    let pid = nix::unistd::Pid::from_raw(container.pid());
    let code = fg.wait(pid, created.console, |sig| {
        if let Err(e) = container.kill(sig, false) {
            logger.debug(&format!("forwarding {sig}: {e}"));
        }
    })?;
    if !a.keep {
        rt.load(&a.create.id)?.delete(true)?;
    }
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

pub fn state(rt: &Runtime, id: &str) -> oci::Result<()> {
    let report = rt.load(id)?.state();
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("state serializes")
    );
    Ok(())
}

/// runc's signal syntax: a number, or a name with or without SIG, any case.
pub fn parse_signal(s: &str) -> Option<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse().ok()
}

pub fn kill(rt: &Runtime, id: &str, signal: Option<&str>, all: bool) -> oci::Result<()> {
    let sig = match signal {
        None => Signal::SIGTERM,
        Some(s) => parse_signal(s)
            .ok_or_else(|| oci::ConfigError::Invalid(format!("unknown signal {s:?}")))?,
    };
    rt.load(id)?.kill(sig, all)
}

pub fn delete(rt: &Runtime, id: &str, force: bool) -> oci::Result<()> {
    match rt.load(id) {
        Ok(c) => c.delete(force),
        Err(oci::Error::NotFound(_)) => {
            // A create that died half-way may have left a directory without a record.
            if oci::validate_id(id) {
                let _ = std::fs::remove_dir_all(rt.root().join(id));
            }
            if force {
                Ok(())
            } else {
                Err(oci::Error::NotFound(id.to_string()))
            }
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_as_runc_spells_them() {
        assert_eq!(parse_signal("9"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("KILL"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("sigterm"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("SIGUSR1"), Some(Signal::SIGUSR1));
        assert_eq!(parse_signal("NOPE"), None);
        assert_eq!(parse_signal("99"), None);
    }
}
