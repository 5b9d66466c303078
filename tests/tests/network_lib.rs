//! netlib at the library level, against the real kernel, each test in its own lab host.
//!
//! Each test runs twice: outside, it builds the lab (`Host`, peers) and re-executes this
//! test binary inside the lab host's namespaces with `RBOX_LAB_INNER` set; inside, it
//! drives `Netlib` with the host's default paths (`/var/lib/rbox`, `/run/rbox`) and
//! checks the kernel with `ip`, `nft`, `ping` (in sandboxes through `nsenter --net`),
//! and names with the test image's busybox `nslookup`, run as a container would run it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use netlib::dns::ResponderCommand;
use netlib::model::new_id;
use netlib::{EndpointConfig, Netlib, NetworkCreate, SandboxConfig};
use rbox_tests::{Host, bin, expect_ok, test_image_dir};

const INNER: &str = "RBOX_LAB_INNER";

/// True when running inside the lab (the second run).
fn inner() -> bool {
    std::env::var_os(INNER).is_some()
}

/// Re-runs test `name` of this binary inside `host`.
fn run_inside(host: &Host, name: &str) {
    run_inside_with(host, name, &[]);
}

/// Re-runs test `name` of this binary inside `host` with extra environment.
fn run_inside_with(host: &Host, name: &str, env: &[(&str, String)]) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = host.command(exe);
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INNER, "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    // Pass on what the inner test measured and said.
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let stdout = expect_ok(&format!("{name} inside lab {}", host.name()), out);
    assert!(
        stdout.contains("1 passed"),
        "inner test did not run:\n{stdout}"
    );
}

fn sh(script: &str) -> String {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    expect_ok(&format!("sh -c {script:?}"), out)
}

fn sh_fails(script: &str) -> bool {
    !Command::new("sh")
        .args(["-c", script])
        .output()
        .unwrap()
        .status
        .success()
}

fn in_sandbox(pin: &Path, script: &str) -> String {
    sh(&format!("nsenter --net={} sh -c '{script}'", pin.display()))
}

fn ping(pin: &Path, addr: &str) -> bool {
    !sh_fails(&format!(
        "nsenter --net={} ping -c1 -W1 {addr}",
        pin.display()
    ))
}

const ROOT: &str = "/var/lib/rbox";
const RUNROOT: &str = "/run/rbox";

/// Netlib for the lab host; its DNS responder is the built rbox (this process is the
/// test binary, not rbox).
fn open() -> Netlib {
    let mut netlib = Netlib::open(Path::new(ROOT), Path::new(RUNROOT)).unwrap();
    netlib.set_dns_responder(responder());
    netlib
}

fn responder() -> ResponderCommand {
    ResponderCommand::rbox(
        bin("rbox"),
        Path::new(ROOT),
        Path::new(RUNROOT),
        std::iter::empty::<&str>(),
    )
}

/// A sandbox for a new container; returns (container id, files dir).
fn sandbox(netlib: &Netlib, hostname: &str) -> (String, PathBuf) {
    let id = new_id();
    let files = PathBuf::from(format!("/run/lab-files/{id}"));
    let config = SandboxConfig {
        hostname: hostname.into(),
        files_dir: files.clone(),
        extra_hosts: vec![("db".into(), "10.1.1.1".parse().unwrap())],
        ..Default::default()
    };
    netlib.create_sandbox(&id, config).unwrap();
    (id, files)
}

fn join(netlib: &Netlib, id: &str, network: &str, name: &str) -> netlib::Endpoint {
    let config = EndpointConfig {
        container_name: name.into(),
        ..Default::default()
    };
    netlib.join(id, network, config).unwrap()
}

fn addr(ep: &netlib::Endpoint) -> String {
    ep.ipv4().unwrap().addr().to_string()
}

fn pin(netlib: &Netlib, id: &str) -> PathBuf {
    netlib.sandbox(id).unwrap().unwrap().netns.unwrap()
}

fn create(netlib: &Netlib, name: &str, internal: bool) -> netlib::Network {
    netlib
        .create_network(NetworkCreate {
            name: name.into(),
            internal,
            ..Default::default()
        })
        .unwrap()
}

/// No veth is left (waiting for the kernel's background cleanup of dead namespaces).
fn assert_no_veth() {
    let deadline = Instant::now() + Duration::from_secs(5);
    while sh("ip -o link").contains("veth") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let links = sh("ip -o link");
    assert!(!links.contains("veth"), "veth left:\n{links}");
}

