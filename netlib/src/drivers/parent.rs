//! What the macvlan and ipvlan drivers share: the parent link (`-o parent=IF`, or
//! `-o parent=IF.VLAN` for an 802.1Q sub-interface that rbox makes when it is missing and
//! removes with the network), one network per parent, the kernel-feature checks, and
//! endpoints as children of the parent, born inside the sandbox.

use netlink_packet_route::link::InfoKind;

use super::bridge::valid_ifname;
use super::{DriverError, EndpointContext, NetworkContext};
use crate::kernel::{ChildKind, ChildSpec, KernelError};
use crate::model::Network;
use crate::netns;
use crate::store::CreatedLink;

/// `-o` key naming the parent link (Docker's).
pub const OPT_PARENT: &str = "parent";

/// A kernel feature a network needs, and what to tell a user whose kernel lacks it.
pub struct KernelNeed {
    pub kind: InfoKind,
    pub feature: &'static str,
    pub module: &'static str,
    /// What the user can do instead.
    pub instead: &'static str,
}

pub const VLAN: KernelNeed = KernelNeed {
    kind: InfoKind::Vlan,
    feature: "802.1Q VLAN support",
    module: "8021q",
    instead: "give an untagged parent (-o parent=IF)",
};

impl KernelNeed {
    fn missing(&self, action: String) -> DriverError {
        DriverError::MissingKernelFeature {
            action,
            feature: self.feature,
            module: self.module,
            instead: self.instead,
        }
    }

    /// Fails with a clear message unless the kernel has the feature. Asks the kernel
    /// (see [`crate::kernel::Links::has_link_kind`]); makes nothing.
    pub fn require(&self, ctx: &NetworkContext) -> Result<(), DriverError> {
        if ctx.kernel.host()?.has_link_kind(self.kind.clone())? {
            Ok(())
        } else {
            Err(self.missing(format!(
                "cannot create {} network {}",
                ctx.network.driver, ctx.network.name
            )))
        }
    }
}

/// A network's parent link, as given with `-o parent=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    pub name: String,
    /// For `IF.VLAN`: the base link and the VLAN id rbox makes `name` with if it is missing.
    pub vlan: Option<(String, u16)>,
}

/// `IF.DIGITS` split into `IF` and the digits.
fn split_vlan(name: &str) -> Option<(&str, &str)> {
    name.rsplit_once('.').filter(|(base, id)| {
        !base.is_empty() && !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
    })
}

impl Parent {
    /// Parses and checks `-o parent=` of a `driver` network; no kernel call.
    pub fn parse(driver: &str, value: Option<&str>) -> Result<Parent, DriverError> {
        let invalid = |msg: String| Err(DriverError::Invalid(msg));
        let name = match value {
            None | Some("") => {
                return invalid(format!(
                    "{driver} networks need a parent interface: -o {OPT_PARENT}=IF (the host interface on the LAN the containers join) or -o {OPT_PARENT}=IF.VLAN (a VLAN of it, made if missing)"
                ));
            }
            Some(name) => name,
        };
        if !valid_ifname(name) {
            return invalid(format!(
                "invalid parent {name:?} (-o {OPT_PARENT}): an interface name of at most 15 characters, without '/', ':' or spaces"
            ));
        }
        if name == "lo" {
            return invalid(format!(
                "the loopback interface cannot be the parent of a {driver} network"
            ));
        }
        let vlan = match split_vlan(name) {
            Some((base, id)) => match id.parse::<u16>().ok().filter(|v| (1..=4094).contains(v)) {
                Some(id) => Some((base.to_string(), id)),
                None => {
                    return invalid(format!(
                        "invalid VLAN id {id} in -o {OPT_PARENT}={name}: 802.1Q VLAN ids go from 1 to 4094"
                    ));
                }
            },
            None => None,
        };
        Ok(Parent {
            name: name.to_string(),
            vlan,
        })
    }

    /// The parent of a network whose definition was validated.
    pub fn of(network: &Network) -> Result<Parent, DriverError> {
        Parent::parse(
            &network.driver,
            network.options.get(OPT_PARENT).map(String::as_str),
        )
    }

    /// True if `link` (another network's) is this parent: the same name, or the same
    /// VLAN of the same base (`eth0.100`, `eth0.0100`).
    fn is(&self, link: &str) -> bool {
        link == self.name
            || self.vlan.as_ref().is_some_and(|(base, id)| {
                split_vlan(link).is_some_and(|(b, i)| b == base && i.parse() == Ok(*id))
            })
    }
}

