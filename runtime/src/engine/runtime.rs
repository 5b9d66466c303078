//! The OCI level as the engine uses it, in-process: create, start, delete a container
//! from its bundle, exec a process into it. OCI state lives under `<runroot>/runtime`
//! (readable by `rbox-runc --root`).

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use super::Engine;
use super::error::{Error, Result};
use crate::oci;

/// The OCI runtime over this engine's state.
pub fn oci_runtime(engine: &Engine) -> oci::Runtime {
    oci::Runtime::new(engine.runroot.join("runtime"))
}

/// How the container's stdio is given.
pub enum Stdio {
    /// Descriptors for its 0, 1, 2.
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// A new terminal, whose master comes back in [`Created::pty_master`].
    Terminal,
}

/// A created container, its first process (our child) waiting for `start`.
pub struct Created {
    pub pid: Pid,
    pub pty_master: Option<OwnedFd>,
}

/// Turns an OCI error into the engine's: a program that could not be run gets Docker's
/// 127 (not found) or 126 (not executable).
pub fn oci_error(e: oci::Error) -> Error {
    match e {
        oci::Error::Process(message) => match exec_failure_code(&message) {
            Some(code) => Error::Exec {
                message,
                exit_code: code,
            },
            None => Error::Runtime(message),
        },
        e => Error::Runtime(e.to_string()),
    }
}

/// Docker's exit code for a program the OCI level could not run, from its message.
fn exec_failure_code(message: &str) -> Option<u8> {
    let m = message.to_ascii_lowercase();
    if m.contains("not found") || m.contains("no such file") {
        Some(127)
    } else if m.contains("permission denied")
        || m.contains("is a directory")
        || m.contains("exec format")
    {
        Some(126)
    } else {
        None
    }
}

/// Creates the container from its spec; the bundle directory holds its `config.json`.
pub fn create(
    engine: &Engine,
    id: &str,
    bundle: &Path,
    spec: &Spec,
    stdio: Stdio,
) -> Result<Created> {
    let opts = match stdio {
        Stdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => oci::CreateOptions {
            stdio: oci::Stdio {
                stdin: Some(stdin),
                stdout: Some(stdout),
                stderr: Some(stderr),
            },
            ..Default::default()
        },
        Stdio::Terminal => oci::CreateOptions {
            console: Some(oci::Console::Return),
            ..Default::default()
        },
    };
    let created = oci_runtime(engine)
        .create_from_spec(id, bundle, spec.clone(), opts)
        .map_err(oci_error)?;
    Ok(Created {
        pid: Pid::from_raw(created.container.pid()),
        pty_master: created.console,
    })
}

/// Starts the created container's program.
pub fn start(engine: &Engine, id: &str) -> Result<()> {
    oci_runtime(engine)
        .load(id)
        .and_then(|c| c.start())
        .map_err(oci_error)
}

/// Kills whatever is left of the container and removes its cgroup and OCI state;
/// nothing to do when there is none.
pub fn delete(engine: &Engine, id: &str) -> Result<()> {
    match oci_runtime(engine).load(id) {
        Ok(c) => c.delete(true).map_err(oci_error),
        Err(oci::Error::NotFound(_)) => Ok(()),
        Err(e) => Err(oci_error(e)),
    }
}

/// Whether the kernel's OOM killer killed a process of the container: the `oom_kill`
/// count of its memory cgroup (v1 `memory.oom_control`, v2 `memory.events`), read
/// before the cgroup is deleted.
pub fn oom_killed(cgroup_parent: &str, id: &str) -> bool {
    let rel = format!("{}/{id}", cgroup_parent.trim_matches('/'));
    [
        format!("/sys/fs/cgroup/memory/{rel}/memory.oom_control"),
        format!("/sys/fs/cgroup/{rel}/memory.events"),
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .flat_map(|text| {
        text.lines()
            .filter_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
            })
            .collect::<Vec<_>>()
    })
    .any(|n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_failures_map_to_docker_codes() {
        assert_eq!(
            exec_failure_code("exec: \"nosuch\": executable file not found in $PATH"),
            Some(127)
        );
        assert_eq!(
            exec_failure_code("exec /etc/passwd: permission denied"),
            Some(126)
        );
        assert_eq!(exec_failure_code("mount /proc: invalid argument"), None);
    }
}
