//! Links, addresses and routes through rtnetlink, behind a synchronous API.
//!
//! [`Kernel`] owns a current-thread tokio runtime; [`Links`] is one rtnetlink
//! connection, either in the host's namespace or in a sandbox's (through a socket
//! opened there, see [`crate::netns`]). Nothing here shells out.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, IpVlanMode, LinkAttribute, LinkFlags, LinkMessage, MacVlanMode,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteScope};
use rtnetlink::{
    Handle, LinkBridge, LinkIpVlan, LinkMacVlan, LinkMessageBuilder, LinkUnspec, LinkVlan,
    RouteMessageBuilder,
};
use tokio::runtime::Runtime;

use crate::netns::{self, NetnsError};

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{op}: {source}")]
    Netlink { op: String, source: io::Error },
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("start netlink runtime: {0}")]
    Runtime(io::Error),
    #[error("set sysctl {key}: {source}")]
    Sysctl { key: String, source: io::Error },
}

type Result<T> = std::result::Result<T, KernelError>;

impl KernelError {
    /// The errno the kernel answered with, for callers that tell answers apart.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KernelError::Netlink { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

const ENOENT: i32 = libc::ENOENT;
const ENODEV: i32 = libc::ENODEV;
const EEXIST: i32 = libc::EEXIST;
const ESRCH: i32 = libc::ESRCH;
const EINVAL: i32 = libc::EINVAL;
const EOPNOTSUPP: i32 = libc::EOPNOTSUPP;

/// The errno of a failed rtnetlink request, as an `io::Error`.
fn to_io(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// The netlink runtime, the host's rtnetlink connection (made on first use) and one
/// connection per sandbox touched (kept, so a join opens its sandbox's socket once).
pub struct Kernel {
    rt: Runtime,
    host: OnceCell<Handle>,
    /// Per pinned namespace: the handle and the task that owns the socket (which keeps
    /// the namespace alive until it is closed).
    sandboxes: RefCell<HashMap<PathBuf, (Handle, tokio::task::JoinHandle<()>)>>,
}

impl Kernel {
    pub fn new() -> Result<Kernel> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(KernelError::Runtime)?;
        Ok(Kernel {
            rt,
            host: OnceCell::new(),
            sandboxes: RefCell::new(HashMap::new()),
        })
    }

    /// Links of the host's (the calling process's) network namespace.
    pub fn host(&self) -> Result<Links<'_>> {
        if let Some(handle) = self.host.get() {
            return Ok(Links {
                rt: &self.rt,
                handle: handle.clone(),
            });
        }
        let _enter = self.rt.enter();
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|source| KernelError::Netlink {
                op: "open netlink socket".into(),
                source,
            })?;
        self.rt.spawn(conn);
        let handle = self.host.get_or_init(|| handle).clone();
        Ok(Links {
            rt: &self.rt,
            handle,
        })
    }

    /// Deletes the host's link `name` and returns once it is gone from the host, without
    /// waiting for the kernel to finish (see [`unlink`](crate::unlink)). Returns whether
    /// it existed.
    pub fn delete_host_link(&self, name: &str) -> Result<bool> {
        let Some(index) = self.host()?.index(name)? else {
            return Ok(false);
        };
        crate::unlink::delete(index).map_err(|source| KernelError::Netlink {
            op: format!("delete link {name}"),
            source,
        })
    }

    /// Links inside the namespace pinned at `pin`.
    pub fn sandbox(&self, pin: &Path) -> Result<Links<'_>> {
        if let Some((handle, _)) = self.sandboxes.borrow().get(pin) {
            return Ok(Links {
                rt: &self.rt,
                handle: handle.clone(),
            });
        }
        let socket = netns::route_socket_in(pin)?;
        self.connect(pin, socket)
    }

    /// Closes our connection into the namespace at `pin` and unpins it (see
    /// [`netns::remove`]): nothing of ours keeps it alive afterwards.
    pub fn remove_sandbox(&self, pin: &Path) -> Result<()> {
        let entry = self.sandboxes.borrow_mut().remove(pin);
        if let Some((handle, task)) = entry {
            drop(handle);
            task.abort();
            // Let the runtime drop the aborted task, and with it the socket.
            let _ = self.rt.block_on(task);
        }
        Ok(netns::remove(pin)?)
    }

    /// Creates a namespace pinned at `pin`, with `lo` up; returns its links.
    pub fn create_sandbox(&self, pin: &Path) -> Result<Links<'_>> {
        let socket = netns::create(pin)?;
        let links = self.connect(pin, socket).and_then(|links| {
            let lo = links.index("lo")?.ok_or_else(|| KernelError::Netlink {
                op: "find lo in new sandbox".into(),
                source: io::Error::from_raw_os_error(ENODEV),
            })?;
            links.set_up(lo)?;
            Ok(links)
        });
        if links.is_err() {
            let _ = self.remove_sandbox(pin);
        }
        links
    }

    fn connect(&self, pin: &Path, socket: OwnedFd) -> Result<Links<'_>> {
        let _enter = self.rt.enter();
        // SAFETY: we own `socket`, a valid netlink socket; ownership passes to TokioSocket.
        let socket = unsafe {
            <netlink_sys::TokioSocket as std::os::fd::FromRawFd>::from_raw_fd(socket.into_raw_fd())
        };
        let (conn, handle, _) = rtnetlink::from_socket(socket);
        let task = self.rt.spawn(conn);
        self.sandboxes
            .borrow_mut()
            .insert(pin.to_path_buf(), (handle.clone(), task));
        Ok(Links {
            rt: &self.rt,
            handle,
        })
    }
}

