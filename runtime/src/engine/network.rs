//! The engine's use of netlib: a container's sandbox and one endpoint per network at
//! start, all of it torn down at stop, `network connect`/`disconnect` on containers.

use std::collections::BTreeMap;
use std::path::Path;

use netlib::dns::ResponderCommand;
use netlib::{EndpointConfig, Netlib, SandboxConfig};

use super::error::{Error, Result};
use super::oci_config::NetNs;
use super::options::{ContainerOptions, NETWORK_HOST, NetworkRequest};
use super::record::{Attachment, ContainerRecord, Status};
use super::{Engine, ids};

fn net_err(e: netlib::Error) -> Error {
    Error::Network(e.to_string())
}

/// Opens netlib on the engine's state; the DNS responder it starts is this rbox.
pub fn open(engine: &Engine) -> Result<Netlib> {
    let mut netlib = Netlib::open(&engine.root, &engine.runroot).map_err(net_err)?;
    netlib.set_dns_responder(dns_responder(
        &engine.root,
        &engine.runroot,
        &engine.cgroup_parent,
    ));
    Ok(netlib)
}

/// This binary as the DNS responder of the state under `root` and `runroot`:
/// `rbox --root R --runroot R --cgroup-parent P internal-dns serve`.
pub fn dns_responder(root: &Path, runroot: &Path, cgroup_parent: &str) -> ResponderCommand {
    ResponderCommand::rbox(
        crate::oci::program_path(),
        root,
        runroot,
        ["--cgroup-parent", cgroup_parent],
    )
}

/// In a container's monitor, on a thread of its own: brings the DNS responder back
/// whenever it dies while containers need it. The responder serves every container of
/// this runroot; their monitors are what lives as long as they do.
pub fn watch_dns(engine: &Engine) {
    let root = engine.root.clone();
    let runroot = engine.runroot.clone();
    let cgroup_parent = engine.cgroup_parent.clone();
    std::thread::spawn(move || {
        loop {
            if let Err(e) = netlib::dns::wait_until_gone(&runroot) {
                eprintln!("rbox: cannot watch the DNS responder: {e}");
                return;
            }
            let restarted = Netlib::open(&root, &runroot).and_then(|mut netlib| {
                netlib.set_dns_responder(dns_responder(&root, &runroot, &cgroup_parent));
                netlib.ensure_dns()
            });
            if let Err(e) = restarted {
                eprintln!("rbox: cannot bring the DNS responder back: {e}");
            }
            // None runs: no container needs one (or it cannot start; the next command
            // that changes a DNS network tries again).
            if !netlib::dns::is_running(&runroot) {
                return;
            }
        }
    });
}

/// Checks what `--network`, `--ip` ask for against the networks that exist, before
/// anything is created.
pub fn validate(engine: &Engine, opts: &ContainerOptions) -> Result<()> {
    let nl = engine.netlib()?;
    for req in &opts.networks {
        let net = nl.network(&req.name).map_err(net_err)?;
        if let Some(ip) = req.ip
            && !net.ipam.iter().any(|s| s.subnet.contains(&ip))
        {
            let subnets: Vec<String> = net.ipam.iter().map(|s| s.subnet.to_string()).collect();
            return Err(Error::Network(format!(
                "invalid --ip {ip}: it is not in the subnet of network {} ({})",
                net.name,
                subnets.join(", ")
            )));
        }
    }
    Ok(())
}

/// The container's network, once set up.
pub struct Setup {
    pub netns: NetNs,
    pub attachments: BTreeMap<String, Attachment>,
}

fn sandbox_config(rec: &ContainerRecord, files_dir: &std::path::Path) -> SandboxConfig {
    let o = &rec.options;
    SandboxConfig {
        hostname: rec.config.hostname.clone(),
        domainname: None,
        dns: o.dns.servers.clone(),
        dns_search: o.dns.search.clone(),
        dns_options: o.dns.options.clone(),
        extra_hosts: o
            .extra_hosts
            .iter()
            .map(|h| (h.name.clone(), h.ip))
            .collect(),
        files_dir: files_dir.to_path_buf(),
    }
}

fn endpoint_config(rec: &ContainerRecord, req: &NetworkRequest) -> EndpointConfig {
    EndpointConfig {
        container_name: rec.name.clone(),
        aliases: req.aliases.clone(),
        addresses: req.ip.into_iter().collect(),
        mac_address: req.mac.clone(),
    }
}

