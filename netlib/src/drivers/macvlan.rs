//! `macvlan`: containers on the LAN of a host interface, the parent (`-o parent=IF`, or
//! `IF.VLAN` for one VLAN of a trunk), each with its own MAC address, as if plugged into
//! the parent's switch. An endpoint is a macvlan child of the parent, born in the sandbox
//! as `ethN`; its default route goes through the network's gateway, a router on the LAN.
//!
//! Modes (`-o macvlan_mode=`): `bridge` (default; children of the parent reach each other
//! inside the host), `private` (they do not), `vepa` (only through the switch, which must
//! send frames back out of the port they came in on), `passthru` (one container takes the
//! parent over, with its MAC address).
//!
//! The host cannot reach its own children through the parent: macvlan keeps the parent's
//! own traffic apart from its children's (see README, "macvlan and ipvlan").

use netlink_packet_route::link::{InfoKind, MacVlanMode};

use super::parent::{self, ChildPlan, DefaultRoute, KernelNeed, Modes, Parent};
use super::{Driver, DriverError, EndpointContext, NetworkContext};
use crate::kernel::ChildKind;
use crate::model::Network;

/// `-o` key choosing the mode (Docker's).
pub const OPT_MODE: &str = "macvlan_mode";

const MODES: Modes<MacVlanMode> = Modes {
    option: OPT_MODE,
    known: &[
        ("bridge", MacVlanMode::Bridge),
        ("private", MacVlanMode::Private),
        ("vepa", MacVlanMode::Vepa),
        ("passthru", MacVlanMode::Passthrough),
    ],
};

const MACVLAN: KernelNeed = KernelNeed {
    kind: InfoKind::MacVlan,
    feature: "macvlan support",
    module: "macvlan",
    instead: "use -d ipvlan or a bridge network",
};

pub struct Macvlan;

impl Driver for Macvlan {
    fn name(&self) -> &'static str {
        "macvlan"
    }

    fn validate(&self, network: &mut Network, others: &[Network]) -> Result<(), DriverError> {
        MODES.validate(network, others).map(drop)
    }

    fn create_network(&self, ctx: &NetworkContext) -> Result<(), DriverError> {
        MACVLAN.require(ctx)?;
        parent::ensure(ctx, &Parent::of(ctx.network)?).map(drop)
    }

    fn create_note(&self, network: &Network) -> Option<String> {
        Some(format!(
            "note: this host cannot reach the containers of macvlan network {} through {} (macvlan keeps a parent's own traffic apart from its children's); see \"macvlan and ipvlan\" in rbox's README for a host shim",
            network.name,
            network.interface.as_deref().unwrap_or("its parent")
        ))
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
        if MODES.of(ctx.network) != MacVlanMode::Passthrough {
            return Ok(requested);
        }
        // A passthru child carries the parent's address; setting one would change the parent's.
        if requested.is_some() {
            return Err(DriverError::Invalid(format!(
                "a container on macvlan passthru network {} has its parent's MAC address: leave out --mac-address",
                ctx.network.name
            )));
        }
        parent::parent_mac(ctx).map(Some)
    }

    fn join(&self, ctx: &EndpointContext) -> Result<(), DriverError> {
        let mode = MODES.of(ctx.network);
        let mac = match mode {
            MacVlanMode::Passthrough => None,
            _ => Some(
                crate::ipam::parse_mac(&ctx.endpoint.mac_address)
                    .expect("endpoint MAC validated at join"),
            ),
        };
        let network = &ctx.network.name;
        let explain = |e: &crate::kernel::KernelError| {
            (mode == MacVlanMode::Passthrough && e.errno() == Some(libc::EINVAL)).then(|| {
                DriverError::Invalid(format!(
                    "macvlan passthru network {network} gives its parent to one container, and another one has it (or the parent carries other macvlan links)"
                ))
            })
        };
        parent::join(
            ctx,
            &ChildPlan {
                kind: ChildKind::MacVlan(mode),
                mac,
                route: DefaultRoute::Gateway,
                need: &MACVLAN,
                explain: &explain,
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
    fn mode_defaults_to_bridge_and_is_shown_in_options() {
        let mut n = network("macvlan", &[(OPT_PARENT, "eth1")]);
        Macvlan.validate(&mut n, &[]).unwrap();
        assert_eq!(n.options.get(OPT_MODE).map(String::as_str), Some("bridge"));
        assert_eq!(MODES.of(&n), MacVlanMode::Bridge);
        for (name, mode) in MODES.known {
            let mut n = network("macvlan", &[(OPT_PARENT, "eth1"), (OPT_MODE, name)]);
            Macvlan.validate(&mut n, &[]).unwrap();
            assert_eq!(MODES.of(&n), *mode);
        }
        let mut bad = network("macvlan", &[(OPT_PARENT, "eth1"), (OPT_MODE, "l2")]);
        let err = Macvlan.validate(&mut bad, &[]).unwrap_err().to_string();
        assert!(err.contains("invalid macvlan mode \"l2\""), "{err}");
    }
}
