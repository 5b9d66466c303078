//! The last steps of every container process (the init after `start`, and each `exec`):
//! limits, identity, capabilities, no_new_privs, seccomp, working directory, descriptors,
//! signals, then execve. Runs in the child, after the namespaces are joined.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};

use super::config::{CapSets, ProcessConfig};
use super::init::{Ctx, SetupError};
use super::pathres::open_in_root;
use super::seccomp::{self, Program};

/// The process's executable, found before anything irreversible happens (so that a
/// wrong command fails `create`, as with runc, with runc's wording that clients match).
pub fn find_executable(p: &ProcessConfig) -> Result<CString, SetupError> {
    let arg0 = p.args[0].to_string_lossy().into_owned();
    let check = |path: &Path| -> Result<(), String> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => Err(format!("exec: {arg0:?}: is a directory")),
            Ok(m) => {
                use std::os::unix::fs::PermissionsExt;
                if m.permissions().mode() & 0o111 == 0 {
                    Err(format!("exec: {arg0:?}: permission denied"))
                } else {
                    Ok(())
                }
            }
            Err(e) => Err(format!(
                "exec: {arg0:?}: stat {}: {}",
                path.display(),
                errno_text(&e)
            )),
        }
    };
    if arg0.contains('/') {
        let path = if Path::new(&arg0).is_absolute() {
            PathBuf::from(&arg0)
        } else {
            p.cwd.join(&arg0)
        };
        check(&path).map_err(SetupError::new)?;
        return Ok(p.args[0].clone());
    }
    let search = p
        .env_var("PATH")
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in search.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let dir = if Path::new(dir).is_absolute() {
            PathBuf::from(dir)
        } else {
            p.cwd.join(dir)
        };
        let candidate = dir.join(&arg0);
        if check(&candidate).is_ok() {
            return CString::new(candidate.into_os_string().into_encoded_bytes())
                .map_err(|_| SetupError::new("executable path has a NUL byte"));
        }
    }
    Err(SetupError::new(format!(
        "exec: {arg0:?}: executable file not found in $PATH"
    )))
}

/// "no such file or directory" and friends, as Go spells them (clients match them).
fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::Error::from_raw(code).desc().to_lowercase(),
        None => e.to_string(),
    }
}

/// `HOME` from the container's /etc/passwd when the environment lacks it (as runc).
pub fn with_home(p: &ProcessConfig) -> Vec<CString> {
    let mut env = p.env.clone();
    if p.env_var("HOME").is_none() {
        let home = std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 6 && f[2].parse() == Ok(p.uid)).then(|| f[5].to_string())
                })
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "/".into());
        if let Ok(c) = CString::new(format!("HOME={home}")) {
            env.push(c);
        }
    }
    env
}

/// Everything the final steps need, prepared before the child is forked.
pub struct Finish<'a> {
    pub process: &'a ProcessConfig,
    pub executable: CString,
    pub env: Vec<CString>,
    pub seccomp: Option<&'a Program>,
    /// Descriptors 3.. that the process keeps.
    pub preserve_fds: u32,
    /// In a user namespace whose gid map forbids setgroups.
    pub skip_setgroups: bool,
    /// The exec stub to execute the program through, when the runtime is not sealed.
    pub exec_stub: Option<std::os::fd::BorrowedFd<'a>>,
}

