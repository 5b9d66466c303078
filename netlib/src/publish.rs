//! Published ports: a host (address, protocol, port) forwarded by kernel DNAT to a
//! container's (address, port), with no userland proxy in the packet path.
//!
//! ```text
//! table inet rbox {
//!   map publish4 { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service }
//!   chain publish-prerouting {   # nat hook prerouting priority dstnat: from outside, hairpin
//!     meta nfproto ipv4 dnat ip to ip daddr . meta l4proto . th dport map @publish4
//!     meta nfproto ipv4 fib daddr type local dnat ip to 0.0.0.0 . meta l4proto . th dport map @publish4
//!   }
//!   chain publish-output { ... the same two rules ... }   # nat hook output: the host's own
//!   chain publish-postrouting {  # nat hook postrouting priority srcnat
//!     meta nfproto ipv4 ip saddr 127.0.0.0/8 ct status dnat masquerade
//!   }
//! }
//! ```
//!
//! A binding on `0.0.0.0` is the map key `0.0.0.0 . proto . port`, looked up only for
//! packets to one of the host's own addresses (`fib daddr type local`), so traffic that
//! merely crosses the host is never taken; a binding on one address is looked up for
//! that address alone. Two lookups per packet, whatever the number of ports. External
//! clients keep their source address; the `net-X-in` chain of the container's network
//! lets DNATed flows in ([`crate::firewall`]), its `net-X-nat` chain masquerades hairpin
//! flows from the same network, and connections from the host to 127.0.0.1 are
//! masqueraded here (the bridge gets `route_localnet` so such packets may leave).
//!
//! Ownership: while a container runs, its monitor holds a claim on each of its host
//! ports, a socket bound on (address, protocol, port) ([`Claims`]), so no host process
//! and no other container can take the port; the kernel's bind check decides conflicts.
//! The chains and the map are made once; a container's part is its map elements,
//! recorded in `<runroot>/netlib/ports/<container-id>.json` and removed exactly.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use socket2::{Domain, Socket, Type};

use crate::firewall::{FAMILY, TABLE, ct_status_dnat, saddr_in};
use crate::nft::{
    BaseChain, Batch, Chain, CmpOp, Data, Element, Expr, Family, Hook, MetaKey, NatKind, Nft,
    NftError, PayloadBase, REG_1, REG_2, Rule, Set, datatype, fib,
};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(
        "cannot publish {binding}: the port is held by {holder}; choose another host port{hint}"
    )]
    Conflict {
        binding: String,
        holder: String,
        hint: &'static str,
    },
    #[error("cannot publish {binding}: {source}")]
    Claim { binding: String, source: io::Error },
    #[error(
        "cannot publish on {0}: the container has no IPv6 address (rbox networks are IPv4 only for now); publish on an IPv4 address"
    )]
    NoIpv6(IpAddr),
    #[error("cannot publish ports: the container has no IPv4 address on a bridge network")]
    NoAddress,
    #[error("{action} {path}: {source}")]
    State {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(transparent)]
    Nft(#[from] NftError),
}

type Result<T> = std::result::Result<T, PublishError>;

/// Transport protocols that can be published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    fn number(self) -> u8 {
        match self {
            Protocol::Tcp => libc::IPPROTO_TCP as u8,
            Protocol::Udp => libc::IPPROTO_UDP as u8,
        }
    }
}

/// One port to publish: `host_ip: None` is every host address, `host_port: 0` a port
/// the kernel picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRequest {
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