fn attachment(net: &netlib::Network, ep: &netlib::Endpoint) -> Attachment {
    let v4 = ep.ipv4();
    let gateway = v4.and_then(|a| {
        net.ipam
            .iter()
            .find(|s| s.subnet.contains(&a.addr()))
            .and_then(|s| s.gateway)
    });
    Attachment {
        network_id: net.id.clone(),
        endpoint_id: ep.id.clone(),
        ip_address: v4.map(|a| a.addr()),
        ip_prefix_len: v4.map(|a| a.prefix_len()).unwrap_or(0),
        gateway,
        mac_address: ep.mac_address.clone(),
        aliases: ep.aliases.clone(),
    }
}

/// Creates the sandbox (its files in `files_dir`) and joins every requested network.
/// On failure nothing of it is left.
pub fn setup(engine: &Engine, rec: &ContainerRecord, files_dir: &std::path::Path) -> Result<Setup> {
    let nl = engine.netlib()?;
    nl.create_sandbox(&rec.id, sandbox_config(rec, files_dir))
        .map_err(net_err)?;
    let joined = (|| {
        let mut attachments = BTreeMap::new();
        for req in &rec.options.networks {
            let ep = nl
                .join(&rec.id, &req.name, endpoint_config(rec, req))
                .map_err(net_err)?;
            let net = nl.network(&ep.network_id).map_err(net_err)?;
            attachments.insert(net.name.clone(), attachment(&net, &ep));
        }
        let sandbox = nl.sandbox(&rec.id).map_err(net_err)?;
        let netns = match sandbox {
            Some(s) if s.host_network => NetNs::Host,
            Some(s) => s.netns.map(NetNs::Join).unwrap_or(NetNs::Fresh),
            None => NetNs::Fresh,
        };
        Ok(Setup { netns, attachments })
    })();
    if joined.is_err() {
        let _ = nl.destroy_sandbox(&rec.id);
    }
    joined
}

/// Removes the container's sandbox and all its endpoints (nothing to do if it has none).
pub fn teardown(engine: &Engine, id: &str) -> Result<()> {
    engine.netlib()?.destroy_sandbox(id).map_err(net_err)
}

/// `network connect`: a running container gets a new endpoint at once; a stopped one
/// joins the network at its next start.
pub fn connect(engine: &Engine, container: &str, req: NetworkRequest) -> Result<()> {
    let id = super::lifecycle::resolve_live(engine, container)?;
    let nl = engine.netlib()?;
    let net = nl.network(&req.name).map_err(net_err)?;
    let req = NetworkRequest {
        name: net.name.clone(),
        ..req
    };
    engine.store.update(&id, |rec| {
        if rec.options.networks.iter().any(|n| n.name == net.name) {
            return Err(Error::Network(format!(
                "container {} is already connected to network {}",
                ids::short(&rec.id),
                net.name
            )));
        }
        if rec.options.networks.iter().any(|n| n.name == NETWORK_HOST) || net.name == NETWORK_HOST {
            return Err(Error::Network(
                "a container on the host network cannot be connected to other networks, nor the reverse".into(),
            ));
        }
        if rec.state.status == Status::Running {
            let ep = nl.join(&rec.id, &net.name, endpoint_config(rec, &req)).map_err(net_err)?;
            rec.state.networks.insert(net.name.clone(), attachment(&net, &ep));
        }
        rec.options.networks.push(req);
        Ok(())
    })
}

/// `network disconnect`.
pub fn disconnect(engine: &Engine, container: &str, network: &str) -> Result<()> {
    let id = super::lifecycle::resolve_live(engine, container)?;
    let nl = engine.netlib()?;
    let net = nl.network(network).map_err(net_err)?;
    engine.store.update(&id, |rec| {
        let Some(pos) = rec.options.networks.iter().position(|n| n.name == net.name) else {
            return Err(Error::Network(format!(
                "container {} is not connected to network {}",
                ids::short(&rec.id),
                net.name
            )));
        };
        if rec.state.status == Status::Running {
            nl.leave(&rec.id, &net.name).map_err(net_err)?;
            rec.state.networks.remove(&net.name);
        }
        rec.options.networks.remove(pos);
        Ok(())
    })
}
