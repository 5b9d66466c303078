//! macvlan and ipvlan networks on VLANs of a trunk, the picture of issue 7. They need
//! 802.1Q VLANs, ipvlan and bridge VLAN filtering: `just test-vm` runs them in a VM with
//! Debian's kernel; elsewhere they say what the kernel lacks and are skipped.
//!
//! The picture: a switch with a VLAN-aware bridge; a physical server on VLAN 100
//! (10.0.0.50/24) and one on VLAN 200 (192.168.3.50/24); a router on a trunk, at 10.0.0.1
//! and 192.168.3.1, routing between the VLANs; the simulated host's NIC `nic` is a trunk
//! carrying both VLANs. Under emulation every process costs: each lab runs few commands,
//! each doing several steps.

mod macvlan_support;

use std::collections::BTreeMap;
use std::path::Path;

use macvlan_support::*;
use netlib::{Netlib, NetworkCreate};
use rbox_tests::{Host, KernelFeature, VlanSwitch, require_kernel};

const NEEDS: &[KernelFeature] = &[
    KernelFeature::Vlan,
    KernelFeature::Ipvlan,
    KernelFeature::BridgeVlanFiltering,
];

struct Vlans {
    _switch: VlanSwitch,
    server100: Host,
    server200: Host,
    router: Host,
    host: Host,
}

impl Vlans {
    fn new(name: &str) -> Vlans {
        let switch = VlanSwitch::new("switch");
        let server100 = Host::new("server100");
        let server200 = Host::new("server200");
        let router = Host::new("router");
        let host = Host::new(name);
        switch.access_port(&server100, "eth0", Some("10.0.0.50/24"), 100);
        switch.access_port(&server200, "eth0", Some("192.168.3.50/24"), 200);
        switch.trunk_port(&router, "eth0", &[100, 200]);
        switch.trunk_port(&host, "nic", &[100, 200]);
        server100.sh_ok("ip route add default via 10.0.0.1");
        server200.sh_ok("ip route add default via 192.168.3.1");
        router.sh_ok(
            "ip link add link eth0 name eth0.100 type vlan id 100 &&
             ip link add link eth0 name eth0.200 type vlan id 200 &&
             ip addr add 10.0.0.1/24 dev eth0.100 && ip addr add 192.168.3.1/24 dev eth0.200 &&
             ip link set eth0.100 up && ip link set eth0.200 up &&
             echo 1 > /proc/sys/net/ipv4/ip_forward",
        );
        Vlans {
            _switch: switch,
            server100,
            server200,
            router,
            host,
        }
    }

    fn run(&self, test: &str) {
        run_inside(
            &self.host,
            test,
            &[
                ("SERVER100", &self.server100),
                ("SERVER200", &self.server200),
                ("ROUTER", &self.router),
            ],
        );
    }
}

fn network(
    name: &str,
    driver: &str,
    parent: &str,
    subnet: &str,
    range: Option<&str>,
    gateway: Option<&str>,
    mode: Option<&str>,
) -> NetworkCreate {
    let mut options = BTreeMap::from([("parent".to_string(), parent.to_string())]);
    if let Some(mode) = mode {
        options.insert(format!("{driver}_mode"), mode.into());
    }
    NetworkCreate {
        name: name.into(),
        driver: Some(driver.into()),
        subnets: vec![subnet.parse().unwrap()],
        ip_ranges: range.into_iter().map(|r| r.parse().unwrap()).collect(),
        gateways: gateway.into_iter().map(|g| g.parse().unwrap()).collect(),
        options,
        ..Default::default()
    }
}

/// Whether link `name` exists in the lab host (read from /sys: no process to start).
fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn mac_of(link: &str) -> String {
    std::fs::read_to_string(format!("/sys/class/net/{link}/address"))
        .unwrap()
        .trim()
        .to_string()
}

fn remove_all(netlib: &Netlib, sandboxes: &[&String], networks: &[&str]) {
    for id in sandboxes {
        netlib.destroy_sandbox(id).unwrap();
    }
    for name in networks {
        netlib.remove_network(name).unwrap();
    }
}

