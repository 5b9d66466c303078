//! Starting a container and supervising it: the monitor's life.
//!
//! [`launch`] runs the steps of a start (rootfs, network, bundle, create, start) and
//! undoes them all if one fails; [`supervise`] pumps the container's I/O until it exits
//! and then tears everything down. Foreground `rbox run` calls both itself (it IS the
//! monitor, the container its child); [`launch_detached`] forks a monitor that does.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

use chrono::Utc;
use nix::fcntl::{Flock, FlockArg};
use nix::unistd::{ForkResult, Pid};

use super::error::{Error, Result};
use super::logfile;
use super::oci_config::{self, StartContext};
use super::pump::{self, ContainerIo, Local, Pump};
use super::record::{ContainerRecord, Status};
use super::runtime::{self, Stdio};
use super::{Engine, network, ports, user};

pub const MONITOR_LOCK: &str = "monitor.lock";
pub const ATTACH_SOCKET: &str = "attach.sock";

/// Where `--init` finds the static tini to bind-mount (Debian's `tini` package).
const INIT_BINARIES: &[&str] = &[
    "/usr/bin/tini-static",
    "/usr/local/bin/tini-static",
    "/usr/bin/docker-init",
];

/// A started container, as its monitor holds it.
pub struct Launched {
    pub pid: Pid,
    pub io: ContainerIo,
    pub listener: UnixListener,
    /// Held until the monitor is done: its release tells every rbox command so.
    pub lock: Flock<File>,
    pub log: logfile::Writer,
}

fn cgroup_v2() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

fn init_binary() -> Result<std::path::PathBuf> {
    INIT_BINARIES
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| {
            Error::Other(
                "--init needs a static tini: install Debian's tini package (/usr/bin/tini-static)"
                    .into(),
            )
        })
}

/// Starts container `id`: takes the monitor lock, sets everything up, creates and
/// starts the process (our child). On failure everything set up is undone and the
/// record keeps the error. `window` is the terminal size to give a `-t` container.
pub fn launch(engine: &Engine, id: &str, window: Option<(u16, u16)>) -> Result<Launched> {
    let run_dir = engine.store.run_dir(id);
    std::fs::create_dir_all(&run_dir).map_err(Error::io("cannot create", &run_dir))?;
    let lock_path = run_dir.join(MONITOR_LOCK);
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(Error::io("cannot open", &lock_path))?;
    let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock)
        .map_err(|_| Error::AlreadyRunning(super::ids::short(id).to_string()))?;
    let me = std::process::id() as i32;
    let rec = engine.store.update(id, |r| {
        if r.state.status == Status::Running {
            return Err(Error::AlreadyRunning(super::ids::short(id).to_string()));
        }
        r.state.monitor_pid = me;
        r.state.error.clear();
        Ok(r.clone())
    })?;
    match start_steps(engine, &rec, window) {
        Ok((pid, io, listener, log, attachments)) => {
            engine.store.update(id, |r| {
                r.state.status = Status::Running;
                r.state.pid = pid.as_raw();
                r.state.exit_code = 0;
                r.state.oom_killed = false;
                r.state.started_at = Some(Utc::now());
                r.state.finished_at = None;
                r.state.networks = attachments;
                Ok(())
            })?;
            engine.timing("running");
            Ok(Launched {
                pid,
                io,
                listener,
                lock,
                log,
            })
        }
        Err(err) => {
            teardown(engine, id);
            let message = err.to_string();
            let code = err.exit_code();
            let _ = engine.store.update(id, |r| {
                r.state.monitor_pid = 0;
                r.state.error = message;
                if code != 125 {
                    r.state.exit_code = code as i32;
                }
                Ok(())
            });
            Err(err)
        }
    }
}

type Started = (
    Pid,
    ContainerIo,
    UnixListener,
    logfile::Writer,
    std::collections::BTreeMap<String, super::record::Attachment>,
);

