//! [`Netlib`]: the synchronous facade the engine and the CLI call.
//!
//! Networks: [`Netlib::create_network`], [`Netlib::network`], [`Netlib::networks`],
//! [`Netlib::remove_network`], [`Netlib::prune`], [`Netlib::inspect`].
//! Containers: [`Netlib::create_sandbox`], [`Netlib::join`], [`Netlib::leave`],
//! [`Netlib::destroy_sandbox`], [`Netlib::reclaim`]. `join`/`leave` work the same on a
//! sandbox whose container already runs (`network connect`/`disconnect`).
//!
//! Every read-modify-write happens under the state lock; every step that creates
//! something is undone if a later step fails, so a failed call leaves nothing behind.
//!
//! # The embedded DNS
//!
//! A call that changes what the DNS responder serves (an endpoint joins or leaves a
//! network with `dns_enabled`, a sandbox is destroyed or reclaimed, a DNS network is
//! removed) makes the responder serve the new state before it returns ([`dns::sync`]):
//! it reloads a running responder, or starts one ([`Netlib::set_dns_responder`] says
//! how). Lock order: the sync happens only after the state lock is released, because
//! the responder's loader ([`dns::load`]) reads the state under that same lock, so that
//! it never sees a change half made. A sync under the lock would deadlock: the
//! responder would wait for the lock, and the lock's holder for the responder.
//! A join whose sync fails is undone; a leave whose sync fails stays done (the state is
//! right; the error says the responder is behind).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use crate::defaults::{self, PREDEFINED};
use crate::dns::{self, DnsError, ResponderCommand};
use crate::drivers::{self, Driver, DriverError, EndpointContext, NetworkContext, SandboxKind};
use crate::files::{self, DnsMode};
use crate::firewall::Firewall;
use crate::inspect::{self, NetworkInspect};
use crate::ipam::{self, IpamError, Lease};
use crate::kernel::{Kernel, KernelError};
use crate::model::{
    Endpoint, EndpointConfig, Network, Sandbox, SandboxConfig, Subnet, is_full_id, new_id,
};
use crate::netns::{self, NetnsError};
use crate::store::{Locked, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("network {0} not found")]
    NetworkNotFound(String),
    #[error("network id prefix {0} matches several networks: give more of the id or the name")]
    AmbiguousNetwork(String),
    #[error("network with name {0} already exists")]
    DuplicateName(String),
    #[error(
        "invalid network name {0:?}: use letters, digits and '_', '.', '-', starting with a letter or digit"
    )]
    InvalidName(String),
    #[error("unknown network driver {name:?} (available: {available})")]
    UnknownDriver { name: String, available: String },
    #[error("only the predefined network of driver {0} can exist; use it by name")]
    SingleInstance(String),
    #[error("{0} is a pre-defined network and cannot be removed")]
    Predefined(String),
    #[error(
        "network {network} is in use by container(s) {containers}: stop or disconnect them first"
    )]
    InUse { network: String, containers: String },
    #[error("IPv6 networks are not supported yet: leave out --ipv6 and IPv6 subnets")]
    Ipv6Unsupported,
    #[error("{0}")]
    Invalid(String),
    #[error("container {0} has no network sandbox (create_sandbox first)")]
    NoSandbox(String),
    #[error("container {0} already has a network sandbox")]
    SandboxExists(String),
    #[error("container {container} is already connected to network {network}")]
    AlreadyConnected { container: String, network: String },
    #[error("container {container} is not connected to network {network}")]
    NotConnected { container: String, network: String },
    #[error("endpoint with name {name} already exists in network {network}")]
    NameInUse { name: String, network: String },
    #[error(
        "a container on the host network cannot be connected to other networks, nor the reverse"
    )]
    HostExclusive,
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error("{}", join_errors(.0))]
    Teardown(Vec<Error>),
}

fn join_errors(errors: &[Error]) -> String {
    let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    format!(
        "teardown finished with {} failure(s): {}",
        list.len(),
        list.join("; ")
    )
}

pub type Result<T> = std::result::Result<T, Error>;

/// What `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct NetworkCreate {
    pub name: String,
    /// Default `bridge`.
    pub driver: Option<String>,
    pub subnets: Vec<IpNet>,
    /// Each inside one of `subnets`.
    pub ip_ranges: Vec<IpNet>,
    /// Each inside one of `subnets`.
    pub gateways: Vec<IpAddr>,
    pub internal: bool,
    pub ipv6: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

pub struct Netlib {
    store: Store,
    runroot: PathBuf,
    kernel: Kernel,
    firewall: Firewall,
    responder: ResponderCommand,
}