/// macvlan100 on `nic.100` and macvlan200 on `nic.200`, sub-interfaces rbox makes: a
/// container on macvlan100 reaches the VLAN 100 server, its gateway and its neighbour,
/// and VLAN 200 only through the router; macvlan200's container reaches VLAN 200's
/// server; names resolve within a network only. Removing the networks removes the
/// sub-interfaces rbox made, and leaves the one the user made.
#[test]
fn macvlan_networks_on_vlans_of_a_trunk() {
    if !inner() {
        if require_kernel(NEEDS) {
            Vlans::new("mv-trunk").run("macvlan_networks_on_vlans_of_a_trunk");
        }
        return;
    }
    let netlib = open();
    let mv100 = network(
        "macvlan100",
        "macvlan",
        "nic.100",
        "10.0.0.0/24",
        Some("10.0.0.0/25"),
        Some("10.0.0.1"),
        None,
    );
    netlib.create_network(mv100).unwrap();
    let mv200 = network(
        "macvlan200",
        "macvlan",
        "nic.200",
        "192.168.3.0/24",
        None,
        Some("192.168.3.1"),
        None,
    );
    netlib.create_network(mv200).unwrap();
    // A VLAN sub-interface the user made, as the parent of a third network.
    sh("ip link add link nic name nic.300 type vlan id 300 && ip link set nic.300 up");
    netlib
        .create_network(network(
            "user300",
            "macvlan",
            "nic.300",
            "10.3.0.0/24",
            None,
            None,
            None,
        ))
        .unwrap();
    let made = sh("ip -d -o link show nic.100; ip -d -o link show nic.200");
    assert_eq!(made.matches("vlan protocol 802.1Q").count(), 2, "{made}");
    assert!(made.contains("id 100") && made.contains("id 200"), "{made}");

    let a = sandbox(&netlib, "a");
    let ep_a = join(&netlib, &a, "macvlan100", "a");
    let b = sandbox(&netlib, "b");
    let ep_b = join(&netlib, &b, "macvlan100", "b");
    let c = sandbox(&netlib, "c");
    let ep_c = join(&netlib, &c, "macvlan200", "c");
    assert_eq!(
        [addr(&ep_a), addr(&ep_b), addr(&ep_c)],
        ["10.0.0.2", "10.0.0.3", "192.168.3.2"]
    );
    let (pa, pc) = (pin(&netlib, &a), pin(&netlib, &c));

    // a: the server, the gateway, b; VLAN 200 through the router. Without the router
    // (no default route, or VLAN 200's subnet claimed on-link), nothing: the VLANs are
    // apart at layer 2.
    let out = in_ns(
        &sandbox_ns(&pa),
        "ip -d -o link show eth0; ip route
         ping -c1 -W5 10.0.0.50 >&2 && ping -c1 -W3 10.0.0.1 >&2 && ping -c1 -W3 10.0.0.3 >&2 &&
         ping -c1 -W3 192.168.3.50 >&2 && echo reached-all
         ip route del default
         ping -c1 -W1 192.168.3.50 >&2 && echo REACHED-WITHOUT-ROUTE
         ip route add 192.168.3.0/24 dev eth0
         ping -c1 -W1 192.168.3.50 >&2 && echo REACHED-ON-LINK
         ip route del 192.168.3.0/24 dev eth0; ip route add default via 10.0.0.1; true",
    );
    assert!(
        out.contains("macvlan mode bridge")
            && out.contains("default via 10.0.0.1 dev eth0")
            && out.contains("reached-all"),
        "{out}"
    );
    assert!(
        !out.contains("REACHED-"),
        "VLAN 200 reached past the router:\n{out}"
    );
    // c: VLAN 200's server and gateway, with its own MAC on the wire.
    in_ns(
        &sandbox_ns(&pc),
        "ping -c1 -W5 192.168.3.50 && ping -c1 -W3 192.168.3.1",
    );
    let neigh = in_ns(&peer("SERVER200"), "ip neigh show 192.168.3.2");
    assert!(
        neigh.contains(&ep_c.mac_address),
        "server200's neighbour: {neigh}"
    );

    assert_eq!(lookup(&pa, "b"), ["10.0.0.3"]);
    assert_eq!(
        lookup(&pc, "a"),
        Vec::<String>::new(),
        "names of another network"
    );

    remove_all(
        &netlib,
        &[&a, &b, &c],
        &["macvlan100", "macvlan200", "user300"],
    );
    assert!(
        !link_exists("nic.100") && !link_exists("nic.200"),
        "rbox's sub-interfaces stay"
    );
    assert!(
        link_exists("nic.300"),
        "the user's sub-interface was removed"
    );
}

