//! The commands' side of the responder: start it when none runs, ask it to reload and
//! wait for the acknowledgement, stop it.

use std::ffi::OsString;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, FromRawFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::DnsError;
use super::control::{MAX_LINE, Paths, READY, Reply, Request, SyncReport};

/// Longest a command waits for the responder to start or to acknowledge a reload.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before asking again while a responder is on its way out.
const RETRY_PAUSE: Duration = Duration::from_millis(5);
/// The responder's log is restarted when a new responder finds it this big.
const MAX_LOG: u64 = 1 << 20;

/// How to start the responder: a program that runs [`super::serve`] with
/// [`super::load`] for this state (rbox: `rbox --root R --runroot R internal-dns serve`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponderCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

impl ResponderCommand {
    /// The rbox binary `program` serving the state under `root` and `runroot`:
    /// `PROGRAM --root ROOT --runroot RUNROOT [GLOBAL...] internal-dns serve`, where
    /// `global` are further global options (e.g. `--cgroup-parent`, `NAME`).
    pub fn rbox<I, S>(
        program: impl Into<PathBuf>,
        root: &Path,
        runroot: &Path,
        global: I,
    ) -> ResponderCommand
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut args: Vec<OsString> = vec![
            "--root".into(),
            root.into(),
            "--runroot".into(),
            runroot.into(),
        ];
        args.extend(global.into_iter().map(Into::into));
        args.extend(["internal-dns".into(), "serve".into()]);
        ResponderCommand {
            program: program.into(),
            args,
        }
    }
}

/// Makes the responder serve the current state: asks a running one to reload, or starts
/// one (which loads the state as it starts). Returns once the state is served, so call it
/// after the change is written and its lock released.
pub fn sync(runroot: &Path, command: &ResponderCommand) -> Result<SyncReport, DnsError> {
    let paths = Paths::new(runroot);
    let deadline = Instant::now() + SYNC_TIMEOUT;
    loop {
        match request(&paths, Request::Reload, deadline) {
            Ok(Reply::Done(report)) => return Ok(report),
            Ok(Reply::Failed(reason)) => return Err(DnsError::Load(reason)),
            Err(e) if absent(&e) => {}
            Err(e) if timed_out(&e) => return Err(DnsError::Timeout(paths.log)),
            Err(e) => return Err(DnsError::io("talk to the DNS responder")(e)),
        }
        if let Some(report) = start(&paths, command, deadline)? {
            return Ok(report);
        }
        // Another one runs but did not take our request: it is exiting. Ask again.
        if Instant::now() >= deadline {
            return Err(DnsError::Timeout(paths.log));
        }
        std::thread::sleep(RETRY_PAUSE);
    }
}

/// Starts the responder if none runs (for a container monitor, or any command that
/// wants DNS served without changing the state). Cheap when one runs: one lock probe.
pub fn ensure_running(runroot: &Path, command: &ResponderCommand) -> Result<(), DnsError> {
    let paths = Paths::new(runroot);
    if responder_alive(&paths) {
        return Ok(());
    }
    start(&paths, command, Instant::now() + SYNC_TIMEOUT).map(|_| ())
}

/// Whether a responder runs for this runroot.
pub fn is_running(runroot: &Path) -> bool {
    responder_alive(&Paths::new(runroot))
}

/// Blocks until the responder now serving `runroot` exits (killed, or done); returns at
/// once when none runs. A container monitor waits here to bring a killed one back.
pub fn wait_until_gone(runroot: &Path) -> io::Result<()> {
    let paths = Paths::new(runroot);
    let stream = match UnixStream::connect(&paths.socket) {
        Ok(stream) => stream,
        Err(e) if absent(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    // The peer's credentials are the listener's: the responder process itself.
    let pid =
        nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)?.pid();
    drop(stream);
    // SAFETY: pidfd_open(2) takes a pid and flags; it returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ESRCH) {
            Ok(())
        } else {
            Err(e)
        };
    }
    // SAFETY: the kernel returned this new descriptor; nothing else owns it.
    let pidfd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
    loop {
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => return Ok(()),
        }
    }
}

