//! The verbs on existing containers: start, stop, kill, restart, rm, wait, prune, and
//! the reclaim of containers whose monitor died (SIGKILL, reboot), which every verb
//! runs first so that what it sees is the truth.

use std::fs::File;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::Duration;

use chrono::Utc;
use nix::fcntl::{Flock, FlockArg};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::error::{Error, Result};
use super::launch::{self, MONITOR_LOCK};
use super::options::parse_signal;
use super::record::{ContainerRecord, Status};
use super::{Engine, fsutil, ids};

/// True while a monitor owns container `id`.
pub fn monitor_alive(engine: &Engine, id: &str) -> bool {
    fsutil::is_locked(&engine.store.run_dir(id).join(MONITOR_LOCK))
}

/// The container's record, reclaimed first if its monitor died.
pub fn refresh(engine: &Engine, id: &str) -> Result<ContainerRecord> {
    let rec = engine.store.load(id)?;
    if rec.state.monitor_pid == 0 || monitor_alive(engine, id) {
        return Ok(rec);
    }
    reclaim(engine, id)
}

/// Resolves a name or id to a container whose state is the truth.
pub fn resolve_live(engine: &Engine, name_or_id: &str) -> Result<String> {
    let id = engine.store.resolve(name_or_id)?;
    refresh(engine, &id)?;
    Ok(id)
}

/// Stops what is left of a container whose monitor died and marks it exited (or
/// removes it, if it was started with `--rm`).
fn reclaim(engine: &Engine, id: &str) -> Result<ContainerRecord> {
    let rec = engine.store.update(id, |r| {
        // Another command may have reclaimed it meanwhile, or a new monitor took over.
        if r.state.monitor_pid == 0 || monitor_alive(engine, id) {
            return Ok(r.clone());
        }
        engine.log(format_args!(
            "reclaiming container {}: its monitor is gone",
            ids::short(id)
        ));
        let errors = launch::teardown(engine, id);
        if r.state.status == Status::Running {
            r.state.status = Status::Exited;
            r.state.exit_code = 128 + Signal::SIGKILL as i32;
            r.state.finished_at = Some(Utc::now());
        }
        let mut msg = vec!["the container's monitor died; rbox stopped the container".to_string()];
        msg.extend(errors.iter().map(|e| e.to_string()));
        r.state.error = msg.join("; ");
        r.state.pid = 0;
        r.state.monitor_pid = 0;
        r.state.networks.clear();
        r.state.ports.clear();
        Ok(r.clone())
    })?;
    if rec.options.auto_remove && rec.state.status == Status::Exited {
        launch::remove_container(engine, id)?;
        return Err(Error::NoSuchContainer(id.to_string()));
    }
    Ok(rec)
}

/// Every container, each reclaimed first if its monitor died (those removed by that
/// are left out).
pub fn list(engine: &Engine) -> Result<Vec<ContainerRecord>> {
    let mut out = Vec::new();
    for rec in engine.store.list()? {
        if rec.state.monitor_pid != 0 && !monitor_alive(engine, &rec.id) {
            match reclaim(engine, &rec.id) {
                Ok(r) => out.push(r),
                Err(Error::NoSuchContainer(_)) => {}
                Err(e) => return Err(e),
            }
        } else {
            out.push(rec);
        }
    }
    Ok(out)
}

/// Blocks until the monitor of `id` (if any) has finished its teardown.
pub fn wait_monitor(engine: &Engine, id: &str) {
    if let Ok(f) = File::open(engine.store.run_dir(id).join(MONITOR_LOCK)) {
        let _ = Flock::lock(f, FlockArg::LockShared);
    }
}

/// A pidfd for `pid`: becomes readable when the process exits.
fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative return is a descriptor we now own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits for a pidfd up to `timeout` (`None`: forever); true when the process exited.
fn wait_exit(pidfd: &OwnedFd, timeout: Option<Duration>) -> bool {
    let t = match timeout {
        None => PollTimeout::NONE,
        Some(d) => PollTimeout::try_from(d.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX),
    };
    loop {
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, t) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return true,
        }
    }
}

fn signal_pid(pid: i32, sig: Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
}

/// `stop`: the stop signal, up to `timeout` seconds (-1: forever) for the container to
/// exit, then SIGKILL; returns once the monitor has torn everything down.
pub fn stop(engine: &Engine, id: &str, timeout: Option<i64>, signal: Option<Signal>) -> Result<()> {
    let rec = refresh(engine, id)?;
    if rec.state.status != Status::Running {
        return Ok(());
    }
    let sig = match signal {
        Some(s) => s,
        None => parse_signal(&rec.config.stop_signal)?,
    };
    let timeout = timeout.unwrap_or(rec.config.stop_timeout);
    if let Some(pidfd) = pidfd_open(rec.state.pid) {
        signal_pid(rec.state.pid, sig);
        let limit = (timeout >= 0).then(|| Duration::from_secs(timeout as u64));
        if !wait_exit(&pidfd, limit) {
            signal_pid(rec.state.pid, Signal::SIGKILL);
            wait_exit(&pidfd, None);
        }
    }
    wait_monitor(engine, id);
    match refresh(engine, id) {
        Ok(_) | Err(Error::NoSuchContainer(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `kill`: sends a signal to the container's first process.
pub fn kill(engine: &Engine, id: &str, sig: Signal) -> Result<()> {
    let rec = refresh(engine, id)?;
    if rec.state.status != Status::Running {
        return Err(Error::NotRunning(ids::short(id).to_string()));
    }
    nix::sys::signal::kill(Pid::from_raw(rec.state.pid), sig)
        .map_err(|e| Error::Runtime(format!("cannot signal container {}: {e}", ids::short(id))))
}

/// `start`: starts a created or exited container under a detached monitor.
pub fn start(engine: &Engine, id: &str) -> Result<()> {
    let rec = refresh(engine, id)?;
    if rec.state.status == Status::Running {
        return Ok(());
    }
    launch::launch_detached(engine, id)
}

/// `rm`: removes a container; a running one only with `force` (killed first).
pub fn remove(engine: &Engine, id: &str, force: bool) -> Result<()> {
    let rec = refresh(engine, id)?;
    if rec.state.status == Status::Running || monitor_alive(engine, id) {
        if !force {
            return Err(Error::Running(ids::short(id).to_string()));
        }
        if rec.state.pid > 0 {
            signal_pid(rec.state.pid, Signal::SIGKILL);
        }
        wait_monitor(engine, id);
        match refresh(engine, id) {
            Ok(_) => {}
            // It was started with --rm: its monitor removed it.
            Err(Error::NoSuchContainer(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    launch::remove_container(engine, id)
}

/// `wait`: blocks until the container stops; returns its exit code.
pub fn wait(engine: &Engine, id: &str) -> Result<i32> {
    // The monitor tells the code (it knows it even with --rm) as soon as the container
    // exits; returning only once its teardown is done keeps `inspect` after `wait` true.
    let told = super::client::wait_exit(engine, id);
    wait_monitor(engine, id);
    match told {
        Some(code) => Ok(code),
        None => Ok(refresh(engine, id)?.state.exit_code),
    }
}

/// `container prune`: removes every container that is not running; returns their ids.
pub fn prune(engine: &Engine) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for rec in list(engine)? {
        if rec.state.status != Status::Running && !monitor_alive(engine, &rec.id) {
            launch::remove_container(engine, &rec.id)?;
            removed.push(rec.id);
        }
    }
    Ok(removed)
}