/// Nothing of any sandbox is left: no veth, no pin, no lease, no endpoint record.
/// (The veths of destroyed sandboxes go with their namespaces, which the kernel
/// cleans up in the background: give it a moment.)
fn assert_no_sandbox_leftovers() {
    assert_no_veth();
    let pins: Vec<_> = std::fs::read_dir("/run/rbox/netns").unwrap().collect();
    assert!(pins.is_empty(), "netns pins left: {pins:?}");
    assert!(!sh("mount").contains("/run/rbox/netns/"), "pin mounts left");
    for dir in ["leases", "endpoints", "sandboxes"] {
        let left: Vec<_> = std::fs::read_dir(format!("/run/rbox/netlib/{dir}"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{dir} left: {left:?}");
    }
}

#[test]
fn two_containers_talk_and_teardown_leaves_nothing() {
    if !inner() {
        return run_inside(
            &Host::new("lib-talk"),
            "two_containers_talk_and_teardown_leaves_nothing",
        );
    }
    let netlib = open();
    let net = create(&netlib, "localnet", false);
    assert_eq!(
        net.ipam[0].subnet.to_string(),
        "172.18.0.0/16",
        "first free pool subnet"
    );
    let bridge = format!("br-{}", &net.id[..12]);

    let t0 = Instant::now();
    let (a, files_a) = sandbox(&netlib, "hosta");
    let ep_a = join(&netlib, &a, "localnet", "a");
    let setup = t0.elapsed();
    let (b, _) = sandbox(&netlib, "hostb");
    let t1 = Instant::now();
    let ep_b = join(&netlib, &b, "localnet", "b");
    let second_join = t1.elapsed();
    eprintln!(
        "network setup (sandbox + endpoint + lease + files): first container {setup:?} (bridge and rules made), second {second_join:?} (join only)"
    );
    assert!(second_join < Duration::from_millis(200));

    assert_eq!(addr(&ep_a), "172.18.0.2");
    assert_eq!(addr(&ep_b), "172.18.0.3");
    assert_eq!(ep_a.mac_address, "02:42:ac:12:00:02");
    // The bridge exists with the gateway address, both veths are its ports.
    assert!(sh(&format!("ip -o addr show dev {bridge}")).contains("inet 172.18.0.1/16"));
    let ports = sh(&format!("ip -o link show master {bridge}"));
    assert_eq!(ports.lines().count(), 2, "{ports}");
    // Inside: eth0 with address, MAC, default route; lo up; forwarding off.
    let pin_a = pin(&netlib, &a);
    assert_eq!(pin_a, Path::new("/run/rbox/netns").join(&a));
    let inside = in_sandbox(
        &pin_a,
        "ip -o addr; ip route; ip -o link show eth0; cat /proc/sys/net/ipv4/ip_forward",
    );
    assert!(inside.contains("inet 172.18.0.2/16"), "{inside}");
    assert!(
        inside.contains("default via 172.18.0.1 dev eth0"),
        "{inside}"
    );
    assert!(inside.contains("link/ether 02:42:ac:12:00:02"), "{inside}");
    assert!(
        inside.contains("lo ") && inside.contains("inet 127.0.0.1/8"),
        "{inside}"
    );
    assert!(
        inside.trim_end().ends_with('0'),
        "forwarding off in the sandbox:\n{inside}"
    );
    assert!(ping(&pin_a, &addr(&ep_b)), "a pings b");
    assert!(ping(&pin(&netlib, &b), &addr(&ep_a)), "b pings a");
    assert!(ping(&pin_a, "172.18.0.1"), "a pings its gateway");

    // Sandbox files.
    let hosts = std::fs::read_to_string(files_a.join("hosts")).unwrap();
    assert!(
        hosts.contains("127.0.0.1\tlocalhost")
            && hosts.contains("10.1.1.1\tdb")
            && hosts.contains("172.18.0.2\thosta a"),
        "{hosts}"
    );
    assert_eq!(
        std::fs::read_to_string(files_a.join("hostname")).unwrap(),
        "hosta\n"
    );
    let resolv = std::fs::read_to_string(files_a.join("resolv.conf")).unwrap();
    assert!(
        resolv.contains("nameserver 127.0.0.11") && resolv.contains("options ndots:0"),
        "{resolv}"
    );

    // The DNS responder's view: one record file per network.
    let records: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("/run/rbox/netlib/endpoints/{}.json", net.id)).unwrap(),
    )
    .unwrap();
    assert_eq!(records["endpoints"][&ep_a.id]["container_name"], "a");

    // inspect and rm through the CLI see the endpoints.
    let rbox = |args: &[&str]| Command::new(bin("rbox")).args(args).output().unwrap();
    let out = rbox(&["network", "inspect", "localnet"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["Containers"][&a]["Name"], "a");
    assert_eq!(json[0]["Containers"][&b]["IPv4Address"], "172.18.0.3/16");
    let out = rbox(&["network", "rm", "localnet"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("network localnet is in use by container(s) a, b"),
        "{err}"
    );

    // Teardown.
    netlib.destroy_sandbox(&a).unwrap();
    netlib.destroy_sandbox(&b).unwrap();
    netlib.destroy_sandbox(&b).unwrap(); // twice is fine
    assert_no_sandbox_leftovers();
    assert!(
        sh("nft list ruleset").contains(&format!("net-{}-in", &net.id[..12])),
        "rules stay with the network"
    );
    netlib.remove_network("localnet").unwrap();
    assert!(
        sh_fails(&format!("ip link show {bridge}")),
        "bridge removed with the network"
    );
    let rules = sh("nft list ruleset");
    assert!(!rules.contains("net-"), "{rules}");
}

#[test]
fn networks_are_isolated_and_a_two_network_container_does_not_route() {
    if !inner() {
        return run_inside(
            &Host::new("lib-iso"),
            "networks_are_isolated_and_a_two_network_container_does_not_route",
        );
    }
    let netlib = open();
    create(&netlib, "neta", false);
    create(&netlib, "netb", false);
    let (a, _) = sandbox(&netlib, "a");
    let ep_a = join(&netlib, &a, "neta", "a");
    let (b, _) = sandbox(&netlib, "b");
    let ep_b = join(&netlib, &b, "netb", "b");
    let (c, files_c) = sandbox(&netlib, "c");
    let ep_ca = join(&netlib, &c, "neta", "c");
    let ep_cb = join(&netlib, &c, "netb", "c");
    assert_eq!(
        (ep_ca.interface.as_str(), ep_cb.interface.as_str()),
        ("eth0", "eth1")
    );
    assert!(
        ep_ca.default_route && !ep_cb.default_route,
        "default route through the first network"
    );
    let (pa, pb, pc) = (pin(&netlib, &a), pin(&netlib, &b), pin(&netlib, &c));

    // c talks on both networks; a and b only on their own.
    assert!(ping(&pc, &addr(&ep_a)) && ping(&pc, &addr(&ep_b)));
    assert!(ping(&pa, &addr(&ep_ca)) && ping(&pb, &addr(&ep_cb)));
    assert!(
        !ping(&pa, &addr(&ep_b)),
        "neta cannot reach netb through the host"
    );
    assert!(
        !ping(&pb, &addr(&ep_a)),
        "netb cannot reach neta through the host"
    );
    // a routes to netb through c: c does not forward.
    let subnet_b = netlib.network("netb").unwrap().ipam[0].subnet;
    in_sandbox(
        &pa,
        &format!("ip route add {subnet_b} via {}", addr(&ep_ca)),
    );
    assert!(!ping(&pa, &addr(&ep_b)), "c routed between its networks");
    let hosts = std::fs::read_to_string(files_c.join("hosts")).unwrap();
    assert!(
        hosts.contains(&format!("{}\tc", addr(&ep_ca)))
            && hosts.contains(&format!("{}\tc", addr(&ep_cb))),
        "{hosts}"
    );

    // Hot-unplug and hot-plug on a live sandbox: a process keeps running in it.
    let mut holder = Command::new("nsenter")
        .arg(format!("--net={}", pc.display()))
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    netlib.leave(&c, "netb").unwrap();
    assert!(sh_fails(&format!(
        "nsenter --net={} ip link show eth1",
        pc.display()
    )));
    assert!(!ping(&pb, &addr(&ep_cb)));
    let again = join(&netlib, &c, "netb", "c");
    assert_eq!(again.interface, "eth1");
    assert!(ping(&pb, &addr(&again)), "hot-plugged endpoint answers");
    // The first network leaves: the default route moves to the next one.
    netlib.leave(&c, "neta").unwrap();
    let routes = in_sandbox(&pc, "ip route");
    let gw_b = netlib.network("netb").unwrap().ipam[0].gateway.unwrap();
    assert!(
        routes.contains(&format!("default via {gw_b} dev eth1")),
        "{routes}"
    );
    assert!(netlib.sandbox(&c).unwrap().unwrap().endpoints[0].default_route);
    holder.kill().unwrap();
    holder.wait().unwrap();

    for id in [&a, &b, &c] {
        netlib.destroy_sandbox(id).unwrap();
    }
    assert_no_sandbox_leftovers();
    let removed: Vec<String> = netlib
        .prune()
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(removed, ["neta", "netb"]);
    assert!(!sh("ip -o link").contains("br-"));
}

#[test]
fn internal_network_has_no_way_out_and_others_are_masqueraded() {
    if inner() {
        return internal_inner();
    }
    let host = Host::new("lib-nat");
    let peer = Host::new("internet");
    host.link(
        "uplink",
        Some("198.51.100.1/24"),
        &peer,
        "eth0",
        Some("198.51.100.2/24"),
    );
    let peer_pid = ("RBOX_LAB_PEER", peer.pid().to_string());
    run_inside_with(
        &host,
        "internal_network_has_no_way_out_and_others_are_masqueraded",
        &[peer_pid],
    );
}

fn internal_inner() {
    let netlib = open();
    sh("ip route add default via 198.51.100.2");
    create(&netlib, "outside", false);
    let internal = create(&netlib, "secret", true);
    let (o, _) = sandbox(&netlib, "o");
    let ep_o = join(&netlib, &o, "outside", "o");
    let (s, _) = sandbox(&netlib, "s");
    let ep_s = join(&netlib, &s, "secret", "s");
    let (po, ps) = (pin(&netlib, &o), pin(&netlib, &s));

    // The peer has no route to the containers: only masquerading gets replies back.
    assert!(
        ping(&po, "198.51.100.2"),
        "normal network reaches the peer through masquerade"
    );
    assert!(
        !ep_s.default_route,
        "no default route on an internal network"
    );
    let gateway = internal.ipam[0].gateway.unwrap();
    assert!(
        ping(&ps, &gateway.to_string()),
        "the internal network's gateway answers"
    );
    in_sandbox(&ps, &format!("ip route add default via {gateway}"));
    assert!(!ping(&ps, "198.51.100.2"), "internal network got out");
    // Nothing gets in, to either network, even for a peer with a route to it.
    let peer = format!("/proc/{}/ns/net", std::env::var("RBOX_LAB_PEER").unwrap());
    sh(&format!(
        "nsenter --net={peer} ip route add 172.16.0.0/12 via 198.51.100.1"
    ));
    for target in [addr(&ep_o), addr(&ep_s)] {
        assert!(
            sh_fails(&format!("nsenter --net={peer} ping -c1 -W1 {target}")),
            "peer reached {target}"
        );
    }
    let rules = sh("nft list table inet rbox");
    assert!(
        rules.contains("masquerade") && rules.contains("drop"),
        "{rules}"
    );
    for id in [&o, &s] {
        netlib.destroy_sandbox(id).unwrap();
    }
    assert_no_sandbox_leftovers();
}

#[test]
fn a_failed_join_leaves_nothing() {
    if !inner() {
        return run_inside(&Host::new("lib-fail"), "a_failed_join_leaves_nothing");
    }
    let netlib = open();
    create(&netlib, "n1", false);
    create(&netlib, "n2", false);
    let (a, _) = sandbox(&netlib, "a");
    let ep = join(&netlib, &a, "n1", "a");

    // A taken --ip: refused before any kernel object is made; the sandbox of a fresh
    // container gets no namespace.
    let (b, _) = sandbox(&netlib, "b");
    let taken = EndpointConfig {
        container_name: "b".into(),
        addresses: vec![ep.ipv4().unwrap().addr()],
        ..Default::default()
    };
    let err = netlib.join(&b, "n1", taken).unwrap_err().to_string();
    assert!(err.contains("already in use by container a"), "{err}");
    let sb = netlib.sandbox(&b).unwrap().unwrap();
    assert!(sb.netns.is_none() && sb.endpoints.is_empty(), "{sb:?}");
    assert_eq!(std::fs::read_dir("/run/rbox/netns").unwrap().count(), 1);
    // A name already on the network.
    let dup = EndpointConfig {
        container_name: "a".into(),
        ..Default::default()
    };
    assert!(
        netlib
            .join(&b, "n1", dup)
            .unwrap_err()
            .to_string()
            .contains("endpoint with name a already exists")
    );

    // A kernel failure after the lease: `eth1` already exists inside a's sandbox.
    let pa = pin(&netlib, &a);
    in_sandbox(&pa, "ip link add eth1 type veth peer name squat");
    let links_before = sh("ip -o link | wc -l");
    let err = netlib
        .join(
            &a,
            "n2",
            EndpointConfig {
                container_name: "a".into(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("eth1"), "{err}");
    let sb = netlib.sandbox(&a).unwrap().unwrap();
    assert_eq!(sb.endpoints.len(), 1, "failed endpoint not recorded");
    let n2 = netlib.network("n2").unwrap();
    assert!(
        !Path::new(&format!("/run/rbox/netlib/leases/{}.json", n2.id)).exists(),
        "lease released"
    );
    assert!(
        !Path::new(&format!("/run/rbox/netlib/endpoints/{}.json", n2.id)).exists(),
        "no record"
    );
    assert_eq!(
        sh("ip -o link | grep -c veth").trim(),
        "1",
        "only a's first veth"
    );
    // The bridge of n2 was made by the failed join and stays with the network (as rules do).
    assert_eq!(
        links_before.trim().parse::<u32>().unwrap() + 1,
        sh("ip -o link | wc -l").trim().parse::<u32>().unwrap()
    );
    assert!(ping(&pa, "172.18.0.1"), "a's first endpoint still works");

    netlib.destroy_sandbox(&a).unwrap();
    netlib.destroy_sandbox(&b).unwrap();
    assert_no_sandbox_leftovers();
}

#[test]
fn twenty_concurrent_joins_get_twenty_addresses() {
    if !inner() {
        return run_inside(
            &Host::new("lib-twenty"),
            "twenty_concurrent_joins_get_twenty_addresses",
        );
    }
    create(&open(), "crowd", false);
    let threads: Vec<_> = (0..20)
        .map(|i| {
            std::thread::spawn(move || {
                // Each thread has its own Netlib, as separate `rbox run` processes do.
                let netlib = open();
                let (id, _) = sandbox(&netlib, &format!("c{i}"));
                let ep = join(&netlib, &id, "crowd", &format!("c{i}"));
                (id, addr(&ep))
            })
        })
        .collect();
    let results: Vec<(String, String)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let addrs: BTreeSet<&String> = results.iter().map(|(_, a)| a).collect();
    assert_eq!(addrs.len(), 20, "{results:?}");
    let netlib = open();
    let first = pin(&netlib, &results[0].0);
    for (_, a) in &results[1..] {
        assert!(ping(&first, a), "{a} answers");
    }
    let bridge = format!("br-{}", &netlib.network("crowd").unwrap().id[..12]);
    assert_eq!(
        sh(&format!("ip -o link show master {bridge} | wc -l")).trim(),
        "20"
    );
    for (id, _) in &results {
        netlib.destroy_sandbox(id).unwrap();
    }
    assert_no_sandbox_leftovers();
}

#[test]
fn none_host_and_reclaim() {
    if !inner() {
        return run_inside(&Host::new("lib-reclaim"), "none_host_and_reclaim");
    }
    let netlib = open();
    // none: a namespace with lo only; default-bridge style resolv.conf.
    let (n, files) = sandbox(&netlib, "n");
    let ep = join(&netlib, &n, "none", "n");
    assert!(ep.addresses.is_empty() && ep.interface.is_empty());
    let links = in_sandbox(&pin(&netlib, &n), "ip -o link");
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:") && links.contains("UP"));
    let resolv = std::fs::read_to_string(files.join("resolv.conf")).unwrap();
    assert!(!resolv.contains("127.0.0.11"), "{resolv}");
    // host: no namespace; joining anything else afterwards is refused.
    let (h, _) = sandbox(&netlib, "h");
    join(&netlib, &h, "host", "h");
    let sb = netlib.sandbox(&h).unwrap().unwrap();
    assert!(sb.host_network && sb.netns.is_none());
    assert!(
        netlib
            .join(&h, "bridge", EndpointConfig::default())
            .is_err()
    );
    // The default bridge: rbox0 with 172.17.0.1/16.
    let (d, _) = sandbox(&netlib, "d");
    let ep = join(&netlib, &d, "bridge", "d");
    assert_eq!(addr(&ep), "172.17.0.2");
    assert!(sh("ip -o addr show dev rbox0").contains("172.17.0.1/16"));

    // The owner of d and n dies (monitor SIGKILLed): the next command reclaims.
    let alive = h.clone();
    let mut reclaimed = netlib.reclaim(|id| id == alive).unwrap();
    reclaimed.sort();
    let mut expected = vec![n.clone(), d.clone()];
    expected.sort();
    assert_eq!(reclaimed, expected);
    assert_no_veth();
    netlib.destroy_sandbox(&h).unwrap();
    assert_no_sandbox_leftovers();
}

/// Network setup time as `rbox run` pays it (sandbox + endpoint + lease + files, on a
/// network whose bridge and rules exist), and teardown; medians over 30 containers.
#[test]
fn network_setup_time() {
    if !inner() {
        return run_inside(&Host::new("lib-time"), "network_setup_time");
    }
    let netlib = open();
    create(&netlib, "timed", false);
    let (warm, _) = sandbox(&netlib, "warm");
    join(&netlib, &warm, "timed", "warm");
    let (mut setup, mut teardown) = (Vec::new(), Vec::new());
    for i in 0..30 {
        let t = Instant::now();
        let (id, _) = sandbox(&netlib, &format!("c{i}"));
        join(&netlib, &id, "timed", &format!("c{i}"));
        setup.push(t.elapsed());
        let t = Instant::now();
        netlib.destroy_sandbox(&id).unwrap();
        teardown.push(t.elapsed());
    }
    setup.sort();
    teardown.sort();
    eprintln!(
        "measured: network setup median {:?} (p90 {:?}, min {:?}); teardown median {:?}",
        setup[15], setup[27], setup[0], teardown[15]
    );
    assert!(
        setup[15] < Duration::from_millis(50),
        "setup median {:?}",
        setup[15]
    );
    netlib.destroy_sandbox(&warm).unwrap();
    assert_no_sandbox_leftovers();
}

/// Another tool's forward chain with a drop policy (iptables-nft's after Docker or ufw):
/// our containers still get out, and the tool's other forwarded traffic stays dropped.
#[test]
fn a_foreign_drop_policy_passes_only_our_traffic() {
    if inner() {
        return foreign_drop_inner();
    }
    let host = Host::new("lib-drop");
    let a = Host::new("peer-a");
    let b = Host::new("peer-b");
    host.link(
        "up0",
        Some("198.51.100.1/24"),
        &a,
        "eth0",
        Some("198.51.100.2/24"),
    );
    host.link(
        "up1",
        Some("203.0.113.1/24"),
        &b,
        "eth0",
        Some("203.0.113.2/24"),
    );
    a.sh_ok("ip route add 203.0.113.0/24 via 198.51.100.1");
    b.sh_ok("ip route add default via 203.0.113.1");
    let env = [
        ("RBOX_LAB_PEER", a.pid().to_string()),
        ("RBOX_LAB_PEER2", b.pid().to_string()),
    ];
    run_inside_with(&host, "a_foreign_drop_policy_passes_only_our_traffic", &env);
}

fn foreign_drop_inner() {
    let peer_b = format!("/proc/{}/ns/net", std::env::var("RBOX_LAB_PEER2").unwrap());
    let b_pings_a = || !sh_fails(&format!("nsenter --net={peer_b} ping -c1 -W1 198.51.100.2"));
    sh("ip route add default via 198.51.100.2; echo 1 > /proc/sys/net/ipv4/ip_forward");
    assert!(b_pings_a(), "the host routes between its peers");
    sh(
        "nft 'add table ip filter; add chain ip filter FORWARD { type filter hook forward priority 0; policy drop; }'",
    );
    assert!(
        !b_pings_a(),
        "the other tool's policy drops forwarded traffic"
    );

    let netlib = open();
    create(&netlib, "outside", false);
    let (c, _) = sandbox(&netlib, "c");
    join(&netlib, &c, "outside", "c");
    assert!(
        ping(&pin(&netlib, &c), "198.51.100.2"),
        "our container gets out"
    );
    assert!(!b_pings_a(), "the other tool's traffic is still dropped");
    let theirs = sh("nft list chain ip filter FORWARD");
    assert!(
        theirs.contains("policy drop") && theirs.contains("rbox-net:"),
        "{theirs}"
    );

    netlib.destroy_sandbox(&c).unwrap();
    netlib.remove_network("outside").unwrap();
    let theirs = sh("nft list chain ip filter FORWARD");
    assert!(
        !theirs.contains("rbox") && theirs.contains("policy drop"),
        "{theirs}"
    );
    assert_no_sandbox_leftovers();
}

/// `--ip`, `--mac-address`, `--network-alias` and the network's MTU and bridge name.
#[test]
fn static_address_mac_alias_and_mtu() {
    if !inner() {
        return run_inside(&Host::new("lib-static"), "static_address_mac_alias_and_mtu");
    }
    let netlib = open();
    let options = [
        ("com.docker.network.driver.mtu", "1400"),
        ("com.docker.network.bridge.name", "mybr0"),
    ];
    netlib
        .create_network(NetworkCreate {
            name: "custom".into(),
            subnets: vec!["10.30.0.0/24".parse().unwrap()],
            ip_ranges: vec!["10.30.0.128/25".parse().unwrap()],
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        })
        .unwrap();
    let (a, files) = sandbox(&netlib, "a");
    let config = EndpointConfig {
        container_name: "web".into(),
        aliases: vec!["www".into()],
        addresses: vec!["10.30.0.200".parse().unwrap()],
        mac_address: Some("02:aa:bb:cc:dd:ee".into()),
    };
    let ep = netlib.join(&a, "custom", config).unwrap();
    assert_eq!(ep.ipv4().unwrap().to_string(), "10.30.0.200/24");
    let inside = in_sandbox(
        &pin(&netlib, &a),
        "ip -o link show eth0; ip -o addr show eth0",
    );
    assert!(
        inside.contains("mtu 1400") && inside.contains("link/ether 02:aa:bb:cc:dd:ee"),
        "{inside}"
    );
    assert!(inside.contains("inet 10.30.0.200/24"), "{inside}");
    let bridge = sh("ip -o link show mybr0; ip -o addr show mybr0");
    assert!(
        bridge.contains("mtu 1400") && bridge.contains("inet 10.30.0.1/24"),
        "{bridge}"
    );
    let hosts = std::fs::read_to_string(files.join("hosts")).unwrap();
    assert!(hosts.contains("10.30.0.200\ta web www"), "{hosts}");
    // The next dynamic address comes from the range.
    let (b, _) = sandbox(&netlib, "b");
    assert_eq!(addr(&join(&netlib, &b, "custom", "b")), "10.30.0.128");
    for id in [&a, &b] {
        netlib.destroy_sandbox(id).unwrap();
    }
    netlib.remove_network("custom").unwrap();
    assert!(sh_fails("ip link show mybr0"));
    assert_no_sandbox_leftovers();
}

// ---- the embedded DNS, as netlib drives it ----

/// Runs `command` as a container of the sandbox would: in its network namespace,
/// chrooted into the test image, with the `hosts` and `resolv.conf` netlib wrote for it
/// (a private mount namespace puts them in the image's /etc for this command only).
/// Returns (success, stdout and stderr).
fn in_container(pin: &Path, files: &Path, command: &str) -> (bool, String) {
    let root = test_image_dir().join("rootfs");
    let script = format!(
        "set -e; etc=$(mktemp -d); cp -a {root}/etc/. $etc
         mount -t tmpfs tmpfs {root}/etc; cp -a $etc/. {root}/etc; rm -r $etc
         cp {files}/resolv.conf {files}/hosts {root}/etc/
         exec chroot {root} {command}",
        root = root.display(),
        files = files.display()
    );
    let out = Command::new("nsenter")
        .arg(format!("--net={}", pin.display()))
        .args(["unshare", "--mount", "sh", "-c", &script])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The container's `nslookup NAME` answers with `addr`.
fn resolves(pin: &Path, files: &Path, name: &str, addr: &str) -> bool {
    // Not its exit status: an upstream may refuse the AAAA query that follows.
    let (_, out) = in_container(pin, files, &format!("/bin/nslookup {name}"));
    let found = out
        .lines()
        .skip_while(|l| !l.starts_with("Name:"))
        .any(|l| l.trim() == format!("Address: {addr}"));
    if !found {
        eprintln!("nslookup {name} (expected {addr}):\n{out}");
    }
    found
}

/// The container's `nslookup NAME` gets no address (whatever the upstream then says).
fn unresolved(pin: &Path, files: &Path, name: &str) -> bool {
    let (_, out) = in_container(pin, files, &format!("/bin/nslookup {name}"));
    !out.lines()
        .skip_while(|l| !l.starts_with("Name:"))
        .any(|l| l.starts_with("Address:"))
}

/// PID of the running responder, if one runs.
fn responder_pid() -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(format!("{RUNROOT}/dns/responder.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    alive(pid).then_some(pid)
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// Waits up to 5 s for `cond`.
fn eventually(cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

fn join_as(netlib: &Netlib, id: &str, network: &str, name: &str, aliases: &[&str]) -> String {
    let config = EndpointConfig {
        container_name: name.into(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    };
    addr(&netlib.join(id, network, config).unwrap())
}

#[test]
fn dns_names_resolve_between_sandboxes_until_they_leave() {
    if !inner() {
        return run_inside(
            &Host::new("lib-dns"),
            "dns_names_resolve_between_sandboxes_until_they_leave",
        );
    }
    let netlib = open();
    create(&netlib, "front", false);
    let (a, files_a) = sandbox(&netlib, "hosta");
    let addr_a = join_as(&netlib, &a, "front", "web", &[]);
    assert!(responder_pid().is_some(), "the first DNS join starts it");
    let (b, files_b) = sandbox(&netlib, "hostb");
    let addr_b = join_as(&netlib, &b, "front", "db", &["database"]);
    let (pa, pb) = (pin(&netlib, &a), pin(&netlib, &b));

    // Names, aliases and hostnames, through the resolv.conf netlib wrote.
    let resolv = std::fs::read_to_string(files_a.join("resolv.conf")).unwrap();
    assert!(resolv.starts_with("nameserver 127.0.0.11\n"), "{resolv}");
    for name in ["db", "database", "hostb", "DB.front"] {
        assert!(resolves(&pa, &files_a, name, &addr_b), "{name}");
    }
    assert!(resolves(&pb, &files_b, "web", &addr_a));
    assert!(resolves(&pb, &files_b, "hosta", &addr_a));
    // ping by name, as `docker run ... ping web` does.
    let (ok, out) = in_container(&pb, &files_b, "/bin/ping -c1 -W2 web");
    assert!(ok && out.contains(&addr_a), "{out}");

    // Leaving: the name is gone when leave returns, and the sandbox, now on no DNS
    // network, loses the redirect.
    netlib.leave(&b, "front").unwrap();
    assert!(unresolved(&pa, &files_a, "db"), "db still resolves");
    assert!(!in_sandbox(&pb, "nft list ruleset").contains("rbox_dns"));
    let resolv = std::fs::read_to_string(files_b.join("resolv.conf")).unwrap();
    assert!(!resolv.contains("127.0.0.11"), "{resolv}");
    // Joining again: resolvable when join returns.
    let again = join_as(&netlib, &b, "front", "db", &[]);
    assert!(resolves(&pa, &files_a, "db", &again));

    // The responder lives with the network, not with its last sandbox.
    let pid = responder_pid().unwrap();
    netlib.destroy_sandbox(&a).unwrap();
    netlib.destroy_sandbox(&b).unwrap();
    assert!(alive(pid), "the network still exists");
    netlib.remove_network("front").unwrap();
    assert!(eventually(|| !alive(pid)), "responder still running");
    assert!(!Path::new("/run/rbox/dns/control.sock").exists());
    assert_no_sandbox_leftovers();
}

#[test]
fn dns_is_per_network_and_the_default_bridge_has_none() {
    if !inner() {
        return run_inside(
            &Host::new("lib-dns-iso"),
            "dns_is_per_network_and_the_default_bridge_has_none",
        );
    }
    let netlib = open();
    create(&netlib, "front", false);
    create(&netlib, "back", false);
    let (a, files_a) = sandbox(&netlib, "a");
    let addr_a = join_as(&netlib, &a, "front", "a", &[]);
    let (b, files_b) = sandbox(&netlib, "b");
    let addr_b = join_as(&netlib, &b, "back", "b", &[]);
    let (c, files_c) = sandbox(&netlib, "c");
    let c_front = join_as(&netlib, &c, "front", "c", &["shared"]);
    let c_back = join_as(&netlib, &c, "back", "c", &["shared"]);
    let (d, files_d) = sandbox(&netlib, "d");
    join_as(&netlib, &d, "bridge", "d", &[]);
    let (pa, pb, pc, pd) = (
        pin(&netlib, &a),
        pin(&netlib, &b),
        pin(&netlib, &c),
        pin(&netlib, &d),
    );

    // Each network's names to its own members; c is answered with its address there.
    assert!(resolves(&pa, &files_a, "c", &c_front));
    assert!(resolves(&pb, &files_b, "c", &c_back));
    assert!(unresolved(&pa, &files_a, "b"), "front resolved back's name");
    assert!(unresolved(&pb, &files_b, "a"), "back resolved front's name");
    // c, on both, resolves both.
    assert!(resolves(&pc, &files_c, "a", &addr_a));
    assert!(resolves(&pc, &files_c, "b", &addr_b));
    // The default bridge: no names, no 127.0.0.11, nothing redirected.
    assert!(unresolved(&pc, &files_c, "d"));
    let resolv = std::fs::read_to_string(files_d.join("resolv.conf")).unwrap();
    assert!(!resolv.contains("127.0.0.11"), "{resolv}");
    assert!(!in_sandbox(&pd, "nft list ruleset").contains("rbox_dns"));
    let (ok, out) = in_container(&pd, &files_d, "/bin/nslookup a 127.0.0.11");
    assert!(!ok && !out.contains(&addr_a), "{out}");

    for id in [&a, &b, &c, &d] {
        netlib.destroy_sandbox(id).unwrap();
    }
    assert_no_sandbox_leftovers();
}

/// The lab host's resolv.conf names a stub upstream (dnsmasq on a peer host) and
/// systemd-resolved's loopback stub, which a container cannot reach.
#[test]
fn dns_forwards_other_names_to_the_hosts_upstream() {
    if inner() {
        return forward_inner();
    }
    let host = Host::new("lib-dns-fwd");
    let peer = Host::new("upstream");
    host.link(
        "uplink",
        Some("10.99.0.1/24"),
        &peer,
        "eth0",
        Some("10.99.0.53/24"),
    );
    let log = peer.dir().join("dnsmasq.log");
    let log_option = format!("--log-facility={}", log.display());
    let _dnsmasq = peer.dns_stub(
        "10.99.0.53",
        &["/example.test/10.20.30.40", "/invalid/"],
        &["--log-queries", &log_option],
    );
    host.set_resolv_conf("nameserver 127.0.0.53\nnameserver 10.99.0.53\nsearch corp.example\n");
    let env = [("RBOX_LAB_LOG", log.display().to_string())];
    run_inside_with(
        &host,
        "dns_forwards_other_names_to_the_hosts_upstream",
        &env,
    );
}

fn forward_inner() {
    let netlib = open();
    create(&netlib, "front", false);
    create(&netlib, "secret", true);
    let (a, files_a) = sandbox(&netlib, "a");
    let addr_a = join_as(&netlib, &a, "front", "web", &[]);
    let pa = pin(&netlib, &a);
    let resolv = std::fs::read_to_string(files_a.join("resolv.conf")).unwrap();
    assert_eq!(
        resolv,
        "nameserver 127.0.0.11\nsearch corp.example\noptions ndots:0\n"
    );

    assert!(resolves(&pa, &files_a, "www.example.test", "10.20.30.40"));
    assert!(resolves(&pa, &files_a, "web", &addr_a), "ours still ours");
    let (_, out) = in_container(&pa, &files_a, "/bin/nslookup nothing.invalid");
    assert!(out.contains("NXDOMAIN"), "{out}");
    // It left from the sandbox: masqueraded by the lab host on its way out.
    let log = std::fs::read_to_string(std::env::var("RBOX_LAB_LOG").unwrap()).unwrap();
    assert!(
        log.contains("www.example.test from 10.99.0.1"),
        "dnsmasq log:\n{log}"
    );

    // An internal network has no way out, not even through the responder: SERVFAIL at
    // once, while its own names resolve.
    let (s, files_s) = sandbox(&netlib, "s");
    let addr_s = join_as(&netlib, &s, "secret", "s", &[]);
    let ps = pin(&netlib, &s);
    let started = Instant::now();
    let (_, out) = in_container(&ps, &files_s, "/bin/nslookup www.example.test");
    assert!(out.contains("SERVFAIL"), "{out}");
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert!(resolves(&ps, &files_s, "s", &addr_s));

    for id in [&a, &s] {
        netlib.destroy_sandbox(id).unwrap();
    }
    assert_no_sandbox_leftovers();
}

#[test]
fn dns_responder_killed_comes_back() {
    if !inner() {
        return run_inside(
            &Host::new("lib-dns-kill"),
            "dns_responder_killed_comes_back",
        );
    }
    let netlib = open();
    create(&netlib, "front", false);
    let (a, files_a) = sandbox(&netlib, "a");
    let addr_a = join_as(&netlib, &a, "front", "a", &[]);
    let pa = pin(&netlib, &a);
    let first = responder_pid().unwrap();
    // In a cgroup of its own, beside the containers', not in the starting command's.
    let cgroup = std::fs::read_to_string(format!("/proc/{first}/cgroup")).unwrap();
    let own = format!("/{}/rbox-dns", std::env::var("RBOX_CGROUP_PARENT").unwrap());
    assert!(
        cgroup
            .lines()
            .any(|l| l.contains("name=systemd:") && l.ends_with(&own)),
        "{cgroup}"
    );

    // A monitor's call is a no-op while it runs, and brings it back when it was killed.
    netlib.ensure_dns().unwrap();
    assert_eq!(responder_pid(), Some(first));
    sh(&format!("kill -9 {first}"));
    assert!(eventually(|| !alive(first)));
    assert!(unresolved(&pa, &files_a, "a"), "answered with no responder");
    netlib.ensure_dns().unwrap();
    let second = responder_pid().unwrap();
    assert_ne!(second, first);
    assert!(resolves(&pa, &files_a, "a", &addr_a));

    // Killed again: the next join brings it back, serving every sandbox from the state.
    sh(&format!("kill -9 {second}"));
    assert!(eventually(|| !alive(second)));
    let (b, files_b) = sandbox(&netlib, "b");
    let addr_b = join_as(&netlib, &b, "front", "b", &[]);
    assert!(responder_pid().is_some_and(|p| p != second));
    assert!(resolves(&pin(&netlib, &b), &files_b, "a", &addr_a));
    assert!(resolves(&pa, &files_a, "b", &addr_b));

    for id in [&a, &b] {
        netlib.destroy_sandbox(id).unwrap();
    }
    assert_no_sandbox_leftovers();
}

#[test]
fn dns_reclaim_and_network_rm_drop_records() {
    if !inner() {
        return run_inside(
            &Host::new("lib-dns-reclaim"),
            "dns_reclaim_and_network_rm_drop_records",
        );
    }
    let netlib = open();
    create(&netlib, "front", false);
    create(&netlib, "spare", false);
    let (a, files_a) = sandbox(&netlib, "a");
    join_as(&netlib, &a, "front", "a", &[]);
    let (b, _) = sandbox(&netlib, "b");
    let addr_b = join_as(&netlib, &b, "front", "b", &[]);
    let pa = pin(&netlib, &a);
    assert!(resolves(&pa, &files_a, "b", &addr_b));

    // b's monitor died: the next command reclaims b, and its name is gone by then.
    let alive_id = a.clone();
    assert_eq!(netlib.reclaim(|id| id == alive_id).unwrap(), [b]);
    assert!(
        unresolved(&pa, &files_a, "b"),
        "reclaimed name still resolves"
    );

    // A DNS network removed while the responder runs: dropped, the rest still served.
    let pid = responder_pid().unwrap();
    netlib.remove_network("spare").unwrap();
    assert_eq!(responder_pid(), Some(pid));
    assert!(resolves(
        &pa,
        &files_a,
        "a",
        &addr(&netlib.sandbox(&a).unwrap().unwrap().endpoints[0])
    ));

    // The last one reclaimed, the responder stays with its network, and goes with it.
    assert_eq!(netlib.reclaim(|_| false).unwrap(), [a]);
    assert!(alive(pid), "responder gone while its network exists");
    netlib.remove_network("front").unwrap();
    assert!(eventually(|| !alive(pid)), "responder still running");
    assert_no_sandbox_leftovers();
}

/// A join whose names cannot be served is undone: the container would start with a
/// resolver that does not answer.
#[test]
fn a_join_the_dns_cannot_serve_is_undone() {
    if !inner() {
        return run_inside(
            &Host::new("lib-dns-fail"),
            "a_join_the_dns_cannot_serve_is_undone",
        );
    }
    let mut netlib = open();
    create(&netlib, "front", false);
    netlib.set_dns_responder(ResponderCommand {
        program: "/bin/false".into(),
        args: Vec::new(),
    });
    let (a, files) = sandbox(&netlib, "a");
    let err = netlib
        .join(
            &a,
            "front",
            EndpointConfig {
                container_name: "a".into(),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("the DNS responder failed to start"), "{err}");
    let sb = netlib.sandbox(&a).unwrap().unwrap();
    assert!(sb.endpoints.is_empty(), "{sb:?}");
    let front = netlib.network("front").unwrap();
    assert!(netlib.endpoints(&front).unwrap().is_empty());
    assert!(
        !Path::new(&format!("/run/rbox/netlib/leases/{}.json", front.id)).exists(),
        "lease kept"
    );
    assert_no_veth();
    let resolv = std::fs::read_to_string(files.join("resolv.conf")).unwrap();
    assert!(!resolv.contains("127.0.0.11"), "{resolv}");
    // The default bridge needs no responder.
    join_as(&netlib, &a, "bridge", "a", &[]);
    netlib.destroy_sandbox(&a).unwrap();
    assert_no_sandbox_leftovers();
}

/// What the DNS sync adds to a join and to a teardown: medians over 30 containers on a
/// DNS network against the same on the default bridge (same driver, no DNS), measured
/// in turns so that the machine's other load weighs on both alike; and a bare sync (a
/// reload with nothing changed).
#[test]
fn dns_sync_time() {
    if !inner() {
        return run_inside(&Host::new("lib-dns-time"), "dns_sync_time");
    }
    let netlib = open();
    create(&netlib, "timed", false);
    let mut warm = Vec::new();
    for network in ["bridge", "timed"] {
        let (id, _) = sandbox(&netlib, "warm");
        join_as(&netlib, &id, network, &format!("warm-{network}"), &[]);
        warm.push(id);
    }
    let mut times: [[Vec<Duration>; 2]; 2] = Default::default();
    for i in 0..30 {
        for (n, network) in ["bridge", "timed"].into_iter().enumerate() {
            let (id, _) = sandbox(&netlib, &format!("c{i}"));
            let t = Instant::now();
            join_as(&netlib, &id, network, &format!("c{i}"), &[]);
            times[n][0].push(t.elapsed());
            let t = Instant::now();
            netlib.destroy_sandbox(&id).unwrap();
            times[n][1].push(t.elapsed());
        }
    }
    let mut bare: Vec<Duration> = (0..30)
        .map(|_| {
            let t = Instant::now();
            netlib::dns::sync(Path::new(RUNROOT), &responder()).unwrap();
            t.elapsed()
        })
        .collect();
    bare.sort();
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let [[join_plain, destroy_plain], [join_dns, destroy_dns]] =
        times.map(|mut t| [median(&mut t[0]), median(&mut t[1])]);
    eprintln!(
        "measured: join median {join_dns:?} on a DNS network vs {join_plain:?} without \
         (sync adds {:?}); teardown median {destroy_dns:?} vs {destroy_plain:?} (adds {:?}); \
         bare sync median {:?}",
        join_dns.saturating_sub(join_plain),
        destroy_dns.saturating_sub(destroy_plain),
        bare[15]
    );
    assert!(
        join_dns < join_plain + Duration::from_millis(10),
        "DNS sync too slow"
    );
    for id in &warm {
        netlib.destroy_sandbox(id).unwrap();
    }
    assert_no_sandbox_leftovers();
}
