//! The driver of `scripts/bench/macvlan.sh` (ignored by a plain `cargo test`): TCP
//! throughput from a container to a "physical server" on the host's LAN, over a macvlan
//! network, a bridge network with NAT, and (where the kernel has it) an ipvlan network.
//!
//! The LAN is a veth from the simulated host's `nic` (10.0.0.10/24) to a peer host, the
//! server (10.0.0.50/24, running `iperf3 -s`). Each network in turn gets one sandbox made
//! by netlib, from which `iperf3 -c` runs; the median of a few runs is printed.
//! `MACVLAN_BENCH_SECONDS` (default 3) and `MACVLAN_BENCH_RUNS` (default 5) set the length
//! and number of runs.

mod macvlan_support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use macvlan_support::*;
use netlib::NetworkCreate;
use rbox_tests::{Host, KernelFeature};

fn env_number(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "a benchmark: run by scripts/bench/macvlan.sh"]
fn container_to_lan_server_throughput() {
    if !inner() {
        let host = Host::new("bench");
        let server = Host::new("server");
        host.link(
            "nic",
            Some("10.0.0.10/24"),
            &server,
            "eth0",
            Some("10.0.0.50/24"),
        );
        let mut iperf = server
            .command("iperf3")
            .args(["-s", "-B", "10.0.0.50"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        assert!(
            server.wait_for("ss -ltn | grep -q ':5201'", Duration::from_secs(20)),
            "iperf3 server did not start"
        );
        run_inside(&host, "container_to_lan_server_throughput", &[]);
        let _ = iperf.kill();
        let _ = iperf.wait();
        return;
    }
    let seconds = env_number("MACVLAN_BENCH_SECONDS", 3).to_string();
    let runs = env_number("MACVLAN_BENCH_RUNS", 5);
    let netlib = open();
    let subnet = |s: &str| vec![s.parse().unwrap()];
    let parent = BTreeMap::from([("parent".to_string(), "nic".to_string())]);
    let mut cases = vec![
        (
            "macvlan (bridge mode)",
            NetworkCreate {
                name: "mv".into(),
                driver: Some("macvlan".into()),
                subnets: subnet("10.0.0.0/24"),
                ip_ranges: subnet("10.0.0.128/25"),
                options: parent.clone(),
                ..Default::default()
            },
        ),
        (
            "bridge + NAT",
            NetworkCreate {
                name: "br".into(),
                ..Default::default()
            },
        ),
    ];
    if KernelFeature::Ipvlan.present() {
        cases.push((
            "ipvlan (l2)",
            NetworkCreate {
                name: "iv".into(),
                driver: Some("ipvlan".into()),
                subnets: subnet("10.0.0.0/24"),
                ip_ranges: subnet("10.0.0.128/25"),
                options: parent,
                ..Default::default()
            },
        ));
    }
    eprintln!(
        "\ncontainer -> LAN server, TCP (iperf3 -t {seconds}), median of {runs} runs [min .. max], Gbit/s:"
    );
    for (label, req) in cases {
        let name = req.name.clone();
        netlib.create_network(req).unwrap();
        let id = sandbox(&netlib, "client");
        join(&netlib, &id, &name, "client");
        let pin = pin(&netlib, &id);
        let mut rates: Vec<f64> = (0..runs)
            .map(|_| {
                let out = Command::new("nsenter")
                    .arg(format!("--net={}", pin.display()))
                    .args(["iperf3", "-c", "10.0.0.50", "-t", &seconds, "-J"])
                    .output()
                    .unwrap();
                let json: serde_json::Value = serde_json::from_slice(&out.stdout)
                    .unwrap_or_else(|e| panic!("iperf3 -c over {label}: {e}"));
                json["end"]["sum_received"]["bits_per_second"]
                    .as_f64()
                    .unwrap_or_else(|| panic!("iperf3 over {label}: {json}"))
                    / 1e9
            })
            .collect();
        rates.sort_by(f64::total_cmp);
        eprintln!(
            "  {label:<22} {:>6.2}   [{:.2} .. {:.2}]",
            rates[rates.len() / 2],
            rates[0],
            rates[rates.len() - 1]
        );
        netlib.destroy_sandbox(&id).unwrap();
        netlib.remove_network(&name).unwrap();
    }
    if !KernelFeature::Ipvlan.present() {
        eprintln!(
            "  ipvlan: skipped, this kernel has no ipvlan (`scripts/bench/macvlan.sh --vm` runs all three in the VM)"
        );
    }
}
