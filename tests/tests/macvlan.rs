//! macvlan networks on this machine's kernel (macvlan, but no 802.1Q VLANs nor ipvlan):
//! containers on a "physical" LAN, their modes, the host's view, and bad input. The
//! trunked VLAN picture and ipvlan are in `vm_macvlan.rs`, run by `just test-vm`.
//!
//! The LAN: a peer host `lan` holds the switch (a bridge) and is the physical server
//! (10.0.0.50/24, also a DNS server answering `upstream.example`); a peer `router` is the
//! LAN's gateway (10.0.0.1/24) and holds 192.168.3.1, reachable only through it. The
//! simulated host's NIC `nic` (10.0.0.10/24) is a veth into the switch: the parent.

mod macvlan_support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use macvlan_support::*;
use netlib::{EndpointConfig, Netlib, NetworkCreate};
use rbox_tests::{Host, KernelFeature};

/// The simulated host and its LAN's peers; the LAN's server resolves `upstream.example`.
struct Lan {
    host: Host,
    lan: Host,
    router: Host,
    dns: Option<std::process::Child>,
}

impl Drop for Lan {
    fn drop(&mut self) {
        if let Some(mut dns) = self.dns.take() {
            let _ = dns.kill();
            let _ = dns.wait();
        }
    }
}

impl Lan {
    fn new(name: &str) -> Lan {
        let host = Host::new(name);
        let lan = Host::new("lan");
        let router = Host::new("router");
        lan.sh_ok(
            "ip link add br0 type bridge && ip addr add 10.0.0.50/24 dev br0 && ip link set br0 up",
        );
        host.link("nic", Some("10.0.0.10/24"), &lan, "p-host", None);
        router.link("eth0", Some("10.0.0.1/24"), &lan, "p-router", None);
        lan.sh_ok(
            "ip link set p-host master br0 && ip link set p-router master br0 &&
             ip route add default via 10.0.0.1",
        );
        router.sh_ok("ip addr add 192.168.3.1/32 dev lo");
        Lan {
            host,
            lan,
            router,
            dns: None,
        }
    }

    /// Starts the LAN's DNS server and makes it the host's resolver.
    fn with_dns(mut self) -> Lan {
        let dns = self
            .lan
            .command("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=10.0.0.50",
                "--address=/upstream.example/198.51.100.7",
                "--pid-file",
            ])
            .spawn()
            .unwrap();
        self.dns = Some(dns);
        assert!(
            self.lan.wait_for(
                "busybox nslookup -type=a upstream.example 10.0.0.50",
                Duration::from_secs(10)
            ),
            "the LAN's DNS server did not start"
        );
        self.host.set_resolv_conf("nameserver 10.0.0.50\n");
        self
    }

    fn run(&self, test: &str) {
        run_inside(
            &self.host,
            test,
            &[("LAN", &self.lan), ("ROUTER", &self.router)],
        );
    }
}

fn macvlan(name: &str, mode: Option<&str>, internal: bool) -> NetworkCreate {
    let mut options = std::collections::BTreeMap::from([("parent".into(), "nic".into())]);
    if let Some(mode) = mode {
        options.insert("macvlan_mode".into(), mode.into());
    }
    NetworkCreate {
        name: name.into(),
        driver: Some("macvlan".into()),
        subnets: vec!["10.0.0.0/24".parse().unwrap()],
        ip_ranges: vec!["10.0.0.0/25".parse().unwrap()],
        gateways: vec!["10.0.0.1".parse().unwrap()],
        internal,
        options,
        ..Default::default()
    }
}

