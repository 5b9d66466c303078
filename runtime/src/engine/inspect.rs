//! `rbox inspect` of containers: Docker's JSON shape, built from the record.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::Engine;
use super::oci_config;
use super::record::{ContainerRecord, Status};

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Nanos, true))
        .unwrap_or_else(|| ZERO_TIME.to_string())
}

fn port_key(spec: &super::options::PortSpec, port: u16) -> String {
    format!("{port}/{}", spec.protocol.as_str())
}

/// Docker's `HostConfig.PortBindings`: container port → host bindings.
fn port_bindings(rec: &ContainerRecord) -> Value {
    let mut map = Map::new();
    for p in &rec.options.ports {
        for (i, port) in (p.container_ports.0..=p.container_ports.1).enumerate() {
            let host_port = match p.host_ports {
                Some((a, b)) if a == b => a.to_string(),
                Some((a, b)) if b - a == p.container_ports.1 - p.container_ports.0 => {
                    (a + i as u16).to_string()
                }
                Some((a, b)) => format!("{a}-{b}"),
                None => String::new(),
            };
            let entry = json!({
                "HostIp": p.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                "HostPort": host_port,
            });
            map.entry(port_key(p, port))
                .or_insert_with(|| Value::Array(Vec::new()))
                .as_array_mut()
                .expect("built as an array")
                .push(entry);
        }
    }
    Value::Object(map)
}

