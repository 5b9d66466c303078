//! Containers on networks, as a user drives them: the seed session of issue 4, a
//! container on two networks (CNM), isolation, internal networks, twenty parallel runs,
//! every way a container ends (and what is left after: nothing), bad input.

mod containers_support;

use std::time::Duration;

use containers_support::{assert_unchanged, inspect, ip_on, lab, run, snapshot};
use rbox_tests::Host;
use serde_json::Value;

fn network_id(h: &Host, name: &str) -> String {
    let v: Value = serde_json::from_str(&h.rbox_ok(&["network", "inspect", name])).unwrap();
    v[0]["Id"].as_str().unwrap().to_string()
}

/// The lab's state once rbox's own lasting fixtures exist (its nftables table with its
/// base chains, made when a first container joins a network and kept, as Docker keeps
/// its chains).
fn primed_snapshot(h: &Host) -> containers_support::Snapshot {
    h.rbox_ok(&["network", "create", "primer"]);
    h.rbox_ok(&["run", "--rm", "--network", "primer", "busybox", "true"]);
    h.rbox_ok(&["network", "rm", "primer"]);
    snapshot(h)
}

fn pings(h: &Host, from: &str, ip: &str) -> bool {
    h.rbox(&["exec", from, "ping", "-c", "1", "-W", "1", ip])
        .status
        .success()
}

