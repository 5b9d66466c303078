//! `create`: validate, make the state directory and cgroup, clone the init, let it set
//! up the container, and leave it waiting for `start`. Any failure undoes what was made.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};

use super::{Console, Container, Runtime, Stdio, hook_state_json};
use crate::oci::cgroups::{self, Cgroup, Layout};
use crate::oci::channel::Msg;
use crate::oci::config::{ConfigError, ContainerConfig, ns_proc_name, validate_id};
use crate::oci::init::{self, InitArgs, InitStdio};
use crate::oci::spawn::{self, FirstStage};
use crate::oci::state::{Record, StateDir, Status, now_rfc3339, proc_stat};
use crate::oci::{Error, Result, exe, hooks, seccomp, terminal};

/// A namespace to join: its kind and an open descriptor of it.
type Join = (CloneFlags, OwnedFd);

/// How to create a container besides its spec.
#[derive(Debug, Default)]
pub struct CreateOptions {
    /// The init's stdio when the config asks for no terminal.
    pub stdio: Stdio,
    /// Where the terminal's master goes when the config asks for one.
    pub console: Option<Console>,
    /// Pass the caller's descriptors 3 .. 3+N to the container's program.
    pub preserve_fds: u32,
    /// Enter the root with MS_MOVE + chroot instead of pivot_root (for ramdisk roots).
    pub no_pivot: bool,
    /// Start the program as soon as the container is set up, as `run` does: no exec
    /// fifo, no separate `start`; `create` returns once the program runs (its poststart
    /// hooks done), or fails if it could not be executed.
    pub start: bool,
}

/// A created container, its init waiting for `start`.
#[derive(Debug)]
pub struct Created {
    pub container: Container,
    /// The terminal's master, with [`Console::Return`].
    pub console: Option<OwnedFd>,
}

/// What a failed create must take down again.
struct Undo<'a> {
    dir: Option<&'a StateDir>,
    cgroup: Option<&'a Cgroup>,
    pid: Option<Pid>,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        if let Some(cg) = self.cgroup {
            let _ = cg.kill_all();
            let _ = cg.destroy();
        }
        if let Some(dir) = self.dir {
            let _ = dir.remove();
        }
    }
}

impl Runtime {
    /// Creates container `id` from the bundle directory (its `config.json`).
    pub fn create(&self, id: &str, bundle: &Path, opts: CreateOptions) -> Result<Created> {
        if !validate_id(id) {
            return Err(Error::InvalidId(id.to_string()));
        }
        let spec = crate::oci::config::load_spec(bundle)?;
        self.create_from_spec(id, bundle, spec, opts)
    }