/// What a new veth pair looks like: the host side on a bridge, the peer in a sandbox.
pub struct VethSpec<'a> {
    pub host_name: &'a str,
    /// Bridge the host side is enslaved to.
    pub master: u32,
    pub peer_name: &'a str,
    /// The sandbox's namespace (an open nsfs file).
    pub peer_netns: &'a File,
    pub peer_mac: [u8; 6],
    pub mtu: Option<u32>,
}

/// A macvlan or ipvlan link: a child of a parent link, with its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildKind {
    MacVlan(MacVlanMode),
    IpVlan(IpVlanMode),
}

impl ChildKind {
    /// The kernel's name of the link kind.
    pub fn name(&self) -> &'static str {
        match self {
            ChildKind::MacVlan(_) => "macvlan",
            ChildKind::IpVlan(_) => "ipvlan",
        }
    }
}

/// What a new macvlan/ipvlan child looks like: on a parent of the host, born in a sandbox.
pub struct ChildSpec<'a> {
    pub kind: ChildKind,
    /// Index of the parent link in the namespace of the connection that makes the child.
    pub parent: u32,
    /// Its name in the sandbox (`ethN`).
    pub name: &'a str,
    /// The sandbox's namespace (an open nsfs file).
    pub netns: &'a File,
    /// Its own MAC address; `None` keeps the kernel's choice (ipvlan and macvlan
    /// passthru children carry the parent's, which must not be changed through them).
    pub mac: Option<[u8; 6]>,
}

/// What rbox reads of an existing link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkDetails {
    pub index: u32,
    pub up: bool,
    /// Its Ethernet address, when it has one.
    pub mac: Option<[u8; 6]>,
}

impl LinkDetails {
    fn from_message(msg: &LinkMessage) -> LinkDetails {
        let mac = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            _ => None,
        });
        LinkDetails {
            index: msg.header.index,
            up: msg.header.flags.contains(LinkFlags::Up),
            mac,
        }
    }
}

/// One rtnetlink connection, in the host's namespace or a sandbox's.
pub struct Links<'k> {
    rt: &'k Runtime,
    handle: Handle,
}