impl Netlib {
    /// Opens netlib's state for the host whose state lives under `root` (persistent) and
    /// `runroot` (volatile); the predefined networks are made if missing. The DNS
    /// responder, when needed, is this program run as
    /// `PROGRAM --root ROOT --runroot RUNROOT internal-dns serve` (right when this
    /// program is rbox; others call [`set_dns_responder`](Self::set_dns_responder)).
    pub fn open(root: &Path, runroot: &Path) -> Result<Netlib> {
        let program = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("rbox"));
        let netlib = Netlib {
            store: Store::open(root, runroot)?,
            runroot: runroot.to_path_buf(),
            kernel: Kernel::new()?,
            firewall: Firewall,
            responder: ResponderCommand::rbox(program, root, runroot, std::iter::empty::<&str>()),
        };
        netlib.ensure_predefined()?;
        Ok(netlib)
    }

    /// How to start the DNS responder: a program that runs [`dns::serve`] with
    /// [`dns::load`] for this state (rbox: `rbox [GLOBAL FLAGS] internal-dns serve`).
    pub fn set_dns_responder(&mut self, command: ResponderCommand) {
        self.responder = command;
    }

    /// Starts the DNS responder if it is not running while some sandbox needs it: what a
    /// container monitor calls to bring back a responder that was killed. Cheap when it
    /// runs (one lock probe, no process started).
    pub fn ensure_dns(&self) -> Result<()> {
        if dns::is_running(&self.runroot) {
            return Ok(());
        }
        if dns::load(&self.store)?.dns_sandboxes().next().is_some() {
            dns::ensure_running(&self.runroot, &self.responder)?;
        }
        Ok(())
    }

    /// Makes the responder serve the committed state (never under the state lock, see
    /// the module's notes). `joined`: a sandbox that must now be served.
    fn sync_dns(&self, joined: Option<&str>) -> Result<()> {
        let report = dns::sync(&self.runroot, &self.responder)?;
        if let Some(unbound) = report
            .unbound
            .iter()
            .find(|u| Some(u.id.as_str()) == joined)
        {
            return Err(DnsError::Unbound {
                id: unbound.id.clone(),
                error: unbound.error.clone(),
            }
            .into());
        }
        Ok(())
    }

    /// After a teardown that changed what the DNS serves: the sync, its failure added
    /// to the teardown's.
    fn sync_dns_after<T>(&self, changed: bool, result: Result<T>) -> Result<T> {
        if !changed {
            return result;
        }
        let Err(sync) = self.sync_dns(None) else {
            return result;
        };
        match result {
            Ok(_) => Err(Error::Teardown(vec![sync])),
            Err(Error::Teardown(mut errors)) => {
                errors.push(sync);
                Err(Error::Teardown(errors))
            }
            Err(other) => Err(Error::Teardown(vec![other, sync])),
        }
    }

    /// After a DNS network is removed: a running responder drops it. Nothing it serves
    /// depends on it (no endpoint was left on it), so a failure changes nothing.
    fn forget_dns_network(&self) {
        if dns::is_running(&self.runroot) {
            let _ = self.sync_dns(None);
        }
    }

    /// The state paths (for readers such as the DNS responder).
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn ensure_predefined(&self) -> Result<()> {
        let have = |nets: &[Network]| PREDEFINED.iter().all(|p| nets.iter().any(|n| n.name == *p));
        if have(&self.store.networks()?) {
            return Ok(());
        }
        let locked = self.store.lock()?;
        let nets = locked.networks()?;
        for name in PREDEFINED {
            if !nets.iter().any(|n| n.name == *name) {
                locked.save_network(&defaults::predefined(name))?;
            }
        }
        Ok(())
    }

    // ---- networks ----

    /// All networks, sorted by name.
    pub fn networks(&self) -> Result<Vec<Network>> {
        Ok(self.store.networks()?)
    }

    /// The network called `name_or_id`: an exact name, a full id, or a unique id prefix.
    pub fn network(&self, name_or_id: &str) -> Result<Network> {
        find_network(&self.store.networks()?, name_or_id)
    }

    /// Creates a network definition; its kernel objects are made when the first
    /// endpoint joins. Bad input fails before anything is stored.
    pub fn create_network(&self, req: NetworkCreate) -> Result<Network> {
        if !valid_network_name(&req.name) {
            return Err(Error::InvalidName(req.name));
        }
        let driver_name = req.driver.clone().unwrap_or_else(|| "bridge".into());
        let driver = driver_by_name(&driver_name)?;
        if driver.single_instance() {
            return Err(Error::SingleInstance(driver_name));
        }
        if req.ipv6 || req.subnets.iter().any(|s| s.addr().is_ipv6()) {
            return Err(Error::Ipv6Unsupported);
        }
        let subnets = pair_ipam(&req)?;

        let locked = self.store.lock()?;
        let others = locked.networks()?;
        if others.iter().any(|n| n.name == req.name) {
            return Err(Error::DuplicateName(req.name));
        }
        for s in &subnets {
            ipam::check_overlap(
                &s.subnet,
                others
                    .iter()
                    .flat_map(|n| n.ipam.iter().map(move |o| (n.name.as_str(), &o.subnet))),
            )?;
        }
        let mut network = Network {
            id: new_id(),
            name: req.name,
            driver: driver_name,
            created: chrono::Utc::now(),
            ipam: subnets,
            internal: req.internal,
            enable_ipv6: false,
            dns_enabled: true,
            interface: None,
            mtu: None,
            options: req.options,
            labels: req.labels,
        };
        // Before the default subnet is filled in: a driver may insist on the user's.
        driver.validate(&mut network, &others)?;
        if network.ipam.is_empty() && driver.uses_ipam() {
            let mut in_use: Vec<IpNet> = others
                .iter()
                .flat_map(|n| n.ipam.iter().map(|s| s.subnet))
                .collect();
            in_use.extend(self.kernel.host()?.prefixes_in_use()?);
            network.ipam.push(ipam::validate_subnet(
                ipam::next_free_subnet(&in_use)?,
                None,
                None,
            )?);
        }
        let ctx = NetworkContext {
            network: &network,
            kernel: &self.kernel,
            firewall: &self.firewall,
            state: &locked,
        };
        driver.create_network(&ctx)?;
        if let Err(e) = locked.save_network(&network) {
            let _ = driver.teardown_network(&ctx);
            return Err(e.into());
        }
        Ok(network)
    }

    /// What the driver of `network` has to tell the user about it, once created.
    pub fn create_note(&self, network: &Network) -> Option<String> {
        drivers::find(&network.driver).and_then(|d| d.create_note(network))
    }

    /// Removes a network that no container uses: its kernel objects, then its definition.
    pub fn remove_network(&self, name_or_id: &str) -> Result<Network> {
        let locked = self.store.lock()?;
        let network = find_network(&locked.networks()?, name_or_id)?;
        self.remove_network_locked(&locked, &network)?;
        drop(locked);
        if network.dns_enabled {
            self.forget_dns_network();
        }
        Ok(network)
    }

    /// Removes every user-defined network no container uses; returns them.
    pub fn prune(&self) -> Result<Vec<Network>> {
        let locked = self.store.lock()?;
        let mut removed = Vec::new();
        for network in locked.networks()? {
            if network.is_predefined() || !users(&locked, &network)?.is_empty() {
                continue;
            }
            self.remove_network_locked(&locked, &network)?;
            removed.push(network);
        }
        drop(locked);
        if removed.iter().any(|n| n.dns_enabled) {
            self.forget_dns_network();
        }
        Ok(removed)
    }

    fn remove_network_locked(&self, locked: &Locked, network: &Network) -> Result<()> {
        if network.is_predefined() {
            return Err(Error::Predefined(network.name.clone()));
        }
        let users = users(locked, network)?;
        if !users.is_empty() {
            return Err(Error::InUse {
                network: network.name.clone(),
                containers: users.join(", "),
            });
        }
        let driver = driver_by_name(&network.driver)?;
        let errors = driver.teardown_network(&NetworkContext {
            network,
            kernel: &self.kernel,
            firewall: &self.firewall,
            state: locked,
        });
        if !errors.is_empty() {
            // Keep the definition: removing again retries the teardown.
            return Err(Error::Teardown(
                errors.into_iter().map(Error::from).collect(),
            ));
        }
        locked.save_leases(&network.id, &Default::default())?;
        locked.save_endpoints(&network.id, &Default::default())?;
        locked.remove_network(&network.id)?;
        Ok(())
    }

    /// The live endpoints of `network`.
    pub fn endpoints(&self, network: &Network) -> Result<Vec<Endpoint>> {
        Ok(self
            .store
            .endpoints(&network.id)?
            .endpoints
            .into_values()
            .collect())
    }

    /// `network inspect`'s object (Docker's shape) for `network`.
    pub fn inspect(&self, network: &Network) -> Result<NetworkInspect> {
        Ok(inspect::network(network, &self.endpoints(network)?))
    }

    // ---- containers ----

    /// Registers a container's sandbox and writes its files (hosts, hostname,
    /// resolv.conf) into `config.files_dir`. The network namespace is made by the
    /// first [`join`](Self::join) of a network that needs one.
    pub fn create_sandbox(&self, container_id: &str, config: SandboxConfig) -> Result<Sandbox> {
        let locked = self.store.lock()?;
        if locked.sandbox(container_id)?.is_some() {
            return Err(Error::SandboxExists(container_id.to_string()));
        }
        let sandbox = Sandbox {
            container_id: container_id.to_string(),
            netns: None,
            host_network: false,
            config,
            endpoints: Vec::new(),
        };
        locked.save_sandbox(&sandbox)?;
        if let Err(e) = self.write_files(&locked, &sandbox) {
            let _ = locked.remove_sandbox(container_id);
            return Err(e);
        }
        Ok(sandbox)
    }

    /// The sandbox of `container_id`, if it has one.
    pub fn sandbox(&self, container_id: &str) -> Result<Option<Sandbox>> {
        Ok(self.store.sandbox(container_id)?)
    }

    /// Connects the container's sandbox to `network` (a new endpoint: lease, link,
    /// addresses, routes, DNS records, files). Works on a running container too. On a
    /// DNS-enabled network, the responder answers in the sandbox and serves the new
    /// names when this returns. On error nothing of the endpoint is left.
    pub fn join(
        &self,
        container_id: &str,
        network: &str,
        config: EndpointConfig,
    ) -> Result<Endpoint> {
        let (endpoint, network) = self.join_locked(container_id, network, config)?;
        if network.dns_enabled
            && let Err(e) = self.sync_dns(Some(container_id))
        {
            // Undone as a leave would: the names go, and a running responder drops them
            // (none is started just for that).
            let _ = self.leave_locked(container_id, &network.id);
            self.forget_dns_network();
            return Err(e);
        }
        Ok(endpoint)
    }

    /// [`join`](Self::join)'s state and kernel changes, under the state lock.
    fn join_locked(
        &self,
        container_id: &str,
        network: &str,
        config: EndpointConfig,
    ) -> Result<(Endpoint, Network)> {
        let mac = match &config.mac_address {
            Some(m) => Some(ipam::parse_mac(m).ok_or_else(|| {
                Error::Invalid(format!(
                    "invalid MAC address {m:?}: give six hex pairs like 02:42:ac:11:00:02"
                ))
            })?),
            None => None,
        };
        let locked = self.store.lock()?;
        let network = find_network(&locked.networks()?, network)?;
        let driver = driver_by_name(&network.driver)?;
        let mut sandbox = locked
            .sandbox(container_id)?
            .ok_or_else(|| Error::NoSandbox(container_id.to_string()))?;
        let short = &container_id[..12.min(container_id.len())];
        if sandbox.endpoints.iter().any(|e| e.network_id == network.id) {
            return Err(Error::AlreadyConnected {
                container: short.to_string(),
                network: network.name.clone(),
            });
        }
        let host_kind = driver.sandbox_kind() == SandboxKind::Host;
        if sandbox.host_network || (host_kind && !sandbox.endpoints.is_empty()) {
            return Err(Error::HostExclusive);
        }
        let mut published = locked.endpoints(&network.id)?;
        if !config.container_name.is_empty()
            && published
                .endpoints
                .values()
                .any(|e| e.container_name == config.container_name)
        {
            return Err(Error::NameInUse {
                name: config.container_name.clone(),
                network: network.name.clone(),
            });
        }

        let network_ctx = NetworkContext {
            network: &network,
            kernel: &self.kernel,
            firewall: &self.firewall,
            state: &locked,
        };
        driver.setup_network(&network_ctx)?;
        let mac = driver.endpoint_mac(&network_ctx, mac)?;

        let mut undo = Rollback::default();
        let before = sandbox.clone();
        let locked_ref = &locked;
        undo.push(move || {
            let _ = locked_ref.save_sandbox(&before);
        });
        if !host_kind && sandbox.netns.is_none() {
            netns::prepare_dir(locked.netns_dir())?;
            let pin = locked.netns_path(container_id);
            self.kernel.create_sandbox(&pin)?;
            let (pin2, kernel) = (pin.clone(), &self.kernel);
            undo.push(move || {
                let _ = kernel.remove_sandbox(&pin2);
            });
            sandbox.netns = Some(pin);
        }
        sandbox.host_network = host_kind;

        let endpoint_id = new_id();
        let addresses = if driver.uses_ipam() {
            let mut leases = locked.leases(&network.id)?;
            let lease = Lease {
                endpoint_id: endpoint_id.clone(),
                container_id: container_id.to_string(),
                container_name: config.container_name.clone(),
            };
            let addresses = leases.allocate(&network.ipam, &config.addresses, &lease)?;
            locked.save_leases(&network.id, &leases)?;
            let (nid, eid) = (network.id.clone(), endpoint_id.clone());
            undo.push(move || {
                if let Ok(mut leases) = locked_ref.leases(&nid) {
                    leases.release(&eid);
                    let _ = locked_ref.save_leases(&nid, &leases);
                }
            });
            addresses
        } else {
            if !config.addresses.is_empty() {
                return Err(Error::Invalid(format!(
                    "network {} does not assign addresses",
                    network.name
                )));
            }
            Vec::new()
        };

        let has_link = !host_kind && driver.uses_ipam();
        let mac = mac.or_else(|| {
            let v4 = addresses.iter().find_map(|a| match a.addr() {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            });
            has_link.then(|| v4.map_or_else(ipam::random_mac, ipam::mac_from_ipv4))
        });
        let endpoint = Endpoint {
            id: endpoint_id.clone(),
            network_id: network.id.clone(),
            network_name: network.name.clone(),
            container_id: container_id.to_string(),
            container_name: config.container_name.clone(),
            aliases: config.aliases.clone(),
            hostname: sandbox.config.hostname.clone(),
            addresses,
            mac_address: mac.as_ref().map(ipam::format_mac).unwrap_or_default(),
            netns: sandbox.netns.clone(),
            interface: if has_link {
                next_interface(&sandbox)
            } else {
                String::new()
            },
            host_interface: (has_link && driver.host_side_link())
                .then(|| format!("veth{}", &endpoint_id[..7])),
            default_route: has_link
                && !network.internal
                && network.ipam.iter().any(|s| s.gateway.is_some())
                && !sandbox.endpoints.iter().any(|e| e.default_route),
        };
        sandbox.endpoints.push(endpoint.clone());
        locked.save_sandbox(&sandbox)?;

        driver.join(&EndpointContext {
            network: &network,
            endpoint: &endpoint,
            kernel: &self.kernel,
        })?;
        let (net, ep, kernel) = (network.clone(), endpoint.clone(), &self.kernel);
        undo.push(move || {
            let _ = driver.leave(&EndpointContext {
                network: &net,
                endpoint: &ep,
                kernel,
            });
        });

        published
            .endpoints
            .insert(endpoint.id.clone(), endpoint.clone());
        locked.save_endpoints(&network.id, &published)?;
        let (nid, eid) = (network.id.clone(), endpoint.id.clone());
        undo.push(move || {
            if let Ok(mut eps) = locked_ref.endpoints(&nid) {
                eps.endpoints.remove(&eid);
                let _ = locked_ref.save_endpoints(&nid, &eps);
            }
        });
        self.write_files(&locked, &sandbox)?;
        undo.commit();
        Ok((endpoint, network))
    }

    /// Disconnects the container from `network`; the endpoint, its lease, records and
    /// link go. Works on a running container. Its names stop resolving before this
    /// returns.
    pub fn leave(&self, container_id: &str, network: &str) -> Result<()> {
        let (result, dns_changed) = self.leave_locked(container_id, network);
        self.sync_dns_after(dns_changed, result)
    }

    /// [`leave`](Self::leave) under the state lock; also says whether the endpoint was
    /// on a DNS-enabled network (then the responder must reload).
    fn leave_locked(&self, container_id: &str, network: &str) -> (Result<()>, bool) {
        let mut dns_changed = false;
        let result = self.store.lock().map_err(Error::from).and_then(|locked| {
            let network = find_network(&locked.networks()?, network)?;
            self.leave_network(&locked, container_id, network, &mut dns_changed)
        });
        (result, dns_changed)
    }

    fn leave_network(
        &self,
        locked: &Locked,
        container_id: &str,
        network: Network,
        dns_changed: &mut bool,
    ) -> Result<()> {
        let mut sandbox = locked
            .sandbox(container_id)?
            .ok_or_else(|| Error::NoSandbox(container_id.to_string()))?;
        let Some(pos) = sandbox
            .endpoints
            .iter()
            .position(|e| e.network_id == network.id)
        else {
            return Err(Error::NotConnected {
                container: container_id[..12.min(container_id.len())].to_string(),
                network: network.name,
            });
        };
        let endpoint = sandbox.endpoints.remove(pos);
        *dns_changed = network.dns_enabled;
        let mut errors = self.teardown_endpoint(locked, &endpoint);
        if sandbox.host_network && sandbox.endpoints.is_empty() {
            sandbox.host_network = false;
        }
        if endpoint.default_route
            && let Err(e) = self.move_default_route(locked, &mut sandbox)
        {
            errors.push(e);
        }
        locked.save_sandbox(&sandbox)?;
        self.write_files(locked, &sandbox)?;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Teardown(errors))
        }
    }

    /// The endpoint carrying the default route left: the next endpoint (in join order)
    /// on a non-internal network with a gateway takes it over.
    fn move_default_route(&self, locked: &Locked, sandbox: &mut Sandbox) -> Result<()> {
        let networks = locked.networks()?;
        let Some(pin) = sandbox.netns.clone() else {
            return Ok(());
        };
        for ep in sandbox.endpoints.iter_mut() {
            let Some(network) = networks.iter().find(|n| n.id == ep.network_id) else {
                continue;
            };
            let gateways: Vec<IpAddr> = network
                .ipam
                .iter()
                .filter(|s| ep.addresses.iter().any(|a| s.subnet.contains(&a.addr())))
                .filter_map(|s| s.gateway)
                .collect();
            if network.internal || ep.interface.is_empty() || gateways.is_empty() {
                continue;
            }
            let links = self.kernel.sandbox(&pin)?;
            for gw in gateways {
                links.add_default_route(gw)?;
            }
            ep.default_route = true;
            let mut published = locked.endpoints(&ep.network_id)?;
            if let Some(record) = published.endpoints.get_mut(&ep.id) {
                record.default_route = true;
                locked.save_endpoints(&ep.network_id, &published)?;
            }
            break;
        }
        Ok(())
    }

    /// Tears the container's network down: every endpoint (DNS records, link, lease),
    /// then the namespace and the record. Keeps going after a failure and reports them
    /// all. A container without a sandbox is fine. Its names stop resolving before
    /// this returns.
    pub fn destroy_sandbox(&self, container_id: &str) -> Result<()> {
        let mut dns_changed = false;
        let result = self.store.lock().map_err(Error::from).and_then(|locked| {
            let errors = self.destroy_locked(&locked, container_id, &mut dns_changed)?;
            if errors.is_empty() {
                Ok(())
            } else {
                Err(Error::Teardown(errors))
            }
        });
        self.sync_dns_after(dns_changed, result)
    }

    /// Reclaims state whose owner died (a monitor killed with SIGKILL, a reboot): the
    /// sandboxes of containers for which `is_alive` says false (it must say true for
    /// containers being created), and leases, records and netns pins of containers
    /// without a sandbox. Returns the ids of the containers reclaimed. Their names stop
    /// resolving before this returns.
    pub fn reclaim(&self, is_alive: impl Fn(&str) -> bool) -> Result<Vec<String>> {
        let mut dns_changed = false;
        let result = self
            .store
            .lock()
            .map_err(Error::from)
            .and_then(|locked| self.reclaim_locked(&locked, is_alive, &mut dns_changed));
        self.sync_dns_after(dns_changed, result)
    }

    fn reclaim_locked(
        &self,
        locked: &Locked,
        is_alive: impl Fn(&str) -> bool,
        dns_changed: &mut bool,
    ) -> Result<Vec<String>> {
        let mut reclaimed = Vec::new();
        let mut errors = Vec::new();
        for sandbox in locked.sandboxes()? {
            if !is_alive(&sandbox.container_id) {
                errors.extend(self.destroy_locked(locked, &sandbox.container_id, dns_changed)?);
                reclaimed.push(sandbox.container_id);
            }
        }
        let owned: Vec<String> = locked
            .sandboxes()?
            .into_iter()
            .map(|s| s.container_id)
            .collect();
        for network in locked.networks()? {
            let mut leases = locked.leases(&network.id)?;
            let before = leases.addresses.len();
            leases
                .addresses
                .retain(|_, l| owned.contains(&l.container_id));
            if leases.addresses.len() != before {
                locked.save_leases(&network.id, &leases)?;
            }
            let mut eps = locked.endpoints(&network.id)?;
            let before = eps.endpoints.len();
            eps.endpoints.retain(|_, e| owned.contains(&e.container_id));
            if eps.endpoints.len() != before {
                locked.save_endpoints(&network.id, &eps)?;
                *dns_changed |= network.dns_enabled;
            }
        }
        if let Ok(dir) = std::fs::read_dir(locked.netns_dir()) {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if is_full_id(&name)
                    && !owned.contains(&name)
                    && let Err(e) = self.kernel.remove_sandbox(&entry.path())
                {
                    errors.push(e.into());
                }
            }
        }
        if errors.is_empty() {
            Ok(reclaimed)
        } else {
            Err(Error::Teardown(errors))
        }
    }

    /// Destroys a sandbox under the lock; sets `dns_changed` when one of its endpoints
    /// was on a DNS-enabled network.
    fn destroy_locked(
        &self,
        locked: &Locked,
        container_id: &str,
        dns_changed: &mut bool,
    ) -> Result<Vec<Error>> {
        let Some(sandbox) = locked.sandbox(container_id)? else {
            return Ok(Vec::new());
        };
        let networks = locked.networks()?;
        *dns_changed |= sandbox.endpoints.iter().any(|e| {
            networks
                .iter()
                .any(|n| n.id == e.network_id && n.dns_enabled)
        });
        let mut errors = Vec::new();
        for endpoint in sandbox.endpoints.iter().rev() {
            errors.extend(self.teardown_endpoint(locked, endpoint));
        }
        if let Some(pin) = &sandbox.netns
            && let Err(e) = self.kernel.remove_sandbox(pin)
        {
            errors.push(e.into());
        }
        locked.remove_sandbox(container_id)?;
        Ok(errors)
    }

    /// Removes one endpoint: published record (what the DNS serves), kernel objects, lease.
    fn teardown_endpoint(&self, locked: &Locked, endpoint: &Endpoint) -> Vec<Error> {
        let mut errors = Vec::new();
        let network = match locked.networks() {
            Ok(nets) => nets.into_iter().find(|n| n.id == endpoint.network_id),
            Err(e) => {
                errors.push(e.into());
                None
            }
        };
        let step = |errors: &mut Vec<Error>, r: std::result::Result<(), StoreError>| {
            if let Err(e) = r {
                errors.push(e.into());
            }
        };
        let nid = &endpoint.network_id;
        step(
            &mut errors,
            locked.endpoints(nid).and_then(|mut eps| {
                eps.endpoints.remove(&endpoint.id);
                locked.save_endpoints(nid, &eps)
            }),
        );
        if let Some(network) = &network {
            match driver_by_name(&network.driver) {
                Ok(driver) => errors.extend(
                    driver
                        .leave(&EndpointContext {
                            network,
                            endpoint,
                            kernel: &self.kernel,
                        })
                        .into_iter()
                        .map(Error::from),
                ),
                Err(e) => errors.push(e),
            }
        }
        step(
            &mut errors,
            locked.leases(nid).and_then(|mut leases| {
                leases.release(&endpoint.id);
                locked.save_leases(nid, &leases)
            }),
        );
        errors
    }

    /// Rewrites the sandbox's hosts, hostname and resolv.conf.
    fn write_files(&self, locked: &Locked, sandbox: &Sandbox) -> Result<()> {
        let config = &sandbox.config;
        let networks = locked.networks()?;
        let embedded = sandbox.endpoints.iter().any(|e| {
            networks
                .iter()
                .any(|n| n.id == e.network_id && n.dns_enabled)
        });
        let host = files::host_resolv_conf();
        let (hosts, mode) = if sandbox.host_network {
            (files::host_network_hosts(config), DnsMode::HostNetwork)
        } else {
            let mode = if embedded {
                DnsMode::Embedded
            } else {
                DnsMode::Filtered
            };
            (files::hosts(config, &sandbox.endpoints), mode)
        };
        files::write(config, &hosts, &files::resolv_conf(&host, config, mode))?;
        Ok(())
    }
}

