//! The monitor's I/O loop: one thread, one `poll(2)` over the container's output, the
//! user's terminal (foreground `run`), attach clients and a signalfd. It logs every byte
//! the container writes, forwards signals to it, and ends when the container has exited
//! and its output is drained.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::attach::{self, Kind};
use super::logfile::{self, Stream};
use super::terminal;

/// Signals the monitor passes on to the container (Docker's sig-proxy set, less those
/// that concern the monitor itself: SIGCHLD, SIGWINCH, SIGPIPE).
pub const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
];

/// Every signal the monitor takes through its signalfd.
pub fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED.iter().chain(&[Signal::SIGCHLD, Signal::SIGWINCH]) {
        set.add(*s);
    }
    set
}

/// The container's side of the I/O.
pub enum ContainerIo {
    /// Separate pipes; `stdin` is there when the container keeps stdin open (`-i`).
    Pipes {
        stdin: Option<File>,
        stdout: Option<File>,
        stderr: Option<File>,
    },
    /// The container's terminal: reads give its output, writes are its input.
    Pty {
        master: Option<File>,
        input_open: bool,
    },
}

impl ContainerIo {
    fn outputs_closed(&self) -> bool {
        match self {
            ContainerIo::Pipes { stdout, stderr, .. } => stdout.is_none() && stderr.is_none(),
            ContainerIo::Pty { master, .. } => master.is_none(),
        }
    }

    fn input_open(&self) -> bool {
        match self {
            ContainerIo::Pipes { stdin, .. } => stdin.is_some(),
            ContainerIo::Pty { master, input_open } => master.is_some() && *input_open,
        }
    }

    fn write_input(&mut self, data: &[u8]) {
        let target = match self {
            ContainerIo::Pipes { stdin, .. } => stdin,
            ContainerIo::Pty { master, .. } => master,
        };
        if let Some(f) = target
            && f.write_all(data).is_err()
        {
            // The container closed its stdin: nothing more to give it.
            if let ContainerIo::Pipes { stdin, .. } = self {
                *stdin = None;
            }
        }
    }

    fn close_input(&mut self) {
        match self {
            ContainerIo::Pipes { stdin, .. } => *stdin = None,
            // A terminal has no end of input; ^D is just a byte the user types.
            ContainerIo::Pty { input_open, .. } => *input_open = false,
        }
    }

    fn resize(&self, rows: u16, cols: u16) {
        if let ContainerIo::Pty {
            master: Some(m), ..
        } = self
        {
            terminal::set_window_size(m, rows, cols);
        }
    }
}

/// The user's terminal or pipes, for a foreground `rbox run` (or `start -a`).
pub struct Local {
    /// Forward the user's stdin to the container.
    pub stdin: bool,
    /// The container has a terminal: follow our window size.
    pub tty: bool,
}

struct Client {
    stream: UnixStream,
    decoder: attach::Decoder,
    wants_output: bool,
    wants_stdin: bool,
    pending: Vec<u8>,
}

/// Output queued for a client that reads slower than the container writes, beyond
/// which the client is dropped rather than slowing the container down.
const MAX_PENDING: usize = 4 << 20;

impl Client {
    fn send(&mut self, frame: &[u8]) -> bool {
        self.pending.extend_from_slice(frame);
        self.flush() && self.pending.len() <= MAX_PENDING
    }

