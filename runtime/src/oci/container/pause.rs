//! `pause` and `resume`: the cgroup freezer.

use super::Container;
use crate::oci::Result;
use crate::oci::state::Status;

impl Container {
    /// Freezes every process of a running container.
    pub fn pause(&self) -> Result<()> {
        let _lock = self.dir.lock()?;
        let status = self.status();
        if status != Status::Running {
            return Err(self.wrong_status("pause", status, ""));
        }
        Ok(self.record.cgroup.set_frozen(true)?)
    }

    /// Thaws a paused container.
    pub fn resume(&self) -> Result<()> {
        let _lock = self.dir.lock()?;
        let status = self.status();
        if status != Status::Paused {
            return Err(self.wrong_status("resume", status, ""));
        }
        Ok(self.record.cgroup.set_frozen(false)?)
    }
}
