//! The socket between the runtime and the processes it forks while they set up the
//! container: small tagged messages over a `SOCK_SEQPACKET` pair, optionally carrying a
//! file descriptor (the terminal's master).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    self, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};

/// Longest error text a child sends (enough for any sentence we produce).
const MAX_MESSAGE: usize = 4000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// (first stage → runtime) the container process's pid.
    Pid(i32),
    /// (runtime → child) the cgroup and id maps are in place: go on.
    Go,
    /// (init → runtime) the mounts are done: run prestart/createRuntime hooks now.
    RunHooks,
    /// (runtime → init) the hooks have run.
    HooksDone,
    /// (init → runtime) the terminal's master, sent with the message.
    Console,
    /// (init → runtime) the container is created; the init now waits for `start`.
    Ready,
    /// (child → runtime) setup failed; the child exits.
    Error(String),
}

impl Msg {
    fn encode(&self) -> Vec<u8> {
        match self {
            Msg::Pid(p) => {
                let mut v = vec![b'p'];
                v.extend_from_slice(&p.to_le_bytes());
                v
            }
            Msg::Go => vec![b'g'],
            Msg::RunHooks => vec![b'h'],
            Msg::HooksDone => vec![b'd'],
            Msg::Console => vec![b'c'],
            Msg::Ready => vec![b'r'],
            Msg::Error(e) => {
                let mut v = vec![b'e'];
                let mut end = e.len().min(MAX_MESSAGE);
                while !e.is_char_boundary(end) {
                    end -= 1;
                }
                v.extend_from_slice(&e.as_bytes()[..end]);
                v
            }
        }
    }

    fn decode(b: &[u8]) -> Option<Msg> {
        let (&tag, rest) = b.split_first()?;
        Some(match tag {
            b'p' => Msg::Pid(i32::from_le_bytes(rest.try_into().ok()?)),
            b'g' => Msg::Go,
            b'h' => Msg::RunHooks,
            b'd' => Msg::HooksDone,
            b'c' => Msg::Console,
            b'r' => Msg::Ready,
            b'e' => Msg::Error(String::from_utf8_lossy(rest).into_owned()),
            _ => return None,
        })
    }
}

/// One end of the setup socket.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// A connected pair (both ends close on exec).
    pub fn pair() -> std::io::Result<(Channel, Channel)> {
        let (a, b) = socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    pub fn send(&self, msg: &Msg) -> std::io::Result<()> {
        send_with_fd(self.fd.as_fd(), &msg.encode(), None)
    }

    pub fn send_fd(&self, msg: &Msg, fd: BorrowedFd<'_>) -> std::io::Result<()> {
        send_with_fd(self.fd.as_fd(), &msg.encode(), Some(fd))
    }

    /// The next message (`None` when the other end is closed), with any descriptor sent
    /// along with it.
    pub fn recv(&self) -> std::io::Result<Option<(Msg, Option<OwnedFd>)>> {
        let mut buf = [0u8; MAX_MESSAGE + 16];
        let (n, fd) = recv_with_fd(self.fd.as_fd(), &mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        let msg = Msg::decode(&buf[..n]).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "unknown setup message")
        })?;
        Ok(Some((msg, fd)))
    }
}

/// Sends `data`, with `fd` as SCM_RIGHTS when given.
pub fn send_with_fd(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> std::io::Result<()> {
    let iov = [IoSlice::new(data)];
    let fds = fd.map(|f| [f.as_raw_fd()]);
    let cmsg: Vec<ControlMessage> = fds
        .as_ref()
        .map(|f| ControlMessage::ScmRights(f))
        .into_iter()
        .collect();
    loop {
        match socket::sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None) {
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => return Ok(()),
        }
    }
}

/// Receives one message into `buf`: (length, descriptor if one came with it).
pub fn recv_with_fd(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<OwnedFd>)> {
    let mut cmsg_buf = nix::cmsg_space!([RawFd; 1]);
    loop {
        let mut iov = [IoSliceMut::new(buf)];
        let res = socket::recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_buf),
            MsgFlags::MSG_CMSG_CLOEXEC,
        );
        let msg = match res {
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(m) => m,
        };
        let mut fd = None;
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for raw in fds {
                    // SAFETY: the kernel just installed `raw` in our table for us.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    if fd.is_none() {
                        fd = Some(owned);
                    }
                }
            }
        }
        return Ok((msg.bytes, fd));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_with_descriptors() {
        let (a, b) = Channel::pair().unwrap();
        for m in [
            Msg::Pid(-5),
            Msg::Go,
            Msg::RunHooks,
            Msg::HooksDone,
            Msg::Ready,
            Msg::Error("exec: \"x\": executable file not found in $PATH".into()),
        ] {
            a.send(&m).unwrap();
            let (got, fd) = b.recv().unwrap().unwrap();
            assert_eq!(got, m);
            assert!(fd.is_none());
        }
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        a.send_fd(&Msg::Console, file.as_fd()).unwrap();
        let (got, fd) = b.recv().unwrap().unwrap();
        assert_eq!(got, Msg::Console);
        let fd = fd.unwrap();
        assert_ne!(fd.as_raw_fd(), file.as_raw_fd());
        let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(
            flags & libc::FD_CLOEXEC,
            0,
            "received descriptors close on exec"
        );
        drop(a);
        assert!(b.recv().unwrap().is_none());
    }

    #[test]
    fn long_errors_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_MESSAGE);
        match Msg::decode(&Msg::Error(long).encode()) {
            Some(Msg::Error(s)) => assert!(s.len() <= MAX_MESSAGE && s.chars().all(|c| c == 'é')),
            other => panic!("{other:?}"),
        }
    }
}
