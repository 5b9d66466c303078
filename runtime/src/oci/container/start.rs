//! `start`: release the init waiting on the exec fifo, then run the poststart hooks.

use std::io::Read;
use std::os::fd::AsFd;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::{Container, pidfd_open};
use crate::oci::state::Status;
use crate::oci::{Error, Result, hooks};

impl Container {
    /// Starts the container's program. Fails unless the container is `created`.
    pub fn start(&self) -> Result<()> {
        let _lock = self.dir.lock()?;
        let status = self.status();
        if status != Status::Created {
            return Err(self.wrong_status("start", status, ""));
        }
        let pidfd =
            pidfd_open(self.record.pid).map_err(|e| Error::io("open the init process", e))?;
        let path = self.dir.fifo_path();
        let mut fifo = std::fs::File::from(
            nix::fcntl::open(
                &path,
                nix::fcntl::OFlag::O_RDONLY
                    | nix::fcntl::OFlag::O_NONBLOCK
                    | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?,
        );
        // The init writes one byte once our open releases it; if it dies instead, its
        // pidfd becomes readable.
        loop {
            let mut fds = [
                PollFd::new(fifo.as_fd(), PollFlags::POLLIN),
                PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(Error::io("wait for the init", e)),
                Ok(_) => {}
            }
            let fifo_ready = fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN));
            let died = fds[1].revents().is_some_and(|r| !r.is_empty());
            if fifo_ready {
                break;
            }
            if died {
                return Err(Error::SetupDied("the init exited before start".into()));
            }
        }
        let mut byte = [0u8; 1];
        match fifo.read(&mut byte) {
            Ok(1) => {}
            _ => return Err(Error::SetupDied("the init exited before start".into())),
        }
        std::fs::remove_file(&path)
            .map_err(|e| Error::io(format!("remove {}", path.display()), e))?;
        if let Some(list) = self
            .spec()?
            .hooks()
            .as_ref()
            .and_then(|h| h.poststart().clone())
        {
            // As runc: a failed poststart hook stops the container it was meant for.
            if let Err(e) = hooks::run("poststart", &list, &self.hook_state(Status::Running)) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(self.record.pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                return Err(e.into());
            }
        }
        Ok(())
    }
}
