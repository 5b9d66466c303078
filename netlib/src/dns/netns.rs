//! Sockets inside sandboxes: dedicated threads enter a sandbox's network namespace,
//! create what was asked for there, and come back.
//!
//! A socket belongs to the namespace it was created in for its whole life, whichever
//! thread then binds, connects or reads it; so only `socket(2)` (and the netlink batch
//! that installs the redirect) has to run inside, and the rest of the responder stays an
//! ordinary tokio program in the host's namespace.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};

use nix::sched::{CloneFlags, setns};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::redirect;

/// Where the responder answers in every sandbox (as Docker's embedded DNS).
pub const RESPONDER_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// The port the responder binds first in each sandbox (then any free one). A stable
/// port means a responder restarted in a sandbox usually lands where its predecessor
/// was, so flows that conntrack still maps to the old port keep working.
pub const PREFERRED_PORT: u16 = 11053;

/// Pending connections the kernel queues per sandbox TCP listener.
const TCP_BACKLOG: i32 = 64;

/// An open network namespace (a handle keeps it alive, as a bind mount does).
#[derive(Debug, Clone)]
pub struct Netns {
    fd: Arc<OwnedFd>,
    /// Inode of the namespace: tells a new sandbox at a reused path from the old one.
    pub ino: u64,
}

impl Netns {
    pub fn open(path: &Path) -> io::Result<Netns> {
        use std::os::unix::fs::MetadataExt;
        let file = File::open(path)?;
        let ino = file.metadata()?.ino();
        Ok(Netns {
            fd: Arc::new(file.into()),
            ino,
        })
    }
}

/// The two listening sockets of one sandbox, bound at [`RESPONDER_ADDR`] inside it.
#[derive(Debug)]
pub struct Listeners {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
}

type Work = Box<dyn FnOnce(io::Result<()>) + Send>;
type Job = (Netns, Work);

/// Handle to the threads that work inside namespaces; cheap to clone.
#[derive(Clone)]
pub struct NetnsThreads {
    jobs: mpsc::Sender<Job>,
}

impl NetnsThreads {
    /// Starts `count` threads taking jobs from one queue: binding many sandboxes at once
    /// (a restarted responder) spreads the kernel's nftables commits over them.
    pub fn start(count: usize) -> io::Result<NetnsThreads> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..count.max(1) {
            let queue = queue.clone();
            let home = File::open("/proc/thread-self/ns/net")?;
            std::thread::Builder::new()
                .name(format!("dns-netns-{i}"))
                .spawn(move || {
                    loop {
                        let job = queue.lock().map(|q| q.recv());
                        let Ok(Ok((netns, work))) = job else { return };
                        let entered = setns(netns.fd.as_fd(), CloneFlags::CLONE_NEWNET);
                        work(entered.map_err(io::Error::from));
                        if let Err(e) = setns(home.as_fd(), CloneFlags::CLONE_NEWNET) {
                            // Anything this thread did next would happen in a sandbox.
                            eprintln!("rbox dns: cannot return to the host namespace: {e}");
                            std::process::abort();
                        }
                    }
                })?;
        }
        Ok(NetnsThreads { jobs })
    }

    /// Runs `f` inside `netns` on a namespace thread and returns its result.
    pub async fn run<T, F>(&self, netns: &Netns, f: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let work: Work = Box::new(move |entered| {
            let _ = tx.send(entered.and_then(|()| f()));
        });
        let gone = || io::Error::other("the namespace threads have stopped");
        self.jobs.send((netns.clone(), work)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Binds the sandbox's listeners and points its `127.0.0.11:53` at them.
    pub async fn bind(&self, netns: &Netns) -> io::Result<Listeners> {
        self.run(netns, || {
            let listeners = bind_listeners()?;
            let udp_port = listeners.udp.local_addr()?.port();
            let tcp_port = listeners.tcp.local_addr()?.port();
            redirect::install(udp_port, tcp_port).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot redirect 127.0.0.11:53 with nftables (nat): {e}"),
                )
            })?;
            Ok(listeners)
        })
        .await
    }

    /// Removes the sandbox's redirect (its listeners close when dropped).
    pub async fn unbind(&self, netns: &Netns) -> io::Result<()> {
        self.run(netns, redirect::remove).await
    }

    /// A non-blocking socket inside `netns` for talking to `peer` (not yet connected).
    pub async fn socket(&self, netns: &Netns, peer: SocketAddr, ty: Type) -> io::Result<Socket> {
        self.run(netns, move || {
            let protocol = if ty == Type::STREAM {
                Protocol::TCP
            } else {
                Protocol::UDP
            };
            let socket = Socket::new(Domain::for_address(peer), ty, Some(protocol))?;
            socket.set_nonblocking(true)?;
            if ty == Type::DGRAM {
                // Without it a connected UDP socket hears of "port unreachable" only; with
                // it also of "network/host unreachable" (a sandbox whose host has no route
                // there), so the next server is asked at once instead of at the timeout.
                use nix::sys::socket::{setsockopt, sockopt};
                match peer {
                    SocketAddr::V4(_) => setsockopt(&socket, sockopt::Ipv4RecvErr, &true),
                    SocketAddr::V6(_) => setsockopt(&socket, sockopt::Ipv6RecvErr, &true),
                }?;
            }
            Ok(socket)
        })
        .await
    }
}

/// UDP and TCP sockets at 127.0.0.11, on [`PREFERRED_PORT`] when free. Freebind lets
/// them bind before the sandbox's loopback is up.
fn bind_listeners() -> io::Result<Listeners> {
    let udp = |port| -> io::Result<Socket> {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_freebind_v4(true)?;
        s.set_nonblocking(true)?;
        s.bind(&SockAddr::from(SocketAddrV4::new(RESPONDER_ADDR, port)))?;
        Ok(s)
    };
    let tcp = |port| -> io::Result<Socket> {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        s.set_freebind_v4(true)?;
        s.set_reuse_address(true)?;
        s.set_nonblocking(true)?;
        s.bind(&SockAddr::from(SocketAddrV4::new(RESPONDER_ADDR, port)))?;
        s.listen(TCP_BACKLOG)?;
        Ok(s)
    };
    let udp = udp(PREFERRED_PORT).or_else(|_| udp(0))?;
    let tcp = tcp(PREFERRED_PORT).or_else(|_| tcp(0))?;
    Ok(Listeners {
        udp: udp.into(),
        tcp: tcp.into(),
    })
}