/// Undo steps run in reverse order on drop, unless committed.
#[derive(Default)]
struct Rollback<'a> {
    steps: Vec<Box<dyn FnOnce() + 'a>>,
}

impl<'a> Rollback<'a> {
    fn push(&mut self, step: impl FnOnce() + 'a) {
        self.steps.push(Box::new(step));
    }

    fn commit(mut self) {
        self.steps.clear();
    }
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        while let Some(step) = self.steps.pop() {
            step();
        }
    }
}

fn driver_by_name(name: &str) -> Result<&'static dyn Driver> {
    drivers::find(name).ok_or_else(|| Error::UnknownDriver {
        name: name.to_string(),
        available: drivers::names().join(", "),
    })
}

fn find_network(nets: &[Network], key: &str) -> Result<Network> {
    if let Some(n) = nets.iter().find(|n| n.name == key || n.id == key) {
        return Ok(n.clone());
    }
    let matches: Vec<&Network> = if key.is_empty() {
        Vec::new()
    } else {
        nets.iter().filter(|n| n.id.starts_with(key)).collect()
    };
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Error::NetworkNotFound(key.to_string())),
        _ => Err(Error::AmbiguousNetwork(key.to_string())),
    }
}

/// Names (or short ids) of the containers holding endpoints or leases on `network`.
fn users(locked: &Locked, network: &Network) -> Result<Vec<String>> {
    let mut users: Vec<String> = Vec::new();
    let label = |name: &str, id: &str| {
        if name.is_empty() {
            id[..12.min(id.len())].to_string()
        } else {
            name.to_string()
        }
    };
    for ep in locked.endpoints(&network.id)?.endpoints.values() {
        users.push(label(&ep.container_name, &ep.container_id));
    }
    for lease in locked.leases(&network.id)?.addresses.values() {
        users.push(label(&lease.container_name, &lease.container_id));
    }
    users.sort();
    users.dedup();
    Ok(users)
}