    /// Creates container `id` from a spec in memory; relative paths in it (root.path,
    /// bind sources) are relative to `bundle`.
    pub fn create_from_spec(
        &self,
        id: &str,
        bundle: &Path,
        spec: Spec,
        opts: CreateOptions,
    ) -> Result<Created> {
        if !validate_id(id) {
            return Err(Error::InvalidId(id.to_string()));
        }
        check_preserved_fds(opts.preserve_fds)?;
        let bundle = std::path::absolute(bundle)
            .map_err(|e| Error::io(format!("bundle {}", bundle.display()), e))?;
        let cfg = ContainerConfig::new(spec, &bundle)?;
        if !cfg.namespaces.new.contains(CloneFlags::CLONE_NEWNS) {
            return Err(ConfigError::Invalid(
                "linux.namespaces needs a new mount namespace (add {\"type\": \"mount\"})".into(),
            )
            .into());
        }
        match (cfg.process.terminal, &opts.console) {
            (true, None) => {
                return Err(ConfigError::Invalid(
                    "process.terminal is true: give a console socket (--console-socket) for the terminal"
                        .into(),
                )
                .into());
            }
            (false, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "a console socket was given but process.terminal is false".into(),
                )
                .into());
            }
            _ => {}
        }
        let seccomp = match cfg.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(s) => Some(seccomp::compile_cached(
                s,
                &self.root.join(seccomp::CACHE_DIR),
            )?),
            None => None,
        };
        let cgroups_path = match (&cfg.cgroups_path, self.systemd_cgroup) {
            (Some(p), true) => Some(cgroups::systemd_path(p)?),
            (p, _) => p.clone(),
        };
        let cgroup = Layout::detect()?.cgroup_for(cgroups_path.as_deref(), id);
        let joins = open_namespaces(&cfg)?;
        let exec_stub = exec_stub_for(&cfg, opts.preserve_fds)?;
        let annotations: BTreeMap<String, String> = cfg
            .spec
            .annotations()
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();

        let dir = StateDir::new(&self.root, id);
        if !dir.create()? {
            return Err(Error::AlreadyExists(id.to_string()));
        }
        let mut undo = Undo {
            dir: Some(&dir),
            cgroup: None,
            pid: None,
        };
        let spec_json = serde_json::to_vec(&cfg.spec).expect("specs serialize");
        crate::oci::state::write_atomic(&dir.config_path(), &spec_json)?;
        let fifo = if opts.start {
            None
        } else {
            dir.make_fifo(root_owner(&cfg))?;
            Some(
                nix::fcntl::open(
                    &dir.fifo_path(),
                    nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(|e| Error::io("open the exec fifo", e))?,
            )
        };
        undo.cgroup = Some(&cgroup);
        cgroup.create(
            cfg.spec
                .linux()
                .as_ref()
                .and_then(|l| l.resources().as_ref()),
        )?;

        let hooks = cfg.spec.hooks().clone().unwrap_or_default();
        let runtime_hooks = hooks.prestart().as_ref().is_some_and(|h| !h.is_empty())
            || hooks
                .create_runtime()
                .as_ref()
                .is_some_and(|h| !h.is_empty());
        let cgroup_sources = cgroup.mount_sources();
        let first_stage = cfg.user_ns()
            || cfg
                .namespaces
                .join
                .iter()
                .any(|(f, _)| *f == CloneFlags::CLONE_NEWPID)
            || cfg
                .namespaces
                .has(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME));
        let time_flag = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
        // The cgroup namespace is made by the init once it is in its cgroup; the time
        // namespace by the first stage (clone(2) cannot make one).
        let flags = cfg.namespaces.new - CloneFlags::CLONE_NEWCGROUP - time_flag;
        let stdio = if cfg.process.terminal {
            InitStdio::Terminal
        } else {
            let Stdio {
                stdin,
                stdout,
                stderr,
            } = opts.stdio;
            InitStdio::Fds([stdin, stdout, stderr])
        };
        let (init_joins, stage_joins): (&[Join], &[Join]) = if first_stage {
            (&[], &joins)
        } else {
            (&joins, &[])
        };
        let args = InitArgs {
            id,
            cfg: &cfg,
            annotations: &annotations,
            joins: init_joins,
            stdio,
            preserve_fds: opts.preserve_fds,
            fifo: fifo.as_ref(),
            seccomp: seccomp.as_ref(),
            cgroup_sources: &cgroup_sources,
            no_pivot: opts.no_pivot,
            runtime_hooks,
            exec_stub: exec_stub.as_ref(),
        };
        let first = first_stage.then(|| FirstStage {
            before: Box::new(|| {
                spawn::join_all(stage_joins)?;
                if cfg.namespaces.new.contains(time_flag) {
                    nix::sched::unshare(time_flag)
                        .map_err(|e| format!("create the time namespace: {e}"))?;
                    write_time_offsets(&cfg.time_offsets)?;
                }
                Ok(())
            }),
            after: Box::new(|pid| {
                if cfg.namespaces.new.contains(CloneFlags::CLONE_NEWUSER) {
                    write_id_map(pid, "gid_map", &cfg.gid_maps)?;
                    write_id_map(pid, "uid_map", &cfg.uid_maps)?;
                }
                Ok(())
            }),
        });
        let (pid, chan) = spawn::spawn(flags, first, Some(&cgroup), |chan| init::run(args, chan))?;
        undo.pid = Some(pid);

        if let Some(adj) = cfg.process.oom_score_adj {
            std::fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string())
                .map_err(|e| Error::io(format!("set oom_score_adj {adj}"), e))?;
        }
        if let Err(e) = chan
            .send(&Msg::Go)
            .and_then(|_| chan.send(&Msg::Pid(pid.as_raw())))
        {
            // It may have died saying why (it could not enter its cgroup, say).
            return Err(match spawn::expect(&chan, pid) {
                Err(why) => why,
                Ok(_) => Error::io("start the container's setup", e),
            });
        }

        let mut record = Record {
            id: id.to_string(),
            pid: pid.as_raw(),
            pid_start: 0,
            bundle: bundle.clone(),
            rootfs: cfg.rootfs.clone(),
            created: now_rfc3339(),
            annotations,
            cgroup: cgroup.clone(),
            terminal: cfg.process.terminal,
            poststart: hooks.poststart().clone().unwrap_or_default(),
            poststop: hooks.poststop().clone().unwrap_or_default(),
        };
        let mut console = None;
        loop {
            match spawn::expect(&chan, pid)? {
                (Msg::RunHooks, _) => {
                    let state = hook_state_json(&record, Status::Creating);
                    for (kind, list) in [
                        ("prestart", hooks.prestart()),
                        ("createRuntime", hooks.create_runtime()),
                    ] {
                        hooks::run(kind, list.as_deref().unwrap_or(&[]), &state)?;
                    }
                    chan.send(&Msg::HooksDone)
                        .map_err(|e| Error::io("resume the container's setup", e))?;
                }
                (Msg::Console, Some(master)) => match &opts.console {
                    Some(Console::Socket(path)) => {
                        terminal::send_to_console_socket(path, master.as_fd()).map_err(
                            |source| Error::ConsoleSocket {
                                path: path.clone(),
                                source,
                            },
                        )?;
                    }
                    _ => console = Some(master),
                },
                (Msg::Ready, _) => break,
                (other, _) => {
                    return Err(Error::SetupDied(format!("unexpected message {other:?}")));
                }
            }
        }
        if opts.start {
            // The channel closes when the program is executed, or carries why not.
            match chan.recv() {
                Ok(None) => {}
                Ok(Some((Msg::Error(e), _))) => {
                    return Err(Error::Process(e));
                }
                other => {
                    return Err(Error::SetupDied(format!("unexpected {other:?} at start")));
                }
            }
        }
        record.pid_start = proc_stat(pid.as_raw())
            .map(|(_, start)| start)
            .ok_or_else(|| Error::SetupDied("the init exited right after setup".into()))?;
        dir.write_record(&record)?;
        if opts.start {
            // As runc: a failed poststart hook stops the container it was meant for.
            hooks::run(
                "poststart",
                &record.poststart,
                &hook_state_json(&record, Status::Running),
            )?;
        }
        undo.dir = None;
        undo.cgroup = None;
        undo.pid = None;
        Ok(Created {
            container: Container {
                dir: dir.clone(),
                record,
            },
            console,
        })
    }
}