/// Nothing of any container or of rbox's networks is left in the host: its links are
/// the loopback and the NIC, and netlib's volatile state is empty.
fn assert_host_clean(netlib: &Netlib) {
    assert_eq!(host_links(), ["lo", "nic"]);
    for dir in ["leases", "endpoints", "sandboxes"] {
        let left: Vec<_> = std::fs::read_dir(format!("/run/rbox/netlib/{dir}"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{dir} left: {left:?}");
    }
    assert!(!std::path::Path::new("/run/rbox/netlib/links.json").exists());
    let custom: Vec<String> = netlib
        .networks()
        .unwrap()
        .into_iter()
        .filter(|n| !n.is_predefined())
        .map(|n| n.name)
        .collect();
    assert!(custom.is_empty(), "networks left: {custom:?}");
}

/// The picture of issue 7 on an untagged parent: containers on the LAN with their own
/// MAC addresses reach the physical server, their gateway and beyond it; they reach each
/// other and resolve each other by name; names of the world come from the LAN's DNS
/// server, asked from inside the container; the host cannot reach them through its NIC.
#[test]
fn containers_join_the_lan_with_their_own_macs() {
    if !inner() {
        return Lan::new("mv-lan")
            .with_dns()
            .run("containers_join_the_lan_with_their_own_macs");
    }
    let netlib = open();
    let net = netlib
        .create_network(macvlan("macvlan100", None, false))
        .unwrap();
    assert_eq!(net.interface.as_deref(), Some("nic"));
    assert!(
        net.dns_enabled,
        "user-defined macvlan networks resolve names"
    );
    let t0 = Instant::now();
    let a = sandbox(&netlib, "a");
    let ep_a = join(&netlib, &a, "macvlan100", "a");
    eprintln!(
        "macvlan: sandbox + endpoint of the first container in {:?}",
        t0.elapsed()
    );
    let b = sandbox(&netlib, "b");
    let ep_b = join(&netlib, &b, "macvlan100", "b");
    assert_eq!(
        (addr(&ep_a).as_str(), addr(&ep_b).as_str()),
        ("10.0.0.2", "10.0.0.3")
    );
    assert_eq!(ep_a.mac_address, "02:42:0a:00:00:02");
    assert_eq!(
        ep_a.host_interface, None,
        "a macvlan endpoint has no host side"
    );
    assert!(ep_a.default_route);
    let (pa, pb) = (pin(&netlib, &a), pin(&netlib, &b));

    // In the sandbox: a macvlan child of nic in bridge mode, its own MAC, the default
    // route through the LAN's router; it reaches the server, the router, what lies
    // beyond the router, and the other container.
    let inside = in_ns(
        &sandbox_ns(&pa),
        "ip -d -o link show eth0; ip -o addr show eth0; ip route;
         ping -c1 -W2 10.0.0.50 >&2 && ping -c1 -W2 10.0.0.1 >&2 &&
         ping -c1 -W2 192.168.3.1 >&2 && ping -c1 -W2 10.0.0.3 >&2 && echo reached-all",
    );
    for want in [
        "macvlan mode bridge",
        "link/ether 02:42:0a:00:00:02",
        "inet 10.0.0.2/24",
        "default via 10.0.0.1 dev eth0",
        "reached-all",
    ] {
        assert!(inside.contains(want), "missing {want:?}:\n{inside}");
    }
    // On the wire, the server saw a's own MAC (not the host's NIC's).
    let neigh = in_ns(&peer("LAN"), "ip neigh show 10.0.0.2");
    assert!(
        neigh.contains("02:42:0a:00:00:02"),
        "server's neighbour: {neigh}"
    );

    // The host reaches the LAN but not its own macvlan children (documented).
    sh("ping -c1 -W2 10.0.0.50");
    assert!(
        sh_fails("ping -c1 -W1 10.0.0.2"),
        "the host reached a macvlan child through its parent"
    );

    // inspect: parent and mode in Options, the containers with their MACs.
    let out = rbox(&["network", "inspect", "macvlan100"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["Driver"], "macvlan");
    assert_eq!(json[0]["Options"]["parent"], "nic");
    assert_eq!(json[0]["Options"]["macvlan_mode"], "bridge");
    assert_eq!(json[0]["IPAM"]["Config"][0]["Gateway"], "10.0.0.1");
    assert_eq!(json[0]["Containers"][&b]["MacAddress"], "02:42:0a:00:00:03");

    // Names: each other's (embedded DNS at 127.0.0.11), and the world's through the
    // LAN's DNS server, asked from inside the sandbox over the macvlan link.
    assert_eq!(lookup(&pa, "b"), ["10.0.0.3"]);
    assert_eq!(lookup(&pb, "a.macvlan100"), ["10.0.0.2"]);
    assert_eq!(lookup(&pa, "upstream.example"), ["198.51.100.7"]);

    // Disconnect: the child goes from the sandbox at once.
    netlib.leave(&b, "macvlan100").unwrap();
    assert!(sh_fails(&format!(
        "nsenter --net={} ip link show eth0",
        pb.display()
    )));
    assert!(sh_fails(&format!(
        "nsenter --net={} ping -c1 -W1 10.0.0.3",
        pa.display()
    )));

    for id in [&a, &b] {
        netlib.destroy_sandbox(id).unwrap();
    }
    netlib.remove_network("macvlan100").unwrap();
    assert_host_clean(&netlib);
    sh("ping -c1 -W2 10.0.0.50"); // the user's NIC is untouched
}

/// A container that goes can be replaced at once: the next one gets the same address and
/// MAC on the same parent (the old child must not linger in a dying namespace).
#[test]
fn an_address_and_mac_are_free_again_at_once() {
    if !inner() {
        return Lan::new("mv-reuse").run("an_address_and_mac_are_free_again_at_once");
    }
    let netlib = open();
    netlib.create_network(macvlan("mv", None, false)).unwrap();
    // Something else holding the namespace (here a process, as the DNS responder's
    // sockets may) must not keep the child, and its MAC, on the parent.
    let mut holders = Vec::new();
    let mut times = Vec::new();
    for round in 0..5 {
        let id = sandbox(&netlib, "c");
        let ep = join(&netlib, &id, "mv", "c");
        assert_eq!(
            (addr(&ep).as_str(), ep.mac_address.as_str()),
            ("10.0.0.2", "02:42:0a:00:00:02"),
            "round {round}"
        );
        holders.push(
            std::process::Command::new("nsenter")
                .arg(format!("--net={}", pin(&netlib, &id).display()))
                .args(["sleep", "60"])
                .spawn()
                .unwrap(),
        );
        let t = Instant::now();
        netlib.destroy_sandbox(&id).unwrap();
        times.push(t.elapsed());
    }
    eprintln!("macvlan: destroy_sandbox took {times:?}");
    for mut h in holders {
        h.kill().unwrap();
        h.wait().unwrap();
    }
    netlib.remove_network("mv").unwrap();
    assert_host_clean(&netlib);
}

/// `private`: children of the parent cannot talk to each other; `vepa`: only through the
/// switch, when it sends frames back out of their port (hairpin); `passthru`: one
/// container takes the parent over, with the parent's MAC, and a second is refused.
#[test]
fn modes_private_vepa_and_passthru() {
    if !inner() {
        return Lan::new("mv-modes").run("modes_private_vepa_and_passthru");
    }
    let netlib = open();
    let two = |mode: &str| {
        netlib
            .create_network(macvlan("m", Some(mode), false))
            .unwrap();
        let a = sandbox(&netlib, "a");
        join(&netlib, &a, "m", "a");
        let b = sandbox(&netlib, "b");
        join(&netlib, &b, "m", "b");
        (a, b)
    };
    let done = |ids: &[&String]| {
        for id in ids {
            netlib.destroy_sandbox(id).unwrap();
        }
        netlib.remove_network("m").unwrap();
    };

    let (a, b) = two("private");
    let pa = sandbox_ns(&pin(&netlib, &a));
    assert!(in_ns(&pa, "ip -d -o link show eth0").contains("macvlan mode private"));
    in_ns(&pa, "ping -c1 -W2 10.0.0.50");
    assert!(
        sh_fails(&format!("nsenter {pa} ping -c1 -W1 10.0.0.3")),
        "private children talked"
    );
    done(&[&a, &b]);

    let (a, b) = two("vepa");
    let pa = sandbox_ns(&pin(&netlib, &a));
    in_ns(&pa, "ping -c1 -W2 10.0.0.50");
    assert!(
        sh_fails(&format!("nsenter {pa} ping -c1 -W1 10.0.0.3")),
        "vepa without hairpin"
    );
    in_ns(&peer("LAN"), "bridge link set dev p-host hairpin on");
    in_ns(&pa, "ping -c1 -W2 10.0.0.3");
    in_ns(&peer("LAN"), "bridge link set dev p-host hairpin off");
    done(&[&a, &b]);

    netlib
        .create_network(macvlan("m", Some("passthru"), false))
        .unwrap();
    let nic_mac = sh("cat /sys/class/net/nic/address").trim().to_string();
    let a = sandbox(&netlib, "a");
    let ep = join(&netlib, &a, "m", "a");
    assert_eq!(
        ep.mac_address, nic_mac,
        "a passthru child carries the parent's MAC"
    );
    let pa = sandbox_ns(&pin(&netlib, &a));
    let inside = in_ns(&pa, "ip -d -o link show eth0; ping -c1 -W2 10.0.0.50 >&2");
    assert!(
        inside.contains("macvlan mode passthru") && inside.contains(&nic_mac),
        "{inside}"
    );
    let b = sandbox(&netlib, "b");
    let err = netlib
        .join(
            &b,
            "m",
            EndpointConfig {
                container_name: "b".into(),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("gives its parent to one container"), "{err}");
    let mac = EndpointConfig {
        container_name: "b".into(),
        mac_address: Some("02:00:00:00:00:01".into()),
        ..Default::default()
    };
    let err = netlib.join(&b, "m", mac).unwrap_err().to_string();
    assert!(err.contains("leave out --mac-address"), "{err}");
    assert!(netlib.sandbox(&b).unwrap().unwrap().endpoints.is_empty());
    done(&[&a, &b]);
    assert_eq!(
        sh("cat /sys/class/net/nic/address").trim(),
        nic_mac,
        "the parent's MAC is unchanged"
    );
    assert_host_clean(&netlib);
}

/// `--ip` and `--mac-address` as on bridges; `--internal`: no default route (as Docker),
/// so only the LAN's own subnet is reachable.
#[test]
fn static_address_mac_and_internal() {
    if !inner() {
        return Lan::new("mv-static").run("static_address_mac_and_internal");
    }
    let netlib = open();
    netlib.create_network(macvlan("lan", None, true)).unwrap();
    let a = sandbox(&netlib, "a");
    let config = EndpointConfig {
        container_name: "a".into(),
        addresses: vec!["10.0.0.100".parse::<IpAddr>().unwrap()],
        mac_address: Some("02:aa:bb:cc:dd:ee".into()),
        ..Default::default()
    };
    let ep = netlib.join(&a, "lan", config).unwrap();
    assert!(!ep.default_route);
    let pa = sandbox_ns(&pin(&netlib, &a));
    let inside = in_ns(
        &pa,
        "ip -o link show eth0; ip -o addr show eth0; ip route; ping -c1 -W2 10.0.0.50 >&2",
    );
    assert!(
        inside.contains("link/ether 02:aa:bb:cc:dd:ee") && inside.contains("inet 10.0.0.100/24"),
        "{inside}"
    );
    assert!(
        !inside.contains("default via"),
        "an internal network has no default route:\n{inside}"
    );
    assert!(sh_fails(&format!("nsenter {pa} ping -c1 -W1 192.168.3.1")));
    // The address must be in the range, and free.
    let b = sandbox(&netlib, "b");
    for (ip, why) in [
        ("10.0.0.200", "not inside the network's IP range"),
        ("10.0.0.100", "already in use"),
    ] {
        let config = EndpointConfig {
            container_name: "b".into(),
            addresses: vec![ip.parse().unwrap()],
            ..Default::default()
        };
        let err = netlib.join(&b, "lan", config).unwrap_err().to_string();
        assert!(err.contains(why), "{ip}: {err}");
    }
    for id in [&a, &b] {
        netlib.destroy_sandbox(id).unwrap();
    }
    netlib.remove_network("lan").unwrap();
    assert_host_clean(&netlib);
}

/// The remedy README documents for the host's view: a macvlan "shim" link of the host's
/// own on the parent, with a spare LAN address, and a route to the containers' range
/// through it. Runs those exact steps.
#[test]
fn documented_host_shim_reaches_containers() {
    if !inner() {
        return Lan::new("mv-shim").run("documented_host_shim_reaches_containers");
    }
    let netlib = open();
    netlib
        .create_network(macvlan("macvlan100", None, false))
        .unwrap();
    let a = sandbox(&netlib, "a");
    join(&netlib, &a, "macvlan100", "a");
    assert!(sh_fails("ping -c1 -W1 10.0.0.2"));
    sh(
        "ip link add macvlan100-shim link nic type macvlan mode bridge
        ip addr add 10.0.0.254/32 dev macvlan100-shim
        ip link set macvlan100-shim up
        ip route add 10.0.0.0/25 dev macvlan100-shim",
    );
    sh("ping -c1 -W2 10.0.0.2");
    in_ns(&sandbox_ns(&pin(&netlib, &a)), "ping -c1 -W2 10.0.0.254");
    sh("ip link del macvlan100-shim");
    netlib.destroy_sandbox(&a).unwrap();
    netlib.remove_network("macvlan100").unwrap();
    assert_host_clean(&netlib);
}

/// Bad input fails with a clear message and creates nothing: no link, no network, no
/// state. On this kernel, VLAN sub-interfaces and ipvlan are refused with the module
/// that is missing.
#[test]
fn bad_input_is_refused_and_creates_nothing() {
    let lan = Lan::new("mv-bad");
    let host = &lan.host;
    let out = host.rbox(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet=10.0.0.0/24",
        "--gateway=10.0.0.1",
        "-o",
        "parent=nic",
        "first",
    ]);
    assert!(out.status.success());
    let note = String::from_utf8_lossy(&out.stderr);
    assert_eq!(note.lines().count(), 1, "{note}");
    assert!(
        note.contains("this host cannot reach the containers of macvlan network first through nic"),
        "{note}"
    );

    // A second NIC no network claims, for what the kernel refuses.
    host.sh_ok("ip link add nic2 type veth peer name nic2p");
    let state = || {
        host.sh_ok("ip -o link | cut -d: -f2; ls -R /run/rbox/netlib /var/lib/rbox/networks")
            + &host.rbox_ok(&["network", "ls", "-q"])
    };
    let before = state();
    let mv = |extra: &[&str]| {
        let mut args = vec!["network", "create", "-d", "macvlan", "--subnet=10.1.0.0/24"];
        args.extend_from_slice(extra);
        args.push("second");
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let mut cases: Vec<(Vec<String>, &str)> = vec![
        (
            mv(&[]),
            "macvlan networks need a parent interface: -o parent=IF",
        ),
        (
            mv(&["-o", "parent=eth9"]),
            "parent interface eth9 does not exist",
        ),
        (
            mv(&["-o", "parent=nic.0"]),
            "invalid VLAN id 0 in -o parent=nic.0: 802.1Q VLAN ids go from 1 to 4094",
        ),
        (mv(&["-o", "parent=nic.4095"]), "invalid VLAN id 4095"),
        (
            mv(&["-o", "parent=nic.abc"]),
            "parent interface nic.abc does not exist, and \"abc\" is not a VLAN id",
        ),
        (
            mv(&["-o", "parent=nic"]),
            "parent nic is already used by network first",
        ),
        (
            mv(&["-o", "parent=nic2", "-o", "macvlan_mode=l2"]),
            "invalid macvlan mode \"l2\"",
        ),
        (
            mv(&["-o", "parent=nic2", "-o", "mode=private"]),
            "unknown option \"mode\"",
        ),
        (mv(&["-o", "parent=lo"]), "loopback"),
        (
            mv(&["--gateway=10.2.0.1", "-o", "parent=nic"]),
            "gateway 10.2.0.1 is not inside subnet 10.1.0.0/24",
        ),
        (
            mv(&["--ip-range=10.2.0.0/25", "-o", "parent=nic"]),
            "IP range 10.2.0.0/25 is not inside subnet 10.1.0.0/24",
        ),
        (
            [
                "network",
                "create",
                "-d",
                "macvlan",
                "-o",
                "parent=nic",
                "second",
            ]
            .map(String::from)
            .to_vec(),
            "macvlan networks need --subnet",
        ),
    ];
    if !KernelFeature::Vlan.present() {
        cases.push((
            mv(&["-o", "parent=nic.100"]),
            "cannot make the VLAN sub-interface nic.100: this kernel has no 802.1Q VLAN support (kernel module 8021q)",
        ));
    }
    if !KernelFeature::Ipvlan.present() {
        cases.push((
            ["network", "create", "-d", "ipvlan", "--subnet=10.1.0.0/24", "-o", "parent=nic2", "second"]
                .map(String::from)
                .to_vec(),
            "cannot create ipvlan network second: this kernel has no ipvlan support (kernel module ipvlan); load it with `modprobe ipvlan`",
        ));
    }
    for (args, want) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, err) = host.rbox_fails(&args);
        assert_eq!(code, 125, "{args:?}");
        assert!(err.contains(want), "{args:?}: want {want:?}, got: {err}");
        assert_eq!(err.lines().count(), 1, "one clear line: {err}");
        assert_eq!(state(), before, "{args:?} left something");
    }
    host.rbox_ok(&["network", "rm", "first"]);
}
