//! A simulated Ethernet switch: a host whose VLAN-aware bridge connects other lab hosts
//! through access ports (one VLAN, untagged) and trunk ports (several VLANs, tagged).
//! Needs [`KernelFeature::BridgeVlanFiltering`](crate::KernelFeature) (and
//! [`KernelFeature::Vlan`](crate::KernelFeature) for hosts that use the trunks): run
//! such labs with `just test-vm`.

use crate::Host;
use std::sync::atomic::{AtomicU32, Ordering};

/// A switch: a [`Host`] holding the bridge `br0` with `vlan_filtering 1` and no default
/// VLAN, so a port carries only the VLANs it is given.
pub struct VlanSwitch {
    host: Host,
    ports: AtomicU32,
}

impl VlanSwitch {
    /// A new switch named `name`, with no ports.
    pub fn new(name: &str) -> VlanSwitch {
        let host = Host::new(name);
        host.sh_ok(
            "ip link add br0 type bridge vlan_filtering 1 vlan_default_pvid 0 &&
             ip link set br0 up",
        );
        VlanSwitch {
            host,
            ports: AtomicU32::new(0),
        }
    }

    /// The host the switch lives in (to inspect it: `bridge vlan show`, ...).
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Plugs `other` into an access port of `vlan`: `other` gets the link `ifname` (with
    /// `addr`, CIDR form, when given), whose frames travel untagged. Returns the port's
    /// name on the switch.
    pub fn access_port(&self, other: &Host, ifname: &str, addr: Option<&str>, vlan: u16) -> String {
        self.port(
            other,
            ifname,
            addr,
            &format!("vid {vlan} pvid untagged"),
            &[],
        )
    }

    /// Plugs `other` into a trunk port carrying `vlans` tagged: `other` gets the link
    /// `ifname` (no address: its VLAN sub-interfaces carry the traffic). Returns the
    /// port's name on the switch.
    pub fn trunk_port(&self, other: &Host, ifname: &str, vlans: &[u16]) -> String {
        let (first, rest) = vlans
            .split_first()
            .expect("a trunk carries at least one VLAN");
        self.port(other, ifname, None, &format!("vid {first}"), rest)
    }

    fn port(
        &self,
        other: &Host,
        ifname: &str,
        addr: Option<&str>,
        first: &str,
        more: &[u16],
    ) -> String {
        // Two commands, one on each side: every command costs under emulation.
        let port = format!("p{}", self.ports.fetch_add(1, Ordering::SeqCst) + 1);
        let mut script = format!(
            "ip link add {port} type veth peer name {ifname} netns {} &&
             ip link set {port} master br0 && bridge vlan add dev {port} {first}",
            other.pid()
        );
        for vlan in more {
            script += &format!(" && bridge vlan add dev {port} vid {vlan}");
        }
        self.host
            .sh_ok(&format!("{script} && ip link set {port} up"));
        let addr = addr
            .map(|a| format!("ip addr add {a} dev {ifname} && "))
            .unwrap_or_default();
        other.sh_ok(&format!("{addr}ip link set {ifname} up"));
        port
    }
}
