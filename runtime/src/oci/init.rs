//! The container's init process, from the moment it is forked (a clone of the runtime,
//! never re-executed) until it executes the container's program: namespaces, root file
//! system, hostname, sysctls, terminal, then a wait for `start`, then the process setup.
//!
//! Until `Ready` is sent every failure goes back to the runtime over the setup channel;
//! after it (the runtime may be gone: `rbox-runc create` exits), to the container's stderr.

use std::convert::Infallible;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use nix::sched::CloneFlags;

use super::channel::{Channel, Msg};
use super::config::{ContainerConfig, sysctl_path};
use super::process::{self, Finish};
use super::rootfs::{self, RootfsContext};
use super::seccomp::Program;
use super::state::{HookState, OCI_VERSION, Status};
use super::syscall::{Linux, Syscall};
use super::terminal;

/// A failed setup step, as one sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupError(pub String);

impl SetupError {
    pub fn new(msg: impl Into<String>) -> SetupError {
        SetupError(msg.into())
    }
}

/// Adds what was being done to a low-level error.
pub trait Ctx<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, SetupError>;
}

impl<T, E: std::fmt::Display> Ctx<T> for Result<T, E> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, SetupError> {
        self.map_err(|e| SetupError(format!("{}: {e}", what())))
    }
}

/// Where the init's stdio comes from.
pub enum InitStdio {
    /// Descriptors for 0, 1, 2 (`None`: keep the runtime's).
    Fds([Option<OwnedFd>; 3]),
    /// A new terminal, whose master goes to the runtime.
    Terminal,
}

/// Everything the init needs, prepared by the runtime before the fork.
pub struct InitArgs<'a> {
    pub id: &'a str,
    pub cfg: &'a ContainerConfig,
    pub annotations: &'a std::collections::BTreeMap<String, String>,
    /// Namespaces to join (when no first stage joined them).
    pub joins: &'a [(CloneFlags, OwnedFd)],
    pub stdio: InitStdio,
    pub preserve_fds: u32,
    /// `O_PATH` descriptor of the exec fifo to wait on for `start`; without one the
    /// program starts right after setup (`run`), and the runtime hears of its execve.
    pub fifo: Option<&'a OwnedFd>,
    pub seccomp: Option<&'a Program>,
    pub cgroup_sources: &'a [(String, PathBuf)],
    pub no_pivot: bool,
    /// Whether the runtime must run prestart/createRuntime hooks mid-setup.
    pub runtime_hooks: bool,
    /// The exec stub, when the runtime is not sealed (see `exe`).
    pub exec_stub: Option<&'a OwnedFd>,
}

/// The init's body: returns only on failure (with the exit status to use).
pub fn run(args: InitArgs<'_>, chan: Channel) -> i32 {
    let mut chan = Some(chan);
    match setup_and_exec(args, &mut chan) {
        Ok(never) => match never {},
        Err(e) => {
            match &chan {
                Some(c) => {
                    let _ = c.send(&Msg::Error(e.0.clone()));
                }
                None => {
                    let _ = writeln!(std::io::stderr(), "rbox-runc: {}", e.0);
                }
            }
            exit_code(&e.0)
        }
    }
}

/// Shell conventions for a program that could not be run (podman relies on them too).
pub fn exit_code(message: &str) -> i32 {
    if message.contains("not found") || message.contains("no such file") {
        127
    } else if message.contains("permission denied") {
        126
    } else {
        1
    }
}

