//! `rbox exec`: a further process in a running container, with the container's user
//! database, environment, capabilities and seccomp filter, its stdio the caller's (or a
//! new terminal in the container relayed to the caller's).

use std::fs::File;
use std::os::fd::AsFd;

use nix::unistd::Pid;
use oci_spec::runtime::Process;

use super::error::{Error, Result};
use super::pump::{ContainerIo, Local, Pump};
use super::record::Status;
use super::runtime::{oci_error, oci_runtime};
use super::{Engine, ids, oci_config, terminal, user};
use crate::oci;

#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub interactive: bool,
    pub tty: bool,
    pub detach: bool,
    pub privileged: bool,
}

/// Runs the command in container `id`; returns its exit code (0 at once with `detach`).
pub fn exec(engine: &Engine, id: &str, o: &ExecOptions) -> Result<i32> {
    let rec = engine.store.load(id)?;
    if rec.state.status != Status::Running {
        return Err(Error::NotRunning(ids::short(id).to_string()));
    }
    let container = oci_runtime(engine).load(id).map_err(oci_error)?;
    let spec = container.spec().map_err(oci_error)?;
    let base = spec
        .process()
        .clone()
        .ok_or_else(|| Error::Runtime("the container's config has no process".into()))?;
    let rootfs = engine.images()?.rootfs_path(id);
    let user_spec = o.user.clone().unwrap_or_else(|| rec.config.user.clone());
    let (u, gids) = user::resolve(&rootfs, &user_spec).map_err(Error::Other)?;

    let mut process: Process = base;
    let mut env: Vec<String> = rec.config.env.clone();
    env.extend(o.env.iter().cloned());
    process.set_env(Some(oci_config::environment(
        &env,
        &rec.config.hostname,
        o.tty,
    )));
    process.set_args(Some(o.command.clone()));
    process.set_terminal(Some(o.tty && !o.detach));
    let cwd = o
        .workdir
        .clone()
        .unwrap_or_else(|| rec.config.workdir.clone());
    process.set_cwd(if cwd.is_empty() {
        "/".into()
    } else {
        cwd.into()
    });
    let mut puser = process.user().clone();
    puser.set_uid(u.uid);
    puser.set_gid(u.gid);
    puser.set_additional_gids((!gids.is_empty()).then_some(gids));
    process.set_user(puser);
    if o.privileged || u.uid != 0 {
        let mut c = process.capabilities().clone().unwrap_or_default();
        if o.privileged {
            let all = oci_config::capability_set(&super::caps::all_available());
            c.set_bounding(Some(all.clone()));
            c.set_permitted(Some(all.clone()));
            c.set_effective(Some(all));
        } else {
            // A non-root user starts without effective capabilities, as in `run`.
            c.set_permitted(Some(Default::default()));
            c.set_effective(Some(Default::default()));
        }
        process.set_capabilities(Some(c));
    }

    let null = || {
        File::open("/dev/null")
            .map(Into::into)
            .map_err(Error::io("cannot open", "/dev/null"))
    };
    let detached_stdio = || -> Result<oci::Stdio> {
        Ok(oci::Stdio {
            stdin: Some(null()?),
            stdout: Some(null()?),
            stderr: Some(null()?),
        })
    };
    let (stdio, console) = if o.detach {
        (detached_stdio()?, None)
    } else if o.tty {
        (oci::Stdio::default(), Some(oci::Console::Return))
    } else if o.interactive {
        // The caller's own descriptors: nothing to relay.
        (oci::Stdio::default(), None)
    } else {
        (
            oci::Stdio {
                stdin: Some(null()?),
                ..Default::default()
            },
            None,
        )
    };
    let exec = container
        .exec(
            &process,
            oci::ExecOptions {
                stdio,
                console,
                ..Default::default()
            },
        )
        .map_err(oci_error)?;
    if o.detach {
        return Ok(0);
    }
    let pid = Pid::from_raw(exec.pid);
    let io = match exec.console {
        Some(master) => {
            let master = File::from(master);
            if let Some((rows, cols)) = terminal::window_size(std::io::stdout()) {
                terminal::set_window_size(&master, rows, cols);
            }
            ContainerIo::Pty {
                master: Some(master),
                input_open: o.interactive,
            }
        }
        None => ContainerIo::Pipes {
            stdin: None,
            stdout: None,
            stderr: None,
        },
    };
    let stdin = std::io::stdin();
    let relay_stdin = o.tty && o.interactive;
    let _raw = (relay_stdin && terminal::is_terminal(stdin.as_fd()))
        .then(|| terminal::RawMode::enter(stdin.as_fd()).ok())
        .flatten();
    let _ = super::pump::handled_signals().thread_block();
    let pump = Pump::new(
        pid,
        io,
        Some(Local {
            stdin: relay_stdin,
            tty: o.tty,
        }),
        None,
        None,
    )
    .map_err(|e| Error::Runtime(format!("cannot watch signals: {e}")))?;
    Ok(pump.run().exit_code)
}