fn start_steps(
    engine: &Engine,
    rec: &super::record::ContainerRecord,
    window: Option<(u16, u16)>,
) -> Result<Started> {
    let id = rec.id.as_str();
    let run_dir = engine.store.run_dir(id);
    let o = &rec.options;
    let init = if o.init { Some(init_binary()?) } else { None };

    let images = engine.images()?;
    // The root filesystem is mounted on a second thread while the network is set up:
    // the two share nothing, and both mostly wait for the kernel. A failure of either
    // leaves the other for the caller's teardown.
    let (rootfs, net, log) = std::thread::scope(|s| {
        let rootfs = s.spawn(|| {
            if o.auto_remove {
                images.mount_rootfs_volatile(&rec.image.id, id)
            } else {
                images.mount_rootfs(&rec.image.id, id)
            }
        });
        // hosts, hostname and resolv.conf live in the run dir (tmpfs, as podman's):
        // remade at every start, they need no disk.
        let net = network::setup(engine, rec, &run_dir);
        engine.timing("network");
        // The log, the start's other new file on disk, while the rootfs mounts.
        let log_path = engine.store.log_path(id);
        let log = logfile::Writer::open(&log_path).map_err(Error::io("cannot open", &log_path));
        let rootfs = match rootfs.join() {
            Ok(mounted) => mounted.map_err(|e| Error::Image(e.to_string())),
            Err(_) => Err(Error::Other("the rootfs mount panicked".into())),
        };
        engine.timing("rootfs");
        (rootfs, net, log)
    });
    let (rootfs, net, log) = (rootfs?, net?, log?);
    ports::setup(engine, rec, &net.attachments)?;
    engine.timing("ports");
    let (user, additional_gids) =
        user::resolve(&rootfs.path, &rec.config.user).map_err(Error::Other)?;
    let spec = oci_config::build(
        rec,
        &StartContext {
            rootfs: &rootfs.path,
            netns: net.netns,
            user,
            additional_gids,
            etc_dir: &run_dir,
            init_binary: init.as_deref(),
            cgroup_v2: cgroup_v2(),
        },
    )
    .map_err(Error::Other)?;
    let config_path = run_dir.join("config.json");
    let json = serde_json::to_vec(&spec).expect("an OCI config always serialises");
    super::fsutil::write_atomic(&config_path, &json)?;
    engine.timing("bundle");

    let sock = run_dir.join(ATTACH_SOCKET);
    let _ = std::fs::remove_file(&sock);
    let listener = super::fsutil::with_short_path(&sock, |p| UnixListener::bind(p))
        .map_err(Error::io("cannot listen on", &sock))?;

    let (stdio, mut io) = if o.tty {
        (
            Stdio::Terminal,
            ContainerIo::Pty {
                master: None,
                input_open: o.interactive,
            },
        )
    } else {
        let (out_r, out_w) = pump::pipe().map_err(Error::io("cannot make a pipe for", &run_dir))?;
        let (err_r, err_w) = pump::pipe().map_err(Error::io("cannot make a pipe for", &run_dir))?;
        let (stdin_fd, stdin_keep): (OwnedFd, Option<File>) = if o.interactive {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| Error::io("cannot make a pipe for", &run_dir)(e.into()))?;
            (r, Some(File::from(w)))
        } else {
            let null = File::open("/dev/null").map_err(Error::io("cannot open", "/dev/null"))?;
            (null.into(), None)
        };
        (
            Stdio::Pipes {
                stdin: stdin_fd,
                stdout: out_w,
                stderr: err_w,
            },
            ContainerIo::Pipes {
                stdin: stdin_keep,
                stdout: Some(out_r),
                stderr: Some(err_r),
            },
        )
    };
    let created = runtime::create(engine, id, &run_dir, &spec, stdio)?;
    engine.timing("create");
    if let (ContainerIo::Pty { master, .. }, Some(pty)) = (&mut io, created.pty_master) {
        let pty = File::from(pty);
        if let Some((rows, cols)) = window {
            super::terminal::set_window_size(&pty, rows, cols);
        }
        *master = Some(pty);
    }
    runtime::start(engine, id)?;
    engine.timing("start");
    Ok((created.pid, io, listener, log, net.attachments))
}

