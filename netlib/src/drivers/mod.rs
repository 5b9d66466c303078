//! Network drivers. A driver owns the kernel objects of its networks and endpoints; the
//! core (IPAM, state, sandbox files, DNS hook) stays the same for all of them.
//!
//! Adding a driver: a file (or folder) here and one line in [`DRIVERS`].
//!
//! Like netavark's, a driver is a small trait fed by one context struct; teardown keeps
//! going after an error and returns every failure. Like libnetwork's driverapi, networks
//! and endpoints are separate steps (network setup/teardown, endpoint join/leave). Kernel
//! access is offered by the context, not assumed: a driver that delegates to an external
//! program (a CNI plugin) uses only the records and the sandbox's netns path.

use std::path::Path;

use crate::firewall::{Firewall, FirewallError};
use crate::kernel::{Kernel, KernelError};
use crate::model::{Endpoint, Network};
use crate::store::{Locked, StoreError};

pub mod bridge;
pub mod host;
pub mod ipvlan;
pub mod macvlan;
pub mod null;
mod parent;

/// The registered drivers, by name.
static DRIVERS: &[&dyn Driver] = &[
    &bridge::Bridge,
    &host::Host,
    &null::Null,
    &macvlan::Macvlan,
    &ipvlan::Ipvlan,
];

/// The driver called `name`.
pub fn find(name: &str) -> Option<&'static dyn Driver> {
    DRIVERS.iter().copied().find(|d| d.name() == name)
}

/// Names of all drivers, for messages.
pub fn names() -> Vec<&'static str> {
    DRIVERS.iter().map(|d| d.name()).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// Bad input at network creation; nothing was made.
    #[error("{0}")]
    Invalid(String),
    /// The kernel lacks a feature the network needs (it answered "unknown device type").
    #[error(
        "{action}: this kernel has no {feature} (kernel module {module}); load it with `modprobe {module}` where the module is available, or {instead}"
    )]
    MissingKernelFeature {
        action: String,
        feature: &'static str,
        module: &'static str,
        /// What the user can do without it.
        instead: &'static str,
    },
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which network namespace a driver's endpoints live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxKind {
    /// The container's own namespace, pinned at `<runroot>/netns/<id>` (made by the core).
    Private,
    /// The host's namespace: no sandbox of its own.
    Host,
}

/// What a driver is given for network-level work.
pub struct NetworkContext<'a> {
    pub network: &'a Network,
    pub kernel: &'a Kernel,
    pub firewall: &'a Firewall,
    /// netlib's state, locked: where a driver records the host links it made for the
    /// network ([`crate::store::CreatedLinks`]).
    pub state: &'a Locked<'a>,
}

/// What a driver is given to create or remove one endpoint.
pub struct EndpointContext<'a> {
    pub network: &'a Network,
    /// The endpoint record: addresses (from IPAM), MAC, interface names, sandbox path,
    /// and whether it carries the default route.
    pub endpoint: &'a Endpoint,
    pub kernel: &'a Kernel,
}

impl EndpointContext<'_> {
    /// The sandbox's pinned netns (every endpoint of a [`SandboxKind::Private`] driver has one).
    pub fn netns(&self) -> Result<&Path, DriverError> {
        self.endpoint.netns.as_deref().ok_or_else(|| {
            DriverError::Invalid(format!("endpoint {} has no sandbox", self.endpoint.id))
        })
    }

    /// Once the endpoint's link is in the sandbox: its addresses, up, and the default
    /// route when it carries it (`route`: where that leads).
    pub fn configure_in_sandbox(&self, route: parent::DefaultRoute) -> Result<(), DriverError> {
        let (network, ep) = (self.network, self.endpoint);
        let sandbox = self.kernel.sandbox(self.netns()?)?;
        let index = sandbox.index(&ep.interface)?.ok_or_else(|| {
            DriverError::Invalid(format!("{} did not appear in the sandbox", ep.interface))
        })?;
        for addr in &ep.addresses {
            sandbox.add_address(index, *addr)?;
        }
        sandbox.set_up(index)?;
        if !ep.default_route {
            return Ok(());
        }
        for addr in &ep.addresses {
            match route {
                parent::DefaultRoute::Link => {
                    sandbox.add_default_dev_route(index, addr.addr().is_ipv6())?
                }
                parent::DefaultRoute::Gateway => {
                    let gateway = network
                        .ipam
                        .iter()
                        .find(|s| s.subnet.contains(&addr.addr()))
                        .and_then(|s| s.gateway);
                    if let Some(gw) = gateway {
                        sandbox.add_default_route(gw)?;
                    }
                }
            }
        }
        Ok(())
    }
}

pub trait Driver: Send + Sync {
    /// The name given to `network create -d`.
    fn name(&self) -> &'static str;

    /// Drivers of which only the predefined network exists (`host`, `null`).
    fn single_instance(&self) -> bool {
        false
    }

    fn sandbox_kind(&self) -> SandboxKind {
        SandboxKind::Private
    }

    /// Whether the network has subnets and its endpoints get addresses from IPAM.
    fn uses_ipam(&self) -> bool {
        true
    }

    /// Whether an endpoint has a link of its own in the host's namespace (a veth's host
    /// side, which the core names `veth<7 hex>`).
    fn host_side_link(&self) -> bool {
        false
    }

    /// Checks and completes a new network's definition (driver options, link names)
    /// against the `others` that exist. Makes no kernel change.
    fn validate(&self, network: &mut Network, others: &[Network]) -> Result<(), DriverError>;

    /// Called once when the network is created, after [`validate`](Self::validate),
    /// under the state lock: checks the definition against the kernel (links it names,
    /// features it needs) and makes what must exist from the start. On error it leaves
    /// nothing it made. Default: nothing; kernel objects come with the first join.
    fn create_network(&self, _ctx: &NetworkContext) -> Result<(), DriverError> {
        Ok(())
    }

    /// A note for the user about a network just created (`network create` prints it).
    fn create_note(&self, _network: &Network) -> Option<String> {
        None
    }

    /// The MAC address a new endpoint gets, given `--mac-address` (`requested`); `None`
    /// lets the core make one from its IPv4 address (`02:42:<address>`). Called after
    /// [`setup_network`](Self::setup_network). Default: the request.
    fn endpoint_mac(
        &self,
        _ctx: &NetworkContext,
        requested: Option<[u8; 6]>,
    ) -> Result<Option<[u8; 6]>, DriverError> {
        Ok(requested)
    }

    /// Makes the network's kernel objects exist: called (under the state lock) before
    /// each join, so it must be idempotent and quick when everything is there. On error
    /// it leaves nothing it made.
    fn setup_network(&self, ctx: &NetworkContext) -> Result<(), DriverError>;

    /// Removes the network's kernel objects; keeps going after a failure.
    fn teardown_network(&self, ctx: &NetworkContext) -> Vec<DriverError>;

    /// Creates the endpoint in its sandbox: link, MAC, MTU, addresses, default route.
    /// On error it leaves nothing it made.
    fn join(&self, ctx: &EndpointContext) -> Result<(), DriverError>;

    /// Removes the endpoint's kernel objects; keeps going after a failure.
    fn leave(&self, ctx: &EndpointContext) -> Vec<DriverError>;
}