impl Links<'_> {
    fn run<T>(
        &self,
        op: impl FnOnce() -> String,
        fut: impl Future<Output = std::result::Result<T, rtnetlink::Error>>,
    ) -> Result<T> {
        self.rt.block_on(fut).map_err(|e| KernelError::Netlink {
            op: op(),
            source: to_io(e),
        })
    }

    /// The index of link `name`, if it exists.
    pub fn index(&self, name: &str) -> Result<Option<u32>> {
        Ok(self.link(name)?.map(|(index, _)| index))
    }

    /// Index of link `name` and whether it is up, if it exists.
    pub fn link(&self, name: &str) -> Result<Option<(u32, bool)>> {
        Ok(self.details(name)?.map(|d| (d.index, d.up)))
    }

    /// Index, state and MAC address of link `name`, if it exists.
    pub fn details(&self, name: &str) -> Result<Option<LinkDetails>> {
        let req = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        let res = self.rt.block_on(async move {
            futures::pin_mut!(req);
            req.try_next().await
        });
        match res.map_err(to_io) {
            Ok(msg) => Ok(msg.as_ref().map(LinkDetails::from_message)),
            Err(e) if matches!(errno(&e), ENODEV | ENOENT) => Ok(None),
            Err(source) => Err(KernelError::Netlink {
                op: format!("look up link {name}"),
                source,
            }),
        }
    }

    /// Creates bridge `name` (up, with `mac` so it does not change as ports come and go);
    /// returns its index and whether it was made now.
    pub fn create_bridge(&self, name: &str, mtu: Option<u32>, mac: [u8; 6]) -> Result<(u32, bool)> {
        // The common case: it is there, up, from an earlier join.
        if let Some((index, true)) = self.link(name)? {
            return Ok((index, false));
        }
        let mut msg = LinkBridge::new(name).address(mac.to_vec()).up();
        if let Some(mtu) = mtu {
            msg = msg.mtu(mtu);
        }
        let created = match self
            .rt
            .block_on(self.handle.link().add(msg.build()).execute())
            .map_err(to_io)
        {
            Ok(()) => true,
            Err(e) if errno(&e) == EEXIST => false,
            Err(source) => {
                return Err(KernelError::Netlink {
                    op: format!("create bridge {name}"),
                    source,
                });
            }
        };
        let index = self.index(name)?.ok_or_else(|| KernelError::Netlink {
            op: format!("create bridge {name}"),
            source: io::Error::from_raw_os_error(ENODEV),
        })?;
        if !created {
            // Made by a racing rbox, or left down after a reboot of the link: make sure it is up.
            self.set_up(index)?;
        }
        Ok((index, created))
    }

    /// Creates a veth pair whose peer is born inside the sandbox under its final name.
    pub fn create_veth(&self, spec: &VethSpec) -> Result<()> {
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(spec.peer_name)
            .setns_by_fd(spec.peer_netns.as_raw_fd())
            .address(spec.peer_mac.to_vec());
        let mut host = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
            .name(spec.host_name)
            .controller(spec.master)
            .up();
        if let Some(mtu) = spec.mtu {
            peer = peer.mtu(mtu);
            host = host.mtu(mtu);
        }
        let msg = host
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .build();
        self.run(
            || format!("create veth pair {} / {}", spec.host_name, spec.peer_name),
            self.handle.link().add(msg).execute(),
        )
    }

    /// Creates the 802.1Q sub-interface `name` of link `base` for VLAN `id`, up; returns
    /// its index.
    pub fn create_vlan(&self, name: &str, base: u32, id: u16) -> Result<u32> {
        self.run(
            || format!("create VLAN sub-interface {name}"),
            self.handle
                .link()
                .add(LinkVlan::new(name, base, id).up().build())
                .execute(),
        )?;
        self.index(name)?.ok_or_else(|| KernelError::Netlink {
            op: format!("create VLAN sub-interface {name}"),
            source: io::Error::from_raw_os_error(ENODEV),
        })
    }

    /// Creates a macvlan/ipvlan child of a parent in this namespace, born inside the
    /// sandbox under its final name and up: one request (no temporary name, no move, no
    /// rename), and nothing is ever left in the host's namespace.
    pub fn create_child(&self, spec: &ChildSpec) -> Result<()> {
        let fd = spec.netns.as_raw_fd();
        let mut msg = match spec.kind {
            ChildKind::MacVlan(mode) => LinkMacVlan::new(spec.name, spec.parent, mode)
                .setns_by_fd(fd)
                .up()
                .build(),
            ChildKind::IpVlan(mode) => LinkIpVlan::new(spec.name, spec.parent, mode)
                .setns_by_fd(fd)
                .up()
                .build(),
        };
        if let Some(mac) = spec.mac {
            msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        self.run(
            || {
                format!(
                    "create {} link {} in the sandbox",
                    spec.kind.name(),
                    spec.name
                )
            },
            self.handle.link().add(msg).execute(),
        )
    }

    /// Whether the kernel has link kind `kind` (built in, loaded, or loaded on demand):
    /// asks it to make such a link without a parent, which a kind it has refuses as
    /// invalid and a kind it lacks as unsupported. Nothing is created. For kinds that
    /// need a parent (vlan, macvlan, ipvlan).
    pub fn has_link_kind(&self, kind: InfoKind) -> Result<bool> {
        // No name either: a name in use would turn the request into a change of that link.
        let msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(kind.clone()).build();
        match self
            .rt
            .block_on(self.handle.link().add(msg).execute())
            .map_err(to_io)
        {
            Err(e) if errno(&e) == EOPNOTSUPP => Ok(false),
            Err(e) if errno(&e) == EINVAL => Ok(true),
            Err(source) => Err(KernelError::Netlink {
                op: format!("probe link kind {kind}"),
                source,
            }),
            Ok(()) => Err(KernelError::Netlink {
                op: format!("probe link kind {kind}: a link was made without a parent"),
                source: io::Error::from_raw_os_error(EINVAL),
            }),
        }
    }

    /// Deletes link `name`; returns whether it existed.
    pub fn delete(&self, name: &str) -> Result<bool> {
        let Some(index) = self.index(name)? else {
            return Ok(false);
        };
        match self
            .rt
            .block_on(self.handle.link().del(index).execute())
            .map_err(to_io)
        {
            Ok(()) => Ok(true),
            Err(e) if matches!(errno(&e), ENODEV | ENOENT) => Ok(false),
            Err(source) => Err(KernelError::Netlink {
                op: format!("delete link {name}"),
                source,
            }),
        }
    }

    pub fn set_up(&self, index: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.run(
            || format!("set link {index} up"),
            self.handle.link().set(msg).execute(),
        )
    }

    /// Adds `addr` (with prefix) to link `index`; already there is fine.
    pub fn add_address(&self, index: u32, addr: IpNet) -> Result<()> {
        let req = self
            .handle
            .address()
            .add(index, addr.addr(), addr.prefix_len())
            .execute();
        match self.rt.block_on(req).map_err(to_io) {
            Err(e) if errno(&e) != EEXIST => Err(KernelError::Netlink {
                op: format!("add address {addr} to link {index}"),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Adds the default route through `gateway`.
    pub fn add_default_route(&self, gateway: IpAddr) -> Result<()> {
        let msg = match gateway {
            IpAddr::V4(gw) => RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build(),
            IpAddr::V6(gw) => RouteMessageBuilder::<Ipv6Addr>::new().gateway(gw).build(),
        };
        self.run(
            || format!("add default route via {gateway}"),
            self.handle.route().add(msg).execute(),
        )
    }

    /// Adds a default route straight out of link `index` (no gateway: the link routes,
    /// as an ipvlan l3 child does through its parent's namespace).
    pub fn add_default_dev_route(&self, index: u32, ipv6: bool) -> Result<()> {
        let msg = if ipv6 {
            RouteMessageBuilder::<Ipv6Addr>::new()
                .output_interface(index)
                .scope(RouteScope::Link)
                .build()
        } else {
            RouteMessageBuilder::<Ipv4Addr>::new()
                .output_interface(index)
                .scope(RouteScope::Link)
                .build()
        };
        self.run(
            || format!("add default route on link {index}"),
            self.handle.route().add(msg).execute(),
        )
    }

    /// Deletes the default route through `gateway`, if present.
    pub fn delete_default_route(&self, gateway: IpAddr) -> Result<()> {
        let msg = match gateway {
            IpAddr::V4(gw) => RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build(),
            IpAddr::V6(gw) => RouteMessageBuilder::<Ipv6Addr>::new().gateway(gw).build(),
        };
        match self
            .rt
            .block_on(self.handle.route().del(msg).execute())
            .map_err(to_io)
        {
            Err(e) if !matches!(errno(&e), ESRCH | ENOENT) => Err(KernelError::Netlink {
                op: format!("delete default route via {gateway}"),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Prefixes in use in this namespace: routes (other than default routes and the local
    /// table) and addresses of every link. IPAM keeps new networks off them.
    pub fn prefixes_in_use(&self) -> Result<Vec<IpNet>> {
        let mut out = Vec::new();
        for family in [
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ] {
            let query = match family {
                IpAddr::V4(_) => RouteMessageBuilder::<Ipv4Addr>::new().build(),
                IpAddr::V6(_) => RouteMessageBuilder::<Ipv6Addr>::new().build(),
            };
            let routes: Vec<_> = self.run(
                || "list routes".into(),
                self.handle.route().get(query).execute().try_collect(),
            )?;
            for r in routes {
                const RT_TABLE_LOCAL: u8 = 255;
                let prefix = r.header.destination_prefix_length;
                if prefix == 0 || r.header.table == RT_TABLE_LOCAL {
                    continue;
                }
                for attr in &r.attributes {
                    let addr = match attr {
                        RouteAttribute::Destination(RouteAddress::Inet(a)) => IpAddr::V4(*a),
                        RouteAttribute::Destination(RouteAddress::Inet6(a)) => IpAddr::V6(*a),
                        _ => continue,
                    };
                    if let Ok(net) = IpNet::new(addr, prefix) {
                        out.push(net.trunc());
                    }
                }
            }
        }
        let addrs: Vec<_> = self.run(
            || "list addresses".into(),
            self.handle.address().get().execute().try_collect(),
        )?;
        for a in addrs {
            for attr in &a.attributes {
                if let AddressAttribute::Address(addr) = attr
                    && let Ok(net) = IpNet::new(*addr, a.header.prefix_len)
                {
                    out.push(net.trunc());
                }
            }
        }
        Ok(out)
    }
}

/// Turns on IPv4 forwarding in the host's namespace (bridged networks route through it).
/// Returns whether it changed.
pub fn enable_ipv4_forwarding() -> Result<bool> {
    let key = "/proc/sys/net/ipv4/ip_forward";
    let sysctl_err = |source| KernelError::Sysctl {
        key: key.into(),
        source,
    };
    if std::fs::read_to_string(key).map_err(sysctl_err)?.trim() == "1" {
        return Ok(false);
    }
    std::fs::write(key, "1").map_err(sysctl_err)?;
    Ok(true)
}
