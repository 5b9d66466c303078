//! `bridge`: a Linux bridge per network (`rbox0` for the default one, `br-<12 hex>`
//! otherwise) holding the gateway address; each endpoint is a veth pair, host side on
//! the bridge, peer born in the sandbox as `ethN`. Isolation and masquerading are the
//! network's rules in rbox's nftables table (see [`crate::firewall`]).

use ipnet::IpNet;

use super::parent::DefaultRoute;
use super::{Driver, DriverError, EndpointContext, NetworkContext};
use crate::firewall::NetworkRules;
use crate::ipam::{parse_mac, random_mac};
use crate::kernel::{self, VethSpec};
use crate::model::Network;
use crate::netns;

/// `-o` key naming the kernel bridge (Docker's).
pub const OPT_BRIDGE_NAME: &str = "com.docker.network.bridge.name";
/// `-o` key for the MTU of the bridge and its veths (Docker's).
pub const OPT_MTU: &str = "com.docker.network.driver.mtu";
/// `-o` key turning outbound masquerading off (Docker's; default `true`).
pub const OPT_MASQUERADE: &str = "com.docker.network.bridge.enable_ip_masquerade";

pub struct Bridge;

impl Bridge {
    fn bridge_name(network: &Network) -> &str {
        network
            .interface
            .as_deref()
            .expect("bridge networks are validated with a bridge name")
    }

    fn rules(network: &Network) -> NetworkRules {
        NetworkRules {
            short_id: network.short_id().to_string(),
            bridge: Self::bridge_name(network).to_string(),
            subnets: network.ipam.iter().map(|s| s.subnet).collect(),
            internal: network.internal,
            masquerade: network
                .options
                .get(OPT_MASQUERADE)
                .is_none_or(|v| v != "false"),
        }
    }
}

/// A valid Linux interface name: 1 to 15 bytes, no `/`, `:` or whitespace.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