/// Applies the process's settings and executes it. Returns only on failure.
pub fn finish_and_exec(f: &Finish<'_>) -> Result<Infallible, SetupError> {
    let p = f.process;
    for r in &p.rlimits {
        nix::sys::resource::setrlimit(to_resource(r.resource), r.soft, r.hard).map_err(|e| {
            let hint = if e == nix::Error::EPERM {
                " (raising a hard limit needs CAP_SYS_RESOURCE)"
            } else {
                ""
            };
            SetupError::new(format!(
                "set {} to {}/{}: {e}{hint}",
                r.name, r.soft, r.hard
            ))
        })?;
    }
    if let Some((class, prio)) = p.io_priority {
        // SAFETY: ioprio_set(2) with plain integer arguments.
        let rc = unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, (class << 13) | prio) };
        nix::Error::result(rc).ctx(|| "set the I/O priority".to_string())?;
    }
    set_lsm_labels(p)?;
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we have it.
    if let Some(prog) = f.seccomp.filter(|_| !p.no_new_privileges) {
        seccomp::load(prog).map_err(|e| SetupError::new(e.to_string()))?;
    }
    let cwd_ok_as_root = chdir_in_root(&p.cwd).is_ok();
    // Dropping from the bounding set needs CAP_SETPCAP, gone once we change uid.
    if let Some(caps) = &p.capabilities {
        drop_bounding(caps)?;
    }
    set_identity(p, f.skip_setgroups)?;
    if let Some(caps) = &p.capabilities {
        set_capabilities(caps)?;
    }
    if !cwd_ok_as_root {
        chdir_in_root(&p.cwd)?;
    }
    check_cwd_inside()?;
    if p.no_new_privileges {
        // SAFETY: prctl(2) with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        nix::Error::result(rc).ctx(|| "set no_new_privs".to_string())?;
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
        p.umask.unwrap_or(0o022) as libc::mode_t,
    ));
    close_other_fds(f.preserve_fds)?;
    reset_signals();
    if let Some(prog) = f.seccomp.filter(|_| p.no_new_privileges) {
        seccomp::load(prog).map_err(|e| SetupError::new(e.to_string()))?;
    }
    let err = match f.exec_stub {
        Some(stub) => super::exe::exec_through_stub(stub, &f.executable, &p.args, &f.env),
        None => nix::unistd::execve(&f.executable, &p.args, &f.env).unwrap_err(),
    };
    let arg0 = p.args[0].to_string_lossy();
    Err(SetupError::new(format!(
        "exec: {arg0:?}: {}",
        err.desc().to_lowercase()
    )))
}

fn to_resource(r: libc::__rlimit_resource_t) -> nix::sys::resource::Resource {
    use nix::sys::resource::Resource as R;
    match r {
        libc::RLIMIT_CPU => R::RLIMIT_CPU,
        libc::RLIMIT_FSIZE => R::RLIMIT_FSIZE,
        libc::RLIMIT_DATA => R::RLIMIT_DATA,
        libc::RLIMIT_STACK => R::RLIMIT_STACK,
        libc::RLIMIT_CORE => R::RLIMIT_CORE,
        libc::RLIMIT_RSS => R::RLIMIT_RSS,
        libc::RLIMIT_NPROC => R::RLIMIT_NPROC,
        libc::RLIMIT_NOFILE => R::RLIMIT_NOFILE,
        libc::RLIMIT_MEMLOCK => R::RLIMIT_MEMLOCK,
        libc::RLIMIT_AS => R::RLIMIT_AS,
        libc::RLIMIT_LOCKS => R::RLIMIT_LOCKS,
        libc::RLIMIT_SIGPENDING => R::RLIMIT_SIGPENDING,
        libc::RLIMIT_MSGQUEUE => R::RLIMIT_MSGQUEUE,
        libc::RLIMIT_NICE => R::RLIMIT_NICE,
        libc::RLIMIT_RTPRIO => R::RLIMIT_RTPRIO,
        _ => R::RLIMIT_RTTIME,
    }
}

/// AppArmor profile and SELinux label, written where the kernel applies them at execve.
/// A label for a security module the host does not run is an error for AppArmor (as in
/// runc) and ignored for SELinux (as in runc).
fn set_lsm_labels(p: &ProcessConfig) -> Result<(), SetupError> {
    let lsms = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
    let has = |name: &str| lsms.split(',').any(|l| l.trim() == name);
    if let Some(profile) = &p.apparmor_profile {
        if !has("apparmor") {
            return Err(SetupError::new(format!(
                "process.apparmorProfile {profile:?} is set but AppArmor is not enabled on this host"
            )));
        }
        std::fs::write(
            "/proc/thread-self/attr/apparmor/exec",
            format!("exec {profile}"),
        )
        .ctx(|| format!("set AppArmor profile {profile}"))?;
    }
    if let Some(label) = &p.selinux_label
        && has("selinux")
    {
        std::fs::write("/proc/thread-self/attr/exec", label)
            .ctx(|| format!("set SELinux label {label}"))?;
    }
    Ok(())
}

