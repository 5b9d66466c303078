//! The responder process: one per runroot, serving every DNS-enabled sandbox.
//!
//! One tokio thread serves everything: per sandbox a UDP task and a TCP accept task on the
//! sockets bound inside it, and the control loop that reloads the table (the loader runs
//! on a blocking thread, socket creation on the namespace threads). The table is
//! immutable and swapped atomically, so a query is answered either from the old table or
//! from the new one, never dropped and never from a half-built one. Work is bounded
//! everywhere: query size, forwards in flight and TCP connections per sandbox and in all,
//! TCP idle and I/O timeouts; what exceeds a bound is answered SERVFAIL or closed, never
//! queued without end.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::StreamExt;
use nix::fcntl::{Flock, FlockArg};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

use super::DnsError;
use super::answer::{Action, MAX_QUERY_LEN, Transport, handle};
use super::control::{MAX_LINE, Paths, READY, Reply, Request, SyncReport, UnboundSandbox};
use super::netns::{Netns, NetnsThreads};
use super::snapshot::{SandboxView, Snapshot};
use super::table::NameTable;
use super::upstream::{self, SandboxConnector, forward};

/// What a loader may fail with; the responder keeps serving its current table.
pub type LoadError = Box<dyn std::error::Error + Send + Sync>;

/// Forwarded queries in flight, per sandbox and in all (each holds one socket).
const FORWARDS_PER_SANDBOX: usize = 64;
const FORWARDS_TOTAL: usize = 1024;
/// Open TCP connections, per sandbox and in all.
const TCP_PER_SANDBOX: usize = 16;
const TCP_TOTAL: usize = 256;
/// A TCP connection with no new query for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(5);
/// Time to read the rest of a TCP query, or to write an answer.
const TCP_IO: Duration = Duration::from_secs(2);
/// Threads entering sandboxes, and sandboxes bound at once after a (re)start.
const NETNS_THREADS: usize = 4;
/// Time a control client has to send its request and read the reply.
const CONTROL_IO: Duration = Duration::from_secs(2);
/// How often freed heap goes back to the system (a cheap call on a small heap).
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// How the responder runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The runroot whose sandboxes are served; the responder's files go in `dns/` there.
    pub runroot: PathBuf,
    /// Time for all upstream attempts of one forwarded query.
    pub upstream_budget: Duration,
}

impl ServeConfig {
    pub fn new(runroot: impl Into<PathBuf>) -> ServeConfig {
        ServeConfig {
            runroot: runroot.into(),
            upstream_budget: upstream::DEFAULT_BUDGET,
        }
    }
}

/// Runs the responder in this process until it is stopped or no DNS-enabled sandbox is
/// left. `loader` returns the current state; it is called at start and at every reload,
/// off the serving thread. Once the first load is served, prints `ready <report>` on
/// stdout (what [`super::sync`] waits for) and detaches stdout.
pub fn serve<L>(config: ServeConfig, loader: L) -> Result<(), DnsError>
where
    L: Fn() -> Result<Snapshot, LoadError> + Send + Sync + 'static,
{
    let paths = Paths::new(&config.runroot);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&paths.dir)
        .map_err(DnsError::io(format!("create {}", paths.dir.display())))?;
    let lock_file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&paths.lock)
        .map_err(DnsError::io(format!("open {}", paths.lock.display())))?;
    // Held until this function returns, after the control socket is gone.
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            DnsError::AlreadyRunning(config.runroot.clone())
        } else {
            DnsError::io(format!("lock {}", paths.lock.display()))(errno.into())
        }
    })?;
    raise_open_files_limit();
    write_atomically(&paths.pid, format!("{}\n", std::process::id()).as_bytes())
        .map_err(DnsError::io(format!("write {}", paths.pid.display())))?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DnsError::io("start the DNS responder's runtime"))?;
    let result = runtime.block_on(run(&config, &paths, Arc::new(loader)));
    // Stop every task (and close every socket) before the lock is released.
    drop(runtime);
    let _ = fs::remove_file(&paths.pid);
    result
}

