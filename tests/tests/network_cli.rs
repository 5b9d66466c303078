//! `rbox network ...` end to end, each test in its own simulated host.

use rbox_tests::Host;
use serde_json::Value;

fn ls_names(host: &Host) -> Vec<String> {
    host.rbox_ok(&["network", "ls"])
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect()
}

fn inspect(host: &Host, names: &[&str]) -> Value {
    let mut args = vec!["network", "inspect"];
    args.extend(names);
    serde_json::from_str(&host.rbox_ok(&args)).unwrap()
}

#[test]
fn network_ls_shows_the_predefined_networks_from_the_first_command() {
    let host = Host::new("net-ls");
    // Several first commands at once: the predefined networks are made once.
    let children: Vec<_> = (0..6)
        .map(|_| {
            host.rbox_command(&["network", "ls", "-q"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    }
    let out = host.rbox_ok(&["network", "ls"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "NETWORK ID     NAME      DRIVER    SCOPE");
    let rows: Vec<Vec<&str>> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{out}");
    for (row, (name, driver)) in
        rows.iter()
            .zip([("bridge", "bridge"), ("host", "host"), ("none", "null")])
    {
        assert_eq!(row[0].len(), 12);
        assert!(row[0].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(&row[1..], [name, driver, "local"]);
    }
    assert_eq!(
        std::fs::read_dir(host.dir().join("root/networks"))
            .unwrap()
            .count(),
        3
    );
    let ids = host.rbox_ok(&["network", "ls", "-q", "--no-trunc"]);
    assert!(ids.lines().all(|l| l.len() == 64), "{ids}");
    let bridge = &inspect(&host, &["bridge"])[0];
    assert_eq!(bridge["Driver"], "bridge");
    assert_eq!(bridge["IPAM"]["Config"][0]["Subnet"], "172.17.0.0/16");
    assert_eq!(bridge["IPAM"]["Config"][0]["Gateway"], "172.17.0.1");
    assert_eq!(bridge["Options"]["com.docker.network.bridge.name"], "rbox0");
    assert_eq!(inspect(&host, &["none"])[0]["Driver"], "null");
    // Listing made no kernel objects.
    assert_eq!(host.sh_ok("ip -o link | wc -l").trim(), "1");
    assert_eq!(host.sh_ok("nft list tables"), "");
}

#[test]
fn network_create_inspect_filter_and_rm() {
    let host = Host::new("net-crud");
    let id = host.rbox_ok(&["network", "create", "localnet"]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "create prints the full id");
    let n = &inspect(&host, &["localnet"])[0];
    assert_eq!(n["Name"], "localnet");
    assert_eq!(n["Id"], id);
    assert_eq!(n["Driver"], "bridge");
    assert_eq!(n["Scope"], "local");
    assert_eq!(n["EnableIPv6"], false);
    assert_eq!(n["Internal"], false);
    assert_eq!(n["IPAM"]["Driver"], "default");
    assert_eq!(
        n["IPAM"]["Config"],
        serde_json::json!([{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}])
    );
    assert_eq!(n["Containers"], serde_json::json!({}));
    assert!(n["Created"].as_str().unwrap().ends_with('Z'));

    host.rbox_ok(&[
        "network",
        "create",
        "--subnet",
        "10.20.0.0/16",
        "--ip-range",
        "10.20.5.0/24",
        "--gateway",
        "10.20.0.254",
        "--internal",
        "--label",
        "env=prod",
        "--label",
        "team",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "-o",
        "com.docker.network.bridge.name=mybr0",
        "backend",
    ]);
    let both = inspect(&host, &["backend", &id[..10]]);
    assert_eq!(both.as_array().unwrap().len(), 2);
    let b = &both[0];
    assert_eq!(b["Internal"], true);
    assert_eq!(
        b["IPAM"]["Config"],
        serde_json::json!([{"Subnet": "10.20.0.0/16", "IPRange": "10.20.5.0/24", "Gateway": "10.20.0.254"}])
    );
    assert_eq!(b["Labels"], serde_json::json!({"env": "prod", "team": ""}));
    assert_eq!(b["Options"]["com.docker.network.bridge.name"], "mybr0");
    assert_eq!(b["Options"]["com.docker.network.driver.mtu"], "1400");
    assert_eq!(both[1]["Name"], "localnet");
    // A third takes the next pool subnet.
    host.rbox_ok(&["network", "create", "-d", "bridge", "third"]);
    assert_eq!(
        inspect(&host, &["third"])[0]["IPAM"]["Config"][0]["Subnet"],
        "172.19.0.0/16"
    );

    assert_eq!(
        ls_names(&host),
        ["backend", "bridge", "host", "localnet", "none", "third"]
    );
    let filtered = |f: &[&str]| {
        let mut args = vec!["network", "ls"];
        for x in f {
            args.extend(["--filter", x]);
        }
        host.rbox_ok(&args)
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(filtered(&["name=local"]), ["localnet"]);
    assert_eq!(filtered(&["driver=null"]), ["none"]);
    assert_eq!(filtered(&["label=env=prod"]), ["backend"]);
    assert_eq!(filtered(&["label=team"]), ["backend"]);
    assert_eq!(filtered(&["type=custom", "name=o"]), ["localnet"]);
    assert_eq!(filtered(&[&format!("id={}", &id[..6])]), ["localnet"]);
    let quiet = host.rbox_ok(&["network", "ls", "-q", "--filter", "name=localnet"]);
    assert_eq!(quiet.trim(), &id[..12]);

    assert_eq!(
        host.rbox_ok(&["network", "rm", "localnet", "backend", "third"]),
        "localnet\nbackend\nthird\n"
    );
    assert_eq!(ls_names(&host), ["bridge", "host", "none"]);
    // Definitions only: no link or rule was made, none is left.
    assert_eq!(host.sh_ok("ip -o link | wc -l").trim(), "1");
    assert_eq!(host.sh_ok("nft list tables"), "");
}

#[test]
fn new_networks_skip_subnets_in_use_on_the_host() {
    let host = Host::new("net-pool");
    let peer = Host::new("net-pool-peer");
    host.link(
        "lan0",
        Some("172.18.3.1/24"),
        &peer,
        "eth0",
        Some("172.18.3.2/24"),
    );
    host.sh_ok("ip route add 172.19.0.0/16 via 172.18.3.2");
    host.rbox_ok(&["network", "create", "a"]);
    host.rbox_ok(&["network", "create", "b"]);
    let nets = inspect(&host, &["a", "b"]);
    assert_eq!(nets[0]["IPAM"]["Config"][0]["Subnet"], "172.20.0.0/16");
    assert_eq!(nets[1]["IPAM"]["Config"][0]["Subnet"], "172.21.0.0/16");
}

#[test]
fn bad_input_fails_clearly_and_changes_nothing() {
    let host = Host::new("net-bad");
    host.rbox_ok(&["network", "create", "localnet"]);
    let files_before = std::fs::read_dir(host.dir().join("root/networks"))
        .unwrap()
        .count();
    let ls_before = host.rbox_ok(&["network", "ls"]);
    let cases: &[(&[&str], &str)] = &[
        (
            &["network", "create", "--subnet", "172.18.5.0/24", "x"],
            "subnet 172.18.5.0/24 overlaps 172.18.0.0/16 of network localnet",
        ),
        (
            &["network", "create", "--subnet", "172.300.0.0/16", "x"],
            "invalid subnet \"172.300.0.0/16\"",
        ),
        (
            &["network", "create", "--subnet", "10.10.0.1/24", "x"],
            "invalid subnet 10.10.0.1/24: it should be 10.10.0.0/24",
        ),
        (
            &[
                "network",
                "create",
                "--subnet",
                "10.10.0.0/24",
                "--gateway",
                "10.11.0.1",
                "x",
            ],
            "gateway 10.11.0.1 is not inside subnet 10.10.0.0/24",
        ),
        (
            &[
                "network",
                "create",
                "--subnet",
                "10.10.0.0/24",
                "--ip-range",
                "10.12.0.0/25",
                "x",
            ],
            "IP range 10.12.0.0/25 is not inside subnet 10.10.0.0/24",
        ),
        (
            &["network", "create", "--gateway", "10.10.0.1", "x"],
            "needs a --subnet",
        ),
        (
            &["network", "create", "localnet"],
            "network with name localnet already exists",
        ),
        (
            &["network", "create", "-d", "nosuch", "x"],
            "unknown network driver \"nosuch\"",
        ),
        (
            &["network", "create", "-d", "host", "x"],
            "only the predefined network of driver host",
        ),
        (
            &["network", "create", "--ipv6", "x"],
            "IPv6 networks are not supported yet",
        ),
        (&["network", "create", "bad name"], "invalid network name"),
        (
            &[
                "network",
                "create",
                "-o",
                "com.docker.network.driver.mtu=12",
                "x",
            ],
            "invalid MTU",
        ),
        (
            &[
                "network",
                "create",
                "-o",
                "com.docker.network.bridge.name=rbox0",
                "x",
            ],
            "bridge rbox0 is already used by network bridge",
        ),
        (
            &["network", "rm", "bridge"],
            "bridge is a pre-defined network and cannot be removed",
        ),
        (&["network", "rm", "nosuch"], "network nosuch not found"),
        (&["network", "inspect", "nosuch"], "no such network: nosuch"),
        (
            &["network", "ls", "--filter", "colour=red"],
            "invalid filter",
        ),
    ];
    for (args, message) in cases {
        let (code, stderr) = host.rbox_fails(args);
        assert_eq!(code, 125, "rbox {}: {stderr}", args.join(" "));
        assert!(
            stderr.contains(message),
            "rbox {}: expected {message:?} in {stderr:?}",
            args.join(" ")
        );
        assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
    }
    assert_eq!(host.rbox_ok(&["network", "ls"]), ls_before);
    assert_eq!(
        std::fs::read_dir(host.dir().join("root/networks"))
            .unwrap()
            .count(),
        files_before
    );
    assert_eq!(host.sh_ok("ip -o link | wc -l").trim(), "1");
}

#[test]
fn prune_removes_unused_user_networks() {
    let host = Host::new("net-prune");
    host.rbox_ok(&["network", "create", "one"]);
    host.rbox_ok(&["network", "create", "two"]);
    // Without -f it asks; "n" keeps everything.
    let mut child = host
        .rbox_command(&["network", "prune"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"n\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Are you sure you want to continue? [y/N]")
    );
    assert_eq!(ls_names(&host).len(), 5);
    assert_eq!(
        host.rbox_ok(&["network", "prune", "-f"]),
        "Deleted Networks:\none\ntwo\n"
    );
    assert_eq!(ls_names(&host), ["bridge", "host", "none"]);
    assert_eq!(host.rbox_ok(&["network", "prune", "-f"]), "");
}