fn setup_and_exec(a: InitArgs<'_>, chan: &mut Option<Channel>) -> Result<Infallible, SetupError> {
    let cfg = a.cfg;
    let sys = Linux;
    let c = chan.as_ref().expect("channel is open during setup");
    // Until it runs the container's program, this process is a copy of the runtime:
    // keep other processes (in the container, e.g. during exec) from reading its memory
    // or opening its executable through /proc.
    set_dumpable(false)?;
    // If the runtime dies during setup, so do we.
    set_parent_death_signal(libc::SIGKILL)?;
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let terminal = matches!(a.stdio, InitStdio::Terminal);
    if let InitStdio::Fds(fds) = a.stdio {
        install_stdio(fds)?;
    }
    for (flag, fd) in a.joins {
        nix::sched::setns(fd, *flag)
            .ctx(|| format!("join the {} namespace", super::config::ns_proc_name(*flag)))?;
    }
    // The runtime writes our oom score (and, through a first stage, id maps), then says go.
    match c.recv() {
        Ok(Some((Msg::Go, _))) => {}
        other => {
            return Err(SetupError::new(format!(
                "setup aborted by the runtime ({other:?})"
            )));
        }
    }
    let pid = match c.recv() {
        Ok(Some((Msg::Pid(p), _))) => p,
        other => {
            return Err(SetupError::new(format!(
                "setup aborted by the runtime ({other:?})"
            )));
        }
    };
    let hook_state = |status: Status| {
        serde_json::to_vec(&HookState {
            oci_version: OCI_VERSION,
            id: a.id,
            status,
            pid,
            bundle: &cfg.bundle,
            annotations: a.annotations,
        })
        .expect("hook state serializes")
    };
    if cfg.namespaces.new.contains(CloneFlags::CLONE_NEWUSER) {
        // We are root in our user namespace now that the maps exist.
        nix::unistd::setresgid(0.into(), 0.into(), 0.into()).ctx(|| "become gid 0".to_string())?;
        nix::unistd::setresuid(0.into(), 0.into(), 0.into()).ctx(|| "become uid 0".to_string())?;
    }
    if cfg.namespaces.new.contains(CloneFlags::CLONE_NEWCGROUP) {
        // Only now: the namespace's root is the cgroup we were just moved into.
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
            .ctx(|| "create the cgroup namespace".to_string())?;
    }
    if cfg.namespaces.new.contains(CloneFlags::CLONE_NEWNET) {
        // A new network namespace has a loopback device, down; runc and crun bring it
        // up, and programs expect 127.0.0.1 to answer.
        bring_up_loopback().ctx(|| "bring up lo in the new network namespace".to_string())?;
    }
    if let Some(h) = &cfg.hostname {
        sys.sethostname(h).ctx(|| format!("set hostname {h}"))?;
    }
    if let Some(d) = &cfg.domainname {
        sys.setdomainname(d)
            .ctx(|| format!("set domain name {d}"))?;
    }
    for (key, value) in &cfg.sysctls {
        sys.write_file(&sysctl_path(key), value)
            .ctx(|| format!("set sysctl {key}={value}"))?;
    }
    if let Some(persona) = cfg.personality {
        // SAFETY: personality(2) takes an integer.
        let rc = unsafe { libc::personality(persona) };
        nix::Error::result(rc).ctx(|| "set the personality".to_string())?;
    }
    let ctx = RootfsContext {
        cgroup_sources: a.cgroup_sources,
        user_ns: cfg.user_ns(),
    };
    rootfs::prepare(&sys, cfg, &ctx)?;
    if a.runtime_hooks {
        c.send(&Msg::RunHooks)
            .ctx(|| "ask for the runtime's hooks".to_string())?;
        match c.recv() {
            Ok(Some((Msg::HooksDone, _))) => {}
            other => {
                return Err(SetupError::new(format!(
                    "setup aborted by the runtime ({other:?})"
                )));
            }
        }
    }
    let hooks = cfg.spec.hooks().as_ref();
    if let Some(list) = hooks.and_then(|h| h.create_container().as_ref()) {
        super::hooks::run("createContainer", list, &hook_state(Status::Creating))
            .map_err(|e| SetupError::new(e.to_string()))?;
    }
    // The host's /proc, for the fifo after pivot_root (the container may have no /proc).
    let proc_fds = match a.fifo {
        Some(_) => Some(
            nix::fcntl::open(
                "/proc/self/fd",
                nix::fcntl::OFlag::O_PATH
                    | nix::fcntl::OFlag::O_DIRECTORY
                    | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .ctx(|| "open /proc/self/fd".to_string())?,
        ),
        None => None,
    };
    rootfs::enter(&sys, cfg, a.no_pivot)?;
    if terminal {
        let (master, slave) = terminal::open_pty(cfg.process.console_size)
            .ctx(|| "open a terminal in the container (is /dev/pts mounted?)".to_string())?;
        bind_console(&sys, &slave)?;
        c.send_fd(&Msg::Console, master.as_fd())
            .ctx(|| "send the terminal to the runtime".to_string())?;
        drop(master);
        terminal::become_session_leader_on(&slave).ctx(|| "take the terminal".to_string())?;
    }
    rootfs::finish(&sys, cfg)?;
    let executable = process::find_executable(&cfg.process)?;
    let env = process::with_home(&cfg.process);
    set_parent_death_signal(0)?;
    c.send(&Msg::Ready)
        .ctx(|| "report the container created".to_string())?;
    if let (Some(proc_fds), Some(fifo)) = (proc_fds, a.fifo) {
        // From here on the runtime may be gone; errors go to the container's stderr.
        drop(chan.take());
        wait_for_start(&proc_fds, fifo)?;
    }
    // Otherwise the channel stays open (close-on-exec): the runtime learns of the
    // execve from its end, or of a failure from a message.
    if let Some(list) = hooks.and_then(|h| h.start_container().as_ref()) {
        super::hooks::run("startContainer", list, &hook_state(Status::Created))
            .map_err(|e| SetupError::new(e.to_string()))?;
    }
    process::finish_and_exec(&Finish {
        process: &cfg.process,
        executable,
        env,
        seccomp: a.seccomp,
        preserve_fds: a.preserve_fds,
        skip_setgroups: false,
        exec_stub: a.exec_stub.map(|fd| fd.as_fd()),
    })
}

/// Makes `fds` the standard descriptors (0, 1, 2), whatever numbers they have now.
pub fn install_stdio(fds: [Option<OwnedFd>; 3]) -> Result<(), SetupError> {
    // Move them out of the way first: one may already sit on another's target number.
    let moved: Vec<Option<OwnedFd>> = fds
        .into_iter()
        .map(|fd| {
            fd.map(|f| {
                nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))
                    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that we now own.
                    .map(|raw| unsafe { OwnedFd::from_raw_fd(raw) })
                    .ctx(|| "duplicate a stdio descriptor".to_string())
            })
            .transpose()
        })
        .collect::<Result<_, _>>()?;
    for (target, fd) in moved.iter().enumerate() {
        if let Some(fd) = fd {
            // SAFETY: dup2(2) onto a standard descriptor of this process.
            let rc = unsafe { libc::dup2(fd.as_raw_fd(), target as i32) };
            nix::Error::result(rc).ctx(|| format!("set up descriptor {target}"))?;
        }
    }
    Ok(())
}

