//! Creating container processes: clone(2) from the calling process (no re-exec of the
//! runtime binary), with the new namespaces in the same call, so the process is a child
//! of the caller. When namespaces must be joined before others are created (a user
//! namespace first, a pid namespace by path), a short-lived first stage joins them and
//! clones the process with CLONE_PARENT: it is still the caller's child.
//!
//! The first process cloned enters the container's cgroup itself (see `Cgroup::enter`):
//! born into the v2 cgroup by clone3(2), and moving its only thread in v1. Moving another
//! process (writing its pid) takes the kernel's global cgroup lock for writing, which
//! waits out an RCU grace period: 10 ms of every start on a small VM.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sched::CloneFlags;
use nix::unistd::Pid;

use super::Error;
use super::cgroups::Cgroup;
use super::channel::{Channel, Msg};

/// The number of threads of this process (fork copies only the calling one, so the
/// caller must be alone to fork safely).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/thread-self/..")
        .map(|d| d.count())
        .unwrap_or(1)
}

/// clone(2) with fork semantics (a copy of this process on the same stack) and `flags`.
/// Returns the child's pid in the parent, `None` in the child.
fn clone(flags: CloneFlags) -> nix::Result<Option<Pid>> {
    let flags = flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: with a null stack the child runs on a copy of our stack, like fork(2); the
    // callers are single-threaded, and the child only runs code that ends in execve or
    // _exit, never returning into the caller's frames.
    let rc = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    pid_or_child(rc)
}

fn pid_or_child(rc: libc::c_long) -> nix::Result<Option<Pid>> {
    match nix::Error::result(rc)? {
        0 => Ok(None),
        pid => Ok(Some(Pid::from_raw(pid as i32))),
    }
}

/// clone(2) as above, the child born in the cgroup v2 directory `into` when there is one
/// (clone3's CLONE_INTO_CGROUP, Linux 5.7). Also says whether it was: seccomp profiles
/// (Docker's among them) answer ENOSYS to clone3, and so do old kernels.
fn clone_into(flags: CloneFlags, into: Option<BorrowedFd>) -> nix::Result<(Option<Pid>, bool)> {
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let Some(dir) = into else {
        return Ok((clone(flags)?, false));
    };
    // SAFETY: clone_args is plain data; zero is "unused" for every field.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = flags.bits() as u64 | CLONE_INTO_CGROUP;
    args.exit_signal = libc::SIGCHLD as u64;
    args.cgroup = dir.as_raw_fd() as u64;
    // SAFETY: as for clone above (no stack given: the child runs on a copy of ours).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    match pid_or_child(rc) {
        Err(nix::Error::ENOSYS | nix::Error::E2BIG) => Ok((clone(flags)?, false)),
        other => Ok((other?, true)),
    }
}

/// Enters `cgroup` in the hierarchies the process was not born into; exits if it can't.
fn enter(cgroup: Option<&Cgroup>, born_in_v2: bool, report: impl FnOnce(String) -> i32) {
    if let Some(cg) = cgroup
        && let Err(e) = cg.enter(born_in_v2)
    {
        let code = report(e.to_string());
        // SAFETY: as in child_main.
        unsafe { libc::_exit(code) }
    }
}

/// Runs `body` as the whole life of a child process: it never returns to the caller.
fn child_main(body: impl FnOnce() -> i32) -> ! {
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(70);
    // SAFETY: _exit(2) ends this process without running the caller's destructors or
    // atexit handlers, which belong to the parent's state.
    unsafe { libc::_exit(code) }
}

/// What a first stage does: join namespaces (and whatever else must happen before the
/// process is cloned), then, once it is, its part for the new pid (e.g. write id maps).
pub struct FirstStage<'a> {
    pub before: Box<dyn FnOnce() -> Result<(), String> + 'a>,
    pub after: Box<dyn FnOnce(Pid) -> Result<(), String> + 'a>,
}