async fn run<L>(config: &ServeConfig, paths: &Paths, loader: Arc<L>) -> Result<(), DnsError>
where
    L: Fn() -> Result<Snapshot, LoadError> + Send + Sync + 'static,
{
    let shared = Arc::new(Shared {
        table: ArcSwap::from_pointee(NameTable::default()),
        threads: NetnsThreads::start(NETNS_THREADS)
            .map_err(DnsError::io("start the namespace threads"))?,
        forwards: Arc::new(Semaphore::new(FORWARDS_TOTAL)),
        connections: Arc::new(Semaphore::new(TCP_TOTAL)),
        budget: config.upstream_budget,
    });
    // A socket file left by a killed responder: ours now, since we hold the lock.
    let _ = fs::remove_file(&paths.socket);
    let listener = UnixListener::bind(&paths.socket).map_err(DnsError::io(format!(
        "listen on {}",
        paths.socket.display()
    )))?;
    let _ = fs::set_permissions(&paths.socket, fs::Permissions::from_mode(0o600));

    let mut responder = Responder {
        shared,
        loader,
        bound: HashMap::new(),
    };
    tokio::spawn(return_freed_memory());
    let served = responder.reload().await;
    if let Ok(report) = &served {
        announce_ready(report);
        if !report.exiting {
            responder.control(&listener).await;
        }
    }
    // Nobody may reach a responder that is going away.
    drop(listener);
    let _ = fs::remove_file(&paths.socket);
    served.map(drop)
}

/// Gives the heap that a burst of queries (a flood, many TCP clients) freed back to the
/// system: glibc's allocator keeps it otherwise, and a long-lived responder would stay
/// as big as its worst minute.
async fn return_freed_memory() {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        // SAFETY: malloc_trim(3) only releases free memory of the allocator's arenas.
        unsafe { libc::malloc_trim(0) };
    }
}

/// What every task shares.
struct Shared {
    table: ArcSwap<NameTable>,
    threads: NetnsThreads,
    forwards: Arc<Semaphore>,
    connections: Arc<Semaphore>,
    budget: Duration,
}

/// One served sandbox, as its tasks see it.
struct SandboxCtx {
    id: String,
    connector: SandboxConnector,
    forwards: Arc<Semaphore>,
    connections: Arc<Semaphore>,
}

/// A slot in both the sandbox's and the global bound, given back when dropped.
struct Permit {
    _sandbox: OwnedSemaphorePermit,
    _total: OwnedSemaphorePermit,
}

impl SandboxCtx {
    fn forward_permit(&self, shared: &Shared) -> Option<Permit> {
        Some(Permit {
            _sandbox: self.forwards.clone().try_acquire_owned().ok()?,
            _total: shared.forwards.clone().try_acquire_owned().ok()?,
        })
    }

    fn connection_permit(&self, shared: &Shared) -> Option<Permit> {
        Some(Permit {
            _sandbox: self.connections.clone().try_acquire_owned().ok()?,
            _total: shared.connections.clone().try_acquire_owned().ok()?,
        })
    }

    /// Decides on a packet with the current table; a forward comes with the upstreams.
    fn decide(
        &self,
        shared: &Shared,
        packet: &[u8],
        transport: Transport,
    ) -> (Action, Vec<std::net::SocketAddr>) {
        let table = shared.table.load();
        let action = handle(packet, &table, &self.id, transport);
        let upstreams = match action {
            Action::Forward(_) => table
                .sandbox(&self.id)
                .map(|sb| sb.upstreams.clone())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        (action, upstreams)
    }
}

/// A sandbox the responder listens in; dropping it stops its tasks and closes its sockets.
struct BoundSandbox {
    path: PathBuf,
    netns: Netns,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for BoundSandbox {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

struct Responder<L> {
    shared: Arc<Shared>,
    loader: Arc<L>,
    bound: HashMap<String, BoundSandbox>,
}

impl<L> Responder<L>
where
    L: Fn() -> Result<Snapshot, LoadError> + Send + Sync + 'static,
{
    /// Serves control requests until told to stop, a signal, or nothing is left to serve.
    async fn control(&mut self, listener: &UnixListener) {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            eprintln!("rbox dns: cannot watch for signals");
            return;
        };
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        eprintln!("rbox dns: control socket: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
                _ = term.recv() => return,
                _ = int.recv() => return,
            };
            if !self.converse(stream).await {
                return;
            }
        }
    }

