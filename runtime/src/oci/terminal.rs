//! The container's terminal: a pseudo-terminal opened from the container's own devpts
//! instance (so the container sees a normal /dev/pts/N), whose slave becomes the
//! process's stdio and controlling terminal and whose master goes to the caller, or over
//! a console socket with runc's protocol (one SCM_RIGHTS message).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

use super::channel::send_with_fd;

nix::ioctl_write_int_bad!(tiocsctty, libc::TIOCSCTTY);
nix::ioctl_write_ptr_bad!(tiocswinsz, libc::TIOCSWINSZ, libc::winsize);
nix::ioctl_write_ptr_bad!(tiocsptlck, libc::TIOCSPTLCK, libc::c_int);

/// A new pty from `/dev/ptmx` as the current mount namespace resolves it: (master, slave).
pub fn open_pty(size: Option<(u16, u16)>) -> nix::Result<(OwnedFd, OwnedFd)> {
    let master = open(
        "/dev/ptmx",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the pointer, which is valid for the call.
    unsafe { tiocsptlck(master.as_raw_fd(), &unlock) }?;
    // TIOCGPTPEER opens the slave through the master, with no path lookup to race.
    // SAFETY: the ioctl takes open flags by value and returns a new descriptor.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    let slave = nix::Error::result(slave)?;
    // SAFETY: the kernel just returned this new descriptor; nothing else owns it.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    if let Some((rows, cols)) = size {
        set_size(master.as_fd(), rows, cols)?;
    }
    Ok((master, slave))
}

/// Sets the window size of a terminal.
pub fn set_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> nix::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer, valid for the call.
    unsafe { tiocswinsz(fd.as_raw_fd(), &ws) }.map(drop)
}

/// The window size of a terminal, if it is one.
pub fn get_size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize through the pointer, valid for the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (rc == 0).then_some((ws.ws_row, ws.ws_col))
}

/// The slave's path as the container sees it (`/dev/pts/N`).
pub fn slave_path(slave: BorrowedFd<'_>) -> nix::Result<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd()))
        .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// Makes `slave` the calling process's controlling terminal and stdio, in a new session.
pub fn become_session_leader_on(slave: &OwnedFd) -> nix::Result<()> {
    nix::unistd::setsid()?;
    // SAFETY: TIOCSCTTY takes an int argument by value.
    unsafe { tiocsctty(slave.as_raw_fd(), 0) }?;
    for target in 0..3 {
        // SAFETY: dup2(2) onto the standard descriptors, which this process owns.
        nix::Error::result(unsafe { libc::dup2(slave.as_raw_fd(), target) })?;
    }
    Ok(())
}

/// Sends a terminal master over the console socket at `path` (runc's protocol).
pub fn send_to_console_socket(path: &Path, master: BorrowedFd<'_>) -> std::io::Result<()> {
    let sock = UnixStream::connect(path)?;
    send_with_fd(sock.as_fd(), b"/dev/ptmx", Some(master))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;

    #[test]
    fn pty_sizes_and_console_socket() {
        let (master, slave) = open_pty(Some((33, 101))).unwrap();
        assert_eq!(get_size(slave.as_fd()), Some((33, 101)));
        assert!(slave_path(slave.as_fd()).unwrap().starts_with("/dev/pts"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).unwrap();
        send_to_console_socket(&path, master.as_fd()).unwrap();
        let (conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let (n, fd) = super::super::channel::recv_with_fd(conn.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"/dev/ptmx");
        let mut received = std::fs::File::from(fd.unwrap());
        // What the slave writes, the received master reads.
        let mut s = std::fs::File::from(slave);
        s.write_all(b"hi\n").unwrap();
        let mut got = [0u8; 8];
        let n = received.read(&mut got).unwrap();
        assert!(std::str::from_utf8(&got[..n]).unwrap().starts_with("hi"));
    }
}