/// Stops the responder and waits until it is gone; false if none was running.
pub fn stop(runroot: &Path) -> Result<bool, DnsError> {
    let paths = Paths::new(runroot);
    let deadline = Instant::now() + SYNC_TIMEOUT;
    match request(&paths, Request::Stop, deadline) {
        Ok(_) => {}
        Err(e) if absent(&e) => return Ok(false),
        Err(e) => return Err(DnsError::io("talk to the DNS responder")(e)),
    }
    while responder_alive(&paths) {
        if Instant::now() >= deadline {
            return Err(DnsError::Timeout(paths.log));
        }
        std::thread::sleep(RETRY_PAUSE);
    }
    Ok(true)
}

/// One request over the control socket, and its reply.
fn request(paths: &Paths, request: Request, deadline: Instant) -> io::Result<Reply> {
    let mut stream = UnixStream::connect(&paths.socket)?;
    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(remaining))?;
    stream.set_write_timeout(Some(remaining))?;
    let mut line = serde_json::to_vec(&request).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut reply = String::new();
    BufReader::new(stream.take(MAX_LINE as u64)).read_line(&mut reply)?;
    if reply.is_empty() {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    serde_json::from_str(&reply).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Errors that mean no responder took the request (none runs, or it is exiting).
fn absent(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        NotFound | ConnectionRefused | ConnectionReset | BrokenPipe | UnexpectedEof
    )
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// True while a responder holds its lock.
fn responder_alive(paths: &Paths) -> bool {
    let Ok(file) = fs::File::open(&paths.lock) else {
        return false;
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_unlocked_on_drop) => false,
        Err((_, errno)) => errno == nix::errno::Errno::EWOULDBLOCK,
    }
}

/// Starts a responder unless one runs, and waits until it serves. `None` when another
/// one was found running.
fn start(
    paths: &Paths,
    command: &ResponderCommand,
    deadline: Instant,
) -> Result<Option<SyncReport>, DnsError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&paths.dir)
        .map_err(DnsError::io(format!("create {}", paths.dir.display())))?;
    let spawn_lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&paths.spawn_lock)
        .map_err(DnsError::io(format!("open {}", paths.spawn_lock.display())))?;
    // Held until the new responder serves: concurrent commands start one, not several.
    let _spawning = Flock::lock(spawn_lock, FlockArg::LockExclusive)
        .map_err(|(_, e)| DnsError::io(format!("lock {}", paths.spawn_lock.display()))(e.into()))?;
    if responder_alive(paths) {
        return Ok(None);
    }

    if fs::metadata(&paths.log).is_ok_and(|m| m.len() > MAX_LOG) {
        let _ = fs::remove_file(&paths.log);
    }
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&paths.log)
        .map_err(DnsError::io(format!("open {}", paths.log.display())))?;
    let mut cmd = Command::new(&command.program);
    cmd.args(&command.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .current_dir("/");
    // SAFETY: between fork and exec only setsid(2) runs, which is async-signal-safe and
    // touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(drop).map_err(io::Error::from));
    }
    let start_error = |reason: String| DnsError::Start {
        reason,
        log: paths.log.clone(),
    };
    let mut child = cmd
        .spawn()
        .map_err(|e| start_error(format!("cannot run {}: {e}", command.program.display())))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let line = read_line(stdout, deadline);
    let report = line.as_ref().ok().and_then(|line| {
        let report = line.strip_prefix(READY)?.trim();
        serde_json::from_str::<SyncReport>(report).ok()
    });
    match report {
        Some(report) => {
            // Not waited for: no reaping thread, as callers create containers, which
            // needs a single-threaded process. A short command exits soon (init reaps
            // the orphan); a container monitor reaps every child of its own.
            drop(child);
            Ok(Some(report))
        }
        None => {
            let _ = child.kill();
            let status = child.wait();
            let reason = match (line, status) {
                (Err(e), _) if timed_out(&e) => return Err(DnsError::Timeout(paths.log.clone())),
                (_, Ok(status)) => format!("it exited ({status})"),
                (_, Err(e)) => e.to_string(),
            };
            Err(start_error(reason))
        }
    }
}

/// The first line the child prints, waiting no later than `deadline`.
fn read_line(mut pipe: ChildStdout, deadline: Instant) -> io::Result<String> {
    let mut line = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let timeout = PollTimeout::try_from(remaining).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, timeout).map_err(io::Error::from)? == 0 {
            continue;
        }
        let n = pipe.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        line.extend_from_slice(&chunk[..n]);
        if let Some(end) = line.iter().position(|&b| b == b'\n') {
            return Ok(String::from_utf8_lossy(&line[..end]).into_owned());
        }
        if line.len() > MAX_LINE {
            return Err(io::ErrorKind::InvalidData.into());
        }
    }
}