    /// One request and its reply; false when the responder is to exit.
    async fn converse(&mut self, stream: UnixStream) -> bool {
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        let mut reader = BufReader::new(read.take(MAX_LINE as u64));
        if !matches!(
            timeout(CONTROL_IO, reader.read_line(&mut line)).await,
            Ok(Ok(1..))
        ) {
            return true;
        }
        let (reply, keep_going) = match serde_json::from_str::<Request>(line.trim()) {
            Ok(Request::Reload) => match self.reload().await {
                Ok(report) => {
                    let keep_going = !report.exiting;
                    (Reply::Done(report), keep_going)
                }
                Err(DnsError::Load(reason)) => (Reply::Failed(reason), true),
                Err(e) => (Reply::Failed(e.to_string()), true),
            },
            Ok(Request::Stop) => {
                let report = SyncReport {
                    served: self.bound.len(),
                    exiting: true,
                    ..SyncReport::default()
                };
                (Reply::Done(report), false)
            }
            Err(e) => (Reply::Failed(format!("bad request: {e}")), true),
        };
        if let Ok(mut out) = serde_json::to_vec(&reply) {
            out.push(b'\n');
            let _ = timeout(CONTROL_IO, write.write_all(&out)).await;
        }
        keep_going
    }

    /// Loads the state, swaps the table in, then listens in new sandboxes and lets go of
    /// those that left.
    async fn reload(&mut self) -> Result<SyncReport, DnsError> {
        let loader = self.loader.clone();
        let snapshot = tokio::task::spawn_blocking(move || loader())
            .await
            .map_err(|e| DnsError::Load(e.to_string()))?
            .map_err(|e| DnsError::Load(e.to_string()))?;
        self.shared
            .table
            .store(Arc::new(NameTable::build(&snapshot)));

        let wanted: HashMap<&str, &SandboxView> = snapshot
            .dns_sandboxes()
            .map(|sb| (sb.id.as_str(), sb))
            .collect();
        let mut report = SyncReport::default();
        for (id, bound) in std::mem::take(&mut self.bound) {
            let still = wanted.get(id.as_str()).is_some_and(|view| {
                view.netns_path == bound.path && netns_ino(&bound.path) == Some(bound.netns.ino)
            });
            if still {
                self.bound.insert(id, bound);
            } else {
                self.release(bound, wanted.contains_key(id.as_str())).await;
            }
        }
        let new: Vec<&SandboxView> = wanted
            .values()
            .filter(|view| !self.bound.contains_key(&view.id))
            .copied()
            .collect();
        let this = &*self;
        let binds = futures::stream::iter(new)
            .map(|view| async move { (view, this.bind(view).await) })
            .buffer_unordered(NETNS_THREADS)
            .collect::<Vec<_>>()
            .await;
        for (view, bound) in binds {
            match bound {
                Ok(bound) => {
                    self.bound.insert(view.id.clone(), bound);
                }
                Err(e) => {
                    eprintln!("rbox dns: cannot serve sandbox {}: {e}", view.id);
                    report.unbound.push(UnboundSandbox {
                        id: view.id.clone(),
                        error: e.to_string(),
                    });
                }
            }
        }
        report.served = self.bound.len();
        // It lives with the DNS-enabled networks, not with their containers: the next
        // container of a network finds it serving (a start costs ~20 ms of its `run`).
        report.exiting = !snapshot.networks.iter().any(|n| n.dns_enabled);
        Ok(report)
    }

    /// Binds the sandbox's sockets (with the redirect) and starts serving them.
    async fn bind(&self, view: &SandboxView) -> std::io::Result<BoundSandbox> {
        let netns = Netns::open(&view.netns_path)?;
        let listeners = self.shared.threads.bind(&netns).await?;
        let udp = Arc::new(UdpSocket::from_std(listeners.udp)?);
        let tcp = TcpListener::from_std(listeners.tcp)?;
        let sandbox = Arc::new(SandboxCtx {
            id: view.id.clone(),
            connector: SandboxConnector {
                threads: self.shared.threads.clone(),
                netns: netns.clone(),
            },
            forwards: Arc::new(Semaphore::new(FORWARDS_PER_SANDBOX)),
            connections: Arc::new(Semaphore::new(TCP_PER_SANDBOX)),
        });
        let tasks = vec![
            tokio::spawn(serve_udp(udp, sandbox.clone(), self.shared.clone())),
            tokio::spawn(serve_tcp(tcp, sandbox, self.shared.clone())),
        ];
        Ok(BoundSandbox {
            path: view.netns_path.clone(),
            netns,
            tasks,
        })
    }