/// A driver's modes, chosen with `-o <option>=NAME`; the first one is the default.
pub struct Modes<M: 'static> {
    pub option: &'static str,
    pub known: &'static [(&'static str, M)],
}

impl<M: Copy> Modes<M> {
    /// What [`validate`] checks, and a known mode (the default one set when absent).
    pub fn validate(
        &self,
        network: &mut Network,
        others: &[Network],
    ) -> Result<Parent, DriverError> {
        let parent = validate(network, others, self.option)?;
        let default = self.known[0].0;
        let mode = network
            .options
            .entry(self.option.to_string())
            .or_insert_with(|| default.into());
        if self.named(mode).is_none() {
            let names: Vec<&str> = self.known.iter().map(|(n, _)| *n).collect();
            return Err(DriverError::Invalid(format!(
                "invalid {} mode {mode:?} (-o {}): {} ({default} is the default)",
                network.driver,
                self.option,
                names.join(", ")
            )));
        }
        Ok(parent)
    }

    /// The mode of a validated network.
    pub fn of(&self, network: &Network) -> M {
        let name = network
            .options
            .get(self.option)
            .map_or(self.known[0].0, String::as_str);
        self.named(name)
            .expect("networks are validated with a known mode")
    }

    fn named(&self, name: &str) -> Option<M> {
        self.known.iter().find(|(n, _)| *n == name).map(|(_, m)| *m)
    }
}

/// Checks what macvlan and ipvlan networks share: known options only (`parent` and
/// `mode_option`), a `--subnet`, and a valid parent that no other network uses. Sets the
/// network's `interface` to the parent.
pub fn validate(
    network: &mut Network,
    others: &[Network],
    mode_option: &str,
) -> Result<Parent, DriverError> {
    let driver = network.driver.clone();
    if let Some(key) = network
        .options
        .keys()
        .find(|k| *k != OPT_PARENT && *k != mode_option)
    {
        return Err(DriverError::Invalid(format!(
            "unknown option {key:?} for a {driver} network: the options are {OPT_PARENT} and {mode_option}"
        )));
    }
    if network.ipam.is_empty() {
        return Err(DriverError::Invalid(format!(
            "{driver} networks need --subnet: the subnet of the parent's LAN (and --gateway, its router, if it is not the subnet's first address)"
        )));
    }
    let parent = Parent::of(network)?;
    if let Some(other) = others
        .iter()
        .find(|o| o.interface.as_deref().is_some_and(|l| parent.is(l)))
    {
        return Err(DriverError::Invalid(format!(
            "parent {} is already used by network {}: a parent interface (or a VLAN of it) carries one network",
            parent.name, other.name
        )));
    }
    network.interface = Some(parent.name.clone());
    Ok(parent)
}

/// Makes sure the parent exists in the host's namespace; returns its index. A link found
/// there is used as it is (it is the user's); a missing `IF.VLAN` is made as IF's 802.1Q
/// sub-interface, up, and recorded as made for this network.
pub fn ensure(ctx: &NetworkContext, parent: &Parent) -> Result<u32, DriverError> {
    let host = ctx.kernel.host()?;
    if let Some(link) = host.details(&parent.name)? {
        let mut created = ctx.state.created_links()?;
        // A record for another index is stale: the link made then is gone, and this one
        // was made by someone else.
        if created
            .links
            .get(&parent.name)
            .is_some_and(|c| c.index != link.index)
        {
            created.links.remove(&parent.name);
            ctx.state.save_created_links(&created)?;
        }
        return Ok(link.index);
    }
    let Some((base, id)) = &parent.vlan else {
        let not_vlan = parent
            .name
            .rsplit_once('.')
            .map(|(_, s)| format!(", and {s:?} is not a VLAN id (1 to 4094) to make it with"))
            .unwrap_or_default();
        return Err(DriverError::Invalid(format!(
            "parent interface {} does not exist{not_vlan}: give an existing host interface with -o {OPT_PARENT}=",
            parent.name
        )));
    };
    let action = || format!("cannot make the VLAN sub-interface {}", parent.name);
    let Some(base_index) = host.index(base)? else {
        return Err(DriverError::Invalid(format!(
            "{}: its base interface {base} does not exist",
            action()
        )));
    };
    let index = host
        .create_vlan(&parent.name, base_index, *id)
        .map_err(|e| match e.errno() {
            Some(libc::EOPNOTSUPP) => VLAN.missing(action()),
            Some(libc::EEXIST) => DriverError::Invalid(format!(
                "{}: {base} already has VLAN {id} under another name; give that interface as the parent",
                action()
            )),
            _ => e.into(),
        })?;
    let mut created = ctx.state.created_links()?;
    created.links.insert(
        parent.name.clone(),
        CreatedLink {
            index,
            network_id: ctx.network.id.clone(),
        },
    );
    if let Err(e) = ctx.state.save_created_links(&created) {
        let _ = host.delete(&parent.name);
        return Err(e.into());
    }
    Ok(index)
}

