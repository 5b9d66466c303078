//! Published ports of a container (`-p`, `-P`): what the flags ask for, turned into
//! netlib's port requests at start; the bindings installed (kept in the record while the
//! container runs); their removal at teardown. The monitor holds the ports' claims.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

use netlib::publish::{Binding, Claims, PortRequest, Protocol as NetProtocol, Publisher, Target};

use super::Engine;
use super::error::{Error, Result};
use super::options::{ContainerOptions, PortSpec, Protocol};
use super::record::{Attachment, ContainerRecord};

/// The claims of the container this process is the monitor of: held until its teardown.
static CLAIMS: Mutex<Option<Claims>> = Mutex::new(None);

fn publish_err(e: netlib::publish::PublishError) -> Error {
    Error::Network(e.to_string())
}

/// Checks what `-p` asks for that no kernel object is needed to refuse.
pub fn validate(opts: &ContainerOptions) -> Result<()> {
    for p in &opts.ports {
        if p.protocol == Protocol::Sctp {
            return Err(Error::Network(
                "cannot publish sctp ports: rbox publishes tcp and udp".into(),
            ));
        }
        if let Some(ip @ IpAddr::V6(_)) = p.host_ip {
            return Err(Error::Network(format!(
                "cannot publish on {ip}: containers have no IPv6 address (rbox networks are IPv4 only for now); publish on an IPv4 address"
            )));
        }
    }
    Ok(())
}

fn net_protocol(p: Protocol) -> NetProtocol {
    match p {
        Protocol::Udp => NetProtocol::Udp,
        // Refused by `validate` before the container exists.
        Protocol::Tcp | Protocol::Sctp => NetProtocol::Tcp,
    }
}

/// One request per port: ranges expanded (host ports 0 where random), then with
/// `-P` every exposed port not published otherwise, on a random host port.
pub fn requests(rec: &ContainerRecord) -> Vec<PortRequest> {
    let mut out: Vec<PortRequest> = Vec::new();
    for p in &rec.options.ports {
        out.extend(expand(p));
    }
    if rec.options.publish_all {
        for exposed in &rec.config.exposed_ports {
            let (port, proto) = exposed.split_once('/').unwrap_or((exposed, "tcp"));
            let (Ok(port), Some(protocol)) = (
                port.parse::<u16>(),
                match proto {
                    "tcp" => Some(NetProtocol::Tcp),
                    "udp" => Some(NetProtocol::Udp),
                    _ => None,
                },
            ) else {
                continue;
            };
            if !out
                .iter()
                .any(|r| r.container_port == port && r.protocol == protocol)
            {
                out.push(PortRequest {
                    host_ip: None,
                    host_port: 0,
                    container_port: port,
                    protocol,
                });
            }
        }
    }
    out
}

fn expand(p: &PortSpec) -> Vec<PortRequest> {
    let (first, last) = p.container_ports;
    (first..=last)
        .enumerate()
        .map(|(i, container_port)| PortRequest {
            host_ip: p.host_ip,
            host_port: match p.host_ports {
                // `-p 8000-8010:80` (one container port): the first host port of the
                // range that is free would be Docker's pick; rbox takes the first.
                Some((a, _)) if first == last => a,
                Some((a, _)) => a + i as u16,
                None => 0,
            },
            container_port,
            protocol: net_protocol(p.protocol),
        })
        .collect()
}