/// Docker's rule for network names.
fn valid_network_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Pairs each `--ip-range` and `--gateway` with the `--subnet` containing it.
fn pair_ipam(req: &NetworkCreate) -> Result<Vec<Subnet>> {
    if req.subnets.is_empty() && (!req.ip_ranges.is_empty() || !req.gateways.is_empty()) {
        return Err(Error::Invalid(
            "every --ip-range and --gateway needs a --subnet that contains it".into(),
        ));
    }
    for range in &req.ip_ranges {
        if !req.subnets.iter().any(|s| s.contains(range)) {
            return Err(IpamError::RangeOutsideSubnet {
                range: *range,
                subnet: req.subnets[0],
            }
            .into());
        }
    }
    for gw in &req.gateways {
        if !req.subnets.iter().any(|s| s.contains(gw)) {
            return Err(IpamError::GatewayOutsideSubnet {
                gateway: *gw,
                subnet: req.subnets[0],
            }
            .into());
        }
    }
    let mut out: Vec<Subnet> = Vec::new();
    for subnet in &req.subnets {
        for other in &out {
            ipam::check_overlap(subnet, [("being created", &other.subnet)])?;
        }
        let range = req.ip_ranges.iter().copied().find(|r| subnet.contains(r));
        let gateway = req.gateways.iter().copied().find(|g| subnet.contains(g));
        out.push(ipam::validate_subnet(*subnet, range, gateway)?);
    }
    Ok(out)
}

