//! Deleting a link without waiting out the kernel's RCU barrier.
//!
//! The kernel takes a deleted link out of its namespace (and announces it gone) at once,
//! but the request returns only after `rcu_barrier()`, which waits for every pending
//! RCU callback of the system: 12–20 ms on a small VM, per link. Here a forked child
//! sends the request and sits out the barrier; the caller returns as soon as the
//! kernel's link notification says the link is gone. Moving the link into a dying
//! namespace instead would cost the same barrier.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::LinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};

/// How long the kernel may take to take the link out; past it the deletion failed.
const GONE_TIMEOUT: Duration = Duration::from_secs(5);
const RTMGRP_LINK: u32 = 1;
const NLMSG_ERROR: u16 = 2;

/// Deletes link `index` of the calling thread's network namespace; returns once it is
/// gone from it, whether `false` when it was gone already.
pub fn delete(index: u32) -> io::Result<bool> {
    // Listen before asking, so the announcement cannot be missed.
    let mut listener = Socket::new(NETLINK_ROUTE)?;
    listener.bind(&SocketAddr::new(0, RTMGRP_LINK))?;
    let request = Socket::new(NETLINK_ROUTE)?;
    let message = del_link_request(index);
    let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;

    // SAFETY: the child only makes async-signal-safe system calls on memory prepared
    // before the fork (no allocation, no locks) and ends in _exit.
    match unsafe { libc::fork() } {
        -1 => return Err(io::Error::last_os_error()),
        0 => child(request.as_raw_fd(), report_w.as_raw_fd(), &message),
        _ => {}
    }
    drop(report_w);
    drop(request);
    wait_gone(&listener, &report_r, index)
}

fn del_link_request(index: u32) -> Vec<u8> {
    let mut link = LinkMessage::default();
    link.header.index = index;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    header.sequence_number = 1;
    let mut msg = NetlinkMessage::new(
        header,
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)),
    );
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// The forked child: sends the request, reports the kernel's answer (an errno, 0 for
/// success) through `report`, and exits. Everything else it inherited is closed first,
/// so it holds no lock, pipe or terminal of the caller's while it waits.
fn child(request: i32, report: i32, message: &[u8]) -> ! {
    // SAFETY: plain system calls on integers and on buffers owned by this frame.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::dup2(request, 0);
        libc::dup2(report, 1);
        libc::close_range(2, u32::MAX, 0);
        let mut errno: i32 = libc::EIO;
        if libc::send(0, message.as_ptr().cast(), message.len(), 0) >= 0 {
            let mut ack = [0u8; 1024];
            let n = libc::recv(0, ack.as_mut_ptr().cast(), ack.len(), 0);
            if n >= 20 && u16::from_ne_bytes([ack[4], ack[5]]) == NLMSG_ERROR {
                errno = -i32::from_ne_bytes([ack[16], ack[17], ack[18], ack[19]]);
            }
        }
        libc::write(1, (&errno as *const i32).cast(), 4);
        libc::_exit(0)
    }
}

/// Waits for the announcement that link `index` is gone, or for the child's report.
fn wait_gone(listener: &Socket, report: &OwnedFd, index: u32) -> io::Result<bool> {
    let deadline = Instant::now() + GONE_TIMEOUT;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [
            libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: report.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll(2) on two pollfd structures we own.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, left.as_millis() as i32) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        if fds[0].revents != 0 {
            let len = listener.recv(&mut &mut buf[..], 0)?;
            if announces_gone(&buf[..len], index) {
                return Ok(true);
            }
        }
        if fds[1].revents != 0 {
            return read_report(report);
        }
    }
}

/// Whether a batch of link notifications includes the deletion of link `index`.
fn announces_gone(mut buf: &[u8], index: u32) -> bool {
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            return false;
        }
        if let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[..len])
            && let NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) = msg.payload
            && link.header.index == index
        {
            return true;
        }
        buf = &buf[(len + 3) & !3..];
    }
    false
}

fn read_report(report: &OwnedFd) -> io::Result<bool> {
    let mut errno = [0u8; 4];
    if nix::unistd::read(report, &mut errno)? != errno.len() {
        return Err(io::Error::other("the link deletion's helper died"));
    }
    match i32::from_ne_bytes(errno) {
        0 => Ok(true),
        libc::ENODEV => Ok(false),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deletion_announcement_is_found_among_others() {
        let mut notes = Vec::new();
        for (kind, index) in [("new", 7), ("del", 8), ("del", 9)] {
            let mut link = LinkMessage::default();
            link.header.index = index;
            let payload = match kind {
                "new" => RouteNetlinkMessage::NewLink(link),
                _ => RouteNetlinkMessage::DelLink(link),
            };
            let mut msg = NetlinkMessage::new(
                NetlinkHeader::default(),
                NetlinkPayload::InnerMessage(payload),
            );
            msg.finalize();
            let mut buf = vec![0; msg.buffer_len()];
            msg.serialize(&mut buf);
            notes.extend(buf);
        }
        assert!(announces_gone(&notes, 9));
        assert!(announces_gone(&notes, 8));
        assert!(!announces_gone(&notes, 7), "a new link is not a gone one");
        assert!(!announces_gone(&notes[..notes.len() - 4], 9), "truncated");
    }

    #[test]
    fn the_request_names_the_link_and_asks_for_an_ack() {
        let buf = del_link_request(42);
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf).unwrap();
        assert_eq!(msg.header.flags, NLM_F_REQUEST | NLM_F_ACK);
        match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => {
                assert_eq!(l.header.index, 42)
            }
            other => panic!("{other:?}"),
        }
    }
}