/// A container in Docker's `inspect` JSON shape.
pub fn container(engine: &Engine, rec: &ContainerRecord) -> Value {
    let o = &rec.options;
    let s = &rec.state;
    let run_dir = engine.store.run_dir(&rec.id);
    let argv = rec.config.argv();
    let running = s.status == Status::Running;
    let networks: Map<String, Value> = o
        .networks
        .iter()
        .map(|req| {
            let a = s.networks.get(&req.name).cloned().unwrap_or_default();
            let ipam = req.ip.map(|ip| json!({ "IPv4Address": ip.to_string() }));
            (
                req.name.clone(),
                json!({
                    "IPAMConfig": ipam,
                    "Links": null,
                    "Aliases": if req.aliases.is_empty() { Value::Null } else { json!(req.aliases) },
                    "MacAddress": a.mac_address,
                    "NetworkID": a.network_id,
                    "EndpointID": a.endpoint_id,
                    "Gateway": a.gateway.map(|g| g.to_string()).unwrap_or_default(),
                    "IPAddress": a.ip_address.map(|ip| ip.to_string()).unwrap_or_default(),
                    "IPPrefixLen": a.ip_prefix_len,
                    "IPv6Gateway": "",
                    "GlobalIPv6Address": "",
                    "GlobalIPv6PrefixLen": 0,
                    "DNSNames": if a.endpoint_id.is_empty() { Value::Null } else {
                        json!([rec.name.clone(), rec.id[..12].to_string()].into_iter().chain(req.aliases.iter().cloned()).collect::<Vec<_>>())
                    },
                }),
            )
        })
        .collect();
    // Docker fills the top-level address fields from the default bridge network.
    let bridge = s
        .networks
        .get(super::options::NETWORK_DEFAULT)
        .cloned()
        .unwrap_or_default();
    // Docker's `NetworkSettings.Ports`: every exposed port, with its host bindings
    // while the container runs (null when not published).
    let mut ports: Map<String, Value> = rec
        .config
        .exposed_ports
        .iter()
        .map(|p| (p.clone(), Value::Null))
        .collect();
    for b in super::ports::published(rec) {
        let entry = json!({ "HostIp": b.host_ip.to_string(), "HostPort": b.host_port.to_string() });
        match ports.entry(super::ports::port_key(b.container_port, b.protocol)) {
            serde_json::map::Entry::Occupied(mut o) if o.get().is_array() => {
                o.get_mut().as_array_mut().expect("an array").push(entry)
            }
            serde_json::map::Entry::Occupied(mut o) => *o.get_mut() = json!([entry]),
            serde_json::map::Entry::Vacant(v) => {
                v.insert(json!([entry]));
            }
        }
    }
    let exposed: Map<String, Value> = rec
        .config
        .exposed_ports
        .iter()
        .map(|p| (p.clone(), json!({})))
        .collect();
    let mounts: Vec<Value> = o
        .binds
        .iter()
        .map(|b| {
            json!({
                "Type": "bind",
                "Source": b.source,
                "Destination": b.destination,
                "Mode": if b.read_only { "ro" } else { "" },
                "RW": !b.read_only,
                "Propagation": b.propagation,
            })
        })
        .collect();
    json!({
        "Id": rec.id,
        "Created": time(Some(rec.created)),
        "Path": argv.first().cloned().unwrap_or_default(),
        "Args": argv.get(1..).unwrap_or_default(),
        "State": {
            "Status": s.status.as_str(),
            "Running": running,
            "Paused": false,
            "Restarting": false,
            "OOMKilled": s.oom_killed,
            "Dead": s.status == Status::Dead,
            "Pid": if running { s.pid } else { 0 },
            "ExitCode": s.exit_code,
            "Error": s.error,
            "StartedAt": time(s.started_at),
            "FinishedAt": time(s.finished_at),
        },
        "Image": rec.image.id,
        "ResolvConfPath": run_dir.join("resolv.conf"),
        "HostnamePath": run_dir.join("hostname"),
        "HostsPath": run_dir.join("hosts"),
        "LogPath": engine.store.log_path(&rec.id),
        "Name": format!("/{}", rec.name),
        "RestartCount": s.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": {
            "Binds": o.binds.iter().map(|b| format!("{}:{}{}", b.source.display(), b.destination, if b.read_only { ":ro" } else { "" })).collect::<Vec<_>>(),
            "LogConfig": { "Type": "json-file", "Config": {} },
            "NetworkMode": o.networks.first().map(|n| n.name.as_str()).unwrap_or("bridge"),
            "PortBindings": port_bindings(rec),
            "AutoRemove": o.auto_remove,
            "CapAdd": o.cap_add,
            "CapDrop": o.cap_drop,
            "Dns": o.dns.servers.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            "DnsOptions": o.dns.options,
            "DnsSearch": o.dns.search,
            "ExtraHosts": o.extra_hosts.iter().map(|h| format!("{}:{}", h.name, h.ip)).collect::<Vec<_>>(),
            "Privileged": o.privileged,
            "PublishAllPorts": o.publish_all,
            "ReadonlyRootfs": o.read_only,
            "SecurityOpt": o.security_opts,
            "CgroupParent": rec.cgroup_parent,
            "Memory": o.resources.memory.unwrap_or(0),
            "NanoCpus": o.resources.nano_cpus.unwrap_or(0),
            "PidsLimit": o.resources.pids_limit,
            "Init": o.init,
        },
        "Config": {
            "Hostname": rec.config.hostname,
            "Domainname": "",
            "User": rec.config.user,
            "AttachStdin": o.interactive,
            "AttachStdout": true,
            "AttachStderr": true,
            "ExposedPorts": if exposed.is_empty() { Value::Null } else { Value::Object(exposed) },
            "Tty": o.tty,
            "OpenStdin": o.interactive,
            "StdinOnce": false,
            "Env": oci_config::environment(&rec.config.env, &rec.config.hostname, o.tty),
            "Cmd": rec.config.cmd,
            "Image": o.image,
            "Volumes": null,
            "WorkingDir": rec.config.workdir,
            "Entrypoint": if rec.config.entrypoint.is_empty() { Value::Null } else { json!(rec.config.entrypoint) },
            "Labels": rec.config.labels,
            "StopSignal": rec.config.stop_signal,
            "StopTimeout": rec.config.stop_timeout,
        },
        "NetworkSettings": {
            "SandboxID": if running { rec.id.clone() } else { String::new() },
            "SandboxKey": if running { engine.runroot.join("netns").join(&rec.id).display().to_string() } else { String::new() },
            "Ports": ports,
            "Gateway": bridge.gateway.map(|g| g.to_string()).unwrap_or_default(),
            "IPAddress": bridge.ip_address.map(|ip| ip.to_string()).unwrap_or_default(),
            "IPPrefixLen": bridge.ip_prefix_len,
            "MacAddress": bridge.mac_address,
            "EndpointID": bridge.endpoint_id,
            "Networks": networks,
        },
        "Mounts": mounts,
    })
}