/// A published port as it is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// `0.0.0.0` for every host address.
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_ip: IpAddr,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl Binding {
    /// Whether the two hold a host port in common.
    fn overlaps(&self, other: &Binding) -> bool {
        self.protocol == other.protocol
            && self.host_port == other.host_port
            && (self.host_ip == other.host_ip
                || self.host_ip.is_unspecified()
                || other.host_ip.is_unspecified())
    }

    fn host_text(&self) -> String {
        format!(
            "{}/{}",
            SocketAddr::new(self.host_ip, self.host_port),
            self.protocol.as_str()
        )
    }

    /// The map element: `host . proto . port : container . port` (each field padded to
    /// a 32-bit register, as the kernel stores concatenations).
    fn element(&self) -> Option<Element> {
        let (IpAddr::V4(host), IpAddr::V4(container)) = (self.host_ip, self.container_ip) else {
            return None;
        };
        let mut key = host.octets().to_vec();
        key.extend([self.protocol.number(), 0, 0, 0]);
        key.extend(self.host_port.to_be_bytes());
        key.extend([0, 0]);
        let mut data = container.octets().to_vec();
        data.extend(self.container_port.to_be_bytes());
        data.extend([0, 0]);
        Some(Element {
            key,
            data: Some(Data::Value(data)),
        })
    }
}

/// Where the ports of a container go.
#[derive(Debug, Clone)]
pub struct Target {
    pub container_id: String,
    /// Named in conflicts.
    pub container_name: String,
    pub container_ip: IpAddr,
    /// The bridge the container is on (gets `route_localnet`).
    pub interface: Option<String>,
    /// The container's port on that bridge (gets `hairpin_mode`: with bridge netfilter,
    /// the container's own packets to its published port are bridged back to it).
    pub bridge_port: Option<String>,
}

/// The claim sockets of a container's host ports: hold them while the container runs.
#[derive(Debug, Default)]
pub struct Claims(Vec<OwnedFd>);

impl Claims {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What is recorded of a container's published ports.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    container_name: String,
    bindings: Vec<Binding>,
}

/// Names of rbox's objects for publishing, in its table.
pub const MAP: &str = "publish4";
const PREROUTING: &str = "publish-prerouting";
const OUTPUT: &str = "publish-output";
const POSTROUTING: &str = "publish-postrouting";
/// The map's set id within its batch.
const MAP_ID: u32 = 0x5055_4231;

/// Publishes and unpublishes ports; state under `<runroot>/netlib/ports/`.
pub struct Publisher {
    dir: PathBuf,
}

impl Publisher {
    pub fn open(runroot: &Path) -> Result<Publisher> {
        let dir = runroot.join("netlib").join("ports");
        fs::create_dir_all(&dir).map_err(state_err("create directory", &dir))?;
        Ok(Publisher { dir })
    }

    /// Claims every requested host port (random ones picked by the kernel), then installs
    /// their DNAT to `target` in one batch. Returns the bindings and the claims to hold.
    /// On failure nothing is left.
    pub fn publish(
        &self,
        target: &Target,
        requests: &[PortRequest],
    ) -> Result<(Vec<Binding>, Claims)> {
        if !target.container_ip.is_ipv4() {
            return Err(PublishError::NoAddress);
        }
        if let Some(ip) = requests
            .iter()
            .find_map(|r| r.host_ip.filter(IpAddr::is_ipv6))
        {
            return Err(PublishError::NoIpv6(ip));
        }
        let _lock = self.lock()?;
        let others = self.records()?;
        let mut bindings: Vec<Binding> = Vec::new();
        let mut claims = Claims::default();
        for req in requests {
            let host_ip = req.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let mut binding = Binding {
                host_ip,
                host_port: req.host_port,
                container_ip: target.container_ip,
                container_port: req.container_port,
                protocol: req.protocol,
            };
            if req.host_port != 0 && bindings.iter().any(|b| b.overlaps(&binding)) {
                return Err(PublishError::Conflict {
                    binding: binding.host_text(),
                    holder: "another -p of the same container".into(),
                    hint: "",
                });
            }
            let (fd, port) = claim(&binding).map_err(|source| {
                if source.raw_os_error() == Some(libc::EADDRINUSE) {
                    holder_error(&binding, &others, &target.container_id)
                } else {
                    PublishError::Claim {
                        binding: binding.host_text(),
                        source,
                    }
                }
            })?;
            binding.host_port = port;
            claims.0.push(fd);
            bindings.push(binding);
        }
        if bindings.is_empty() {
            return Ok((bindings, claims));
        }
        if let Some(bridge) = &target.interface {
            set_route_localnet(bridge)?;
        }
        if let Some(port) = &target.bridge_port {
            set_hairpin_mode(port)?;
        }
        let mut nft = Nft::open()?;
        let mut batch = Batch::new(FAMILY, TABLE);
        if !nft.chain_exists(FAMILY, TABLE, PREROUTING)? {
            install_base(&mut batch);
        }
        // We hold the claim on each port, so an element already there under the same key
        // is left by a container whose monitor died unreclaimed: it goes first.
        let mut stale: Vec<(String, Record)> = Vec::new();
        for (id, rec) in others {
            if id == target.container_id {
                continue;
            }
            let (gone, kept): (Vec<Binding>, Vec<Binding>) = rec.bindings.iter().partition(|old| {
                bindings
                    .iter()
                    .any(|b| b.element().map(|e| e.key) == old.element().map(|e| e.key))
            });
            if !gone.is_empty() {
                let elements: Vec<Element> = gone.iter().filter_map(Binding::element).collect();
                batch.delete_elements(MAP, &elements);
                stale.push((
                    id,
                    Record {
                        bindings: kept,
                        ..rec
                    },
                ));
            }
        }
        let elements: Vec<Element> = bindings.iter().filter_map(Binding::element).collect();
        batch.add_elements(MAP, &elements, true);
        let record = Record {
            container_name: target.container_name.clone(),
            bindings: bindings.clone(),
        };
        self.save(&target.container_id, &record)?;
        if let Err(e) = nft.apply(&batch) {
            let _ = fs::remove_file(self.path(&target.container_id));
            return Err(e.into());
        }
        for (id, rec) in stale {
            self.save(&id, &rec)?;
        }
        Ok((bindings, claims))
    }