/// The lowest free `ethN` in the sandbox.
fn next_interface(sandbox: &Sandbox) -> String {
    (0..)
        .map(|n| format!("eth{n}"))
        .find(|name| !sandbox.endpoints.iter().any(|e| &e.interface == name))
        .expect("an unused name exists")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_names_follow_dockers_rule() {
        for ok in ["localnet", "a", "my_net.1-x", "9lives"] {
            assert!(valid_network_name(ok), "{ok}");
        }
        for bad in ["", "-x", ".x", "a b", "a/b", "ünï"] {
            assert!(!valid_network_name(bad), "{bad}");
        }
    }

    #[test]
    fn ranges_and_gateways_pair_with_their_subnet() {
        let req = NetworkCreate {
            name: "n".into(),
            subnets: vec!["10.1.0.0/16".parse().unwrap()],
            ip_ranges: vec!["10.1.2.0/24".parse().unwrap()],
            gateways: vec!["10.1.0.254".parse().unwrap()],
            ..Default::default()
        };
        let s = pair_ipam(&req).unwrap();
        assert_eq!(s[0].ip_range, Some("10.1.2.0/24".parse().unwrap()));
        assert_eq!(s[0].gateway, Some("10.1.0.254".parse().unwrap()));

        let lone = NetworkCreate {
            gateways: vec!["10.1.0.1".parse().unwrap()],
            ..Default::default()
        };
        assert!(
            pair_ipam(&lone)
                .unwrap_err()
                .to_string()
                .contains("needs a --subnet")
        );
        let outside = NetworkCreate {
            ip_ranges: vec!["10.2.0.0/24".parse().unwrap()],
            ..req.clone()
        };
        assert!(
            pair_ipam(&outside)
                .unwrap_err()
                .to_string()
                .contains("not inside subnet")
        );
        let gw_out = NetworkCreate {
            gateways: vec!["10.9.0.1".parse().unwrap()],
            ..req
        };
        assert!(
            pair_ipam(&gw_out)
                .unwrap_err()
                .to_string()
                .contains("not inside subnet")
        );
    }

    #[test]
    fn networks_are_found_by_name_id_or_unique_prefix() {
        let mut a = defaults::predefined("bridge");
        let mut b = defaults::predefined("host");
        a.id = format!("ab{}", &a.id[2..]);
        b.id = format!("ac{}", &b.id[2..]);
        let nets = [a.clone(), b];
        assert_eq!(find_network(&nets, "bridge").unwrap().id, a.id);
        assert_eq!(find_network(&nets, &a.id).unwrap().name, "bridge");
        assert_eq!(find_network(&nets, "ab").unwrap().name, "bridge");
        assert!(matches!(
            find_network(&nets, "a"),
            Err(Error::AmbiguousNetwork(_))
        ));
        assert!(matches!(
            find_network(&nets, "zzz"),
            Err(Error::NetworkNotFound(_))
        ));
    }
}