#[test]
fn seed_session() {
    let h = lab("seed");
    let before = primed_snapshot(&h);
    let ls = h.rbox_ok(&["network", "ls"]);
    for n in ["bridge", "host", "none"] {
        assert!(
            ls.lines().any(|l| l.split_whitespace().nth(1) == Some(n)),
            "{n} missing:\n{ls}"
        );
    }
    h.rbox_ok(&["network", "create", "-d", "bridge", "localnet"]);
    let id = h.rbox_ok(&[
        "run",
        "-d",
        "--name",
        "mybox",
        "--network",
        "localnet",
        "busybox",
        "sleep",
        "1d",
    ]);
    assert_eq!(id.trim().len(), 64);
    // network inspect shows mybox with its address.
    let net: Value = serde_json::from_str(&h.rbox_ok(&["network", "inspect", "localnet"])).unwrap();
    let containers = net[0]["Containers"].as_object().unwrap();
    let entry = &containers[id.trim()];
    assert_eq!(entry["Name"], "mybox");
    let ip = ip_on(&h, "mybox", "localnet");
    assert!(
        entry["IPv4Address"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{ip}/")),
        "{entry}"
    );
    // Its veth is on the network's bridge, br-<12 hex of the network id>.
    let bridge = format!("br-{}", &network_id(&h, "localnet")[..12]);
    let members = h.sh_ok(&format!("ip -d link show master {bridge}"));
    assert!(members.contains("veth"), "no veth on {bridge}:\n{members}");
    // A second container reaches mybox's address.
    let (code, out, err) = run(
        &h,
        &[
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
            &ip,
        ],
    );
    assert_eq!(code, 0, "ping failed: {out}{err}");
    // The container's own view: eth0 with that address, default route via the gateway.
    let addr = h.rbox_ok(&["exec", "mybox", "ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(addr.contains(&ip), "{addr}");
    let gw = inspect(&h, "mybox")["NetworkSettings"]["Networks"]["localnet"]["Gateway"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        h.rbox_ok(&["exec", "mybox", "ip", "route"])
            .contains(&format!("default via {gw}"))
    );
    // Clean up: nothing of the session is left.
    h.rbox_ok(&["rm", "-f", "mybox"]);
    h.rbox_ok(&["network", "rm", "localnet"]);
    assert_unchanged(&h, &before, "the seed session");
}

#[test]
fn container_on_two_networks() {
    let h = lab("cnm");
    let before = primed_snapshot(&h);
    h.rbox_ok(&["network", "create", "net-a"]);
    h.rbox_ok(&["network", "create", "net-b"]);
    h.rbox_ok(&[
        "run",
        "-d",
        "--name",
        "box-a",
        "--network",
        "net-a",
        "busybox",
        "sleep",
        "1d",
    ]);
    h.rbox_ok(&[
        "run",
        "-d",
        "--name",
        "box-b",
        "--network",
        "net-a",
        "--network",
        "net-b",
        "busybox",
        "sleep",
        "1d",
    ]);
    h.rbox_ok(&[
        "run",
        "-d",
        "--name",
        "box-c",
        "--network",
        "net-b",
        "busybox",
        "sleep",
        "1d",
    ]);
    let b_links = h.rbox_ok(&["exec", "box-b", "ip", "-o", "link"]);
    assert!(
        b_links.contains("eth0") && b_links.contains("eth1"),
        "{b_links}"
    );
    let (a_ip, b_ip_a, b_ip_b, c_ip) = (
        ip_on(&h, "box-a", "net-a"),
        ip_on(&h, "box-b", "net-a"),
        ip_on(&h, "box-b", "net-b"),
        ip_on(&h, "box-c", "net-b"),
    );
    // A and B talk on net A; B and C on net B.
    assert!(pings(&h, "box-a", &b_ip_a));
    assert!(pings(&h, "box-b", &a_ip));
    assert!(pings(&h, "box-b", &c_ip));
    assert!(pings(&h, "box-c", &b_ip_b));
    // B does not route between its networks: A cannot reach C, nor B's net-b address.
    assert_eq!(
        h.rbox_ok(&["exec", "box-b", "cat", "/proc/sys/net/ipv4/ip_forward"]),
        "0\n"
    );
    assert!(!pings(&h, "box-a", &c_ip), "a reached c through b");
    assert!(!pings(&h, "box-c", &a_ip), "c reached a");
    // network connect/disconnect on a running container.
    h.rbox_ok(&["network", "connect", "net-b", "box-a"]);
    let a_ip_b = ip_on(&h, "box-a", "net-b");
    assert!(pings(&h, "box-c", &a_ip_b));
    h.rbox_ok(&["network", "disconnect", "net-b", "box-a"]);
    assert!(!pings(&h, "box-c", &a_ip_b));
    h.rbox_ok(&["rm", "-f", "box-a", "box-b", "box-c"]);
    h.rbox_ok(&["network", "rm", "net-a", "net-b"]);
    assert_unchanged(&h, &before, "two networks");
}

/// `--network none`: a network namespace of the container's own with only `lo`, up.
#[test]
fn the_none_network_has_only_loopback() {
    let h = lab("none");
    let before = snapshot(&h);
    h.rbox_ok(&[
        "run",
        "-d",
        "--name",
        "solo",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1d",
    ]);
    let out = h.rbox_ok(&[
        "exec",
        "solo",
        "sh",
        "-c",
        "ls /sys/class/net; ping -c 1 -W 1 127.0.0.1 >/dev/null && echo lo-answers",
    ]);
    assert_eq!(out, "lo\nlo-answers\n");
    let pid = inspect(&h, "solo")["State"]["Pid"].as_u64().unwrap();
    assert_ne!(
        h.sh_ok(&format!("readlink /proc/{pid}/ns/net")),
        h.sh_ok("readlink /proc/self/ns/net"),
        "the container shares the host's network namespace"
    );
    h.rbox_ok(&["rm", "-f", "solo"]);
    assert_unchanged(&h, &before, "the none network");
}

#[test]
fn networks_are_isolated_and_internal_has_no_way_out() {
    let h = lab("isolation");
    let peer = Host::new("peer");
    h.link(
        "uplink",
        Some("10.77.0.1/24"),
        &peer,
        "eth0",
        Some("10.77.0.2/24"),
    );
    h.sh_ok("sysctl -qw net.ipv4.ip_forward=1");
    peer.sh_ok("ip route add default via 10.77.0.1");
    h.rbox_ok(&["network", "create", "left"]);
    h.rbox_ok(&["network", "create", "right"]);
    h.rbox_ok(&["network", "create", "--internal", "inside"]);
    h.rbox_ok(&[
        "run",
        "-d",
        "--name",
        "left-1",
        "--network",
        "left",
        "busybox",
        "sleep",
        "1d",
    ]);
    h.rbox_ok(&[
        "run",
        "-d",
        "--name",
        "right-1",
        "--network",
        "right",
        "busybox",
        "sleep",
        "1d",
    ]);
    h.rbox_ok(&[
        "run",
        "-d",
        "--name",
        "in-1",
        "--network",
        "inside",
        "busybox",
        "sleep",
        "1d",
    ]);
    h.rbox_ok(&[
        "run",
        "-d",
        "--name",
        "in-2",
        "--network",
        "inside",
        "busybox",
        "sleep",
        "1d",
    ]);
    let (l_ip, r_ip) = (ip_on(&h, "left-1", "left"), ip_on(&h, "right-1", "right"));
    assert!(!pings(&h, "left-1", &r_ip), "left reached right");
    assert!(!pings(&h, "right-1", &l_ip), "right reached left");
    // A normal network gets out (masqueraded), an internal one does not.
    assert!(
        pings(&h, "left-1", "10.77.0.2"),
        "no way out of a bridge network"
    );
    assert!(
        !pings(&h, "in-1", "10.77.0.2"),
        "an internal network reached the outside"
    );
    assert!(
        pings(&h, "in-1", &ip_on(&h, "in-2", "inside")),
        "internal members cannot talk"
    );
    h.rbox_ok(&["rm", "-f", "left-1", "right-1", "in-1", "in-2"]);
    // A network in use cannot be removed; once free it can.
    h.rbox_ok(&[
        "run",
        "-d",
        "--name",
        "user",
        "--network",
        "left",
        "busybox",
        "sleep",
        "1d",
    ]);
    let (code, err) = h.rbox_fails(&["network", "rm", "left"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("in use") || err.contains("active endpoints"),
        "{err}"
    );
    h.rbox_ok(&["rm", "-f", "user"]);
    h.rbox_ok(&["network", "rm", "left", "right", "inside"]);
}

#[test]
fn twenty_parallel_runs_get_twenty_addresses() {
    let h = lab("parallel");
    h.rbox_ok(&["network", "create", "busy"]);
    let children: Vec<_> = (0..20)
        .map(|i| {
            h.rbox_command(&[
                "run",
                "-d",
                "--name",
                &format!("p{i}"),
                "--network",
                "busy",
                "busybox",
                "sleep",
                "1d",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a parallel run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut ips: Vec<String> = (0..20)
        .map(|i| ip_on(&h, &format!("p{i}"), "busy"))
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 20, "addresses repeat: {ips:?}");
    let running = h.rbox_ok(&["ps", "-q"]);
    assert_eq!(running.lines().count(), 20);
    let names: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
    let mut args = vec!["rm", "-f"];
    args.extend(names.iter().map(String::as_str));
    h.rbox_ok(&args);
    h.rbox_ok(&["network", "rm", "busy"]);
}

/// Nothing of the container is left: no veth, no pinned netns, no rootfs mount, its
/// lease released (the network shows no container).
fn assert_gone(h: &Host, before: &containers_support::Snapshot, net: &str, what: &str) {
    let v: Value = serde_json::from_str(&h.rbox_ok(&["network", "inspect", net])).unwrap();
    assert!(
        v[0]["Containers"].as_object().is_none_or(|c| c.is_empty()),
        "{what}: still on {net}: {v:#}"
    );
    let after = snapshot(h);
    assert_eq!(after.links, before.links, "{what}: links left");
    assert_eq!(after.mounts, before.mounts, "{what}: mounts left");
    assert_eq!(after.netns, before.netns, "{what}: netns left");
    assert_eq!(after.processes, before.processes, "{what}: processes left");
}

#[test]
fn every_way_out_cleans_up() {
    let h = lab("exits");
    h.rbox_ok(&["network", "create", "n"]);
    // The network's bridge is made with its first endpoint and stays with the network.
    h.rbox_ok(&["run", "--rm", "--network", "n", "busybox", "true"]);
    let before = snapshot(&h);
    let start = |name: &str, cmd: &[&str]| {
        let mut args = vec!["run", "-d", "--name", name, "--network", "n", "busybox"];
        args.extend_from_slice(cmd);
        h.rbox_ok(&args);
    };
    // stop
    start("stopped", &["sleep", "1d"]);
    h.rbox_ok(&["stop", "-t", "1", "stopped"]);
    assert_gone(&h, &before, "n", "stop");
    // kill
    start("killed", &["sleep", "1d"]);
    h.rbox_ok(&["kill", "killed"]);
    h.rbox_ok(&["wait", "killed"]);
    assert_eq!(inspect(&h, "killed")["State"]["ExitCode"], 137);
    assert_gone(&h, &before, "n", "kill");
    // exits by itself
    start("exited", &["sh", "-c", "exit 3"]);
    assert_eq!(h.rbox_ok(&["wait", "exited"]).trim(), "3");
    assert_gone(&h, &before, "n", "own exit");
    // rm -f of a running one
    start("forced", &["sleep", "1d"]);
    h.rbox_ok(&["rm", "-f", "forced"]);
    assert_gone(&h, &before, "n", "rm -f");
    // --rm: the record goes too
    h.rbox_ok(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "auto",
        "--network",
        "n",
        "busybox",
        "sh",
        "-c",
        "sleep 0.3",
    ]);
    assert!(h.wait_for(
        &format!(
            "! {} inspect auto >/dev/null 2>&1",
            rbox_tests::bin("rbox").display()
        ),
        Duration::from_secs(10)
    ));
    assert_gone(&h, &before, "n", "--rm");
    // The monitor killed with SIGKILL: the next command reclaims everything.
    start("orphan", &["sleep", "1d"]);
    let v = inspect(&h, "orphan");
    let monitor = h
        .sh_ok(&format!("ps -o ppid= -p {}", v["State"]["Pid"]))
        .trim()
        .to_string();
    h.sh_ok(&format!("kill -9 {monitor}"));
    let ps = h.rbox_ok(&["ps", "-a"]);
    let row = ps.lines().find(|l| l.contains("orphan")).unwrap();
    assert!(row.contains("Exited (137)"), "{ps}");
    assert_gone(&h, &before, "n", "a killed monitor");
    assert!(
        inspect(&h, "orphan")["State"]["Error"]
            .as_str()
            .unwrap()
            .contains("monitor")
    );
    h.rbox_ok(&["rm", "stopped", "killed", "exited", "orphan"]);
    assert!(h.rbox_ok(&["ps", "-aq"]).trim().is_empty());
    h.rbox_ok(&["network", "rm", "n"]);
}

#[test]
fn a_reboot_leaves_nothing_of_rm_containers_on_disk() {
    let h = lab("reboot");
    let start = |flags: &[&str], name: &str| {
        let mut args = vec!["run", "-d", "--name", name, "--network", "none"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["busybox", "sleep", "1d"]);
        h.rbox_ok(&args);
        inspect(&h, name)
    };
    let ephemeral = start(&["--rm"], "ephemeral");
    let kept = start(&[], "kept");
    let id = |v: &Value| v["Id"].as_str().unwrap().to_string();
    let (eph_id, kept_id) = (id(&ephemeral), id(&kept));
    let on_disk = |h: &Host| {
        h.sh_ok(
            "cd /var/lib/rbox; ls containers images/rootfs images/work images/holders | sort -u | grep -v :",
        )
    };
    assert!(
        on_disk(&h).contains(&eph_id),
        "the log and rootfs are on disk"
    );
    // The host goes down: every process of the containers dies with their mounts and
    // the runroot (a tmpfs); the disk stays.
    for v in [&ephemeral, &kept] {
        let pid = v["State"]["Pid"].as_i64().unwrap();
        h.sh_ok(&format!(
            "monitor=$(ps -o ppid= -p {pid}); kill -9 $monitor {pid}"
        ));
    }
    h.sh_ok(
        "for m in $(awk '$5 ~ \"^/run/\" {print $5}' /proc/self/mountinfo | sort -r); do umount -l $m; done
         mount -t tmpfs -o mode=755 tmpfs /run",
    );
    // The first command after it: the --rm container is gone, disk included; the other
    // one is there, exited.
    let ps = h.rbox_ok(&["ps", "-a", "--no-trunc"]);
    assert!(!ps.contains("ephemeral"), "{ps}");
    assert!(ps.contains(&kept_id), "{ps}");
    let left = on_disk(&h);
    assert!(!left.contains(&eph_id), "{left}");
    assert!(left.contains(&kept_id), "{left}");
    // Its name is free again.
    h.rbox_ok(&[
        "run",
        "--rm",
        "--name",
        "ephemeral",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    h.rbox_ok(&["rm", "kept"]);
    assert_eq!(on_disk(&h).trim(), "");
}

#[test]
fn bad_input_changes_nothing() {
    let h = lab("bad-input");
    h.rbox_ok(&["network", "create", "--subnet", "10.50.0.0/24", "taken"]);
    h.rbox_ok(&[
        "run",
        "-d",
        "--name",
        "dup",
        "--network",
        "taken",
        "busybox",
        "sleep",
        "1d",
    ]);
    let before = snapshot(&h);
    let cases: &[(&[&str], &str)] = &[
        (
            &["network", "create", "--subnet", "10.50.0.128/25", "overlap"],
            "overlap",
        ),
        (
            &["network", "create", "--subnet", "10.60.0.0/33", "badcidr"],
            "10.60.0.0/33",
        ),
        (
            &[
                "network",
                "create",
                "--subnet",
                "10.61.0.0/24",
                "--gateway",
                "10.62.0.1",
                "badgw",
            ],
            "gateway",
        ),
        (
            &["run", "-d", "--network", "no-such-net", "busybox", "true"],
            "no-such-net",
        ),
        (
            &[
                "run",
                "-d",
                "--name",
                "dup",
                "--network",
                "taken",
                "busybox",
                "true",
            ],
            "already in use",
        ),
        (
            &[
                "run",
                "-d",
                "--network",
                "taken",
                "localhost:1/no-such-image",
                "true",
            ],
            "no-such-image",
        ),
        (
            &[
                "run",
                "-d",
                "--network",
                "taken",
                "-v",
                "/no/such/dir:/x",
                "busybox",
                "true",
            ],
            "invalid volume",
        ),
        (
            &[
                "run",
                "-d",
                "--network",
                "taken",
                "--ip",
                "10.99.0.5",
                "busybox",
                "true",
            ],
            "10.99.0.5",
        ),
        (
            &[
                "run",
                "-d",
                "--network",
                "taken",
                "busybox",
                "no-such-command",
            ],
            "no-such-command",
        ),
    ];
    for (args, needle) in cases {
        let (code, err) = h.rbox_fails(args);
        assert!(
            code != 0 && err.contains(needle),
            "rbox {}: code {code}, stderr: {err}",
            args.join(" ")
        );
        assert_unchanged(&h, &before, &args.join(" "));
    }
    assert_eq!(
        h.rbox_fails(&[
            "run",
            "-d",
            "--network",
            "taken",
            "busybox",
            "no-such-command"
        ])
        .0,
        127
    );
    assert_eq!(
        h.rbox_fails(&["run", "-d", "--name", "dup", "busybox", "true"])
            .0,
        125
    );
    h.rbox_ok(&["rm", "-f", "dup"]);
    h.rbox_ok(&["network", "rm", "taken"]);
}
