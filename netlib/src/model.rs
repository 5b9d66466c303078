//! The CNM objects as rbox stores them: [`Network`] (persistent), [`Endpoint`] and
//! [`Sandbox`] (volatile). Plain serde structs: other parts (the embedded DNS, port
//! publishing, `inspect`) read them from the state files described in [`crate::store`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// A named, isolated segment with its IPAM configuration: `<root>/networks/<id>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// 64 lowercase hex.
    pub id: String,
    pub name: String,
    /// Name of the driver that owns the network's kernel objects (`bridge`, `host`, `null`, ...).
    pub driver: String,
    pub created: DateTime<Utc>,
    /// One entry per subnet (IPv4 now; an IPv6 one joins it for dual stack).
    pub ipam: Vec<Subnet>,
    /// No traffic in or out of the network, only between its members.
    pub internal: bool,
    pub enable_ipv6: bool,
    /// Containers on the network resolve each other by name (user-defined networks).
    pub dns_enabled: bool,
    /// The kernel link the network is built on: the bridge its driver owns (`rbox0`,
    /// `br-<12 hex>`), or the parent of macvlan/ipvlan children (`eth1`, `eth1.100`),
    /// which no other network may claim.
    pub interface: Option<String>,
    /// MTU of the network's links (`-o com.docker.network.driver.mtu`).
    pub mtu: Option<u32>,
    /// `-o` options as given (Docker shows them in `inspect`).
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// One IPAM pool of a network, as Docker's `IPAM.Config[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub subnet: IpNet,
    /// Addresses for endpoints come from here (default: the whole subnet).
    pub ip_range: Option<IpNet>,
    /// The network's side of the subnet; `None` for networks without one (macvlan without `--gateway`).
    pub gateway: Option<IpAddr>,
}

impl Network {
    /// The 12-hex short id shown by `network ls`.
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }

    /// True for the networks rbox makes itself and never removes (`bridge`, `host`, `none`).
    pub fn is_predefined(&self) -> bool {
        crate::defaults::PREDEFINED.contains(&self.name.as_str())
    }
}

/// One attachment of one sandbox to one network: the record the embedded DNS and port
/// publishing read. Kept in `<runroot>/netlib/endpoints/<network-id>.json` while the
/// endpoint is up (see [`crate::store`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// 64 lowercase hex.
    pub id: String,
    pub network_id: String,
    pub network_name: String,
    pub container_id: String,
    /// The container's name without Docker's leading `/`.
    pub container_name: String,
    /// `--network-alias` names.
    pub aliases: Vec<String>,
    pub hostname: String,
    /// Addresses with the subnet's prefix length, one per subnet of the network.
    pub addresses: Vec<IpNet>,
    /// `aa:bb:cc:dd:ee:ff`; empty for endpoints without a link (null, host).
    pub mac_address: String,
    /// The sandbox's pinned network namespace; `None` for host networking.
    pub netns: Option<PathBuf>,
    /// Interface name inside the sandbox (`eth0`, `eth1`, ...); empty when there is none.
    pub interface: String,
    /// Host side of the link (the veth on the bridge), when there is one.
    pub host_interface: Option<String>,
    /// This endpoint carries the sandbox's default route.
    pub default_route: bool,
}

impl Endpoint {
    /// The endpoint's IPv4 address with prefix, if it has one.
    pub fn ipv4(&self) -> Option<IpNet> {
        self.addresses.iter().copied().find(|a| a.addr().is_ipv4())
    }

    /// The endpoint's IPv6 address with prefix, if it has one.
    pub fn ipv6(&self) -> Option<IpNet> {
        self.addresses.iter().copied().find(|a| a.addr().is_ipv6())
    }

    /// All names the endpoint answers to on its network: container name, aliases, hostname.
    pub fn names(&self) -> Vec<&str> {
        let mut names = vec![self.container_name.as_str()];
        names.extend(self.aliases.iter().map(String::as_str));
        names.push(&self.hostname);
        names.retain(|n| !n.is_empty());
        names.dedup();
        names
    }
}

/// What the engine tells netlib about a container's network identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxConfig {
    pub hostname: String,
    pub domainname: Option<String>,
    /// `--dns`: replaces the nameservers.
    pub dns: Vec<IpAddr>,
    /// `--dns-search`: replaces the search domains.
    pub dns_search: Vec<String>,
    /// `--dns-option`: replaces the options.
    pub dns_options: Vec<String>,
    /// `--add-host NAME:IP`.
    pub extra_hosts: Vec<(String, IpAddr)>,
    /// Where netlib writes `hosts`, `hostname` and `resolv.conf` for the engine to bind-mount.
    pub files_dir: PathBuf,
}

/// A container's network stack: `<runroot>/netlib/sandboxes/<container-id>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    pub container_id: String,
    /// The pinned netns (`<runroot>/netns/<container-id>`), made at the first join of a
    /// driver that needs one; `None` until then, and for host networking.
    pub netns: Option<PathBuf>,
    /// The container shares the host's network namespace (it joined the `host` network).
    pub host_network: bool,
    pub config: SandboxConfig,
    /// The sandbox's endpoints in join order (the first one on a network with a gateway
    /// carries the default route). Teardown works from these copies.
    pub endpoints: Vec<Endpoint>,
}

/// What a container asks of one network when it joins it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointConfig {
    pub container_name: String,
    pub aliases: Vec<String>,
    /// `--ip` / `--ip6`: static addresses, validated against the network's IPAM.
    pub addresses: Vec<IpAddr>,
    /// `--mac-address`.
    pub mac_address: Option<String>,
}

/// A fresh 64-hex identifier.
pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// True for a 64 lowercase hex id.
pub fn is_full_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_lowercase_hex_and_distinct() {
        let (a, b) = (new_id(), new_id());
        assert!(is_full_id(&a) && is_full_id(&b));
        assert_ne!(a, b);
        assert!(!is_full_id("ABC"));
    }

    #[test]
    fn endpoint_names_skip_empty_and_keep_order() {
        let ep = Endpoint {
            id: new_id(),
            network_id: new_id(),
            network_name: "n".into(),
            container_id: new_id(),
            container_name: "web".into(),
            aliases: vec!["www".into()],
            hostname: String::new(),
            addresses: vec!["172.18.0.2/16".parse().unwrap()],
            mac_address: String::new(),
            netns: None,
            interface: "eth0".into(),
            host_interface: None,
            default_route: true,
        };
        assert_eq!(ep.names(), ["web", "www"]);
        assert_eq!(ep.ipv4().unwrap().to_string(), "172.18.0.2/16");
        assert!(ep.ipv6().is_none());
    }
}