/// Undoes a start, whatever part of it happened: the container's processes and OCI
/// state, its network, its rootfs mount, its socket. Keeps going after failures and
/// returns them.
pub fn teardown(engine: &Engine, id: &str) -> Vec<Error> {
    teardown_with(engine, id, false, |_| ()).0
}

/// [`teardown`]. With `init_reaped` (its pid namespace, and every process in it, died
/// with the init), the rootfs is done in a second thread from the start, while the
/// runtime deletes the container and the network comes down, and a `--rm` container's
/// goes with its changes; otherwise it is unmounted once the runtime deleted the
/// container. `before_delete` gets the record while the container's cgroup still exists
/// (to read its OOM count, say); what it returns comes back with the errors.
fn teardown_with<T>(
    engine: &Engine,
    id: &str,
    init_reaped: bool,
    before_delete: impl FnOnce(Option<&ContainerRecord>) -> T,
) -> (Vec<Error>, T) {
    let mut errors = Vec::new();
    let images = engine.images().map_err(|e| errors.push(e)).ok();
    let (rootfs, probed) = std::thread::scope(|s| {
        let spawn = |discard: bool| {
            images.map(|images| {
                s.spawn(move || {
                    if discard {
                        images.remove_rootfs(id)
                    } else {
                        images.unmount_rootfs(id)
                    }
                })
            })
        };
        let rec = engine.store.load(id).ok();
        let discard = init_reaped && rec.as_ref().is_some_and(|r| r.options.auto_remove);
        let early = if init_reaped { spawn(discard) } else { None };
        let probed = before_delete(rec.as_ref());
        if let Err(e) = runtime::delete(engine, id) {
            errors.push(e);
        }
        engine.timing("  oci delete");
        let rootfs = if init_reaped { early } else { spawn(false) };
        if let Err(e) = ports::teardown(engine, id) {
            errors.push(e);
        }
        if let Err(e) = network::teardown(engine, id) {
            errors.push(e);
        }
        engine.timing("  network down");
        (rootfs.map(|t| t.join()), probed)
    });
    match rootfs {
        Some(Ok(Err(e))) => errors.push(Error::Image(e.to_string())),
        Some(Err(_)) => errors.push(Error::Other("the rootfs teardown panicked".into())),
        _ => {}
    }
    engine.timing("  rootfs");
    let run_dir = engine.store.run_dir(id);
    for f in [ATTACH_SOCKET, "config.json"] {
        let _ = std::fs::remove_file(run_dir.join(f));
    }
    (errors, probed)
}

/// Removes a stopped container for good: its rootfs (with its changes) and its record.
pub fn remove_container(engine: &Engine, id: &str) -> Result<()> {
    engine
        .images()?
        .remove_rootfs(id)
        .map_err(|e| Error::Image(e.to_string()))?;
    engine.store.remove(id)
}

