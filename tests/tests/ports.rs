//! Published ports, as a user drives them: each lab is a simulated host with rbox and a
//! peer host on a veth link (10.88.0.1 here, 10.88.0.2 there; a second host address
//! 10.88.1.1). The peer reaches the host's published ports; the host reaches them at its
//! own addresses and 127.0.0.1; containers reach them through the host's address.

mod containers_support;

use containers_support::{eventually, inspect, ip_on, lab};
use rbox_tests::Host;

const HOST_ADDR: &str = "10.88.0.1";
const OTHER_HOST_ADDR: &str = "10.88.1.1";
const PEER_ADDR: &str = "10.88.0.2";
const PAGE: &str = "hello from rbox";

/// A host with the test image and a peer host linked to it; the peer routes the
/// host's container subnets through the host (so that direct access can be tried).
fn lab_with_peer(name: &str) -> (Host, Host) {
    let host = lab(name);
    let peer = Host::new(&format!("{name}-peer"));
    host.link(
        "eth0",
        Some(&format!("{HOST_ADDR}/24")),
        &peer,
        "eth0",
        Some(&format!("{PEER_ADDR}/24")),
    );
    host.sh_ok(&format!("ip addr add {OTHER_HOST_ADDR}/24 dev eth0"));
    host.sh_ok("sysctl -qw net.ipv4.ip_forward=1");
    peer.sh_ok(&format!(
        "ip route add 172.16.0.0/12 via {HOST_ADDR} && ip route add 10.88.1.0/24 via {HOST_ADDR}"
    ));
    (host, peer)
}

/// Starts busybox httpd on port 80 in a detached container: `/` is PAGE,
/// `/cgi-bin/addr` the client's address as the container sees it.
fn webserver(h: &Host, name: &str, flags: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(flags);
    let script = format!(
        "mkdir -p /www/cgi-bin && echo '{PAGE}' > /www/index.html && \
         printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/addr && \
         chmod +x /www/cgi-bin/addr && exec httpd -f -p 80 -h /www"
    );
    args.extend_from_slice(&["busybox", "sh", "-c", &script]);
    h.rbox_ok(&args);
}