/// The descriptors to pass on must all be open before the runtime opens any of its
/// own: a gap would let one of ours take its number and leak into the container.
pub fn check_preserved_fds(n: u32) -> Result<()> {
    for fd in 3..3 + n as i32 {
        // SAFETY: fcntl(2) F_GETFD only reads the flags of a descriptor number.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(ConfigError::Invalid(format!(
                "--preserve-fds {n}: descriptor {fd} is not open"
            ))
            .into());
        }
    }
    Ok(())
}

/// Whether the exec stub (see `exe`) is enough to protect the runtime's binary from a
/// container of `spec`, so that the runtime need not run sealed: no other process can
/// watch its setup (it has a new pid namespace of its own, and no hooks run inside it).
pub fn stub_suffices(spec: &Spec) -> bool {
    let hooks = spec.hooks().as_ref();
    let hooks_inside = hooks.is_some_and(|h| {
        h.create_container().as_ref().is_some_and(|l| !l.is_empty())
            || h.start_container().as_ref().is_some_and(|l| !l.is_empty())
    });
    let own_pid_ns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|nss| {
            nss.iter()
                .any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_none())
        });
    exe::has_exec_stub() && own_pid_ns && !hooks_inside
}

/// What protects the runtime's binary from this container: nothing more if the runtime
/// runs sealed; else the exec stub, when it suffices.
fn exec_stub_for(cfg: &ContainerConfig, preserve_fds: u32) -> Result<Option<OwnedFd>> {
    if exe::is_sealed() {
        return Ok(None);
    }
    if !stub_suffices(&cfg.spec) {
        return Err(Error::ExeNotSealed);
    }
    exe::exec_stub(3 + preserve_fds as i32)
}

/// Opens the namespaces to join, so a wrong path fails before anything is created.
fn open_namespaces(cfg: &ContainerConfig) -> Result<Vec<Join>> {
    cfg.namespaces
        .join
        .iter()
        .map(|(flag, path)| {
            let fd = nix::fcntl::open(
                path,
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| {
                Error::Config(ConfigError::Invalid(format!(
                    "cannot join the {} namespace at {}: {e}",
                    ns_proc_name(*flag),
                    path.display()
                )))
            })?;
            Ok((*flag, fd))
        })
        .collect()
}

/// The host uid and gid of the container's root, in a new user namespace.
fn root_owner(cfg: &ContainerConfig) -> Option<(u32, u32)> {
    let host = |maps: &[LinuxIdMapping]| {
        maps.iter()
            .find(|m| m.container_id() == 0)
            .map(|m| m.host_id())
    };
    if !cfg.namespaces.new.contains(CloneFlags::CLONE_NEWUSER) {
        return None;
    }
    Some((host(&cfg.uid_maps)?, host(&cfg.gid_maps)?))
}

fn write_id_map(pid: Pid, file: &str, maps: &[LinuxIdMapping]) -> std::result::Result<(), String> {
    let text: String = maps
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect();
    let path = PathBuf::from(format!("/proc/{pid}/{file}"));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("write {}: {e}", path.display()))
}

fn write_time_offsets(offsets: &[(String, i64, u32)]) -> std::result::Result<(), String> {
    if offsets.is_empty() {
        return Ok(());
    }
    let text: String = offsets
        .iter()
        .map(|(clock, s, ns)| format!("{clock} {s} {ns}\n"))
        .collect();
    std::fs::write("/proc/self/timens_offsets", text)
        .map_err(|e| format!("write the time namespace's offsets: {e}"))
}