/// The monitor's part after the start: pumps I/O until the container exits, then tears
/// down, records the exit (or removes the container with `--rm`). Returns the exit code.
pub fn supervise(engine: &Engine, id: &str, launched: Launched, local: Option<Local>) -> i32 {
    let Launched {
        pid,
        io,
        listener,
        lock,
        log,
    } = launched;
    // Signals arrive through the pump's signalfd from now on (threads started from
    // here on inherit the mask).
    let _ = pump::handled_signals().thread_block();
    if engine
        .store
        .load(id)
        .is_ok_and(|r| !r.state.networks.is_empty())
    {
        network::watch_dns(engine);
    }
    let finished = match Pump::new(pid, io, local, Some(listener), Some(log)) {
        Ok(p) => p.run(),
        Err(e) => {
            // Without a signalfd the pump cannot run: wait for the exit plainly.
            eprintln!("rbox: monitor cannot watch signals ({e}); waiting for the container");
            let status = nix::sys::wait::waitpid(pid, None);
            pump::Finished {
                exit_code: status.ok().and_then(pump::exit_code).unwrap_or(255),
                clients: Vec::new(),
            }
        }
    };
    engine.timing("exited");
    let code = finished.exit_code;
    let (errors, (auto_remove, oom)) = teardown_with(engine, id, true, |rec| {
        rec.map_or((false, false), |r| {
            (
                r.options.auto_remove,
                runtime::oom_killed(&r.cgroup_parent, id),
            )
        })
    });
    // With --rm the rootfs is gone already, unless removing it failed.
    let rootfs_gone = auto_remove && errors.is_empty();
    engine.timing("teardown");
    let removed = if rootfs_gone {
        // Nothing to record for a container about to go.
        Some(engine.store.remove(id))
    } else {
        let message: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let rec = engine.store.update(id, |r| {
            r.state.status = Status::Exited;
            r.state.exit_code = code;
            r.state.finished_at = Some(Utc::now());
            r.state.oom_killed = oom;
            r.state.pid = 0;
            r.state.monitor_pid = 0;
            r.state.networks.clear();
            r.state.ports.clear();
            r.state.error = message.join("; ");
            Ok(r.clone())
        });
        rec.ok()
            .filter(|r| r.options.auto_remove)
            .map(|_| remove_container(engine, id))
    };
    if let Some(Err(e)) = removed {
        eprintln!(
            "rbox: cannot remove container {}: {e}",
            super::ids::short(id)
        );
    }
    engine.timing("recorded");
    drop(finished.clients);
    drop(lock);
    code
}

/// Starts container `id` under a detached monitor (double fork + setsid, stdio on
/// /dev/null) and returns once the container runs, or with the error that stopped it.
pub fn launch_detached(engine: &Engine, id: &str) -> Result<()> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::Runtime(format!("cannot make a pipe: {e}")))?;
    // SAFETY: rbox is single-threaded here (image pulls run on a runtime that is gone by
    // now), so the child may go on running Rust code.
    match unsafe { nix::unistd::fork() }
        .map_err(|e| Error::Runtime(format!("cannot fork the monitor: {e}")))?
    {
        ForkResult::Parent { child } => {
            drop(w);
            let _ = nix::sys::wait::waitpid(child, None);
            let mut report = Vec::new();
            let _ = File::from(r).read_to_end(&mut report);
            match report.split_first() {
                Some((0, _)) => Ok(()),
                Some((&code, msg)) => {
                    let message = String::from_utf8_lossy(msg).into_owned();
                    Err(if code == 125 {
                        Error::Runtime(message)
                    } else {
                        Error::Exec {
                            message,
                            exit_code: code,
                        }
                    })
                }
                None => Err(Error::Runtime(
                    "the container's monitor died while starting it".into(),
                )),
            }
        }
        ForkResult::Child => {
            drop(r);
            let _ = nix::unistd::setsid();
            // SAFETY: as above; the intermediate child only forks again and exits.
            match unsafe { nix::unistd::fork() } {
                Ok(ForkResult::Child) => monitor_process(engine, id, w),
                // SAFETY: _exit ends the intermediate child without running atexit
                // handlers or destructors that belong to the parent.
                _ => unsafe { libc::_exit(0) },
            }
        }
    }
}

/// The detached monitor: reports the start through `report`, then supervises.
fn monitor_process(engine: &Engine, id: &str, report: OwnedFd) -> ! {
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        let keep_stderr = engine.debug;
        for fd in [0, 1, 2] {
            if fd == 2 && keep_stderr {
                continue;
            }
            // SAFETY: dup2 onto the standard descriptors of this process, which owns them.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let _ = std::env::set_current_dir("/");
    set_subreaper();
    let mut report = File::from(report);
    match launch(engine, id, None) {
        Ok(launched) => {
            let _ = report.write_all(&[0]);
            drop(report);
            supervise(engine, id, launched, None);
            std::process::exit(0)
        }
        Err(e) => {
            let mut msg = vec![e.exit_code()];
            msg.extend_from_slice(e.to_string().as_bytes());
            let _ = report.write_all(&msg);
            std::process::exit(1)
        }
    }
}

/// Makes this process the reaper of orphaned descendants, so the container's process
/// is waited for here whatever the OCI level's forking does.
pub fn set_subreaper() {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag, no pointers.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}