    /// Removes the container's published ports (nothing to do when it has none).
    pub fn unpublish(&self, container_id: &str) -> Result<()> {
        let _lock = self.lock()?;
        let path = self.path(container_id);
        let Some(rec) = read_record(&path)? else {
            return Ok(());
        };
        let elements: Vec<Element> = rec.bindings.iter().filter_map(Binding::element).collect();
        if !elements.is_empty() {
            let mut nft = Nft::open()?;
            let mut batch = Batch::new(FAMILY, TABLE);
            batch.delete_elements(MAP, &elements);
            if nft.apply(&batch).is_err() {
                // Some are gone already (the table was deleted by hand, say): remove the
                // rest one by one.
                for e in elements {
                    let mut one = Batch::new(FAMILY, TABLE);
                    one.delete_elements(MAP, &[e]);
                    let _ = nft.apply(&one);
                }
            }
        }
        fs::remove_file(&path).map_err(state_err("remove", &path))
    }

    /// The container's published ports, as installed.
    pub fn bindings(&self, container_id: &str) -> Result<Vec<Binding>> {
        Ok(read_record(&self.path(container_id))?
            .map(|r| r.bindings)
            .unwrap_or_default())
    }

    fn path(&self, container_id: &str) -> PathBuf {
        self.dir.join(format!("{container_id}.json"))
    }

    fn lock(&self) -> Result<Flock<fs::File>> {
        let path = self.dir.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(state_err("open lock", &path))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| PublishError::State {
            action: "lock",
            path,
            source: errno.into(),
        })
    }

    /// Every container's record, by container id.
    fn records(&self) -> Result<Vec<(String, Record)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(state_err("read directory", &self.dir))? {
            let path = entry
                .map_err(state_err("read directory", &self.dir))?
                .path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            if let Some(rec) = read_record(&path)? {
                out.push((id.to_string(), rec));
            }
        }
        Ok(out)
    }

    fn save(&self, container_id: &str, rec: &Record) -> Result<()> {
        let path = self.path(container_id);
        if rec.bindings.is_empty() {
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(state_err("remove", &path)(e)),
                _ => Ok(()),
            };
        }
        let tmp = path.with_extension("json.tmp");
        let json = serde_json::to_vec(rec).expect("a port record always serialises");
        fs::write(&tmp, json).map_err(state_err("write", &tmp))?;
        fs::rename(&tmp, &path).map_err(state_err("rename", &path))
    }
}

