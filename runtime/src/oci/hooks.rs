//! Lifecycle hooks: each is a program given the container's state on stdin; a hook that
//! fails or outlives its timeout fails the operation (except poststart and poststop,
//! whose failures are only reported, as the spec says).

use std::io::Write;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use oci_spec::runtime::Hook;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{kind} hook {path} could not run: {source}")]
    Spawn {
        kind: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{kind} hook {path} failed ({status}){stderr}")]
    Failed {
        kind: &'static str,
        path: PathBuf,
        status: String,
        stderr: String,
    },
    #[error("{kind} hook {path} did not finish within {secs} s")]
    Timeout {
        kind: &'static str,
        path: PathBuf,
        secs: i64,
    },
}

/// Runs `hooks` one after the other with `state` (JSON) on their stdin.
pub fn run(kind: &'static str, hooks: &[Hook], state: &[u8]) -> Result<(), HookError> {
    hooks.iter().try_for_each(|h| run_one(kind, h, state))
}

fn run_one(kind: &'static str, hook: &Hook, state: &[u8]) -> Result<(), HookError> {
    let path = hook.path().clone();
    let mut cmd = Command::new(&path);
    if let Some((first, rest)) = hook.args().as_ref().and_then(|a| a.split_first()) {
        cmd.arg0(first).args(rest);
    }
    cmd.env_clear();
    for e in hook.env().iter().flatten() {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let spawn_err = |source| HookError::Spawn {
        kind,
        path: path.clone(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its input is not an error.
        let _ = stdin.write_all(state);
    }
    if let Some(secs) = hook.timeout().filter(|t| *t > 0)
        && !wait_exit(child.id() as i32, Duration::from_secs(secs as u64))
    {
        let _ = child.kill();
        let _ = child.wait();
        return Err(HookError::Timeout { kind, path, secs });
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let text = text.trim();
    Err(HookError::Failed {
        kind,
        path,
        status: out.status.to_string(),
        stderr: if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        },
    })
}

/// Waits up to `limit` for `pid` (a child) to exit, without reaping it.
fn wait_exit(pid: i32, limit: Duration) -> bool {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return true; // let the blocking wait decide
    }
    // SAFETY: `fd` was just returned to us by pidfd_open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut fds = [nix::poll::PollFd::new(
        fd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let ms = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX);
    let timeout = nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX);
    matches!(nix::poll::poll(&mut fds, timeout), Ok(n) if n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::HookBuilder;

    fn hook(script: &str, timeout: Option<i64>) -> Hook {
        let mut b = HookBuilder::default()
            .path("/bin/sh")
            .args(vec!["sh".to_string(), "-c".into(), script.into()])
            .env(vec!["HOOKVAR=1".to_string()]);
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.build().unwrap()
    }

    #[test]
    fn hooks_get_state_and_env_and_fail_loudly() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let h = hook(
            &format!(
                "cat > {}; echo \"$HOOKVAR\" >> {}",
                out.display(),
                out.display()
            ),
            None,
        );
        run("prestart", &[h], b"{\"id\":\"x\"}").unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "{\"id\":\"x\"}1\n");

        let failing = hook("echo oops >&2; exit 3", None);
        let e = run("createRuntime", &[failing], b"{}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("createRuntime hook /bin/sh failed"), "{e}");
        assert!(e.contains("oops"), "{e}");

        let slow = hook("sleep 5", Some(1));
        let start = std::time::Instant::now();
        let e = run("poststart", &[slow], b"{}").unwrap_err();
        assert!(matches!(e, HookError::Timeout { secs: 1, .. }));
        assert!(start.elapsed() < Duration::from_secs(4));
    }
}