/// Publishes the container's ports to its address on its first network (in `--network`
/// order) and records the bindings; the claims stay with this process until
/// [`teardown`]. Nothing to do without ports.
pub fn setup(
    engine: &Engine,
    rec: &ContainerRecord,
    attachments: &BTreeMap<String, Attachment>,
) -> Result<()> {
    let requests = requests(rec);
    if requests.is_empty() {
        return Ok(());
    }
    let att = rec
        .options
        .networks
        .iter()
        .filter_map(|n| attachments.get(&n.name))
        .find(|a| a.ip_address.is_some_and(|ip| ip.is_ipv4()))
        .ok_or_else(|| {
            Error::Network(
                "cannot publish ports: the container has no IPv4 address on a network".into(),
            )
        })?;
    let nl = engine.netlib()?;
    let net = nl
        .network(&att.network_id)
        .map_err(|e| Error::Network(e.to_string()))?;
    let bridge_port = nl
        .endpoints(&net)
        .map_err(|e| Error::Network(e.to_string()))?
        .into_iter()
        .find(|ep| ep.id == att.endpoint_id)
        .and_then(|ep| ep.host_interface);
    let target = Target {
        container_id: rec.id.clone(),
        container_name: rec.name.clone(),
        container_ip: att.ip_address.expect("checked above"),
        interface: net.interface,
        bridge_port,
    };
    let (bindings, claims) = publisher(engine)?
        .publish(&target, &requests)
        .map_err(publish_err)?;
    *CLAIMS.lock().unwrap_or_else(|e| e.into_inner()) = Some(claims);
    engine.store.update(&rec.id, |r| {
        r.state.ports = bindings;
        Ok(())
    })
}

/// Releases this process's claims and removes the container's published ports
/// (nothing to do when it has none).
pub fn teardown(engine: &Engine, id: &str) -> Result<()> {
    CLAIMS.lock().unwrap_or_else(|e| e.into_inner()).take();
    publisher(engine)?.unpublish(id).map_err(publish_err)
}

fn publisher(engine: &Engine) -> Result<Publisher> {
    Publisher::open(&engine.runroot).map_err(publish_err)
}

/// `80/tcp`.
pub fn port_key(port: u16, protocol: NetProtocol) -> String {
    format!("{port}/{}", protocol.as_str())
}

/// The bindings of a running container, sorted by container port (none otherwise).
pub fn published(rec: &ContainerRecord) -> Vec<Binding> {
    if rec.state.status != super::record::Status::Running {
        return Vec::new();
    }
    let mut out = rec.state.ports.clone();
    out.sort_by_key(|b| (b.container_port, b.protocol, b.host_ip, b.host_port));
    out
}

/// `rbox port` lines: `80/tcp -> 0.0.0.0:5000` for every binding, or only the host
/// addresses of `filter` (`80` or `80/udp`) as Docker prints them.
pub fn port_lines(rec: &ContainerRecord, filter: Option<&str>) -> Result<Vec<String>> {
    let bindings = published(rec);
    let Some(filter) = filter else {
        return Ok(bindings
            .iter()
            .map(|b| {
                format!(
                    "{} -> {}",
                    port_key(b.container_port, b.protocol),
                    std::net::SocketAddr::new(b.host_ip, b.host_port)
                )
            })
            .collect());
    };
    let (port, proto) = filter.split_once('/').unwrap_or((filter, "tcp"));
    let port: u16 = port.parse().map_err(|_| {
        Error::Other(format!(
            "invalid port {filter:?}: expected PORT or PORT/PROTO, e.g. 80/tcp"
        ))
    })?;
    let lines: Vec<String> = bindings
        .iter()
        .filter(|b| b.container_port == port && b.protocol.as_str() == proto)
        .map(|b| std::net::SocketAddr::new(b.host_ip, b.host_port).to_string())
        .collect();
    if lines.is_empty() {
        return Err(Error::Other(format!(
            "no public port '{port}/{proto}' published for {}",
            rec.name
        )));
    }
    Ok(lines)
}