fn state_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> PublishError + 'a {
    move |source| PublishError::State {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn read_record(path: &Path) -> Result<Option<Record>> {
    match fs::read(path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(state_err("read", path)(e)),
    }
}

/// Binds the claim socket of `binding` (port 0: the kernel picks one); returns it and
/// the port. A TCP claim is bound but never listens: connections to the port are
/// DNATed before any socket lookup, and no one else can bind it.
fn claim(binding: &Binding) -> io::Result<(OwnedFd, u16)> {
    let domain = match binding.host_ip {
        IpAddr::V4(_) => Domain::IPV4,
        IpAddr::V6(_) => Domain::IPV6,
    };
    let kind = match binding.protocol {
        Protocol::Tcp => Type::STREAM,
        Protocol::Udp => Type::DGRAM,
    };
    let socket = Socket::new(domain, kind.cloexec(), None)?;
    if binding.host_ip.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&SocketAddr::new(binding.host_ip, binding.host_port).into())?;
    let port = socket
        .local_addr()?
        .as_socket()
        .map(|a| a.port())
        .unwrap_or(binding.host_port);
    Ok((socket.into(), port))
}

/// The conflict error for a port someone else holds: a container (by its record) or a
/// host process.
fn holder_error(binding: &Binding, records: &[(String, Record)], me: &str) -> PublishError {
    let holder = records
        .iter()
        .filter(|(id, _)| id != me)
        .find(|(_, rec)| rec.bindings.iter().any(|b| b.overlaps(binding)))
        .map(|(_, rec)| rec.container_name.clone());
    match holder {
        Some(name) => PublishError::Conflict {
            binding: binding.host_text(),
            holder: format!("container {name}"),
            hint: " or stop that container",
        },
        None => PublishError::Conflict {
            binding: binding.host_text(),
            holder: "a host process".into(),
            hint: " or stop that process",
        },
    }
}

/// Lets packets from 127.0.0.0/8 (the host's own connections to 127.0.0.1, DNATed)
/// be routed out of `interface`.
fn set_route_localnet(interface: &str) -> Result<()> {
    let path = PathBuf::from(format!(
        "/proc/sys/net/ipv4/conf/{interface}/route_localnet"
    ));
    fs::write(&path, "1").map_err(state_err("write", &path))
}

/// Lets the bridge send a frame back out of the port it came in by (a container reaching
/// its own published port through a host address).
fn set_hairpin_mode(port: &str) -> Result<()> {
    let path = PathBuf::from(format!("/sys/class/net/{port}/brport/hairpin_mode"));
    fs::write(&path, "1").map_err(state_err("write", &path))
}

/// The map, the chains and their rules (made once, with the first published port).
fn install_base(b: &mut Batch) {
    b.add_table();
    let ipv4_proto_port = datatype::concat(&[
        datatype::IPV4_ADDR,
        datatype::INET_PROTOCOL,
        datatype::INET_SERVICE,
    ]);
    b.add_set(
        &Set {
            name: MAP.into(),
            flags: 0,
            key_type: ipv4_proto_port,
            key_len: 12,
            fields: vec![4, 1, 2],
            data: Some((
                datatype::concat(&[datatype::IPV4_ADDR, datatype::INET_SERVICE]),
                8,
            )),
        },
        MAP_ID,
    );
    for (name, hook, priority) in [
        (PREROUTING, Hook::Prerouting, -100),
        (OUTPUT, Hook::Output, -100),
        (POSTROUTING, Hook::Postrouting, 100),
    ] {
        b.add_chain(&Chain {
            name: name.into(),
            base: Some(BaseChain {
                kind: "nat",
                hook,
                priority,
            }),
        });
    }
    for chain in [PREROUTING, OUTPUT] {
        for rule in dnat_rules(chain) {
            b.add_rule(&rule);
        }
    }
    let loopback: IpNet = "127.0.0.0/8".parse().expect("a valid network");
    b.add_rule(&Rule {
        chain: POSTROUTING.into(),
        exprs: [
            saddr_in(&loopback),
            ct_status_dnat(),
            vec![Expr::Masquerade],
        ]
        .concat(),
        comment: None,
    });
}