/// Changes directory to `cwd`, resolved inside the current root: never through a magic
/// link or a descriptor leaked from the runtime (the CVE-2024-21626 class).
fn chdir_in_root(cwd: &Path) -> Result<(), SetupError> {
    let root = nix::fcntl::open(
        "/",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| "open /".to_string())?;
    let dir = open_in_root(root.as_fd(), cwd).ctx(|| {
        format!(
            "chdir to cwd ({:?} set in config.json)",
            cwd.display().to_string()
        )
    })?;
    nix::unistd::fchdir(&dir).ctx(|| {
        format!(
            "chdir to cwd ({:?} set in config.json)",
            cwd.display().to_string()
        )
    })
}

fn check_cwd_inside() -> Result<(), SetupError> {
    // getcwd(2) says "(unreachable)" for a directory outside our root.
    let cwd = nix::unistd::getcwd().ctx(|| "read the working directory".to_string())?;
    if !cwd.is_absolute() {
        return Err(SetupError::new(format!(
            "the working directory {} is outside the container",
            cwd.display()
        )));
    }
    Ok(())
}

fn set_identity(p: &ProcessConfig, skip_setgroups: bool) -> Result<(), SetupError> {
    if !skip_setgroups {
        let groups: Vec<Gid> = p
            .additional_gids
            .iter()
            .map(|g| Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&groups).ctx(|| "set additional groups".to_string())?;
    }
    // Keep the permitted set across the uid change; the configured sets follow.
    // SAFETY: prctl(2) with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    nix::Error::result(rc).ctx(|| "keep capabilities".to_string())?;
    let gid = Gid::from_raw(p.gid);
    nix::unistd::setresgid(gid, gid, gid).ctx(|| format!("set gid {}", p.gid))?;
    let uid = Uid::from_raw(p.uid);
    nix::unistd::setresuid(uid, uid, uid).ctx(|| format!("set uid {}", p.uid))?;
    // SAFETY: as above.
    let rc = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    nix::Error::result(rc).ctx(|| "reset keep-capabilities".to_string())?;
    Ok(())
}

/// The highest capability the running kernel knows.
fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

fn caps_err(what: &'static str) -> impl Fn(caps::errors::CapsError) -> SetupError {
    move |e| SetupError::new(format!("set the {what} capabilities: {e}"))
}

fn drop_bounding(c: &CapSets) -> Result<(), SetupError> {
    let last = last_cap();
    for cap in caps::all() {
        if cap.index() <= last && !c.bounding.contains(&cap) {
            caps::drop(None, caps::CapSet::Bounding, cap).map_err(caps_err("bounding"))?;
        }
    }
    Ok(())
}