impl Driver for Bridge {
    fn name(&self) -> &'static str {
        "bridge"
    }

    fn host_side_link(&self) -> bool {
        true
    }

    fn validate(&self, network: &mut Network, others: &[Network]) -> Result<(), DriverError> {
        let name = match network.options.get(OPT_BRIDGE_NAME) {
            Some(name) => name.clone(),
            None => format!("br-{}", network.short_id()),
        };
        if !valid_ifname(&name) {
            return Err(DriverError::Invalid(format!(
                "invalid bridge name {name:?} (-o {OPT_BRIDGE_NAME}): at most 15 characters, no '/', ':' or spaces"
            )));
        }
        if let Some(other) = others
            .iter()
            .find(|o| o.interface.as_deref() == Some(name.as_str()))
        {
            return Err(DriverError::Invalid(format!(
                "bridge {name} is already used by network {}",
                other.name
            )));
        }
        if let Some(mtu) = network.options.get(OPT_MTU) {
            let parsed = mtu.parse::<u32>().ok().filter(|m| (68..=65535).contains(m));
            let Some(mtu) = parsed else {
                return Err(DriverError::Invalid(format!(
                    "invalid MTU {mtu:?} (-o {OPT_MTU}): give a number from 68 to 65535"
                )));
            };
            network.mtu = Some(mtu);
        }
        if let Some(v) = network.options.get(OPT_MASQUERADE)
            && v != "true"
            && v != "false"
        {
            return Err(DriverError::Invalid(format!(
                "invalid value {v:?} for -o {OPT_MASQUERADE}: true or false"
            )));
        }
        network.interface = Some(name);
        Ok(())
    }

    fn setup_network(&self, ctx: &NetworkContext) -> Result<(), DriverError> {
        let network = ctx.network;
        if !network.internal {
            kernel::enable_ipv4_forwarding()?;
        }
        let rules = Self::rules(network);
        let installed_rules = ctx.firewall.ensure_network(&rules)?;
        let bridge = (|| {
            let host = ctx.kernel.host()?;
            let (index, created) =
                host.create_bridge(Self::bridge_name(network), network.mtu, random_mac())?;
            let addresses = network.ipam.iter().filter_map(|s| {
                s.gateway
                    .map(|gw| IpNet::new(gw, s.subnet.prefix_len()).expect("gateway in its subnet"))
            });
            for addr in addresses {
                if let Err(e) = host.add_address(index, addr) {
                    if created {
                        let _ = host.delete(Self::bridge_name(network));
                    }
                    return Err(e);
                }
            }
            Ok(())
        })();
        if let Err(e) = bridge {
            if installed_rules {
                let _ = ctx.firewall.remove_network(&rules);
            }
            return Err(e.into());
        }
        Ok(())
    }

    fn teardown_network(&self, ctx: &NetworkContext) -> Vec<DriverError> {
        let mut errors = Vec::new();
        match ctx.kernel.host() {
            Ok(host) => {
                if let Err(e) = host.delete(Self::bridge_name(ctx.network)) {
                    errors.push(e.into());
                }
            }
            Err(e) => errors.push(e.into()),
        }
        if let Err(e) = ctx.firewall.remove_network(&Self::rules(ctx.network)) {
            errors.push(e.into());
        }
        errors
    }

    fn join(&self, ctx: &EndpointContext) -> Result<(), DriverError> {
        let (network, ep) = (ctx.network, ctx.endpoint);
        let pin = ctx.netns()?;
        let host_if = ep
            .host_interface
            .as_deref()
            .expect("bridge endpoints name their host side");
        let host = ctx.kernel.host()?;
        let bridge = Self::bridge_name(network);
        let master = host.index(bridge)?.ok_or_else(|| {
            DriverError::Invalid(format!(
                "bridge {bridge} of network {} is missing",
                network.name
            ))
        })?;
        let ns = netns::open(pin).map_err(kernel::KernelError::from)?;
        let mac = parse_mac(&ep.mac_address).expect("endpoint MAC validated at join");
        host.create_veth(&VethSpec {
            host_name: host_if,
            master,
            peer_name: &ep.interface,
            peer_netns: &ns,
            peer_mac: mac,
            mtu: network.mtu,
        })?;
        ctx.configure_in_sandbox(DefaultRoute::Gateway)
            .inspect_err(|_| {
                // Deleting one end of a veth pair deletes both.
                let _ = host.delete(host_if);
            })
    }

    fn leave(&self, ctx: &EndpointContext) -> Vec<DriverError> {
        let Some(host_if) = ctx.endpoint.host_interface.as_deref() else {
            return Vec::new();
        };
        // Also when the sandbox's namespace is about to go, which would take the pair
        // with it: the kernel cleans namespaces up late, behind earlier cleanups, and the
        // host end would stay on the bridge meanwhile.
        match ctx.kernel.delete_host_link(host_if) {
            Ok(_) => Vec::new(),
            Err(e) => vec![e.into()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::new_id;
    use std::collections::BTreeMap;

    fn network(options: &[(&str, &str)]) -> Network {
        Network {
            id: new_id(),
            name: "n".into(),
            driver: "bridge".into(),
            created: chrono::Utc::now(),
            ipam: Vec::new(),
            internal: false,
            enable_ipv6: false,
            dns_enabled: true,
            interface: None,
            mtu: None,
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn bridge_name_defaults_to_short_id_and_options_are_checked() {
        let mut n = network(&[]);
        Bridge.validate(&mut n, &[]).unwrap();
        assert_eq!(n.interface, Some(format!("br-{}", n.short_id())));

        let mut n2 = network(&[(OPT_BRIDGE_NAME, "mybr"), (OPT_MTU, "1400")]);
        Bridge.validate(&mut n2, &[]).unwrap();
        assert_eq!(
            (n2.interface.as_deref(), n2.mtu),
            (Some("mybr"), Some(1400))
        );

        let mut dup = network(&[(OPT_BRIDGE_NAME, "mybr")]);
        let err = Bridge.validate(&mut dup, &[n2]).unwrap_err().to_string();
        assert!(err.contains("already used by network n"), "{err}");
        for (k, v) in [
            (OPT_BRIDGE_NAME, "a-name-longer-than-15"),
            (OPT_MTU, "12"),
            (OPT_MTU, "x"),
            (OPT_MASQUERADE, "yes"),
        ] {
            assert!(
                Bridge.validate(&mut network(&[(k, v)]), &[]).is_err(),
                "{k}={v}"
            );
        }
    }
}