/// `ip daddr . meta l4proto . th dport` looked up in the map (first rule), then
/// `0.0.0.0 . meta l4proto . th dport` for packets to a host address (second rule).
fn dnat_rules(chain: &str) -> Vec<Rule> {
    let ipv4 = vec![
        Expr::Meta {
            key: MetaKey::Nfproto,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: vec![libc::NFPROTO_IPV4 as u8],
        },
    ];
    // The key's fields sit in consecutive registers: address, protocol, port.
    let proto_port = vec![
        Expr::Meta {
            key: MetaKey::L4proto,
            dreg: REG_2,
        },
        Expr::Payload {
            base: PayloadBase::Transport,
            offset: 2,
            len: 2,
            dreg: REG_2 + 1,
        },
        Expr::Lookup {
            set: MAP.into(),
            sreg: REG_1,
            dreg: Some(REG_1),
        },
        Expr::Nat {
            kind: NatKind::Dnat,
            family: Family::Ipv4,
            addr_reg: REG_1,
            proto_reg: Some(REG_2),
        },
    ];
    let exact = Rule {
        chain: chain.into(),
        exprs: [
            ipv4.clone(),
            vec![Expr::Payload {
                base: PayloadBase::Network,
                offset: 16,
                len: 4,
                dreg: REG_1,
            }],
            proto_port.clone(),
        ]
        .concat(),
        comment: None,
    };
    let any = Rule {
        chain: chain.into(),
        exprs: [
            ipv4,
            vec![
                Expr::Fib {
                    flags: fib::F_DADDR,
                    result: fib::RESULT_ADDRTYPE,
                    dreg: REG_1,
                },
                Expr::Cmp {
                    sreg: REG_1,
                    op: CmpOp::Eq,
                    data: fib::RTN_LOCAL.to_ne_bytes().to_vec(),
                },
                Expr::Immediate {
                    dreg: REG_1,
                    data: Ipv4Addr::UNSPECIFIED.octets().to_vec(),
                },
            ],
            proto_port,
        ]
        .concat(),
        comment: None,
    };
    vec![exact, any]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(host: &str, port: u16, proto: Protocol) -> Binding {
        Binding {
            host_ip: host.parse().unwrap(),
            host_port: port,
            container_ip: "172.18.0.2".parse().unwrap(),
            container_port: 80,
            protocol: proto,
        }
    }

    #[test]
    fn overlap_is_same_proto_and_port_with_a_common_address() {
        let any = b("0.0.0.0", 5000, Protocol::Tcp);
        assert!(any.overlaps(&b("10.0.0.1", 5000, Protocol::Tcp)));
        assert!(b("10.0.0.1", 5000, Protocol::Tcp).overlaps(&any));
        assert!(!any.overlaps(&b("10.0.0.1", 5000, Protocol::Udp)));
        assert!(!any.overlaps(&b("10.0.0.1", 5001, Protocol::Tcp)));
        assert!(!b("10.0.0.2", 5000, Protocol::Tcp).overlaps(&b("10.0.0.1", 5000, Protocol::Tcp)));
    }

    #[test]
    fn elements_are_padded_concatenations() {
        let e = b("10.0.0.1", 8080, Protocol::Udp).element().unwrap();
        assert_eq!(e.key, [10, 0, 0, 1, 17, 0, 0, 0, 0x1f, 0x90, 0, 0]);
        assert_eq!(e.data, Some(Data::Value(vec![172, 18, 0, 2, 0, 80, 0, 0])));
    }

    #[test]
    fn base_has_two_lookups_per_hook_and_no_per_port_rule() {
        let mut batch = Batch::new(FAMILY, TABLE);
        install_base(&mut batch);
        let rules = batch
            .summary
            .iter()
            .filter(|s| s.starts_with("add rule"))
            .count();
        assert_eq!(rules, 5);
        assert!(batch.summary.iter().any(|s| s == "add set publish4"));
    }
}

/// Against the real kernel, each in a private network namespace of its own (root).
#[cfg(test)]
mod kernel_tests {
    use super::*;
    use crate::netns::in_private_netns;
    use std::process::Command;

