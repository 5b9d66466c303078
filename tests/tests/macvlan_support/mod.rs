//! What the macvlan/ipvlan labs share (`macvlan.rs` natively, `vm_macvlan.rs` in the VM).
//!
//! They work at the library level, as `network_lib.rs` does: the outer test builds the
//! lab (a simulated host and its LAN's peers), then re-runs itself inside the simulated
//! host with `RBOX_LAB_INNER` set; inside, it drives `Netlib` with the host's default
//! paths and looks at the kernel with `ip` and `ping` (in sandboxes through `nsenter`).
//! Peers are reached through their PIDs, passed as `RBOX_LAB_PEER_<NAME>`.

#![allow(dead_code)] // each lab file uses its own part of this

use std::path::{Path, PathBuf};
use std::process::Command;

use netlib::dns::ResponderCommand;
use netlib::model::new_id;
use netlib::{Endpoint, EndpointConfig, Netlib, SandboxConfig};
use rbox_tests::{Host, bin, expect_ok};

const INNER: &str = "RBOX_LAB_INNER";

/// True when running inside the lab host (the second run).
pub fn inner() -> bool {
    std::env::var_os(INNER).is_some()
}

/// Re-runs test `name` of this binary inside `host`, telling it the PIDs of `peers`.
pub fn run_inside(host: &Host, name: &str, peers: &[(&str, &Host)]) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = host.command(exe);
    cmd.args([
        "--exact",
        name,
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(INNER, "1");
    for (peer, h) in peers {
        cmd.env(format!("RBOX_LAB_PEER_{peer}"), h.pid().to_string());
    }
    let out = cmd.output().unwrap();
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let stdout = expect_ok(&format!("{name} inside lab {}", host.name()), out);
    assert!(
        stdout.contains("1 passed"),
        "inner test did not run:\n{stdout}"
    );
}

/// `nsenter` options that enter peer `name`'s network namespace (inside the lab).
pub fn peer(name: &str) -> String {
    let pid = std::env::var(format!("RBOX_LAB_PEER_{name}"))
        .unwrap_or_else(|_| panic!("peer {name} was not passed to the inner test"));
    format!("--net=/proc/{pid}/ns/net")
}

pub fn sh(script: &str) -> String {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    expect_ok(&format!("sh -c {script:?}"), out)
}

pub fn sh_fails(script: &str) -> bool {
    !Command::new("sh")
        .args(["-c", script])
        .output()
        .unwrap()
        .status
        .success()
}

/// Runs `script` in the network namespace `nsenter` reaches with `ns` (a sandbox's pin
/// path, or [`peer`]'s options).
pub fn in_ns(ns: &str, script: &str) -> String {
    sh(&format!("nsenter {ns} sh -c '{script}'"))
}

/// `nsenter` options for a sandbox's pinned namespace.
pub fn sandbox_ns(pin: &Path) -> String {
    format!("--net={}", pin.display())
}

/// Runs `rbox ARGS` (inside the lab): its output.
pub fn rbox(args: &[&str]) -> std::process::Output {
    Command::new(bin("rbox")).args(args).output().unwrap()
}

/// Netlib on the lab host's default paths; the DNS responder it starts is rbox's.
pub fn open() -> Netlib {
    let (root, runroot) = (Path::new("/var/lib/rbox"), Path::new("/run/rbox"));
    let mut netlib = Netlib::open(root, runroot).unwrap();
    netlib.set_dns_responder(ResponderCommand::rbox(
        bin("rbox"),
        root,
        runroot,
        std::iter::empty::<&str>(),
    ));
    netlib
}

/// A sandbox for a new container with hostname `name`; returns its id.
pub fn sandbox(netlib: &Netlib, name: &str) -> String {
    let id = new_id();
    let config = SandboxConfig {
        hostname: name.into(),
        files_dir: PathBuf::from(format!("/run/lab-files/{id}")),
        ..Default::default()
    };
    netlib.create_sandbox(&id, config).unwrap();
    id
}

/// Joins container `id` (named `name`) to `network`.
pub fn join(netlib: &Netlib, id: &str, network: &str, name: &str) -> Endpoint {
    let config = EndpointConfig {
        container_name: name.into(),
        ..Default::default()
    };
    netlib
        .join(id, network, config)
        .unwrap_or_else(|e| panic!("{name} joins {network}: {e}"))
}

/// The sandbox's pinned namespace.
pub fn pin(netlib: &Netlib, id: &str) -> PathBuf {
    netlib.sandbox(id).unwrap().unwrap().netns.unwrap()
}

pub fn addr(ep: &Endpoint) -> String {
    ep.ipv4().unwrap().addr().to_string()
}

/// Names of the links of the lab host's namespace.
pub fn host_links() -> Vec<String> {
    sh("ls /sys/class/net")
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// `nslookup -type=a NAME 127.0.0.11` from inside a sandbox (busybox, as a container would ask):
/// the addresses answered (empty when the name does not resolve).
pub fn lookup(pin: &Path, name: &str) -> Vec<String> {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", pin.display()))
        .args(["busybox", "nslookup", "-type=a", name, "127.0.0.11"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // busybox prints the server first ("Server: ... Address: 127.0.0.11:53"), then the answers.
    text.split_once("Name:")
        .map(|(_, answers)| {
            answers
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Address: "))
                .map(|a| a.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}
