//! What the full-kernel labs build on: VLAN-aware switching with trunks, ipvlan, dummy
//! links, cgroup v2 limits. These need Debian's stock kernel: `just test-vm` runs them in
//! a VM (booted as by default: plain init, cgroup v2); elsewhere each one says what the
//! kernel lacks and is skipped.

use rbox_tests::{Host, KernelFeature, VlanSwitch, require_kernel};

/// The picture later VLAN labs start from: a switch with a server on VLAN 100, one on
/// VLAN 200, and a host whose NIC is a trunk carrying both, reaching each server through
/// its `.100` / `.200` sub-interface. Untagged traffic stays in its port's VLAN.
#[test]
fn vlan_trunk_reaches_each_vlan_and_vlans_stay_apart() {
    if !require_kernel(&[KernelFeature::Vlan, KernelFeature::BridgeVlanFiltering]) {
        return;
    }
    let switch = VlanSwitch::new("switch");
    let server100 = Host::new("server100");
    let server200 = Host::new("server200");
    let host = Host::new("host");
    switch.access_port(&server100, "eth0", Some("10.0.0.50/24"), 100);
    switch.access_port(&server200, "eth0", Some("192.168.3.50/24"), 200);
    let trunk = switch.trunk_port(&host, "nic", &[100, 200]);

    host.sh_ok(
        "ip link add link nic name nic.100 type vlan id 100 &&
         ip link add link nic name nic.200 type vlan id 200 &&
         ip addr add 10.0.0.10/24 dev nic.100 && ip link set nic.100 up &&
         ip addr add 192.168.3.10/24 dev nic.200 && ip link set nic.200 up &&
         ping -c1 -W5 10.0.0.50 && ping -c1 -W5 192.168.3.50",
    );
    // The trunk carries exactly the two VLANs, tagged; the access ports one, untagged.
    let vlans = switch
        .host()
        .sh_ok(&format!("bridge -j vlan show dev {trunk}"));
    let vlans: serde_json::Value = serde_json::from_str(&vlans).unwrap();
    let vids: Vec<u64> = vlans[0]["vlans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["vlan"].as_u64().unwrap())
        .collect();
    assert_eq!(vids, [100, 200], "trunk VLANs: {vlans}");

    // Give server100 an address in VLAN 200's subnet: its untagged frames enter VLAN 100
    // and never reach server200, which the trunk side still reaches.
    server100.sh_ok(
        "ip addr add 192.168.3.51/24 dev eth0 &&
         if ping -c2 -W2 192.168.3.50; then echo 'VLAN 100 reached VLAN 200' >&2; exit 1; fi",
    );
    host.sh_ok("ping -c1 -W5 192.168.3.50");
}

/// An ipvlan child moved into another namespace reaches the parent's peer, with the
/// parent's MAC address (what makes ipvlan work where one MAC per port is allowed).
#[test]
fn ipvlan_l2_child_in_a_namespace_reaches_a_peer() {
    if !require_kernel(&[KernelFeature::Ipvlan]) {
        return;
    }
    let host = Host::new("host");
    let peer = Host::new("peer");
    let sandbox = Host::new("sandbox");
    // Few commands, each doing several steps: every process costs under emulation.
    let parent_mac = host.sh_ok(&format!(
        "ip link add nic type veth peer name eth0 netns {} && ip link set nic up &&
         ip link add link nic name iv0 type ipvlan mode l2 &&
         ip link set iv0 netns {} && cat /sys/class/net/nic/address",
        peer.pid(),
        sandbox.pid()
    ));
    peer.sh_ok("ip addr add 10.1.0.2/24 dev eth0 && ip link set eth0 up");
    let child_mac = sandbox.sh_ok(
        "ip addr add 10.1.0.10/24 dev iv0 && ip link set iv0 up &&
         ping -c1 -W5 10.1.0.2 >&2 && cat /sys/class/net/iv0/address",
    );
    assert_eq!(
        child_mac, parent_mac,
        "an ipvlan child shares its parent's MAC"
    );
    // The peer learnt the sandbox's address at the parent's MAC.
    let neigh = peer.sh_ok("ip neigh show 10.1.0.10");
    assert!(
        neigh.contains(parent_mac.trim()),
        "peer's neighbour entry: {neigh}"
    );
}

/// A dummy link holds an address the host answers on (later labs use dummies as
/// stand-in parents and as routed addresses).
#[test]
fn dummy_link_holds_an_address() {
    if !require_kernel(&[KernelFeature::Dummy]) {
        return;
    }
    let host = Host::new("host");
    let out = host.sh_ok(
        "ip link add d0 type dummy && ip addr add 10.2.0.1/32 dev d0 && ip link set d0 up &&
         ping -c1 -W2 10.2.0.1 >/dev/null && ip -o link show d0",
    );
    assert!(out.contains("d0: <BROADCAST,NOARP,UP,LOWER_UP>"), "{out}");
}

/// cgroup v2 with the memory and pids controllers delegated to a child: a process over
/// the memory limit is OOM-killed, and forks beyond the pids limit fail.
#[test]
fn cgroup_v2_memory_and_pids_limits_apply() {
    if !require_kernel(&[KernelFeature::Cgroup2(&["memory", "pids"])]) {
        return;
    }
    let host = Host::new("host");
    // The host's cgroup parent: removed, with everything in it, when `host` is dropped.
    let lab = format!("/sys/fs/cgroup/{}", host.cgroup_parent());
    host.sh_ok(&format!(
        "mkdir {lab} && echo '+memory +pids' > {lab}/cgroup.subtree_control &&
         mkdir {lab}/mem {lab}/pids &&
         echo 32M > {lab}/mem/memory.max && echo 0 > {lab}/mem/memory.swap.max &&
         echo 4 > {lab}/pids/pids.max"
    ));
    assert_eq!(
        host.sh_ok(&format!("cat {lab}/cgroup.subtree_control"))
            .trim(),
        "memory pids"
    );
    assert_eq!(
        host.sh_ok(&format!("cat {lab}/mem/memory.max")).trim(),
        "33554432"
    );

    // dd holds its whole block in memory: 64 MiB cannot fit in 32.
    let out = host.sh(&format!(
        "echo $$ > {lab}/mem/cgroup.procs && exec dd if=/dev/zero of=/dev/null bs=64M count=1"
    ));
    assert!(!out.status.success(), "dd fit 64 MiB in a 32 MiB cgroup");
    let events = host.sh_ok(&format!("cat {lab}/mem/memory.events"));
    assert!(
        events
            .lines()
            .any(|l| l.starts_with("oom_kill ") && l != "oom_kill 0"),
        "memory.events: {events}"
    );

    // The shell and three sleeps fill the four pids; the fourth sleep is refused.
    let out = host.sh(&format!(
        "echo $$ > {lab}/pids/cgroup.procs &&
         for i in 1 2 3 4; do sleep 60 >/dev/null 2>&1 & done; wait"
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("fork"), "no fork was refused: {stderr}");
    let events = host.sh_ok(&format!(
        "cat {lab}/pids/pids.events; echo 1 > {lab}/pids/cgroup.kill"
    ));
    assert!(
        events.starts_with("max ") && !events.starts_with("max 0"),
        "pids.events: {events}"
    );
}