    /// Writes what it can without blocking; false when the client is gone.
    fn flush(&mut self) -> bool {
        while !self.pending.is_empty() {
            match self.stream.write(&self.pending) {
                Ok(0) => return false,
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }
}

/// How the container ended and who still waits for the monitor to finish.
pub struct Finished {
    pub exit_code: i32,
    /// Attach clients, kept open until teardown is done: their end of stream tells them
    /// the container is fully stopped.
    pub clients: Vec<UnixStream>,
}

pub struct Pump {
    pub pid: Pid,
    pub io: ContainerIo,
    pub local: Option<Local>,
    pub listener: Option<UnixListener>,
    pub log: Option<logfile::Writer>,
    signals: SignalFd,
    clients: Vec<Client>,
    exit: Option<i32>,
    stdin_open: bool,
}

#[derive(Clone, Copy)]
enum Tag {
    Signals,
    Out(Stream),
    LocalStdin,
    Listener,
    Client(usize),
}

/// The exit code Docker reports for a wait status.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

impl Pump {
    /// A pump for container `pid`. The handled signals must already be blocked.
    pub fn new(
        pid: Pid,
        io: ContainerIo,
        local: Option<Local>,
        listener: Option<UnixListener>,
        log: Option<logfile::Writer>,
    ) -> nix::Result<Pump> {
        let signals = SignalFd::with_flags(
            &handled_signals(),
            SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
        )?;
        if let Some(l) = &listener {
            l.set_nonblocking(true)
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        }
        let stdin_open = local.as_ref().is_some_and(|l| l.stdin);
        Ok(Pump {
            pid,
            io,
            local,
            listener,
            log,
            signals,
            clients: Vec::new(),
            exit: None,
            stdin_open,
        })
    }

    /// Runs until the container has exited and its output is drained.
    pub fn run(mut self) -> Finished {
        // The container may have exited before the signal mask was set.
        self.reap();
        if let Some(l) = &self.local
            && l.tty
        {
            self.follow_window_size();
        }
        while !(self.exit.is_some() && self.io.outputs_closed()) {
            let ready = self.wait();
            for (tag, flags) in ready {
                self.handle(tag, flags);
            }
        }
        if let Some(log) = &mut self.log {
            let _ = log.flush_partial();
        }
        let code = self.exit.unwrap_or(255);
        let frame = attach::encode(Kind::Exit, &code.to_be_bytes());
        let mut clients = Vec::new();
        for mut c in std::mem::take(&mut self.clients) {
            if c.send(&frame) {
                // Give the last frames a moment in blocking mode: the client may be slow.
                let _ = c.stream.set_nonblocking(false);
                let _ = c.stream.write_all(&c.pending);
                clients.push(c.stream);
            }
        }
        Finished {
            exit_code: code,
            clients,
        }
    }

    fn wait(&mut self) -> Vec<(Tag, PollFlags)> {
        let stdin0 = std::io::stdin();
        let mut tags = vec![Tag::Signals];
        let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
        let outputs: Vec<(Stream, BorrowedFd)> = match &self.io {
            ContainerIo::Pipes { stdout, stderr, .. } => {
                [(Stream::Stdout, stdout), (Stream::Stderr, stderr)]
                    .into_iter()
                    .filter_map(|(s, f)| f.as_ref().map(|f| (s, f.as_fd())))
                    .collect()
            }
            ContainerIo::Pty { master, .. } => {
                master.iter().map(|m| (Stream::Stdout, m.as_fd())).collect()
            }
        };
        for (s, fd) in outputs {
            tags.push(Tag::Out(s));
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        if self.stdin_open && self.io.input_open() {
            tags.push(Tag::LocalStdin);
            fds.push(PollFd::new(stdin0.as_fd(), PollFlags::POLLIN));
        }
        if let Some(l) = &self.listener {
            tags.push(Tag::Listener);
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        }
        for (i, c) in self.clients.iter().enumerate() {
            let mut flags = PollFlags::POLLIN;
            if !c.pending.is_empty() {
                flags |= PollFlags::POLLOUT;
            }
            tags.push(Tag::Client(i));
            fds.push(PollFd::new(c.stream.as_fd(), flags));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Vec::new(),
            Err(e) => panic!("poll failed: {e}"),
        }
        let mut ready: Vec<(Tag, PollFlags)> = tags
            .into_iter()
            .zip(
                fds.iter()
                    .map(|f| f.revents().unwrap_or(PollFlags::empty())),
            )
            .filter(|(_, r)| !r.is_empty())
            .collect();
        // Clients are handled last and from the highest index, so dropping one leaves
        // the indexes of the others valid.
        ready.sort_by_key(|(t, _)| match t {
            Tag::Client(i) => usize::MAX - i,
            _ => 0,
        });
        ready
    }

    fn handle(&mut self, tag: Tag, flags: PollFlags) {
        match tag {
            Tag::Signals => self.on_signals(),
            Tag::Out(stream) => self.on_output(stream),
            Tag::LocalStdin => self.on_local_stdin(),
            Tag::Listener => self.on_connect(),
            Tag::Client(i) => self.on_client(i, flags),
        }
    }

    fn on_signals(&mut self) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => self.reap(),
                Ok(Signal::SIGWINCH) => self.follow_window_size(),
                Ok(sig) if self.exit.is_none() => {
                    let _ = nix::sys::signal::kill(self.pid, sig);
                }
                _ => {}
            }
        }
    }