fn bind_console(sys: &dyn Syscall, slave: &OwnedFd) -> Result<(), SetupError> {
    let dev = std::path::Path::new("/dev");
    if !dev.is_dir() {
        return Ok(());
    }
    let console = dev.join("console");
    if std::fs::symlink_metadata(&console).is_err() {
        std::fs::File::create(&console).ctx(|| "create /dev/console".to_string())?;
    }
    let path =
        terminal::slave_path(slave.as_fd()).ctx(|| "find the terminal's path".to_string())?;
    sys.mount(
        Some(&path),
        &console,
        None,
        nix::mount::MsFlags::MS_BIND,
        None,
    )
    .ctx(|| "bind the terminal to /dev/console".to_string())
}

/// Blocks until `start` opens the exec fifo, then tells it we are going.
fn wait_for_start(proc_fds: &OwnedFd, fifo: &OwnedFd) -> Result<(), SetupError> {
    let name = fifo.as_raw_fd().to_string();
    let mut f = std::fs::File::from(
        nix::fcntl::openat(
            proc_fds,
            name.as_str(),
            nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ctx(|| "wait for start on the exec fifo".to_string())?,
    );
    f.write_all(b"0")
        .ctx(|| "signal start on the exec fifo".to_string())
}

/// Sets `lo` up in this process's network namespace (ioctls: netlink is much more code
/// for one flag).
fn bring_up_loopback() -> nix::Result<()> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: both ioctls read (and SIOCGIFFLAGS writes) the ifreq we own, for the
    // duration of the call; its flags member is the one they use.
    unsafe {
        nix::Error::result(libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req))?;
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        nix::Error::result(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req)).map(drop)
    }
}

pub fn set_dumpable(on: bool) -> Result<(), SetupError> {
    // SAFETY: prctl(2) with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, on as libc::c_ulong, 0, 0, 0) };
    nix::Error::result(rc)
        .ctx(|| "set dumpable".to_string())
        .map(drop)
}

pub fn set_parent_death_signal(sig: i32) -> Result<(), SetupError> {
    // SAFETY: prctl(2) with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
    nix::Error::result(rc)
        .ctx(|| "set the parent death signal".to_string())
        .map(drop)
}
