//! Helpers shared by the engine and container lab tests: a lab with the test image
//! loaded, containers' facts through `inspect`, and snapshots of everything a lab's
//! containers could leave behind.

#![allow(dead_code)] // each test crate uses its own subset

use std::time::Duration;

use rbox_tests::Host;
use serde_json::Value;

/// A simulated host with the busybox test image loaded.
pub fn lab(name: &str) -> Host {
    let h = Host::new(name);
    h.load_test_image();
    h
}

/// `rbox inspect NAME` as JSON (the first and only object).
pub fn inspect(h: &Host, name: &str) -> Value {
    let out = h.rbox_ok(&["inspect", name]);
    let v: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("inspect {name}: {e}\n{out}"));
    v[0].clone()
}

/// The container's address on `network`.
pub fn ip_on(h: &Host, name: &str, network: &str) -> String {
    let v = inspect(h, name);
    let ip = v["NetworkSettings"]["Networks"][network]["IPAddress"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!ip.is_empty(), "{name} has no address on {network}: {v:#}");
    ip
}

/// `rbox run ARGS` (exit code, stdout, stderr).
pub fn run(h: &Host, args: &[&str]) -> (i32, String, String) {
    let out = h.rbox(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Output of a container run in the foreground on no network, removed afterwards.
pub fn output(h: &Host, flags: &[&str], command: &[&str]) -> String {
    let mut args = vec!["run", "--rm", "--network", "none"];
    args.extend_from_slice(flags);
    args.push("busybox");
    args.extend_from_slice(command);
    h.rbox_ok(&args)
}

/// What a lab's containers and networks can leave behind.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub links: String,
    pub addresses: String,
    pub routes: String,
    pub mounts: String,
    pub nft: String,
    pub netns: String,
    pub records: String,
    pub processes: String,
}

/// Everything of the lab a container or network could leave: links, addresses,
/// routes, mounts, rbox's nftables rules (table and sets, without counters), pinned
/// namespaces, container records, and processes in the lab's cgroups.
pub fn snapshot(h: &Host) -> Snapshot {
    let cg = h.cgroup_parent();
    Snapshot {
        links: h.sh_ok("ip -o link show | awk -F': ' '{print $2}' | sort"),
        addresses: h.sh_ok("ip -o addr show | awk '{print $2, $4}' | sort"),
        routes: h.sh_ok("ip route show table all | grep -v '^local\\|^broadcast\\|^multicast\\|fe80\\|ff00' | sort"),
        // /run/rbox/netns is made a mount point once, on first use (as /run/netns by ip).
        mounts: h.sh_ok("awk '{print $5}' /proc/self/mountinfo | grep -vx /run/rbox/netns | sort"),
        nft: h.sh_ok("nft list ruleset 2>/dev/null | grep -v 'counter packets\\|^\\s*$' || true"),
        netns: h.sh_ok("ls /run/rbox/netns 2>/dev/null || true"),
        // Records of --rm containers live on the runroot.
        records: h.sh_ok("for d in /var/lib/rbox/containers /run/rbox/containers; do ls $d 2>/dev/null; done; true"),
        processes: h.sh_ok(&format!("cat /sys/fs/cgroup/pids/{cg}/*/cgroup.procs /sys/fs/cgroup/memory/{cg}/*/cgroup.procs 2>/dev/null || true")),
    }
}

/// Asserts the lab is as `before` in everything a container could leave.
pub fn assert_unchanged(h: &Host, before: &Snapshot, what: &str) {
    let after = snapshot(h);
    assert_eq!(&after, before, "{what} left something behind");
}

/// Polls `cond` (a shell test inside the lab) for up to `secs` seconds.
pub fn eventually(h: &Host, script: &str, secs: u64) -> bool {
    h.wait_for(script, Duration::from_secs(secs))
}

/// Starts a sleeping container with `--memory 64m --pids-limit 20 --cpus 0.5` (and no
/// network); returns its id.
pub fn start_limited(h: &Host) -> String {
    h.rbox_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--memory",
        "64m",
        "--pids-limit",
        "20",
        "--cpus",
        "0.5",
        "busybox",
        "sleep",
        "1000",
    ])
    .trim()
    .to_string()
}

/// A fork bomb in container `id` stops at its pids limit (20). It runs in a subshell
/// (whose shell a failed fork ends), and the failures are counted with builtins only:
/// once the limit is reached nothing else can be forked (a `| grep` could lose that race).
pub fn assert_fork_bomb_stops(h: &Host, id: &str) {
    let out = h.rbox_ok(&[
        "exec",
        id,
        "sh",
        "-c",
        "(for i in $(seq 40); do sleep 5 & done) 2>/dev/shm/forks; n=0; \
         while read -r l; do case $l in *\"t fork\"*) n=$((n+1));; esac; done </dev/shm/forks; \
         echo $n",
    ]);
    assert!(
        out.trim().parse::<u32>().unwrap_or(0) > 0,
        "pids limit not enforced: {out}"
    );
}