    /// Collects every exited child; notes the container's exit code.
    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => {
                    if status.pid() == Some(self.pid)
                        && let Some(code) = exit_code(status)
                    {
                        self.exit = Some(code);
                    }
                }
            }
        }
    }

    fn follow_window_size(&self) {
        if let Some((rows, cols)) = terminal::window_size(std::io::stdout()) {
            self.io.resize(rows, cols);
        }
    }

    fn on_output(&mut self, stream: Stream) {
        let mut buf = [0u8; 32 * 1024];
        let file = match (&mut self.io, stream) {
            (ContainerIo::Pipes { stdout, .. }, Stream::Stdout) => stdout,
            (ContainerIo::Pipes { stderr, .. }, Stream::Stderr) => stderr,
            (ContainerIo::Pty { master, .. }, _) => master,
        };
        let Some(f) = file else { return };
        let n = match f.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted || e.kind() == ErrorKind::WouldBlock => {
                return;
            }
            // EIO: the terminal's last user closed it.
            Err(_) => 0,
        };
        if n == 0 {
            *file = None;
            return;
        }
        let data = &buf[..n];
        if let Some(log) = &mut self.log {
            let _ = log.write(stream, data);
        }
        if self.local.is_some() {
            let _ = match stream {
                Stream::Stdout => std::io::stdout()
                    .lock()
                    .write_all(data)
                    .and_then(|()| std::io::stdout().flush()),
                Stream::Stderr => std::io::stderr().lock().write_all(data),
            };
        }
        let kind = if stream == Stream::Stdout {
            Kind::Stdout
        } else {
            Kind::Stderr
        };
        let frame = attach::encode(kind, data);
        self.clients
            .retain_mut(|c| !c.wants_output || c.send(&frame));
    }

    fn on_local_stdin(&mut self) {
        let mut buf = [0u8; 32 * 1024];
        // SAFETY: fd 0 is open for the whole life of the process; reading into a local
        // buffer of the given length.
        let n = unsafe {
            libc::read(
                std::io::stdin().as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            if Errno::last() != Errno::EINTR && Errno::last() != Errno::EAGAIN {
                self.stdin_open = false;
            }
            return;
        }
        if n == 0 {
            self.stdin_open = false;
            self.io.close_input();
            return;
        }
        self.io.write_input(&buf[..n as usize]);
    }

    fn on_connect(&mut self) {
        let Some(l) = &self.listener else { return };
        while let Ok((stream, _)) = l.accept() {
            if stream.set_nonblocking(true).is_ok() {
                self.clients.push(Client {
                    stream,
                    decoder: attach::Decoder::default(),
                    wants_output: false,
                    wants_stdin: false,
                    pending: Vec::new(),
                });
            }
        }
    }

    fn on_client(&mut self, i: usize, flags: PollFlags) {
        let mut keep = true;
        if flags.contains(PollFlags::POLLOUT) {
            keep = self.clients[i].flush();
        }
        if keep && flags.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            keep = self.read_client(i);
        }
        if !keep {
            self.clients.swap_remove(i);
        }
    }

    /// Reads and acts on a client's frames; false when it is gone or misbehaves.
    fn read_client(&mut self, i: usize) -> bool {
        let mut buf = [0u8; 32 * 1024];
        let n = match self.clients[i].stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                return true;
            }
            Err(_) => return false,
        };
        self.clients[i].decoder.push(&buf[..n]);
        loop {
            let frame = match self.clients[i].decoder.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return true,
                Err(_) => return false,
            };
            let c = &mut self.clients[i];
            match frame {
                (Kind::Hello, p) => {
                    let flags = p.first().copied().unwrap_or(0);
                    c.wants_output = flags & attach::WANT_OUTPUT != 0;
                    c.wants_stdin = flags & attach::WANT_STDIN != 0;
                    if self.exit.is_some() {
                        let code = self.exit.unwrap_or(255);
                        if !c.send(&attach::encode(Kind::Exit, &code.to_be_bytes())) {
                            return false;
                        }
                    }
                }
                (Kind::Stdin, data) if c.wants_stdin => self.io.write_input(&data),
                (Kind::CloseStdin, _) if c.wants_stdin => self.io.close_input(),
                (Kind::Resize, p) => {
                    if let Some((rows, cols)) = attach::size(&p) {
                        self.io.resize(rows, cols);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Makes a pipe whose ends close on exec; returns (read, write).
pub fn pipe() -> std::io::Result<(File, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
    Ok((File::from(r), w))
}