/// Removes the parent's VLAN sub-interface if it was made for this network and is still
/// the link made then. Links the user made are never touched.
pub fn release(ctx: &NetworkContext) -> Vec<DriverError> {
    let Some(name) = ctx.network.interface.as_deref() else {
        return Vec::new();
    };
    let result = (|| -> Result<(), DriverError> {
        let mut created = ctx.state.created_links()?;
        let Some(record) = created.links.get(name) else {
            return Ok(());
        };
        if record.network_id != ctx.network.id {
            return Ok(());
        }
        let host = ctx.kernel.host()?;
        if host.index(name)? == Some(record.index) {
            host.delete(name)?;
        }
        created.links.remove(name);
        ctx.state.save_created_links(&created)?;
        Ok(())
    })();
    result.err().into_iter().collect()
}

/// Where an endpoint's default route leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultRoute {
    /// Through the network's gateway (a router on the LAN).
    Gateway,
    /// Straight out of the link, which routes (ipvlan l3: through the host's routes).
    Link,
}

/// How a child is made: its kind and mode, its MAC (`None`: the parent's), its default
/// route, and the driver's explanation of a refusal by the kernel.
pub struct ChildPlan<'a> {
    pub kind: ChildKind,
    pub mac: Option<[u8; 6]>,
    pub route: DefaultRoute,
    pub need: &'a KernelNeed,
    /// A clearer error for the kernel's refusal to make the child, if the driver has one.
    pub explain: &'a dyn Fn(&KernelError) -> Option<DriverError>,
}

/// Creates the endpoint's child of the parent, born inside the sandbox as `ethN` and up,
/// with its addresses and, when it carries it, the default route. On error it leaves
/// nothing it made.
pub fn join(ctx: &EndpointContext, plan: &ChildPlan) -> Result<(), DriverError> {
    let (network, ep) = (ctx.network, ctx.endpoint);
    let pin = ctx.netns()?;
    let parent = network
        .interface
        .as_deref()
        .expect("macvlan and ipvlan networks are validated with a parent");
    let host = ctx.kernel.host()?;
    let parent_index = host.index(parent)?.ok_or_else(|| {
        DriverError::Invalid(format!(
            "parent interface {parent} of network {} does not exist",
            network.name
        ))
    })?;
    let ns = netns::open(pin).map_err(KernelError::from)?;
    host.create_child(&ChildSpec {
        kind: plan.kind,
        parent: parent_index,
        name: &ep.interface,
        netns: &ns,
        mac: plan.mac,
    })
    .map_err(|e| {
        if let Some(clear) = (plan.explain)(&e) {
            return clear;
        }
        match e.errno() {
            Some(libc::EOPNOTSUPP) => plan.need.missing(format!(
                "cannot connect to {} network {}",
                network.driver, network.name
            )),
            Some(libc::EBUSY) => DriverError::Invalid(format!(
                "parent {parent} of network {} is busy: it is a bridge or bond port, or carries links of another kind (macvlan and ipvlan cannot share a parent)",
                network.name
            )),
            Some(libc::EADDRINUSE) => DriverError::Invalid(format!(
                "MAC address {} is already in use on parent {parent}",
                ep.mac_address
            )),
            _ => e.into(),
        }
    })?;
    ctx.configure_in_sandbox(plan.route).inspect_err(|_| {
        let _ = ctx
            .kernel
            .sandbox(pin)
            .and_then(|s| s.delete(&ep.interface));
    })
}

