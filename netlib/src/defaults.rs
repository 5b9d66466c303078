//! The predefined networks every host has from the first command: `bridge`, `host`, `none`.

use std::collections::BTreeMap;

use crate::model::{Network, Subnet, new_id};

/// Names of the predefined networks; they cannot be created or removed by users.
pub const PREDEFINED: &[&str] = &["bridge", "host", "none"];

/// The default bridge's kernel link.
pub const DEFAULT_BRIDGE: &str = "rbox0";

/// Docker's options of its default bridge (shown by `inspect`).
const DEFAULT_BRIDGE_OPTIONS: &[(&str, &str)] = &[
    ("com.docker.network.bridge.default_bridge", "true"),
    ("com.docker.network.bridge.enable_icc", "true"),
    ("com.docker.network.bridge.enable_ip_masquerade", "true"),
    ("com.docker.network.bridge.host_binding_ipv4", "0.0.0.0"),
    ("com.docker.network.bridge.name", DEFAULT_BRIDGE),
    ("com.docker.network.driver.mtu", "1500"),
];

/// The definition of predefined network `name`, with a fresh id.
pub fn predefined(name: &str) -> Network {
    let driver = match name {
        "bridge" => "bridge",
        "host" => "host",
        "none" => "null",
        other => unreachable!("{other} is not a predefined network"),
    };
    let is_bridge = name == "bridge";
    let ipam = if is_bridge {
        vec![Subnet {
            subnet: "172.17.0.0/16".parse().expect("valid CIDR"),
            ip_range: None,
            gateway: Some("172.17.0.1".parse().expect("valid address")),
        }]
    } else {
        Vec::new()
    };
    let options = if is_bridge {
        DEFAULT_BRIDGE_OPTIONS
    } else {
        &[]
    };
    Network {
        id: new_id(),
        name: name.to_string(),
        driver: driver.to_string(),
        created: chrono::Utc::now(),
        ipam,
        internal: false,
        enable_ipv6: false,
        // The default bridge has no name resolution, as in Docker.
        dns_enabled: false,
        interface: is_bridge.then(|| DEFAULT_BRIDGE.to_string()),
        mtu: is_bridge.then_some(1500),
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        labels: BTreeMap::new(),
    }
}
