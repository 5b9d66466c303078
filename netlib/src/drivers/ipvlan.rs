//! `ipvlan`: containers on the LAN of a host interface, the parent (`-o parent=IF` or
//! `IF.VLAN`), sharing the parent's MAC address: it works where the network allows one
//! MAC address per port (most clouds, port security), which is where macvlan fails. An
//! endpoint is an ipvlan child of the parent, born in the sandbox as `ethN`.
//!
//! Modes (`-o ipvlan_mode=`):
//! - `l2` (default): the children are on the parent's LAN and answer ARP for their
//!   addresses (with the parent's MAC); the default route goes through `--gateway`.
//! - `l3` and `l3s`: the children route. Their packets leave through the host's routing
//!   on the parent (`l3s` also through the host's netfilter hooks); they answer no ARP,
//!   so the LAN's router must route the network's subnet to the host's own address on
//!   the parent. The default route is the link itself; `--gateway` is not used.
//!
//! As with macvlan, the host cannot reach its own children through the parent.

use netlink_packet_route::link::{InfoKind, IpVlanMode};

use super::parent::{self, ChildPlan, DefaultRoute, KernelNeed, Modes, Parent};
use super::{Driver, DriverError, EndpointContext, NetworkContext};
use crate::kernel::ChildKind;
use crate::model::Network;

/// `-o` key choosing the mode (Docker's).
pub const OPT_MODE: &str = "ipvlan_mode";

const MODES: Modes<IpVlanMode> = Modes {
    option: OPT_MODE,
    known: &[
        ("l2", IpVlanMode::L2),
        ("l3", IpVlanMode::L3),
        ("l3s", IpVlanMode::L3S),
    ],
};

const IPVLAN: KernelNeed = KernelNeed {
    kind: InfoKind::IpVlan,
    feature: "ipvlan support",
    module: "ipvlan",
    instead: "use -d macvlan",
};

pub struct Ipvlan;

impl Driver for Ipvlan {
    fn name(&self) -> &'static str {
        "ipvlan"
    }

    fn validate(&self, network: &mut Network, others: &[Network]) -> Result<(), DriverError> {
        MODES.validate(network, others).map(drop)
    }

    fn create_network(&self, ctx: &NetworkContext) -> Result<(), DriverError> {
        IPVLAN.require(ctx)?;
        parent::ensure(ctx, &Parent::of(ctx.network)?).map(drop)
    }

    fn create_note(&self, network: &Network) -> Option<String> {
        let parent = network.interface.as_deref().unwrap_or("its parent");
        Some(if MODES.of(network) == IpVlanMode::L2 {
            format!(
                "note: this host cannot reach the containers of ipvlan network {} through {parent} (ipvlan keeps a parent's own traffic apart from its children's)",
                network.name
            )
        } else {
            let subnets: Vec<String> = network.ipam.iter().map(|s| s.subnet.to_string()).collect();
            format!(
                "note: ipvlan {} routes, it does not bridge: the LAN's router needs a route to {} via this host's address on {parent}",
                network.options.get(OPT_MODE).map_or("l3", String::as_str),
                subnets.join(", ")
            )
        })
    }

    fn setup_network(&self, ctx: &NetworkContext) -> Result<(), DriverError> {
        parent::ensure(ctx, &Parent::of(ctx.network)?).map(drop)
    }

    fn teardown_network(&self, ctx: &NetworkContext) -> Vec<DriverError> {
        parent::release(ctx)
    }

    fn endpoint_mac(
        &self,
        ctx: &NetworkContext,
        requested: Option<[u8; 6]>,
    ) -> Result<Option<[u8; 6]>, DriverError> {
        if requested.is_some() {
            return Err(DriverError::Invalid(format!(
                "containers on ipvlan network {} share the parent's MAC address: leave out --mac-address (or use -d macvlan)",
                ctx.network.name
            )));
        }
        parent::parent_mac(ctx).map(Some)
    }

    fn join(&self, ctx: &EndpointContext) -> Result<(), DriverError> {
        let mode = MODES.of(ctx.network);
        parent::join(
            ctx,
            &ChildPlan {
                kind: ChildKind::IpVlan(mode),
                mac: None,
                route: if mode == IpVlanMode::L2 {
                    DefaultRoute::Gateway
                } else {
                    DefaultRoute::Link
                },
                need: &IPVLAN,
                explain: &|_| None,
            },
        )
    }

    fn leave(&self, ctx: &EndpointContext) -> Vec<DriverError> {
        parent::leave(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::parent::OPT_PARENT;
    use crate::drivers::parent::tests::network;

    #[test]
    fn mode_defaults_to_l2_and_l3_notes_the_route_to_add() {
        let mut n = network("ipvlan", &[(OPT_PARENT, "eth1.100")]);
        Ipvlan.validate(&mut n, &[]).unwrap();
        assert_eq!(n.options.get(OPT_MODE).map(String::as_str), Some("l2"));
        assert!(Ipvlan.create_note(&n).unwrap().contains("cannot reach"));
        let mut l3 = network("ipvlan", &[(OPT_PARENT, "eth1"), (OPT_MODE, "l3")]);
        Ipvlan.validate(&mut l3, &[]).unwrap();
        assert_eq!(MODES.of(&l3), IpVlanMode::L3);
        let note = Ipvlan.create_note(&l3).unwrap();
        assert!(
            note.contains("route to 10.0.0.0/24 via this host's address on eth1"),
            "{note}"
        );
        let mut bad = network("ipvlan", &[(OPT_PARENT, "eth1"), (OPT_MODE, "bridge")]);
        assert!(Ipvlan.validate(&mut bad, &[]).is_err());
    }
}
