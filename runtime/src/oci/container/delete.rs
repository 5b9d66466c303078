//! `delete`: take down whatever is left (with `force`, a running container too), remove
//! the cgroup and the state, then run the poststop hooks.

use nix::sys::signal::Signal;

use super::Container;
use crate::oci::state::Status;
use crate::oci::{Result, hooks};

impl Container {
    /// Deletes the container. A running or paused one needs `force` (it is killed).
    /// A failing poststop hook is reported after the deletion is complete.
    pub fn delete(self, force: bool) -> Result<()> {
        let _lock = self.dir.lock()?;
        let status = self.status();
        match status {
            Status::Stopped | Status::Created => {}
            _ if force => {}
            _ => {
                return Err(self.wrong_status(
                    "delete",
                    status,
                    " (stop it first, or force the deletion)",
                ));
            }
        }
        if status != Status::Stopped {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.record.pid),
                Signal::SIGKILL,
            );
        }
        // Without a pid namespace of its own, the init's death leaves its children alive.
        self.record.cgroup.kill_all()?;
        self.record.cgroup.destroy()?;
        let poststop = self
            .spec()
            .ok()
            .and_then(|s| s.hooks().as_ref().and_then(|h| h.poststop().clone()));
        let state = self.hook_state(Status::Stopped);
        self.dir.remove()?;
        if let Some(list) = poststop {
            hooks::run("poststop", &list, &state)?;
        }
        Ok(())
    }
}