fn set_capabilities(c: &CapSets) -> Result<(), SetupError> {
    use caps::CapSet;
    let last = last_cap();
    let err = caps_err;
    // The three sets in one capset(2): the kernel checks them together.
    let mask = |set: &caps::CapsHashSet| -> u64 {
        set.iter()
            .filter(|cap| cap.index() <= last)
            .fold(0, |m, cap| m | cap.bitmask())
    };
    let (eff, perm, inh) = (mask(&c.effective), mask(&c.permitted), mask(&c.inheritable));
    if eff & !perm != 0 {
        return Err(SetupError::new(
            "process.capabilities: effective capabilities must also be permitted",
        ));
    }
    let header = libc_cap::Header {
        version: libc_cap::VERSION_3,
        pid: 0,
    };
    let data = [
        libc_cap::Data {
            effective: eff as u32,
            permitted: perm as u32,
            inheritable: inh as u32,
        },
        libc_cap::Data {
            effective: (eff >> 32) as u32,
            permitted: (perm >> 32) as u32,
            inheritable: (inh >> 32) as u32,
        },
    ];
    // SAFETY: capset(2) reads the header and two data structs, all alive for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    nix::Error::result(rc).ctx(|| "set the process's capabilities".to_string())?;
    caps::clear(None, CapSet::Ambient).map_err(err("ambient"))?;
    // The kernel takes an ambient capability only if it is permitted and inheritable;
    // runc skips the others (its own example config asks for them without inheritable).
    for cap in &c.ambient {
        if cap.index() <= last && c.permitted.contains(cap) && c.inheritable.contains(cap) {
            caps::raise(None, CapSet::Ambient, *cap).map_err(err("ambient"))?;
        }
    }
    Ok(())
}

/// capset(2)'s structures (linux/capability.h), version 3: 64 bits in two halves.
mod libc_cap {
    pub const VERSION_3: u32 = 0x2008_0522;
    #[repr(C)]
    pub struct Header {
        pub version: u32,
        pub pid: i32,
    }
    #[repr(C)]
    pub struct Data {
        pub effective: u32,
        pub permitted: u32,
        pub inheritable: u32,
    }
}

/// Marks every descriptor from 3 + `preserve` on close-on-exec, and clears the flag on
/// the preserved ones: nothing of the runtime reaches the container.
pub fn close_other_fds(preserve: u32) -> Result<(), SetupError> {
    let first = 3 + preserve;
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets flags on descriptors.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    nix::Error::result(rc).ctx(|| "mark descriptors close-on-exec".to_string())?;
    for fd in 3..first {
        // SAFETY: fcntl(2) F_SETFD on a descriptor number the caller asked us to keep.
        let rc = unsafe { libc::fcntl(fd as i32, libc::F_SETFD, 0) };
        nix::Error::result(rc).ctx(|| format!("keep descriptor {fd} (--preserve-fds)"))?;
    }
    Ok(())
}

/// Default dispositions and an empty mask: the runtime ignores SIGPIPE (Rust does), and
/// an ignored signal would stay ignored in the container's program.
pub fn reset_signals() {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set; sigprocmask and signal take valid arguments.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigprocmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut());
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(args: &[&str], env: &[&str]) -> ProcessConfig {
        let v =
            serde_json::json!({"args": args, "env": env, "cwd": "/", "user": {"uid": 0, "gid": 0}});
        let p: oci_spec::runtime::Process = serde_json::from_value(v).unwrap();
        ProcessConfig::new(&p).unwrap()
    }

    #[test]
    fn finds_executables_like_runc_reports_them() {
        let p = process(&["sh"], &["PATH=/nonexistent:/bin"]);
        assert_eq!(find_executable(&p).unwrap().to_str().unwrap(), "/bin/sh");
        let missing = process(&["no-such-cmd"], &["PATH=/bin"]);
        assert_eq!(
            find_executable(&missing).unwrap_err().0,
            "exec: \"no-such-cmd\": executable file not found in $PATH"
        );
        let abs = process(&["/no/such"], &[]);
        assert_eq!(
            find_executable(&abs).unwrap_err().0,
            "exec: \"/no/such\": stat /no/such: no such file or directory"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data");
        std::fs::write(&file, "").unwrap();
        let not_exec = process(&[file.to_str().unwrap()], &[]);
        assert!(
            find_executable(&not_exec)
                .unwrap_err()
                .0
                .contains("permission denied")
        );
    }

    #[test]
    fn home_comes_from_passwd_unless_set() {
        let p = process(&["sh"], &["A=1"]);
        let env = with_home(&p);
        assert!(env.iter().any(|e| e.to_str().unwrap().starts_with("HOME=")));
        let p = process(&["sh"], &["HOME=/x"]);
        assert_eq!(with_home(&p).len(), 1);
    }
}
