//! `null` (the `none` network): a sandbox of its own with only `lo`, which the core
//! makes with every private sandbox; the endpoint itself has no link.

use super::{Driver, DriverError, EndpointContext, NetworkContext};
use crate::model::Network;

pub struct Null;

impl Driver for Null {
    fn name(&self) -> &'static str {
        "null"
    }

    fn single_instance(&self) -> bool {
        true
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
