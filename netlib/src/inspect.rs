//! Docker's JSON shapes: `network inspect`, and the per-network entry of a container's
//! `NetworkSettings.Networks` for the engine's `inspect`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{Endpoint, Network};

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkInspect {
    pub name: String,
    pub id: String,
    /// RFC 3339 with nanoseconds, as Docker prints it.
    pub created: String,
    pub scope: &'static str,
    pub driver: String,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    pub internal: bool,
    pub attachable: bool,
    pub ingress: bool,
    pub config_from: ConfigFrom,
    pub config_only: bool,
    pub containers: BTreeMap<String, ContainerEntry>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ipam {
    pub driver: &'static str,
    pub options: BTreeMap<String, String>,
    pub config: Vec<IpamConfig>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfig {
    pub subnet: String,
    #[serde(rename = "IPRange", skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConfigFrom {
    pub network: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerEntry {
    pub name: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub mac_address: String,
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: String,
}

/// `network inspect`'s object for `network` with its live `endpoints`.
pub fn network(network: &Network, endpoints: &[Endpoint]) -> NetworkInspect {
    let containers = endpoints
        .iter()
        .map(|ep| {
            let entry = ContainerEntry {
                name: ep.container_name.clone(),
                endpoint_id: ep.id.clone(),
                mac_address: ep.mac_address.clone(),
                ipv4_address: ep.ipv4().map(|a| a.to_string()).unwrap_or_default(),
                ipv6_address: ep.ipv6().map(|a| a.to_string()).unwrap_or_default(),
            };
            (ep.container_id.clone(), entry)
        })
        .collect();
    NetworkInspect {
        name: network.name.clone(),
        id: network.id.clone(),
        created: network
            .created
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        scope: "local",
        driver: network.driver.clone(),
        enable_ipv6: network.enable_ipv6,
        ipam: Ipam {
            driver: "default",
            options: BTreeMap::new(),
            config: network
                .ipam
                .iter()
                .map(|s| IpamConfig {
                    subnet: s.subnet.to_string(),
                    ip_range: s.ip_range.map(|r| r.to_string()),
                    gateway: s.gateway.map(|g| g.to_string()),
                })
                .collect(),
        },
        internal: network.internal,
        attachable: false,
        ingress: false,
        config_from: ConfigFrom {
            network: String::new(),
        },
        config_only: false,
        containers,
        options: network.options.clone(),
        labels: network.labels.clone(),
    }
}

/// A container's `NetworkSettings.Networks[<network name>]` entry (Docker's EndpointSettings).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointSettings {
    pub aliases: Vec<String>,
    pub mac_address: String,
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub gateway: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    #[serde(rename = "IPv6Gateway")]
    pub ipv6_gateway: String,
    #[serde(rename = "GlobalIPv6Address")]
    pub global_ipv6_address: String,
    #[serde(rename = "GlobalIPv6PrefixLen")]
    pub global_ipv6_prefix_len: u8,
    #[serde(rename = "DNSNames")]
    pub dns_names: Vec<String>,
}

pub fn endpoint_settings(network: &Network, ep: &Endpoint) -> EndpointSettings {
    let gateway = |v4: bool| {
        network
            .ipam
            .iter()
            .filter(|s| s.subnet.addr().is_ipv4() == v4)
            .find_map(|s| s.gateway)
            .map(|g| g.to_string())
            .unwrap_or_default()
    };
    let (v4, v6) = (ep.ipv4(), ep.ipv6());
    EndpointSettings {
        aliases: ep.aliases.clone(),
        mac_address: ep.mac_address.clone(),
        network_id: network.id.clone(),
        endpoint_id: ep.id.clone(),
        gateway: if v4.is_some() {
            gateway(true)
        } else {
            String::new()
        },
        ip_address: v4.map(|a| a.addr().to_string()).unwrap_or_default(),
        ip_prefix_len: v4.map_or(0, |a| a.prefix_len()),
        ipv6_gateway: if v6.is_some() {
            gateway(false)
        } else {
            String::new()
        },
        global_ipv6_address: v6.map(|a| a.addr().to_string()).unwrap_or_default(),
        global_ipv6_prefix_len: v6.map_or(0, |a| a.prefix_len()),
        dns_names: if network.dns_enabled {
            ep.names().into_iter().map(String::from).collect()
        } else {
            Vec::new()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::validate_subnet;
    use crate::model::new_id;

    #[test]
    fn network_inspect_has_dockers_keys_and_shapes() {
        let net = Network {
            id: new_id(),
            name: "localnet".into(),
            driver: "bridge".into(),
            created: "2026-01-02T03:04:05.123456789Z".parse().unwrap(),
            ipam: vec![
                validate_subnet(
                    "172.18.0.0/16".parse().unwrap(),
                    Some("172.18.5.0/24".parse().unwrap()),
                    None,
                )
                .unwrap(),
            ],
            internal: false,
            enable_ipv6: false,
            dns_enabled: true,
            interface: Some("br-x".into()),
            mtu: None,
            options: BTreeMap::new(),
            labels: [("a".to_string(), "b".to_string())].into(),
        };
        let ep = Endpoint {
            id: new_id(),
            network_id: net.id.clone(),
            network_name: net.name.clone(),
            container_id: new_id(),
            container_name: "mybox".into(),
            aliases: vec![],
            hostname: "h".into(),
            addresses: vec!["172.18.5.0/16".parse().unwrap()],
            mac_address: "02:42:ac:12:05:00".into(),
            netns: None,
            interface: "eth0".into(),
            host_interface: None,
            default_route: true,
        };
        let v = serde_json::to_value(network(&net, std::slice::from_ref(&ep))).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for k in [
            "Name",
            "Id",
            "Created",
            "Scope",
            "Driver",
            "EnableIPv6",
            "IPAM",
            "Internal",
            "Attachable",
            "Ingress",
            "ConfigFrom",
            "ConfigOnly",
            "Containers",
            "Options",
            "Labels",
        ] {
            assert!(keys.contains(&k), "missing {k}");
        }
        assert_eq!(v["Created"], "2026-01-02T03:04:05.123456789Z");
        assert_eq!(v["Scope"], "local");
        assert_eq!(v["IPAM"]["Driver"], "default");
        assert_eq!(v["IPAM"]["Config"][0]["Subnet"], "172.18.0.0/16");
        assert_eq!(v["IPAM"]["Config"][0]["IPRange"], "172.18.5.0/24");
        assert_eq!(v["IPAM"]["Config"][0]["Gateway"], "172.18.0.1");
        assert_eq!(v["ConfigFrom"]["Network"], "");
        let c = &v["Containers"][&ep.container_id];
        assert_eq!(c["Name"], "mybox");
        assert_eq!(c["EndpointID"], ep.id);
        assert_eq!(c["MacAddress"], "02:42:ac:12:05:00");
        assert_eq!(c["IPv4Address"], "172.18.5.0/16");
        assert_eq!(c["IPv6Address"], "");
        assert_eq!(v["Labels"]["a"], "b");

        let s = serde_json::to_value(endpoint_settings(&net, &ep)).unwrap();
        assert_eq!(s["IPAddress"], "172.18.5.0");
        assert_eq!(s["IPPrefixLen"], 16);
        assert_eq!(s["Gateway"], "172.18.0.1");
        assert_eq!(s["DNSNames"], serde_json::json!(["mybox", "h"]));
    }
}
