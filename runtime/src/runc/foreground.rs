//! `run` and `exec` without `--detach`: wait for the process, forward the signals we
//! get to it, and with a terminal relay between our stdio and the pty master (our
//! terminal in raw mode, window size changes passed on).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::oci;

const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGCONT,
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
];

/// Signals blocked and read from a signalfd; made before the process is spawned so that
/// none (its exit included) can be missed.
pub struct Foreground {
    signals: SignalFd,
}

impl Foreground {
    pub fn prepare() -> oci::Result<Foreground> {
        let mut set = SigSet::empty();
        for s in FORWARDED {
            set.add(*s);
        }
        set.add(Signal::SIGCHLD);
        set.add(Signal::SIGWINCH);
        set.thread_block()
            .map_err(|e| oci::Error::io("block signals", e))?;
        let signals = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|e| oci::Error::io("create a signalfd", e))?;
        Ok(Foreground { signals })
    }

    /// Waits for `pid` (our child) to exit; returns its exit code (128 + signal if killed).
    pub fn wait(
        self,
        pid: Pid,
        console: Option<OwnedFd>,
        forward: impl Fn(Signal),
    ) -> oci::Result<i32> {
        let stdin = std::io::stdin();
        let raw = console.as_ref().and_then(|_| RawMode::enter(stdin.as_fd()));
        if let (Some(master), Some(_)) = (&console, &raw)
            && let Some((rows, cols)) = oci::terminal_size(stdin.as_fd())
        {
            let _ = oci::set_terminal_size(master.as_fd(), rows, cols);
        }
        let mut stdin_open = console.is_some();
        let mut master_open = console.is_some();
        let code = loop {
            let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
            let master = console.as_ref().map(|m| m.as_fd());
            if let (Some(m), true) = (master, master_open) {
                fds.push(PollFd::new(m, PollFlags::POLLIN));
            }
            if let (Some(_), true) = (master, stdin_open) {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(oci::Error::io("wait for the container", e)),
                Ok(_) => {}
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            let mut idx = 1;
            if let (Some(m), true) = (master, master_open) {
                if ready[idx] && !copy(m, std::io::stdout().as_fd()) {
                    master_open = false;
                }
                idx += 1;
            }
            if let (Some(m), true) = (master, stdin_open)
                && ready[idx]
                && !copy(stdin.as_fd(), m)
            {
                stdin_open = false;
            }
            if !ready[0] {
                continue;
            }
            let mut exited = None;
            while let Ok(Some(info)) = self.signals.read_signal() {
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                    continue;
                };
                match sig {
                    Signal::SIGCHLD => {
                        if let Some(code) = reap(pid) {
                            exited = Some(code);
                        }
                    }
                    Signal::SIGWINCH => {
                        if let (Some(m), Some((rows, cols))) =
                            (master, oci::terminal_size(stdin.as_fd()))
                        {
                            let _ = oci::set_terminal_size(m, rows, cols);
                        }
                    }
                    other => forward(other),
                }
            }
            if let Some(code) = exited {
                break code;
            }
        };
        // What the process wrote just before exiting is still in the pty.
        if let (Some(m), true) = (console.as_ref(), master_open) {
            let _ = nix::fcntl::fcntl(
                m,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            );
            while copy(m.as_fd(), std::io::stdout().as_fd()) {}
        }
        drop(raw);
        Ok(code)
    }
}

/// Reaps our exited children; the exit code of `pid` if it was one of them.
fn reap(pid: Pid) -> Option<i32> {
    let mut found = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p == pid => found = Some(code),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => found = Some(128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return found,
            Ok(_) => {}
        }
    }
}

/// Copies what is available from `from` to `to`; false at end of input or on error.
fn copy(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 8192];
    match nix::unistd::read(from, &mut buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                match nix::unistd::write(to, rest) {
                    Ok(w) => rest = &rest[w..],
                    Err(nix::Error::EINTR) | Err(nix::Error::EAGAIN) => continue,
                    Err(_) => return false,
                }
            }
            true
        }
    }
}

/// Our terminal in raw mode while attached, restored on drop.
struct RawMode {
    fd: i32,
    saved: termios::Termios,
}

impl RawMode {
    fn enter(fd: BorrowedFd<'_>) -> Option<RawMode> {
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, termios::SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode {
            fd: fd.as_raw_fd(),
            saved,
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: the descriptor is our stdin, open for the whole life of the process.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = termios::tcsetattr(fd, termios::SetArg::TCSANOW, &self.saved);
    }
}
