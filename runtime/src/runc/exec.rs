//! `exec`: a process from `--process FILE`, or from the container's own process spec
//! with the command line's changes, as runc builds it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, Process};

use super::foreground::Foreground;
use super::log::Logger;
use super::write_pid_file;
use crate::oci::{self, Console, ExecOptions, Runtime};

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// AF_UNIX socket to receive the master of the process's terminal.
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Working directory in the container.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Environment variables (NAME=VALUE), added to the container's.
    #[arg(short, long)]
    env: Vec<String>,
    /// Give the process a terminal.
    #[arg(short, long)]
    tty: bool,
    /// uid[:gid] to run as.
    #[arg(short, long)]
    user: Option<String>,
    /// Additional group ids.
    #[arg(short = 'g', long)]
    additional_gids: Vec<u32>,
    /// A process.json to run (the other process options are ignored).
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Return once the process runs.
    #[arg(short, long)]
    detach: bool,
    /// File to write the process's pid to.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// SELinux label for the process.
    #[arg(long)]
    process_label: Option<String>,
    /// AppArmor profile for the process.
    #[arg(long)]
    apparmor: Option<String>,
    /// Set no_new_privileges.
    #[arg(long)]
    no_new_privs: bool,
    /// Add a capability (to the bounding, effective and permitted sets).
    #[arg(short, long)]
    cap: Vec<String>,
    /// Pass descriptors 3 .. 3+N to the process.
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    id: String,
    /// The command and its arguments (without --process).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn invalid(msg: impl Into<String>) -> oci::Error {
    oci::ConfigError::Invalid(msg.into()).into()
}

/// The process to run: from the file, or built like runc does.
fn process_of(container: &oci::Container, a: &ExecArgs) -> oci::Result<Process> {
    if let Some(path) = &a.process {
        let text = std::fs::read(path)
            .map_err(|e| oci::Error::io(format!("read {}", path.display()), e))?;
        return Ok(oci::parse_process(&text, path)?);
    }
    if a.command.is_empty() {
        return Err(invalid("exec needs a command (or --process FILE)"));
    }
    let spec = container.spec()?;
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    let mut env = p.env().clone().unwrap_or_default();
    for e in &a.env {
        let key = e.split('=').next().unwrap_or("");
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(u) = &a.user {
        let (uid, gid) = u.split_once(':').unwrap_or((u, ""));
        let uid: u32 = uid
            .parse()
            .map_err(|_| invalid(format!("--user {u:?}: give uid[:gid] as numbers")))?;
        p.user_mut().set_uid(uid);
        if !gid.is_empty() {
            let gid: u32 = gid
                .parse()
                .map_err(|_| invalid(format!("--user {u:?}: give uid[:gid] as numbers")))?;
            p.user_mut().set_gid(gid);
        }
    }
    if !a.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(a.additional_gids.clone()));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(profile) = &a.apparmor {
        p.set_apparmor_profile(Some(profile.clone()));
    }
    if let Some(label) = &a.process_label {
        p.set_selinux_label(Some(label.clone()));
    }
    if !a.cap.is_empty() {
        let extra: Capabilities = a
            .cap
            .iter()
            .map(|c| {
                serde_json::from_value::<Capability>(serde_json::Value::String(c.clone()))
                    .map_err(|_| invalid(format!("unknown capability {c:?}")))
            })
            .collect::<oci::Result<_>>()?;
        let mut caps = p
            .capabilities()
            .clone()
            .unwrap_or_else(LinuxCapabilities::default);
        let add = |set: &Option<Capabilities>| -> Option<Capabilities> {
            Some(
                set.clone()
                    .unwrap_or_default()
                    .union(&extra)
                    .copied()
                    .collect(),
            )
        };
        caps.set_bounding(add(caps.bounding()));
        caps.set_effective(add(caps.effective()));
        caps.set_permitted(add(caps.permitted()));
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

pub fn exec(rt: &Runtime, a: ExecArgs, logger: &Logger) -> oci::Result<ExitCode> {
    let container = rt.load(&a.id)?;
    let process = process_of(&container, &a)?;
    let terminal = process.terminal().unwrap_or(false);
    let tty_here = terminal && a.console_socket.is_none();
    if tty_here && a.detach {
        return Err(invalid("a terminal with --detach needs a --console-socket"));
    }
    let fg = (!a.detach).then(Foreground::prepare).transpose()?;
    let opts = ExecOptions {
        console: match (&a.console_socket, terminal) {
            (Some(p), true) => Some(Console::Socket(p.clone())),
            (None, true) => Some(Console::Return),
            (_, false) => None,
        },
        preserve_fds: a.preserve_fds,
        ..Default::default()
    };
    let started = container.exec(&process, opts)?;
    if let Some(p) = &a.pid_file {
        write_pid_file(p, started.pid)?;
    }
    let Some(fg) = fg else {
        return Ok(ExitCode::SUCCESS);
    };
    let pid = nix::unistd::Pid::from_raw(started.pid);
    let code = fg.wait(pid, started.console, |sig| {
        if let Err(e) = nix::sys::signal::kill(pid, sig) {
            logger.debug(&format!("forwarding {sig}: {e}"));
        }
    })?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