    /// Stops serving a sandbox. When it lives on without DNS (and is not being replaced
    /// by a new namespace at its path), its redirect is removed too.
    async fn release(&self, bound: BoundSandbox, replaced: bool) {
        let alive = netns_ino(&bound.path) == Some(bound.netns.ino);
        let netns = bound.netns.clone();
        drop(bound);
        if alive
            && !replaced
            && let Err(e) = self.shared.threads.unbind(&netns).await
        {
            eprintln!("rbox dns: cannot remove a sandbox's DNS redirect: {e}");
        }
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, sandbox: Arc<SandboxCtx>, shared: Arc<Shared>) {
    let mut forwards = JoinSet::new();
    loop {
        tokio::select! {
            ready = socket.readable() => if ready.is_err() { continue },
            Some(_) = forwards.join_next(), if !forwards.is_empty() => continue,
        }
        // The buffer lives on the stack between awaits, not in the task: an idle sandbox
        // costs no buffer. One byte more than a query may have tells an oversized one.
        let mut buf = [0u8; MAX_QUERY_LEN + 1];
        let Ok((n, peer)) = socket.try_recv_from(&mut buf) else {
            continue;
        };
        let (action, upstreams) = sandbox.decide(&shared, &buf[..n], Transport::Udp);
        match action {
            // A full socket buffer drops the answer (the client asks again) rather than
            // stall every other client of the sandbox.
            Action::Reply(answer) => {
                let _ = socket.try_send_to(&answer, peer);
            }
            Action::Forward(query) => match sandbox.forward_permit(&shared) {
                Some(permit) => {
                    let (socket, sandbox, budget) =
                        (socket.clone(), sandbox.clone(), shared.budget);
                    forwards.spawn(async move {
                        let answer = forward(
                            &sandbox.connector,
                            &upstreams,
                            &query,
                            Transport::Udp,
                            budget,
                        )
                        .await;
                        let _ = socket.send_to(&answer, peer).await;
                        drop(permit);
                    });
                }
                None => {
                    let _ = socket.try_send_to(&query.servfail(), peer);
                }
            },
            Action::Drop => {}
        }
    }
}

async fn serve_tcp(listener: TcpListener, sandbox: Arc<SandboxCtx>, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of descriptors, most likely: let some connections end.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        // Over the bound, the connection is closed at once (dropped) rather than queued.
        if let Some(permit) = sandbox.connection_permit(&shared) {
            connections.spawn(serve_connection(
                stream,
                sandbox.clone(),
                shared.clone(),
                permit,
            ));
        }
    }
}

/// Queries on one TCP connection, in turn, until it goes idle or misbehaves.
async fn serve_connection(
    mut stream: TcpStream,
    sandbox: Arc<SandboxCtx>,
    shared: Arc<Shared>,
    _permit: Permit,
) {
    loop {
        let Ok(Ok(len)) = timeout(TCP_IDLE, stream.read_u16()).await else {
            return;
        };
        if usize::from(len) > MAX_QUERY_LEN {
            return;
        }
        let mut query = vec![0; usize::from(len)];
        if !matches!(
            timeout(TCP_IO, stream.read_exact(&mut query)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let (action, upstreams) = sandbox.decide(&shared, &query, Transport::Tcp);
        let answer = match action {
            Action::Reply(answer) => answer,
            Action::Forward(query) => match sandbox.forward_permit(&shared) {
                Some(_permit) => {
                    forward(
                        &sandbox.connector,
                        &upstreams,
                        &query,
                        Transport::Tcp,
                        shared.budget,
                    )
                    .await
                }
                None => query.servfail(),
            },
            Action::Drop => return,
        };
        let mut framed = Vec::with_capacity(answer.len() + 2);
        framed.extend_from_slice(&(answer.len() as u16).to_be_bytes());
        framed.extend_from_slice(&answer);
        if !matches!(timeout(TCP_IO, stream.write_all(&framed)).await, Ok(Ok(()))) {
            return;
        }
    }
}

fn netns_ino(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).ok().map(|m| m.ino())
}

/// Tells whoever started us that we serve, then lets go of stdout (a pipe that the
/// starter closes when it has read the line).
fn announce_ready(report: &SyncReport) {
    let line = format!(
        "{READY} {}\n",
        serde_json::to_string(report).unwrap_or_default()
    );
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(line.as_bytes());
    let _ = stdout.flush();
    if let Ok(null) = fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(null);
    }
}

/// One socket per sandbox and per forward: allow as many descriptors as the hard limit.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path)
}