/// `wget` of `http://ADDR:PORT/` from `h` (the host or a peer): the page, or None.
fn fetch(h: &Host, addr: &str, port: u16) -> Option<String> {
    let out = h.sh(&format!("curl -s --max-time 3 http://{addr}:{port}/"));
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `wget` from inside container `from`.
fn fetch_in(h: &Host, from: &str, addr: &str, port: u16) -> Option<String> {
    let out = h.rbox(&[
        "exec",
        from,
        "timeout",
        "3",
        "wget",
        "-q",
        "-O",
        "-",
        &format!("http://{addr}:{port}/"),
    ]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A host process binding 0.0.0.0:PORT (tcp): succeeds when the port is free.
fn bind_script(port: u16) -> String {
    format!("python3 -c \"import socket; socket.socket().bind(('0.0.0.0', {port}))\"")
}

fn nft_table(h: &Host) -> String {
    h.sh_ok("nft list table inet rbox 2>/dev/null || true")
}

fn wait_served(h: &Host, port: u16) {
    assert!(
        eventually(
            h,
            &format!("curl -s --max-time 1 -o /dev/null http://127.0.0.1:{port}/"),
            10
        ),
        "the webserver never answered on 127.0.0.1:{port}: ps -a:\n{}\nnft:\n{}",
        h.rbox_ok(&["ps", "-a"]),
        nft_table(h)
    );
}

#[test]
fn seed_webserver_is_reachable_from_everywhere_a_docker_user_expects() {
    let (h, peer) = lab_with_peer("ports-seed");
    h.rbox_ok(&["network", "create", "localnet"]);
    h.rbox_ok(&["network", "create", "othernet"]);
    webserver(
        &h,
        "webserver",
        &["--network", "localnet", "--publish", "5000:80"],
    );
    wait_served(&h, 5000);
    let page = Some(PAGE.to_string());
    assert_eq!(fetch(&peer, HOST_ADDR, 5000), page, "from the peer");
    assert_eq!(
        fetch(&h, HOST_ADDR, 5000),
        page,
        "from the host at its address"
    );
    assert_eq!(
        fetch(&h, "127.0.0.1", 5000),
        page,
        "from the host at 127.0.0.1"
    );
    for net in ["localnet", "othernet"] {
        let client = format!("client-{net}");
        h.rbox_ok(&[
            "run",
            "-d",
            "--name",
            &client,
            "--network",
            net,
            "busybox",
            "sleep",
            "300",
        ]);
        assert_eq!(
            fetch_in(&h, &client, HOST_ADDR, 5000),
            page,
            "from a container on {net} through the host's address"
        );
    }
    assert_eq!(
        fetch_in(&h, "webserver", HOST_ADDR, 5000),
        page,
        "the container reaches itself through the host's address"
    );
    // The kernel path: DNAT in rbox's own table, a map lookup, no proxy process.
    let table = nft_table(&h);
    let web_ip = ip_on(&h, "webserver", "localnet");
    assert!(
        table.contains(&format!("0.0.0.0 . tcp . 5000 : {web_ip} . 80")),
        "{table}"
    );
    assert!(table.contains("fib daddr type local"), "{table}");
    assert_eq!(
        h.rbox_ok(&["port", "webserver"]),
        "80/tcp -> 0.0.0.0:5000\n"
    );
    assert_eq!(
        h.rbox_ok(&["port", "webserver", "80/tcp"]),
        "0.0.0.0:5000\n"
    );
    let ps = h.rbox_ok(&["ps"]);
    assert!(ps.contains("0.0.0.0:5000->80/tcp"), "{ps}");
    let v = inspect(&h, "webserver");
    assert_eq!(
        v["NetworkSettings"]["Ports"]["80/tcp"],
        serde_json::json!([{"HostIp": "0.0.0.0", "HostPort": "5000"}])
    );
    assert_eq!(
        v["HostConfig"]["PortBindings"]["80/tcp"],
        serde_json::json!([{"HostIp": "", "HostPort": "5000"}])
    );
    // Stopped: the rules and the claim are gone, the port is free for a host process.
    h.rbox_ok(&["stop", "-t", "1", "webserver"]);
    let table = nft_table(&h);
    assert!(!table.contains(&web_ip), "rules left after stop:\n{table}");
    assert_eq!(fetch(&peer, HOST_ADDR, 5000), None);
    assert_eq!(h.rbox_ok(&["port", "webserver"]), "");
    h.sh_ok(&bind_script(5000));
}

#[test]
fn exposure_peer_keeps_its_source_and_only_published_ports_get_in() {
    let (h, peer) = lab_with_peer("ports-exposure");
    h.rbox_ok(&["network", "create", "localnet"]);
    let published = format!("{HOST_ADDR}:5000:80");
    webserver(&h, "web", &["--network", "localnet", "-p", &published]);
    let web_ip = ip_on(&h, "web", "localnet");
    assert!(eventually(
        &h,
        &format!("curl -s --max-time 1 -o /dev/null http://{web_ip}:80/"),
        10
    ));
    let peer_seen = peer.sh_ok(&format!(
        "curl -s --max-time 3 http://{HOST_ADDR}:5000/cgi-bin/addr"
    ));
    // busybox httpd shows IPv4 clients as IPv4-mapped IPv6 addresses.
    let peer_seen = peer_seen
        .trim()
        .trim_start_matches("[::ffff:")
        .trim_end_matches(']');
    assert_eq!(peer_seen, PEER_ADDR, "the peer's source address is kept");
    assert_eq!(
        fetch(&peer, &web_ip, 80),
        None,
        "the container's port is reachable from the peer by routing to it, unpublished"
    );
    assert_eq!(
        fetch(&peer, OTHER_HOST_ADDR, 5000),
        None,
        "published on {HOST_ADDR} only, yet reachable on {OTHER_HOST_ADDR}"
    );
    assert_eq!(fetch(&peer, HOST_ADDR, 5000), Some(PAGE.to_string()));
    assert_eq!(
        h.rbox_ok(&["port", "web"]),
        format!("80/tcp -> {HOST_ADDR}:5000\n")
    );
}

#[test]
fn udp_ranges_random_ports_and_publish_all() {
    let (h, peer) = lab_with_peer("ports-forms");
    // UDP: the test image's busybox nc has no -u, so the host's netcat-openbsd (with
    // its libraries) runs in the container: it answers the first sender.
    let nc = std::fs::canonicalize("/usr/bin/nc").unwrap();
    let libs = std::fs::canonicalize("/lib/x86_64-linux-gnu").unwrap();
    h.rbox_ok(&[
        "run",
        "-d",
        "--name",
        "echo",
        "-p",
        "5353:7777/udp",
        "-v",
        &format!("{}:/nc:ro", nc.display()),
        "-v",
        &format!("{}:/lib/x86_64-linux-gnu:ro", libs.display()),
        "-v",
        "/lib64:/lib64:ro",
        "busybox",
        "sh",
        "-c",
        "echo pong-udp | /nc -u -l 7777 > /tmp/got",
    ]);
    let udp = format!(
        "python3 -c \"import socket; s=socket.socket(type=socket.SOCK_DGRAM); s.settimeout(1); s.sendto(b'ping', ('{HOST_ADDR}', 5353)); print(s.recv(100).decode())\""
    );
    assert!(
        eventually(&peer, &format!("{udp} | grep -q pong-udp"), 10),
        "no UDP answer through the published port; received: {}",
        h.rbox_ok(&["exec", "echo", "cat", "/tmp/got"])
    );
    assert!(
        h.rbox_ok(&["exec", "echo", "cat", "/tmp/got"])
            .contains("ping")
    );
    assert_eq!(h.rbox_ok(&["port", "echo"]), "7777/udp -> 0.0.0.0:5353\n");
    // A range, a random port on one address, and -P for the image's exposed port.
    webserver(
        &h,
        "ranged",
        &["-p", "8000-8002:80-82", "-p", "127.0.0.1::80"],
    );
    let lines = h.rbox_ok(&["port", "ranged"]);
    let mut expected = vec![
        "80/tcp -> 0.0.0.0:8000".to_string(),
        "81/tcp -> 0.0.0.0:8001".to_string(),
        "82/tcp -> 0.0.0.0:8002".to_string(),
    ];
    let random: u16 = lines
        .lines()
        .find_map(|l| l.strip_prefix("80/tcp -> 127.0.0.1:"))
        .unwrap_or_else(|| panic!("no random port on 127.0.0.1 in:\n{lines}"))
        .parse()
        .unwrap();
    assert_ne!(random, 0);
    expected.insert(1, format!("80/tcp -> 127.0.0.1:{random}"));
    assert_eq!(lines.lines().collect::<Vec<_>>(), expected);
    wait_served(&h, 8000);
    assert_eq!(fetch(&peer, HOST_ADDR, 8000), Some(PAGE.to_string()));
    assert_eq!(fetch(&h, "127.0.0.1", random), Some(PAGE.to_string()));
    assert_eq!(fetch(&peer, HOST_ADDR, 8001), None, "nothing listens on 81");
    let ps = h.rbox_ok(&["ps"]);
    assert!(ps.contains("0.0.0.0:8000-8002->80-82/tcp"), "{ps}");
    // -P: the ports the container exposes (here the one -p publishes) on random ports.
    webserver(&h, "all", &["-P", "-p", "127.0.0.1:9000:80/udp"]);
    let lines = h.rbox_ok(&["port", "all"]);
    assert_eq!(lines.lines().count(), 1, "{lines}");
    assert_eq!(h.rbox_ok(&["port", "all", "80/udp"]), "127.0.0.1:9000\n");
    let (_, err) = h.rbox_fails(&["port", "all", "81/tcp"]);
    assert!(
        err.contains("no public port '81/tcp' published for all"),
        "{err}"
    );
}

#[test]
fn a_held_port_is_refused_clearly_and_nothing_is_left() {
    let (h, _peer) = lab_with_peer("ports-conflict");
    webserver(&h, "first", &["-p", "5000:80"]);
    let table_before = nft_table(&h);
    let containers_before = h.rbox_ok(&["ps", "-a", "-q"]);
    // Another container on the same port (on one address of the wildcard too).
    for spec in ["5000:80", "127.0.0.1:5000:81"] {
        let (code, err) =
            h.rbox_fails(&["run", "-d", "--rm", "-p", spec, "busybox", "sleep", "60"]);
        assert_eq!(code, 125);
        assert!(
            err.contains("is held by container first"),
            "-p {spec}: {err}"
        );
        assert_eq!(nft_table(&h), table_before, "-p {spec} left rules");
        assert_eq!(h.rbox_ok(&["ps", "-a", "-q"]), containers_before);
    }
    // A host process cannot take the port from under the container.
    assert!(
        !h.sh(&bind_script(5000)).status.success(),
        "the claim holds the port"
    );
    // A host listener on a port: a container asking for it is refused.
    let mut listener = h
        .command("python3")
        .args([
            "-c",
            "import socket,time; s=socket.socket(); s.bind(('0.0.0.0', 6000)); s.listen(); time.sleep(60)",
        ])
        .spawn()
        .unwrap();
    assert!(eventually(&h, &format!("! {}", bind_script(6000)), 5));
    let (code, err) = h.rbox_fails(&[
        "run", "-d", "--name", "second", "-p", "6000:80", "busybox", "sleep", "60",
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("held by a host process"), "{err}");
    assert!(
        !err.contains('\n') || err.trim().lines().count() == 1,
        "one sentence: {err}"
    );
    assert_eq!(
        nft_table(&h),
        table_before,
        "a refused container left rules"
    );
    let ps = h.rbox_ok(&["ps", "-a"]);
    let row = ps
        .lines()
        .find(|l| l.ends_with(" second"))
        .unwrap_or_default();
    assert!(!row.contains("Up "), "{ps}");
    let _ = listener.kill();
    let _ = listener.wait();
}

#[test]
fn rules_and_claims_go_with_the_container_however_it_ends() {
    let (h, peer) = lab_with_peer("ports-ends");
    // A monitor killed with SIGKILL: the next rbox command reclaims its ports.
    webserver(&h, "killed", &["-p", "5000:80"]);
    wait_served(&h, 5000);
    let v = inspect(&h, "killed");
    let ip = v["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let monitor = h
        .sh_ok(&format!("ps -o ppid= -p {}", v["State"]["Pid"]))
        .trim()
        .to_string();
    h.sh_ok(&format!("kill -9 {monitor}"));
    assert!(
        nft_table(&h).contains(&ip),
        "the rules stay until reclaimed"
    );
    h.rbox_ok(&["ps", "-a"]);
    let table = nft_table(&h);
    assert!(
        !table.contains(&ip),
        "rules left after a killed monitor:\n{table}"
    );
    h.sh_ok(&bind_script(5000));
    // Its own exit, rm -f and kill: each removes the rules.
    for (name, end) in [("exits", "exit"), ("removed", "rm"), ("signalled", "kill")] {
        let flags = ["-p", "7000:80"];
        if end == "exit" {
            h.rbox_ok(&[
                "run", "-d", "--name", name, "-p", "7000:80", "busybox", "sleep", "1",
            ]);
            assert!(nft_table(&h).contains(". 7000 :"));
            h.rbox_ok(&["wait", name]);
        } else {
            webserver(&h, name, &flags);
            wait_served(&h, 7000);
            assert_eq!(fetch(&peer, HOST_ADDR, 7000), Some(PAGE.to_string()));
            if end == "rm" {
                h.rbox_ok(&["rm", "-f", name]);
            } else {
                h.rbox_ok(&["kill", name]);
                h.rbox_ok(&["wait", name]);
            }
        }
        let table = nft_table(&h);
        assert!(
            !table.contains(". 7000 :"),
            "rules left after {end}:\n{table}"
        );
        h.sh_ok(&bind_script(7000));
    }
}
