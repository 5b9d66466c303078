//! `exec`: a further process in a running container, a child of the caller: it joins
//! all of the container's namespaces and its cgroup, gets its own capabilities, limits
//! and the container's seccomp filter, and a terminal or the given stdio.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use nix::sched::CloneFlags;
use oci_spec::runtime::Process;

use super::{Console, Container, Stdio, pidfd_open};
use crate::oci::channel::{Channel, Msg};
use crate::oci::config::{ConfigError, ProcessConfig, ns_proc_name};
use crate::oci::init::{InitStdio, install_stdio, set_dumpable};
use crate::oci::process::{self, Finish};
use crate::oci::spawn::{self, FirstStage};
use crate::oci::state::{Status, alive};
use crate::oci::{Error, Result, exe, seccomp, terminal};

/// How to run an exec'd process besides its spec.
#[derive(Debug, Default)]
pub struct ExecOptions {
    pub stdio: Stdio,
    pub console: Option<Console>,
    pub preserve_fds: u32,
}

/// A process started in a container.
#[derive(Debug)]
pub struct ExecProcess {
    /// Its pid, a child of the caller.
    pub pid: i32,
    /// The terminal's master, with [`Console::Return`].
    pub console: Option<OwnedFd>,
}

/// Namespaces in the order setns(2) must take them (see [`crate::oci::config`]).
const NAMESPACES: [CloneFlags; 7] = [
    CloneFlags::CLONE_NEWUSER,
    CloneFlags::CLONE_NEWNET,
    CloneFlags::CLONE_NEWIPC,
    CloneFlags::CLONE_NEWUTS,
    CloneFlags::CLONE_NEWCGROUP,
    CloneFlags::CLONE_NEWPID,
    CloneFlags::CLONE_NEWNS,
];

impl Container {
    /// Runs `process` in the container. It must be created or running.
    pub fn exec(&self, process: &Process, opts: ExecOptions) -> Result<ExecProcess> {
        super::create::check_preserved_fds(opts.preserve_fds)?;
        if !exe::is_sealed() {
            return Err(Error::ExeNotSealed);
        }
        let status = self.status();
        if !matches!(status, Status::Running | Status::Created) {
            return Err(self.wrong_status("exec in", status, ""));
        }
        let pcfg = ProcessConfig::new(process)?;
        match (pcfg.terminal, &opts.console) {
            (true, None) => {
                return Err(ConfigError::Invalid(
                    "the process asks for a terminal: give a console socket (--console-socket) or use -t in the foreground".into(),
                )
                .into());
            }
            (false, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "a console socket was given but the process has no terminal".into(),
                )
                .into());
            }
            _ => {}
        }
        let spec = self.spec()?;
        let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(s) => Some(seccomp::compile_cached(
                s,
                &self.dir.state_root().join(seccomp::CACHE_DIR),
            )?),
            None => None,
        };
        let pid = self.record.pid;
        // Hold the init by pidfd, then check it is still ours: the namespaces we join
        // are those of this very process.
        let pidfd = pidfd_open(pid).map_err(|e| Error::io("open the init process", e))?;
        if !alive(pid, self.record.pid_start) {
            return Err(self.wrong_status("exec in", Status::Stopped, ""));
        }
        let mut flags = CloneFlags::empty();
        for ns in NAMESPACES
            .iter()
            .copied()
            .chain([CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)])
        {
            let name = ns_proc_name(ns);
            let theirs = std::fs::metadata(format!("/proc/{pid}/ns/{name}")).map(|m| m.ino());
            let ours = std::fs::metadata(format!("/proc/self/ns/{name}")).map(|m| m.ino());
            if let (Ok(t), Ok(o)) = (theirs, ours)
                && t != o
            {
                flags |= ns;
            }
        }
        let skip_setgroups = std::fs::read_to_string(format!("/proc/{pid}/setgroups"))
            .map(|s| s.trim() == "deny")
            .unwrap_or(false);
        let oom = pcfg
            .oom_score_adj
            .or(spec.process().as_ref().and_then(|p| p.oom_score_adj()));
        let cgroup = &self.record.cgroup;
        let first = FirstStage {
            before: Box::new(|| {
                set_dumpable(false).map_err(|e| e.0)?;
                if let Some(adj) = oom {
                    std::fs::write("/proc/self/oom_score_adj", adj.to_string())
                        .map_err(|e| format!("set oom_score_adj {adj}: {e}"))?;
                }
                // One call joins them all, in the order the kernel needs.
                nix::sched::setns(&pidfd, flags)
                    .map_err(|e| format!("join the container's namespaces: {e}"))
            }),
            after: Box::new(|_| Ok(())),
        };
        let stdio = if pcfg.terminal {
            InitStdio::Terminal
        } else {
            let Stdio {
                stdin,
                stdout,
                stderr,
            } = opts.stdio;
            InitStdio::Fds([stdin, stdout, stderr])
        };
        let preserve_fds = opts.preserve_fds;
        let body = |chan: Channel| {
            let run = || -> std::result::Result<std::convert::Infallible, String> {
                match stdio {
                    InitStdio::Terminal => {
                        let (master, slave) = terminal::open_pty(pcfg.console_size)
                            .map_err(|e| format!("open a terminal in the container: {e}"))?;
                        chan.send_fd(&Msg::Console, master.as_fd())
                            .map_err(|e| format!("send the terminal: {e}"))?;
                        drop(master);
                        terminal::become_session_leader_on(&slave)
                            .map_err(|e| format!("take the terminal: {e}"))?;
                    }
                    InitStdio::Fds(fds) => install_stdio(fds).map_err(|e| e.0)?,
                }
                let executable = process::find_executable(&pcfg).map_err(|e| e.0)?;
                process::finish_and_exec(&Finish {
                    process: &pcfg,
                    executable,
                    env: process::with_home(&pcfg),
                    seccomp: seccomp.as_ref(),
                    preserve_fds,
                    skip_setgroups,
                    exec_stub: None,
                })
                .map_err(|e| e.0)
            };
            match run() {
                Ok(never) => match never {},
                Err(e) => {
                    let code = crate::oci::init::exit_code(&e);
                    let _ = chan.send(&Msg::Error(e));
                    code
                }
            }
        };
        let (child, chan) = spawn::spawn(CloneFlags::empty(), Some(first), Some(cgroup), body)?;
        let mut console = None;
        // The setup channel closes on exec: end of stream means the program runs.
        loop {
            match chan.recv() {
                Ok(None) => break,
                Ok(Some((Msg::Console, Some(master)))) => match &opts.console {
                    Some(Console::Socket(path)) => {
                        terminal::send_to_console_socket(path, master.as_fd()).map_err(
                            |source| {
                                let _ = nix::sys::signal::kill(
                                    child,
                                    nix::sys::signal::Signal::SIGKILL,
                                );
                                let _ = nix::sys::wait::waitpid(child, None);
                                Error::ConsoleSocket {
                                    path: path.clone(),
                                    source,
                                }
                            },
                        )?;
                    }
                    _ => console = Some(master),
                },
                Ok(Some((Msg::Error(e), _))) => {
                    let _ = nix::sys::wait::waitpid(child, None);
                    return Err(Error::Process(e));
                }
                Ok(Some((other, _))) => {
                    return Err(Error::SetupDied(format!(
                        "unexpected message {other:?} from the {} process",
                        ns_proc_name(CloneFlags::CLONE_NEWPID)
                    )));
                }
                Err(e) => return Err(Error::io("read from the exec'd process", e)),
            }
        }
        Ok(ExecProcess {
            pid: child.as_raw(),
            console,
        })
    }
}
