//! `host`: the container shares the host's network namespace; nothing is made.

use super::{Driver, DriverError, EndpointContext, NetworkContext, SandboxKind};
use crate::model::Network;

pub struct Host;

impl Driver for Host {
    fn name(&self) -> &'static str {
        "host"
    }

    fn single_instance(&self) -> bool {
        true
    }

    fn sandbox_kind(&self) -> SandboxKind {
        SandboxKind::Host
    }

    fn uses_ipam(&self) -> bool {
        false
    }

    fn validate(&self, _: &mut Network, _: &[Network]) -> Result<(), DriverError> {
        Ok(())
    }

    fn setup_network(&self, _: &NetworkContext) -> Result<(), DriverError> {
        Ok(())
    }

    fn teardown_network(&self, _: &NetworkContext) -> Vec<DriverError> {
        Vec::new()
    }

    fn join(&self, _: &EndpointContext) -> Result<(), DriverError> {
        Ok(())
    }

    fn leave(&self, _: &EndpointContext) -> Vec<DriverError> {
        Vec::new()
    }
}