/// Removes the endpoint's child from its sandbox, even when the sandbox is closing: its
/// namespace may outlive the container for a while (the kernel frees it in the
/// background, later still while a process or socket holds it), and until the child is
/// gone its MAC and addresses stay claimed on the parent, where the next container with
/// the same address would be refused them.
pub fn leave(ctx: &EndpointContext) -> Vec<DriverError> {
    let ep = ctx.endpoint;
    let Some(pin) = ep.netns.as_deref().filter(|p| p.exists()) else {
        return Vec::new();
    };
    match ctx
        .kernel
        .sandbox(pin)
        .and_then(|s| s.delete(&ep.interface))
    {
        Ok(_) => Vec::new(),
        Err(e) => vec![e.into()],
    }
}

/// The parent's MAC address (what ipvlan and macvlan passthru children carry).
pub fn parent_mac(ctx: &NetworkContext) -> Result<[u8; 6], DriverError> {
    let parent = ctx
        .network
        .interface
        .as_deref()
        .expect("macvlan and ipvlan networks are validated with a parent");
    ctx.kernel
        .host()?
        .details(parent)?
        .and_then(|d| d.mac)
        .ok_or_else(|| {
            DriverError::Invalid(format!(
                "parent interface {parent} of network {} has no MAC address",
                ctx.network.name
            ))
        })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::ipam::validate_subnet;
    use crate::model::new_id;
    use std::collections::BTreeMap;

    pub(crate) fn network(driver: &str, options: &[(&str, &str)]) -> Network {
        Network {
            id: new_id(),
            name: "lan".into(),
            driver: driver.into(),
            created: chrono::Utc::now(),
            ipam: vec![validate_subnet("10.0.0.0/24".parse().unwrap(), None, None).unwrap()],
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

    fn parse(value: &str) -> Result<Parent, String> {
        Parent::parse("macvlan", Some(value)).map_err(|e| e.to_string())
    }

    #[test]
    fn parents_and_vlans_parse_with_clear_errors() {
        assert_eq!(
            parse("eth0").unwrap(),
            Parent {
                name: "eth0".into(),
                vlan: None
            }
        );
        assert_eq!(
            parse("enp0s3.100").unwrap().vlan,
            Some(("enp0s3".into(), 100))
        );
        assert_eq!(
            parse("eth0.4094").unwrap().vlan,
            Some(("eth0".into(), 4094))
        );
        // Not digits after the dot: a plain name (it must exist; checked with the kernel).
        assert_eq!(parse("br.lan").unwrap().vlan, None);
        assert_eq!(parse("eth0.abc").unwrap().vlan, None);
        for bad in ["eth0.0", "eth0.4095", "e0.99999999999"] {
            let err = parse(bad).unwrap_err();
            assert!(
                err.contains("802.1Q VLAN ids go from 1 to 4094"),
                "{bad}: {err}"
            );
        }
        assert!(
            parse("a-name-longer-than-15.100")
                .unwrap_err()
                .contains("at most 15")
        );
        assert!(parse("lo").unwrap_err().contains("loopback"));
        for missing in [None, Some("")] {
            let err = Parent::parse("ipvlan", missing).unwrap_err().to_string();
            assert!(
                err.contains("ipvlan networks need a parent interface"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_parent_carries_one_network() {
        let mut first = network("macvlan", &[(OPT_PARENT, "eth1.100")]);
        validate(&mut first, &[], "macvlan_mode").unwrap();
        assert_eq!(first.interface.as_deref(), Some("eth1.100"));
        for (driver, parent) in [("macvlan", "eth1.100"), ("ipvlan", "eth1.0100")] {
            let mut second = network(driver, &[(OPT_PARENT, parent)]);
            let err = validate(&mut second, std::slice::from_ref(&first), "m")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("parent eth1") && err.contains("already used by network lan"),
                "{err}"
            );
        }
        // Another VLAN of the same base, or the untagged base itself, is another parent.
        for parent in ["eth1.200", "eth1"] {
            let mut other = network("macvlan", &[(OPT_PARENT, parent)]);
            validate(&mut other, std::slice::from_ref(&first), "macvlan_mode").unwrap();
        }
    }

    #[test]
    fn unknown_options_and_missing_subnets_are_refused() {
        let mut typo = network(
            "macvlan",
            &[(OPT_PARENT, "eth1"), ("macvlan_mod", "private")],
        );
        let err = validate(&mut typo, &[], "macvlan_mode")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown option \"macvlan_mod\""), "{err}");
        let mut bare = network("ipvlan", &[(OPT_PARENT, "eth1")]);
        bare.ipam.clear();
        let err = validate(&mut bare, &[], "ipvlan_mode")
            .unwrap_err()
            .to_string();
        assert!(err.contains("need --subnet"), "{err}");
    }
}