/// ipvlan on the same trunk. l2 on `nic.100` (made by rbox): the containers carry the
/// parent's MAC and behave as macvlan's. l3 on `nic.200` (the user's, holding the host's
/// address 192.168.3.10 and its default route): the containers' own subnet
/// 10.10.200.0/24 is routed, not bridged: it works once the router routes it to the
/// host, not before. l3s as l3.
#[test]
fn ipvlan_l2_and_l3_on_vlans_of_a_trunk() {
    if !inner() {
        if !require_kernel(NEEDS) {
            return;
        }
        let lab = Vlans::new("iv-trunk");
        lab.host.sh_ok(
            "ip link add link nic name nic.200 type vlan id 200 &&
             ip addr add 192.168.3.10/24 dev nic.200 && ip link set nic.200 up &&
             ip route add default via 192.168.3.1",
        );
        return lab.run("ipvlan_l2_and_l3_on_vlans_of_a_trunk");
    }
    let netlib = open();
    let l2 = network(
        "ipvlan100",
        "ipvlan",
        "nic.100",
        "10.0.0.0/24",
        Some("10.0.0.0/25"),
        Some("10.0.0.1"),
        None,
    );
    netlib.create_network(l2).unwrap();
    let a = sandbox(&netlib, "a");
    let ep_a = join(&netlib, &a, "ipvlan100", "a");
    let b = sandbox(&netlib, "b");
    join(&netlib, &b, "ipvlan100", "b");
    let parent_mac = mac_of("nic.100");
    assert_eq!(
        ep_a.mac_address, parent_mac,
        "ipvlan children share the parent's MAC"
    );
    let pa = pin(&netlib, &a);
    let out = in_ns(
        &sandbox_ns(&pa),
        "ip -d -o link show eth0; ip route
         ping -c1 -W5 10.0.0.50 >&2 && ping -c1 -W3 10.0.0.1 >&2 && ping -c1 -W3 10.0.0.3 >&2 &&
         ping -c1 -W3 192.168.3.50 >&2 && echo reached-all",
    );
    assert!(
        out.contains("ipvlan")
            && out.contains("mode l2")
            && out.contains(&parent_mac)
            && out.contains("default via 10.0.0.1 dev eth0")
            && out.contains("reached-all"),
        "{out}"
    );
    let neigh = in_ns(&peer("SERVER100"), "ip neigh show 10.0.0.2");
    assert!(
        neigh.contains(&parent_mac),
        "server100's neighbour: {neigh}"
    );
    let inspect = serde_json::to_value(
        netlib
            .inspect(&netlib.network("ipvlan100").unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(inspect["Options"]["parent"], "nic.100");
    assert_eq!(inspect["Options"]["ipvlan_mode"], "l2");

    netlib
        .create_network(network(
            "l3net",
            "ipvlan",
            "nic.200",
            "10.10.200.0/24",
            None,
            None,
            Some("l3"),
        ))
        .unwrap();
    let d = sandbox(&netlib, "d");
    join(&netlib, &d, "l3net", "d");
    let e = sandbox(&netlib, "e");
    join(&netlib, &e, "l3net", "e");
    let pd = sandbox_ns(&pin(&netlib, &d));
    // Before the router knows the way back, the server's replies go nowhere.
    let out = in_ns(
        &pd,
        "ip -d -o link show eth0; ip route; ping -c1 -W3 10.10.200.3 >&2 && echo reached-e
         ping -c1 -W1 192.168.3.50 >&2 && echo REACHED-UNROUTED; true",
    );
    assert!(
        out.contains("mode l3")
            && out.contains("NOARP")
            && out.contains("default dev eth0")
            && out.contains("reached-e")
            && !out.contains("REACHED-UNROUTED"),
        "{out}"
    );
    in_ns(
        &peer("ROUTER"),
        "ip route add 10.10.200.0/24 via 192.168.3.10",
    );
    in_ns(
        &pd,
        "ping -c1 -W5 192.168.3.50 >&2 && ping -c1 -W3 192.168.3.1 >&2 && ping -c1 -W3 10.0.0.50",
    );

    assert_eq!(lookup(&pa, "b"), ["10.0.0.3"]);
    assert_eq!(lookup(&pin(&netlib, &d), "e"), ["10.10.200.3"]);

    remove_all(&netlib, &[&d, &e], &["l3net"]);
    netlib
        .create_network(network(
            "l3snet",
            "ipvlan",
            "nic.200",
            "10.10.200.0/24",
            None,
            None,
            Some("l3s"),
        ))
        .unwrap();
    let f = sandbox(&netlib, "f");
    join(&netlib, &f, "l3snet", "f");
    let out = in_ns(
        &sandbox_ns(&pin(&netlib, &f)),
        "ip -d -o link show eth0; ping -c1 -W5 192.168.3.50 >&2 && echo reached",
    );
    assert!(out.contains("mode l3s") && out.contains("reached"), "{out}");

    remove_all(&netlib, &[&a, &b, &f], &["ipvlan100", "l3snet"]);
    assert!(!link_exists("nic.100"), "rbox's sub-interface stays");
    assert!(!Path::new("/run/rbox/netlib/links.json").exists());
    assert!(
        sh("ip -o addr show nic.200").contains("192.168.3.10/24"),
        "the user's sub-interface was changed"
    );
}
