//! The responder's input: plain data built from netlib's state by [`super::load`].
//!
//! The responder's serving side never reads netlib's state files itself; it calls a
//! loader that returns a [`Snapshot`], so the two meet only at these types.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

/// Everything the responder serves at one moment: the sandboxes to listen in and the
/// names of every network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub sandboxes: Vec<SandboxView>,
    pub networks: Vec<NetworkRecords>,
}

/// One sandbox (a container's network namespace) as the responder sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxView {
    /// The sandbox's id (64 hex); identifies the asking side of every query.
    pub id: String,
    /// The pinned network namespace, `<runroot>/netns/<id>`.
    pub netns_path: PathBuf,
    /// Ids of the networks the sandbox has an endpoint on.
    pub networks: Vec<String>,
    /// Where names that are not the networks' own go, tried in order: the container's
    /// `--dns` servers, else the host's nameservers without those a sandbox cannot reach
    /// (see [`crate::files::upstreams`]). Reached from inside the sandbox.
    pub upstreams: Vec<SocketAddr>,
    /// Search domains of the container's resolv.conf: a query for `NAME.DOMAIN` is also
    /// answered as `NAME`, since resolvers append these before asking.
    pub search: Vec<String>,
}

/// The names of one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRecords {
    pub id: String,
    /// The network's name: `NAME.NETWORK` resolves as `NAME` on that network (as Docker).
    pub name: String,
    /// False for the default `bridge` network (no name resolution, as in Docker).
    pub dns_enabled: bool,
    pub endpoints: Vec<EndpointNames>,
}

/// One endpoint's names and addresses on its network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointNames {
    /// The container's name first (it names the address in PTR answers), then its
    /// `--network-alias`es and its hostname.
    pub names: Vec<String>,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

impl Snapshot {
    /// Sandboxes with at least one endpoint on a DNS-enabled network: those the
    /// responder listens in. When there are none, the responder has nothing to do.
    pub fn dns_sandboxes(&self) -> impl Iterator<Item = &SandboxView> {
        self.sandboxes.iter().filter(|sb| {
            sb.networks.iter().any(|id| {
                self.networks
                    .iter()
                    .any(|net| net.dns_enabled && &net.id == id)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(id: &str, networks: &[&str]) -> SandboxView {
        SandboxView {
            id: id.into(),
            netns_path: format!("/run/rbox/netns/{id}").into(),
            networks: networks.iter().map(|n| n.to_string()).collect(),
            upstreams: vec![],
            search: vec![],
        }
    }

    fn network(id: &str, dns_enabled: bool) -> NetworkRecords {
        NetworkRecords {
            id: id.into(),
            name: id.into(),
            dns_enabled,
            endpoints: vec![],
        }
    }

    #[test]
    fn only_sandboxes_on_dns_networks_are_served() {
        let snap = Snapshot {
            sandboxes: vec![
                sandbox("a", &["bridge"]),
                sandbox("b", &["bridge", "user"]),
                sandbox("c", &["gone"]),
            ],
            networks: vec![network("bridge", false), network("user", true)],
        };
        let ids: Vec<_> = snap.dns_sandboxes().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["b"]);
    }
}
