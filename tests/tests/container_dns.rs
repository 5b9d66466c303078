//! Embedded DNS as a user meets it through `rbox run`: containers ping each other by
//! name, aliases and round robin, names of other networks stay out, a stopped
//! container's name goes at once, two networks, the default bridge without names,
//! outside names through a stub upstream in the lab, and a killed responder that its
//! containers' monitors bring back.

mod containers_support;

use containers_support::{eventually, ip_on, lab};
use rbox_tests::Host;

/// `nslookup NAME` run in container `from`: the IPv4 addresses of the answer, in order.
fn lookup(h: &Host, from: &str, name: &str) -> Vec<String> {
    let out = h.rbox(&["exec", from, "nslookup", "-type=a", name]);
    let text = String::from_utf8_lossy(&out.stdout);
    // busybox prints the server first ("Server:", "Address: 127.0.0.11:53"), then the
    // answer's "Address: IP" lines after "Name:".
    text.split("Name:")
        .skip(1)
        .flat_map(|answer| answer.lines())
        .filter_map(|l| l.trim().strip_prefix("Address:"))
        .map(|a| a.trim().to_string())
        .collect()
}

fn start(h: &Host, name: &str, extra: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend(["busybox", "sleep", "1d"]);
    h.rbox_ok(&args);
}

#[test]
fn containers_find_each_other_by_name_alias_and_hostname() {
    let h = lab("cdns-names");
    h.rbox_ok(&["network", "create", "localnet"]);
    start(
        &h,
        "mybox",
        &["--network", "localnet", "--hostname", "boxhost"],
    );
    let ip = ip_on(&h, "mybox", "localnet");
    // The seed's session: a second container pings mybox by name.
    let out = h.rbox_ok(&[
        "run",
        "--rm",
        "--name",
        "mybox2",
        "--network",
        "localnet",
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "mybox",
    ]);
    assert!(out.contains(&format!("({ip})")), "{out}");
    // resolv.conf as Docker writes it on a user-defined network.
    let resolv = h.rbox_ok(&["exec", "mybox", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 127.0.0.11"), "{resolv}");
    assert!(resolv.contains("ndots:0"), "{resolv}");
    // Aliases share a name: every holder's address, in rotating order.
    start(
        &h,
        "web1",
        &["--network", "localnet", "--network-alias", "web"],
    );
    start(
        &h,
        "web2",
        &["--network", "localnet", "--network-alias", "web"],
    );
    let mut web = vec![ip_on(&h, "web1", "localnet"), ip_on(&h, "web2", "localnet")];
    web.sort();
    let first = lookup(&h, "mybox", "web");
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(sorted, web, "alias web");
    let orders: std::collections::BTreeSet<Vec<String>> =
        (0..6).map(|_| lookup(&h, "mybox", "web")).collect();
    assert!(orders.len() > 1, "no round robin: always {first:?}");
    // The hostname and the network-qualified name resolve too.
    assert_eq!(lookup(&h, "web1", "boxhost"), std::slice::from_ref(&ip));
    assert_eq!(
        lookup(&h, "web1", "mybox.localnet"),
        std::slice::from_ref(&ip)
    );
    // A stopped container's name stops resolving before `stop` returns.
    h.rbox_ok(&["stop", "-t", "0", "web2"]);
    assert_eq!(lookup(&h, "mybox", "web"), [ip_on(&h, "web1", "localnet")]);
    h.rbox_ok(&["rm", "-f", "mybox", "web1", "web2"]);
    h.rbox_ok(&["network", "rm", "localnet"]);
}

#[test]
fn names_stay_within_their_networks() {
    let h = lab("cdns-isolation");
    h.rbox_ok(&["network", "create", "red"]);
    h.rbox_ok(&["network", "create", "blue"]);
    start(&h, "rr", &["--network", "red"]);
    start(&h, "bb", &["--network", "blue"]);
    start(&h, "both", &["--network", "red", "--network", "blue"]);
    // Another network's names do not resolve.
    assert!(lookup(&h, "rr", "bb").is_empty(), "red resolves blue's b");
    assert!(lookup(&h, "bb", "rr").is_empty(), "blue resolves red's r");
    // A container on both resolves both, each to its address on the shared network.
    assert_eq!(lookup(&h, "both", "rr"), [ip_on(&h, "rr", "red")]);
    assert_eq!(lookup(&h, "both", "bb"), [ip_on(&h, "bb", "blue")]);
    assert_eq!(lookup(&h, "rr", "both"), [ip_on(&h, "both", "red")]);
    assert_eq!(lookup(&h, "bb", "both"), [ip_on(&h, "both", "blue")]);
    // The default bridge has no name resolution, as in Docker.
    start(&h, "d1", &[]);
    start(&h, "d2", &[]);
    let resolv = h.rbox_ok(&["exec", "d1", "cat", "/etc/resolv.conf"]);
    assert!(!resolv.contains("127.0.0.11"), "{resolv}");
    assert!(
        !h.rbox(&["exec", "d1", "ping", "-c1", "-W1", "d2"])
            .status
            .success()
    );
    h.rbox_ok(&["rm", "-f", "rr", "bb", "both", "d1", "d2"]);
    h.rbox_ok(&["network", "rm", "red", "blue"]);
}

/// The responder's pid file in the lab host's runroot.
const PID_FILE: &str = "/run/rbox/dns/responder.pid";

#[test]
fn outside_names_go_upstream_and_a_killed_responder_comes_back() {
    let h = lab("cdns-upstream");
    // The lab's "internet": a peer host whose dnsmasq answers example.test.
    let peer = Host::new("cdns-stub");
    h.link(
        "uplink",
        Some("10.98.0.1/24"),
        &peer,
        "eth0",
        Some("10.98.0.53/24"),
    );
    let _stub = peer.dns_stub("10.98.0.53", &["/example.test/10.20.30.40"], &[]);
    h.set_resolv_conf("nameserver 10.98.0.53\n");
    h.rbox_ok(&["network", "create", "localnet"]);
    start(&h, "ca", &["--network", "localnet"]);
    start(&h, "cb", &["--network", "localnet"]);
    assert_eq!(lookup(&h, "ca", "example.test"), ["10.20.30.40"]);

    // Kill the responder: the containers' monitors bring it back, names resolve again.
    let pid = h.sh_ok(&format!("cat {PID_FILE}")).trim().to_string();
    h.sh_ok(&format!("kill -9 {pid}"));
    assert!(
        eventually(
            &h,
            &format!("new=$(cat {PID_FILE}) && [ \"$new\" != {pid} ] && kill -0 \"$new\""),
            10
        ),
        "the responder was not brought back"
    );
    assert_eq!(lookup(&h, "ca", "cb"), [ip_on(&h, "cb", "localnet")]);
    assert_eq!(lookup(&h, "cb", "example.test"), ["10.20.30.40"]);
    h.rbox_ok(&["rm", "-f", "ca", "cb"]);
    h.rbox_ok(&["network", "rm", "localnet"]);
    // Nothing needs it any more: it is gone.
    assert!(
        eventually(&h, &format!("! test -e {PID_FILE}"), 5),
        "responder left running"
    );
}
