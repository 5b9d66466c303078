//! The responder's loader: netlib's state (network definitions, endpoint records,
//! sandboxes) turned into a [`Snapshot`].

use std::net::{IpAddr, SocketAddr};

use crate::files::{self, DnsMode};
use crate::model::{Endpoint, Network, Sandbox};
use crate::store::{Store, StoreError};

use super::snapshot::{EndpointNames, NetworkRecords, SandboxView, Snapshot};

/// Reads the state under netlib's state lock, so that one load sees every change whole
/// (a join writes several files). Never call it while holding that lock: rbox commands
/// sync the responder only after releasing it (see [`crate::Netlib`]).
pub fn load(store: &Store) -> Result<Snapshot, StoreError> {
    let locked = store.lock()?;
    let networks: Vec<Network> = locked
        .networks()?
        .into_iter()
        .filter(|n| n.dns_enabled)
        .collect();
    let mut records = Vec::with_capacity(networks.len());
    for network in &networks {
        let endpoints = locked.endpoints(&network.id)?;
        records.push(NetworkRecords {
            id: network.id.clone(),
            name: network.name.clone(),
            dns_enabled: true,
            endpoints: endpoints.endpoints.values().map(endpoint_names).collect(),
        });
    }
    let sandboxes = locked.sandboxes()?;
    drop(locked);
    let host = files::host_resolv_conf();
    Ok(Snapshot {
        sandboxes: sandboxes
            .into_iter()
            .filter_map(|sb| sandbox_view(sb, &host))
            .collect(),
        networks: records,
    })
}

/// The names an endpoint answers to: the container's name first (PTR answers name it).
fn endpoint_names(endpoint: &Endpoint) -> EndpointNames {
    let addr = |net: Option<ipnet::IpNet>| net.map(|n| n.addr());
    EndpointNames {
        names: endpoint.names().into_iter().map(String::from).collect(),
        ipv4: addr(endpoint.ipv4()).and_then(|a| match a {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        }),
        ipv6: addr(endpoint.ipv6()).and_then(|a| match a {
            IpAddr::V6(v6) => Some(v6),
            IpAddr::V4(_) => None,
        }),
    }
}

/// A sandbox with a namespace of its own (host networking has none: it uses the host's
/// resolvers), with the upstreams and search list its resolv.conf was written with.
fn sandbox_view(sandbox: Sandbox, host: &files::ResolvConf) -> Option<SandboxView> {
    let netns_path = sandbox.netns?;
    let config = &sandbox.config;
    Some(SandboxView {
        networks: sandbox
            .endpoints
            .iter()
            .map(|e| e.network_id.clone())
            .collect(),
        upstreams: files::upstreams(host, config)
            .into_iter()
            .map(|ip| SocketAddr::new(ip, 53))
            .collect(),
        search: files::resolv_conf(host, config, DnsMode::Embedded).search,
        id: sandbox.container_id,
        netns_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SandboxConfig, new_id};

    fn endpoint(network: &Network, name: &str, addr: &str) -> Endpoint {
        Endpoint {
            id: new_id(),
            network_id: network.id.clone(),
            network_name: network.name.clone(),
            container_id: new_id(),
            container_name: name.into(),
            aliases: vec!["www".into()],
            hostname: format!("{name}-host"),
            addresses: vec![addr.parse().unwrap()],
            mac_address: String::new(),
            netns: None,
            interface: "eth0".into(),
            host_interface: None,
            default_route: true,
        }
    }

    #[test]
    fn state_becomes_records_and_views() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("root"), &dir.path().join("run")).unwrap();
        let mut user = crate::defaults::predefined("bridge");
        user.name = "front".into();
        user.dns_enabled = true;
        let default_bridge = crate::defaults::predefined("bridge");
        let web = endpoint(&user, "web", "172.18.0.2/16");
        let legacy = endpoint(&default_bridge, "legacy", "172.17.0.2/16");
        let locked = store.lock().unwrap();
        locked.save_network(&user).unwrap();
        locked.save_network(&default_bridge).unwrap();
        for ep in [&web, &legacy] {
            let mut eps = locked.endpoints(&ep.network_id).unwrap();
            eps.endpoints.insert(ep.id.clone(), ep.clone());
            locked.save_endpoints(&ep.network_id, &eps).unwrap();
        }
        let sandbox = |ep: &Endpoint, netns: bool, dns: Vec<IpAddr>| Sandbox {
            container_id: ep.container_id.clone(),
            netns: netns.then(|| format!("/run/rbox/netns/{}", ep.container_id).into()),
            host_network: !netns,
            config: SandboxConfig {
                dns,
                dns_search: vec!["corp.example".into()],
                ..Default::default()
            },
            endpoints: vec![ep.clone()],
        };
        locked
            .save_sandbox(&sandbox(&web, true, vec!["192.0.2.1".parse().unwrap()]))
            .unwrap();
        locked
            .save_sandbox(&sandbox(&legacy, false, vec![]))
            .unwrap();
        drop(locked);

        let snap = load(&store).unwrap();
        assert_eq!(snap.networks.len(), 1, "only DNS-enabled networks");
        assert_eq!(snap.networks[0].name, "front");
        assert_eq!(
            snap.networks[0].endpoints,
            [EndpointNames {
                names: vec!["web".into(), "www".into(), "web-host".into()],
                ipv4: Some("172.18.0.2".parse().unwrap()),
                ipv6: None,
            }]
        );
        assert_eq!(snap.sandboxes.len(), 1, "host networking has no view");
        let view = &snap.sandboxes[0];
        assert_eq!(view.id, web.container_id);
        assert_eq!(view.networks, [user.id.clone()]);
        assert_eq!(view.upstreams, ["192.0.2.1:53".parse().unwrap()]);
        assert_eq!(view.search, ["corp.example"]);
        assert_eq!(snap.dns_sandboxes().count(), 1);
    }
}