    fn nft_list() -> String {
        let out = Command::new("nft")
            .args(["list", "table", "inet", "rbox"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn target(id: &str, name: &str, ip: &str) -> Target {
        Target {
            container_id: id.into(),
            container_name: name.into(),
            container_ip: ip.parse().unwrap(),
            interface: None,
            bridge_port: None,
        }
    }

    fn tcp(host_ip: Option<&str>, host_port: u16, container_port: u16) -> PortRequest {
        PortRequest {
            host_ip: host_ip.map(|i| i.parse().unwrap()),
            host_port,
            container_port,
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn publish_claims_installs_and_removes_exactly() {
        in_private_netns(|| {
            assert!(
                Command::new("ip")
                    .args(["link", "set", "lo", "up"])
                    .status()
                    .unwrap()
                    .success()
            );
            let dir = tempfile::tempdir().unwrap();
            let p = Publisher::open(dir.path()).unwrap();
            let (bindings, claims) = p
                .publish(
                    &target("a", "web", "172.18.0.2"),
                    &[tcp(None, 5000, 80), tcp(Some("127.0.0.1"), 0, 81)],
                )
                .unwrap();
            assert_eq!(claims.len(), 2);
            assert_eq!(bindings[0].host_port, 5000);
            let random = bindings[1].host_port;
            assert_ne!(random, 0, "the kernel picked a port");
            let text = nft_list();
            for want in [
                "map publish4",
                "type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service",
                "0.0.0.0 . tcp . 5000 : 172.18.0.2 . 80",
                &format!("127.0.0.1 . tcp . {random} : 172.18.0.2 . 81"),
                "fib daddr type local",
                "type nat hook output priority",
                "masquerade",
            ] {
                assert!(text.contains(want), "missing {want:?} in:\n{text}");
            }
            // Another container, then a host process, on a held port.
            let err = p
                .publish(
                    &target("b", "other", "172.18.0.3"),
                    &[tcp(Some("127.0.0.1"), 5000, 80)],
                )
                .unwrap_err()
                .to_string();
            assert!(err.contains("held by container web"), "{err}");
            assert!(
                std::net::TcpListener::bind("0.0.0.0:5000").is_err(),
                "the claim holds the port"
            );
            let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = host.local_addr().unwrap().port();
            let err = p
                .publish(&target("b", "other", "172.18.0.3"), &[tcp(None, port, 80)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("held by a host process"), "{err}");
            assert!(
                p.bindings("b").unwrap().is_empty(),
                "nothing of the failed one"
            );
            p.unpublish("a").unwrap();
            p.unpublish("a").unwrap();
            let text = nft_list();
            assert!(!text.contains("172.18.0.2"), "{text}");
            drop(claims);
            // Other tests of this process fork while this one runs (helpers, commands);
            // a child that has not yet closed or exec'd holds a copy of the claim for a
            // moment, so the port frees within a grace period, not at once.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while std::net::TcpListener::bind("0.0.0.0:5000").is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the claim was not released"
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        });
    }

    #[test]
    fn a_stale_element_of_a_dead_owner_is_replaced() {
        in_private_netns(|| {
            let dir = tempfile::tempdir().unwrap();
            let p = Publisher::open(dir.path()).unwrap();
            let (_, claims) = p
                .publish(&target("a", "old", "172.18.0.2"), &[tcp(None, 6000, 80)])
                .unwrap();
            drop(claims); // its monitor died
            let (_, _claims) = p
                .publish(&target("b", "new", "172.18.0.3"), &[tcp(None, 6000, 80)])
                .unwrap();
            let text = nft_list();
            assert!(
                text.contains("0.0.0.0 . tcp . 6000 : 172.18.0.3 . 80"),
                "{text}"
            );
            assert!(!text.contains("172.18.0.2"), "{text}");
            assert!(p.bindings("a").unwrap().is_empty());
            p.unpublish("a").unwrap();
            p.unpublish("b").unwrap();
            assert!(!nft_list().contains("6000"));
        });
    }
}
