//! The client side of the monitor's attach socket: `attach`, `start -a` and `wait`.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use super::attach::{self, Kind};
use super::error::{Error, Result};
use super::launch::ATTACH_SOCKET;
use super::pump::handled_signals;
use super::{Engine, ids, lifecycle, terminal};

fn connect(engine: &Engine, id: &str) -> Option<UnixStream> {
    super::fsutil::with_short_path(&engine.store.run_dir(id).join(ATTACH_SOCKET), |p| {
        UnixStream::connect(p)
    })
    .ok()
}

/// Waits for the container's exit through its monitor; `None` if no monitor answers.
pub fn wait_exit(engine: &Engine, id: &str) -> Option<i32> {
    let mut s = connect(engine, id)?;
    s.write_all(&attach::encode(Kind::Hello, &[0])).ok()?;
    let mut d = attach::Decoder::default();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        d.push(&buf[..n]);
        while let Some((kind, p)) = d.next_frame().ok()? {
            if kind == Kind::Exit {
                return attach::exit_code(&p);
            }
        }
    }
}

/// Attaches the user's stdio to a running container until it exits; returns its exit
/// code. With `stdin`, the user's input goes to the container (which must have been
/// started with `-i`); with a terminal on both sides, ours is put in raw mode.
pub fn attach(engine: &Engine, id: &str, stdin: bool) -> Result<i32> {
    let rec = lifecycle::refresh(engine, id)?;
    let mut sock =
        connect(engine, id).ok_or_else(|| Error::NotRunning(ids::short(id).to_string()))?;
    let stdin = stdin && rec.options.interactive;
    let tty = rec.options.tty;
    let flags = attach::WANT_OUTPUT | if stdin { attach::WANT_STDIN } else { 0 };
    sock.write_all(&attach::encode(Kind::Hello, &[flags]))
        .map_err(|e| Error::Runtime(format!("cannot attach: {e}")))?;
    let stdin0 = std::io::stdin();
    let _raw = (tty && stdin && terminal::is_terminal(stdin0.as_fd()))
        .then(|| terminal::RawMode::enter(stdin0.as_fd()).ok())
        .flatten();
    let send_size = |sock: &mut UnixStream| {
        if let Some((rows, cols)) = terminal::window_size(std::io::stdout()) {
            let _ = sock.write_all(&attach::resize(rows, cols));
        }
    };
    if tty {
        send_size(&mut sock);
    }
    let _ = handled_signals().thread_block();
    let signals = SignalFd::with_flags(
        &handled_signals(),
        SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
    )
    .map_err(|e| Error::Runtime(format!("cannot watch signals: {e}")))?;
    let mut decoder = attach::Decoder::default();
    let mut stdin_open = stdin;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let (sock_ready, stdin_ready, sig_ready) = {
            let mut fds = vec![
                PollFd::new(sock.as_fd(), PollFlags::POLLIN),
                PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            ];
            if stdin_open {
                fds.push(PollFd::new(stdin0.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(Error::Runtime(format!("attach: poll failed: {e}"))),
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (
                ready(&fds[0]),
                fds.get(2).is_some_and(ready),
                ready(&fds[1]),
            )
        };
        if sig_ready {
            while let Ok(Some(info)) = signals.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGWINCH) => send_size(&mut sock),
                    Ok(Signal::SIGCHLD) | Err(_) => {}
                    // Docker's sig-proxy: what the attached user gets, the container gets.
                    Ok(sig) => {
                        let _ = nix::sys::signal::kill(Pid::from_raw(rec.state.pid), sig);
                    }
                }
            }
        }
        if stdin_ready {
            // SAFETY: fd 0 stays open; reading into our buffer of the given length.
            let n = unsafe { libc::read(stdin0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                let _ = sock.write_all(&attach::encode(Kind::Stdin, &buf[..n as usize]));
            } else if n == 0 {
                stdin_open = false;
                let _ = sock.write_all(&attach::encode(Kind::CloseStdin, &[]));
            }
        }
        if sock_ready {
            let n = match sock.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if n == 0 {
                // The monitor is done without telling the code: read it from the record.
                return Ok(lifecycle::refresh(engine, id)
                    .map(|r| r.state.exit_code)
                    .unwrap_or(0));
            }
            decoder.push(&buf[..n]);
            while let Some((kind, payload)) = decoder.next_frame().map_err(Error::Runtime)? {
                match kind {
                    Kind::Stdout => {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&payload).and_then(|()| out.flush());
                    }
                    Kind::Stderr => {
                        let _ = std::io::stderr().lock().write_all(&payload);
                    }
                    Kind::Exit => return Ok(attach::exit_code(&payload).unwrap_or(0)),
                    _ => {}
                }
            }
        }
    }
}