/// Creates a process running `body` with new namespaces `flags` in `cgroup`, after
/// `first` if given. Returns its pid and the runtime's end of its setup channel (on which
/// a failure to enter the cgroup is the first message).
pub fn spawn(
    flags: CloneFlags,
    first: Option<FirstStage<'_>>,
    cgroup: Option<&Cgroup>,
    body: impl FnOnce(Channel) -> i32,
) -> Result<(Pid, Channel), Error> {
    let threads = thread_count();
    if threads > 1 {
        return Err(Error::Threaded(threads));
    }
    let v2_dir = cgroup.map(Cgroup::open_v2).transpose()?.flatten();
    let into = v2_dir.as_ref().map(|fd| fd.as_fd());
    let (ours, theirs) = Channel::pair().map_err(|e| Error::io("create a setup socket", e))?;
    let Some(first) = first else {
        let (pid, born_in_v2) =
            clone_into(flags, into).map_err(|e| Error::io("clone the container process", e))?;
        return match pid {
            None => {
                drop(ours);
                enter(cgroup, born_in_v2, |e| {
                    let _ = theirs.send(&Msg::Error(e));
                    1
                });
                child_main(|| body(theirs))
            }
            Some(pid) => Ok((pid, ours)),
        };
    };
    // The first stage reports on a channel of its own: the process it clones starts
    // talking on `theirs` (a terminal's master, say) at once, possibly before the stage
    // has sent its pid.
    let (stage_ours, stage_theirs) =
        Channel::pair().map_err(|e| Error::io("create a setup socket", e))?;
    let (stage, born_in_v2) =
        clone_into(CloneFlags::empty(), into).map_err(|e| Error::io("fork the first stage", e))?;
    match stage {
        None => {
            drop(ours);
            drop(stage_ours);
            child_main(|| {
                let report = |e: String| {
                    let _ = stage_theirs.send(&Msg::Error(e));
                    1
                };
                enter(cgroup, born_in_v2, report);
                if let Err(e) = (first.before)() {
                    return report(e);
                }
                match clone(flags | CloneFlags::CLONE_PARENT) {
                    Err(e) => report(format!("clone the container process: {e}")),
                    Ok(None) => {
                        drop(stage_theirs);
                        body(theirs)
                    }
                    Ok(Some(pid)) => {
                        if let Err(e) = (first.after)(pid) {
                            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                            return report(e);
                        }
                        match stage_theirs.send(&Msg::Pid(pid.as_raw())) {
                            Ok(()) => 0,
                            Err(_) => 1,
                        }
                    }
                }
            })
        }
        Some(stage) => {
            drop(theirs);
            drop(stage_theirs);
            let msg = stage_ours.recv();
            let _ = nix::sys::wait::waitpid(stage, None);
            match msg {
                Ok(Some((Msg::Pid(p), _))) => Ok((Pid::from_raw(p), ours)),
                Ok(Some((Msg::Error(e), _))) => Err(Error::Process(e)),
                Ok(other) => Err(Error::SetupDied(format!("first stage said {other:?}"))),
                Err(e) => Err(Error::io("read from the first stage", e)),
            }
        }
    }
}

/// Joins namespaces, in order (user first, mount last), in the calling process.
pub fn join_all(joins: &[(CloneFlags, OwnedFd)]) -> Result<(), String> {
    for (flag, fd) in joins {
        nix::sched::setns(fd, *flag).map_err(|e| {
            format!(
                "join the {} namespace: {e}",
                super::config::ns_proc_name(*flag)
            )
        })?;
    }
    Ok(())
}

/// Waits for a setup message, reaping `pid` and reporting why if the process died.
pub fn expect(chan: &Channel, pid: Pid) -> Result<(Msg, Option<OwnedFd>), Error> {
    match chan.recv() {
        Ok(Some((Msg::Error(e), _))) => {
            let _ = nix::sys::wait::waitpid(pid, None);
            Err(Error::Process(e))
        }
        Ok(Some(m)) => Ok(m),
        Ok(None) => {
            let status = nix::sys::wait::waitpid(pid, None)
                .map(|s| format!("{s:?}"))
                .unwrap_or_else(|e| e.to_string());
            Err(Error::SetupDied(status))
        }
        Err(e) => Err(Error::io("read from the container process", e)),
    }
}