/// The PORTS column of `ps`: `0.0.0.0:5000->80/tcp`, consecutive ports as one range
/// (`0.0.0.0:8000-8002->80-82/tcp`), as Docker shows them.
pub fn column(rec: &ContainerRecord) -> String {
    let mut groups: Vec<(Binding, u16)> = Vec::new();
    let mut bindings = published(rec);
    bindings.sort_by_key(|b| (b.protocol, b.host_ip, b.container_port));
    for b in bindings {
        if let Some((first, n)) = groups.last_mut()
            && first.host_ip == b.host_ip
            && first.protocol == b.protocol
            && first.container_port + *n == b.container_port
            && first.host_port.wrapping_add(*n) == b.host_port
        {
            *n += 1;
            continue;
        }
        groups.push((b, 1));
    }
    let range = |a: u16, n: u16| {
        if n == 1 {
            a.to_string()
        } else {
            format!("{a}-{}", a + n - 1)
        }
    };
    groups
        .iter()
        .map(|(b, n)| {
            format!(
                "{}:{}->{}/{}",
                b.host_ip,
                range(b.host_port, *n),
                range(b.container_port, *n),
                b.protocol.as_str()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::options::parse_port;

    fn rec_with(ports: &[&str], exposed: &[&str], publish_all: bool) -> ContainerRecord {
        let mut rec = ContainerRecord {
            id: "0".repeat(64),
            name: "web".into(),
            created: chrono::Utc::now(),
            image: crate::engine::record::ImageInfo {
                reference: "busybox".into(),
                id: "sha256:0".into(),
            },
            config: Default::default(),
            options: Default::default(),
            cgroup_parent: "rbox".into(),
            state: Default::default(),
        };
        rec.options.ports = ports.iter().map(|p| parse_port(p).unwrap()).collect();
        rec.options.publish_all = publish_all;
        rec.config.exposed_ports = exposed.iter().map(|s| s.to_string()).collect();
        rec
    }

    #[test]
    fn ranges_expand_and_random_ports_are_zero() {
        let r = requests(&rec_with(
            &["8000-8002:80-82", "127.0.0.1::90/udp"],
            &[],
            false,
        ));
        let got: Vec<(u16, u16)> = r.iter().map(|r| (r.host_port, r.container_port)).collect();
        assert_eq!(got, [(8000, 80), (8001, 81), (8002, 82), (0, 90)]);
        assert_eq!(r[3].protocol, NetProtocol::Udp);
        assert_eq!(r[3].host_ip, Some("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn publish_all_adds_exposed_ports_not_published() {
        let r = requests(&rec_with(&["5000:80"], &["80/tcp", "53/udp"], true));
        let got: Vec<(u16, u16, NetProtocol)> = r
            .iter()
            .map(|r| (r.host_port, r.container_port, r.protocol))
            .collect();
        assert_eq!(
            got,
            [(5000, 80, NetProtocol::Tcp), (0, 53, NetProtocol::Udp)]
        );
        assert_eq!(requests(&rec_with(&[], &["80/tcp"], false)), []);
    }

    #[test]
    fn ps_column_and_port_lines_as_docker_prints_them() {
        let mut rec = rec_with(&[], &[], false);
        rec.state.status = super::super::record::Status::Running;
        let b = |host: u16, c: u16, proto| Binding {
            host_ip: "0.0.0.0".parse().unwrap(),
            host_port: host,
            container_ip: "172.17.0.2".parse().unwrap(),
            container_port: c,
            protocol: proto,
        };
        rec.state.ports = vec![
            b(8001, 81, NetProtocol::Tcp),
            b(8000, 80, NetProtocol::Tcp),
            b(8002, 82, NetProtocol::Tcp),
            b(5353, 53, NetProtocol::Udp),
        ];
        assert_eq!(
            column(&rec),
            "0.0.0.0:8000-8002->80-82/tcp, 0.0.0.0:5353->53/udp"
        );
        assert_eq!(port_lines(&rec, None).unwrap()[0], "53/udp -> 0.0.0.0:5353");
        assert_eq!(port_lines(&rec, Some("81")).unwrap(), ["0.0.0.0:8001"]);
        assert!(port_lines(&rec, Some("81/udp")).is_err());
    }
}
