//! `kill`: a signal to the init, or to every process of the container.

use std::os::fd::AsRawFd;

use nix::sys::signal::Signal;

use super::{Container, pidfd_open};
use crate::oci::state::{Status, alive};
use crate::oci::{Error, Result};

impl Container {
    /// Sends `signal` to the init (or, with `all`, to every process in its cgroup).
    pub fn kill(&self, signal: Signal, all: bool) -> Result<()> {
        let status = self.status();
        if status == Status::Stopped {
            return Err(self.wrong_status("kill", status, ""));
        }
        if all {
            self.record.cgroup.signal_all(signal)?;
            if signal == Signal::SIGKILL && status == Status::Paused {
                // Frozen processes die only once thawed.
                self.record.cgroup.set_frozen(false)?;
            }
            return Ok(());
        }
        // Through a pidfd checked against the init's start time: a pid reused since the
        // container stopped never gets the signal.
        let pidfd =
            pidfd_open(self.record.pid).map_err(|e| Error::io("open the init process", e))?;
        if !alive(self.record.pid, self.record.pid_start) {
            return Err(self.wrong_status("kill", Status::Stopped, ""));
        }
        // SAFETY: pidfd_send_signal(2) with our pidfd, a signal number and no siginfo.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.as_raw_fd(),
                signal as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        nix::Error::result(rc)
            .map(drop)
            .map_err(|e| Error::io(format!("send {signal} to the init"), e))
    }
}
