//! From `config.json` to a checked plan. Everything the container setup needs is read,
//! validated and translated here, in the caller, before anything is created: a bad or
//! hostile config fails with one sentence and leaves nothing behind.

use std::collections::HashSet;
use std::ffi::CString;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use oci_spec::runtime::{
    LinuxCapabilities, LinuxDeviceType, LinuxIdMapping, LinuxNamespaceType, LinuxPersonalityDomain,
    PosixRlimitType, Process, Spec,
};

use super::mounts::{self, MountError, MountPlan, clean_container_path};

/// A config that cannot be run, in one sentence naming the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid OCI runtime config: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config.json: {0}")]
    Invalid(String),
    #[error("config.json: {field} is not supported by rbox-runc")]
    Unsupported { field: &'static str },
    #[error("config.json: {0}")]
    Mount(#[from] MountError),
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

/// The namespaces of the container: those to create and those to join by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespaces {
    pub new: CloneFlags,
    pub join: Vec<(CloneFlags, PathBuf)>,
}

impl Namespaces {
    /// Whether the container has its own namespace of this kind (new or joined).
    pub fn has(&self, flag: CloneFlags) -> bool {
        self.new.contains(flag) || self.join.iter().any(|(f, _)| *f == flag)
    }
}

/// A device node to create in the container's /dev.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub path: PathBuf,
    /// `S_IFCHR`, `S_IFBLK` or `S_IFIFO`.
    pub kind: nix::sys::stat::SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Capability sets to give the process (`None` in [`ProcessConfig`]: leave them alone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: caps::CapsHashSet,
    pub effective: caps::CapsHashSet,
    pub inheritable: caps::CapsHashSet,
    pub permitted: caps::CapsHashSet,
    pub ambient: caps::CapsHashSet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: libc::__rlimit_resource_t,
    pub name: PosixRlimitType,
    pub soft: u64,
    pub hard: u64,
}

/// The process to run: the container's init, or one `exec`'d into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessConfig {
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
    pub rlimits: Vec<Rlimit>,
    pub capabilities: Option<CapSets>,
    pub no_new_privileges: bool,
    pub terminal: bool,
    /// (rows, columns)
    pub console_size: Option<(u16, u16)>,
    pub apparmor_profile: Option<String>,
    pub selinux_label: Option<String>,
    /// (class, priority) for ioprio_set(2).
    pub io_priority: Option<(u32, u32)>,
    pub oom_score_adj: Option<i32>,
}

/// A validated container configuration.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    pub spec: Spec,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub root_readonly: bool,
    pub namespaces: Namespaces,
    pub uid_maps: Vec<LinuxIdMapping>,
    pub gid_maps: Vec<LinuxIdMapping>,
    pub mounts: Vec<MountPlan>,
    pub rootfs_propagation: Option<MsFlags>,
    pub masked_paths: Vec<PathBuf>,
    pub readonly_paths: Vec<PathBuf>,
    pub devices: Vec<Device>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub sysctls: Vec<(String, String)>,
    pub process: ProcessConfig,
    pub cgroups_path: Option<String>,
    /// personality(2) persona.
    pub personality: Option<libc::c_ulong>,
    /// (clock name as in /proc/PID/timens_offsets, seconds, nanoseconds)
    pub time_offsets: Vec<(String, i64, u32)>,
}

/// Checks a container id: runc's rule, minus names starting with a dot.
pub fn validate_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'))
}

/// Reads `<bundle>/config.json`.
pub fn load_spec(bundle: &Path) -> Result<Spec, ConfigError> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    parse_spec(&text, &path)
}

/// Parses a runtime spec (for error messages, `path` names where it came from).
pub fn parse_spec(text: &[u8], path: &Path) -> Result<Spec, ConfigError> {
    serde_json::from_slice(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Parses a process spec (`exec --process FILE`).
pub fn parse_process(text: &[u8], path: &Path) -> Result<Process, ConfigError> {
    serde_json::from_slice(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

impl ContainerConfig {
    /// Validates `spec` for a container whose bundle is `bundle` (absolute).
    pub fn new(spec: Spec, bundle: &Path) -> Result<ContainerConfig, ConfigError> {
        let major = spec.version().split('.').next().unwrap_or("");
        if major != "1" {
            return Err(invalid(format!(
                "ociVersion {:?} is not supported: rbox-runc runs 1.x configs",
                spec.version()
            )));
        }
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| invalid("root is missing: set root.path to the root file system"))?;
        let rootfs = if root.path().is_absolute() {
            root.path().clone()
        } else {
            bundle.join(root.path())
        };
        let rootfs = rootfs.canonicalize().map_err(|e| {
            invalid(format!(
                "root.path {} cannot be used: {e}",
                rootfs.display()
            ))
        })?;
        if !rootfs.is_dir() {
            return Err(invalid(format!(
                "root.path {} is not a directory",
                rootfs.display()
            )));
        }
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| invalid("process is missing: say what to run in process.args"))?;
        let process = ProcessConfig::new(process)?;

        let linux = spec
            .linux()
            .as_ref()
            .ok_or_else(|| invalid("linux is missing: rbox-runc runs Linux containers"))?;
        let namespaces = namespaces(linux.namespaces().as_deref().unwrap_or(&[]))?;
        let uid_maps = linux.uid_mappings().clone().unwrap_or_default();
        let gid_maps = linux.gid_mappings().clone().unwrap_or_default();
        check_id_maps(&namespaces, &uid_maps, &gid_maps)?;

        unsupported(linux.intel_rdt().is_some(), "linux.intelRdt")?;
        unsupported(linux.memory_policy().is_some(), "linux.memoryPolicy")?;
        unsupported(
            linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()),
            "linux.netDevices",
        )?;
        unsupported(
            spec.mounts()
                .iter()
                .flatten()
                .any(|m| m.uid_mappings().is_some()),
            "mounts[].uidMappings",
        )?;

        let mounts = spec
            .mounts()
            .iter()
            .flatten()
            .map(mounts::plan)
            .collect::<Result<Vec<_>, _>>()?;
        let rootfs_propagation = match linux.rootfs_propagation().as_deref() {
            None | Some("") => None,
            Some(p) => Some(mounts::propagation(p).ok_or_else(|| {
                invalid(format!(
                    "linux.rootfsPropagation {p:?} is not a propagation mode"
                ))
            })?),
        };
        let paths = |list: &Option<Vec<String>>, field: &str| {
            list.iter()
                .flatten()
                .map(|p| {
                    let path = Path::new(p);
                    if !path.is_absolute() {
                        return Err(invalid(format!("{field} entry {p:?} is not absolute")));
                    }
                    Ok(clean_container_path(path))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let masked_paths = paths(linux.masked_paths(), "linux.maskedPaths")?;
        let readonly_paths = paths(linux.readonly_paths(), "linux.readonlyPaths")?;
        let devices = devices(linux.devices().as_deref().unwrap_or(&[]))?;

        let hostname = spec.hostname().clone().filter(|h| !h.is_empty());
        let domainname = spec.domainname().clone().filter(|h| !h.is_empty());
        for (name, value) in [("hostname", &hostname), ("domainname", &domainname)] {
            if let Some(v) = value {
                if !namespaces.has(CloneFlags::CLONE_NEWUTS) {
                    return Err(invalid(format!(
                        "{name} needs its own UTS namespace: add {{\"type\": \"uts\"}} to linux.namespaces"
                    )));
                }
                if v.len() > 64 || v.contains('\0') {
                    return Err(invalid(format!("{name} {v:?} is not a valid name")));
                }
            }
        }
        let mut sysctls: Vec<(String, String)> = linux
            .sysctl()
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        sysctls.sort();
        for (key, value) in &sysctls {
            check_sysctl(key, value, &namespaces)?;
        }

        let cgroups_path = match linux.cgroups_path() {
            Some(p) => {
                let s = p
                    .to_str()
                    .ok_or_else(|| invalid("linux.cgroupsPath is not UTF-8"))?;
                if p.components().any(|c| c == std::path::Component::ParentDir) {
                    return Err(invalid(format!("linux.cgroupsPath {s:?} contains \"..\"")));
                }
                (!s.is_empty()).then(|| s.to_string())
            }
            None => None,
        };
        let personality = match linux.personality() {
            None => None,
            Some(p) => {
                unsupported(
                    p.flags().as_ref().is_some_and(|f| !f.is_empty()),
                    "linux.personality.flags",
                )?;
                Some(match p.domain() {
                    LinuxPersonalityDomain::PerLinux => 0x0000,
                    LinuxPersonalityDomain::PerLinux32 => 0x0008,
                })
            }
        };
        let mut time_offsets = Vec::new();
        if let Some(offsets) = linux.time_offsets() {
            if !namespaces
                .new
                .contains(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
            {
                return Err(invalid(
                    "linux.timeOffsets needs a new time namespace in linux.namespaces",
                ));
            }
            for (clock, off) in offsets {
                if !matches!(clock.as_str(), "monotonic" | "boottime") {
                    return Err(invalid(format!(
                        "linux.timeOffsets clock {clock:?} must be monotonic or boottime"
                    )));
                }
                time_offsets.push((
                    clock.clone(),
                    off.secs().unwrap_or(0),
                    off.nanosecs().unwrap_or(0),
                ));
            }
        }
        if let Some(seccomp) = linux.seccomp() {
            super::seccomp::check(seccomp).map_err(|e| invalid(e.to_string()))?;
        }
        if let Some(res) = linux.resources() {
            super::cgroups::check_resources(res).map_err(|e| invalid(e.to_string()))?;
        }
        for hook in hooks_of(&spec) {
            if !hook.path().is_absolute() {
                return Err(invalid(format!(
                    "hook path {} is not absolute",
                    hook.path().display()
                )));
            }
        }

        Ok(ContainerConfig {
            bundle: bundle.to_path_buf(),
            rootfs,
            root_readonly: root.readonly().unwrap_or(false),
            namespaces,
            uid_maps,
            gid_maps,
            mounts,
            rootfs_propagation,
            masked_paths,
            readonly_paths,
            devices,
            hostname,
            domainname,
            sysctls,
            process,
            cgroups_path,
            personality,
            time_offsets,
            spec,
        })
    }

    /// Whether the container gets a user namespace of its own (new or joined).
    pub fn user_ns(&self) -> bool {
        self.namespaces.has(CloneFlags::CLONE_NEWUSER)
    }
}

fn hooks_of(spec: &Spec) -> impl Iterator<Item = &oci_spec::runtime::Hook> {
    let hooks = spec.hooks().as_ref();
    [
        hooks.and_then(|h| h.prestart().as_ref()),
        hooks.and_then(|h| h.create_runtime().as_ref()),
        hooks.and_then(|h| h.create_container().as_ref()),
        hooks.and_then(|h| h.start_container().as_ref()),
        hooks.and_then(|h| h.poststart().as_ref()),
        hooks.and_then(|h| h.poststop().as_ref()),
    ]
    .into_iter()
    .flatten()
    .flatten()
}

fn unsupported(present: bool, field: &'static str) -> Result<(), ConfigError> {
    if present {
        Err(ConfigError::Unsupported { field })
    } else {
        Ok(())
    }
}

/// `CLONE_NEW*` flag of a namespace type.
pub fn ns_flag(typ: LinuxNamespaceType) -> CloneFlags {
    CloneFlags::from_bits_retain(typ as libc::c_int)
}

/// The name of a namespace in /proc/PID/ns.
pub fn ns_proc_name(flag: CloneFlags) -> &'static str {
    match flag {
        f if f == CloneFlags::CLONE_NEWUSER => "user",
        f if f == CloneFlags::CLONE_NEWNS => "mnt",
        f if f == CloneFlags::CLONE_NEWPID => "pid",
        f if f == CloneFlags::CLONE_NEWNET => "net",
        f if f == CloneFlags::CLONE_NEWIPC => "ipc",
        f if f == CloneFlags::CLONE_NEWUTS => "uts",
        f if f == CloneFlags::CLONE_NEWCGROUP => "cgroup",
        _ => "time",
    }
}

fn namespaces(list: &[oci_spec::runtime::LinuxNamespace]) -> Result<Namespaces, ConfigError> {
    let mut ns = Namespaces {
        new: CloneFlags::empty(),
        join: Vec::new(),
    };
    let mut seen = HashSet::new();
    for entry in list {
        let flag = ns_flag(entry.typ());
        if !seen.insert(flag.bits()) {
            return Err(invalid(format!(
                "linux.namespaces lists the {} namespace twice",
                ns_proc_name(flag)
            )));
        }
        match entry.path() {
            Some(p) if !p.as_os_str().is_empty() => {
                if !p.is_absolute() {
                    return Err(invalid(format!(
                        "the path of the {} namespace, {}, is not absolute",
                        ns_proc_name(flag),
                        p.display()
                    )));
                }
                ns.join.push((flag, p.clone()));
            }
            _ => ns.new |= flag,
        }
    }
    // Joins happen in this order: the user namespace first (it decides what the others
    // may do), the mount namespace last (it changes what paths mean).
    ns.join.sort_by_key(|(f, _)| match *f {
        f if f == CloneFlags::CLONE_NEWUSER => 0,
        f if f == CloneFlags::CLONE_NEWNS => 2,
        _ => 1,
    });
    Ok(ns)
}

fn check_id_maps(
    ns: &Namespaces,
    uids: &[LinuxIdMapping],
    gids: &[LinuxIdMapping],
) -> Result<(), ConfigError> {
    let new_user = ns.new.contains(CloneFlags::CLONE_NEWUSER);
    if new_user && (uids.is_empty() || gids.is_empty()) {
        return Err(invalid(
            "a new user namespace needs linux.uidMappings and linux.gidMappings",
        ));
    }
    if !new_user && (!uids.is_empty() || !gids.is_empty()) {
        return Err(invalid(
            "linux.uidMappings/gidMappings need a new user namespace in linux.namespaces",
        ));
    }
    for (name, maps) in [("uidMappings", uids), ("gidMappings", gids)] {
        if maps.len() > 340 {
            return Err(invalid(format!(
                "linux.{name} has {} entries; the kernel takes at most 340",
                maps.len()
            )));
        }
        for m in maps {
            let fits = |start: u32| start.checked_add(m.size()).is_some();
            if m.size() == 0 || !fits(m.host_id()) || !fits(m.container_id()) {
                return Err(invalid(format!(
                    "linux.{name} entry {}:{}:{} is not a valid range",
                    m.container_id(),
                    m.host_id(),
                    m.size()
                )));
            }
        }
    }
    Ok(())
}

fn devices(list: &[oci_spec::runtime::LinuxDevice]) -> Result<Vec<Device>, ConfigError> {
    use nix::sys::stat::SFlag;
    list.iter()
        .map(|d| {
            let path = d.path();
            let clean = clean_container_path(path);
            if !path.is_absolute() || clean == Path::new("/") {
                return Err(invalid(format!(
                    "linux.devices path {} must be an absolute file path",
                    path.display()
                )));
            }
            let kind = match d.typ() {
                LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
                LinuxDeviceType::B => SFlag::S_IFBLK,
                LinuxDeviceType::P => SFlag::S_IFIFO,
                LinuxDeviceType::A => {
                    return Err(invalid(format!(
                        "linux.devices entry {} has type \"a\", which is only for cgroup rules",
                        path.display()
                    )));
                }
            };
            let num = |n: i64, what: &str| {
                u64::try_from(n).map_err(|_| {
                    invalid(format!(
                        "linux.devices {} has a negative {what}",
                        path.display()
                    ))
                })
            };
            Ok(Device {
                path: clean,
                kind,
                major: num(d.major(), "major")?,
                minor: num(d.minor(), "minor")?,
                mode: d.file_mode().unwrap_or(0o666) & 0o7777,
                uid: d.uid().unwrap_or(0),
                gid: d.gid().unwrap_or(0),
            })
        })
        .collect()
}

/// Only sysctls that the container's own namespaces scope may be set: anything else would
/// change the host.
fn check_sysctl(key: &str, value: &str, ns: &Namespaces) -> Result<(), ConfigError> {
    let valid_name = !key.is_empty()
        && !key
            .split(['.', '/'])
            .any(|part| part.is_empty() || part == "..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/'));
    if !valid_name || value.contains('\0') {
        return Err(invalid(format!("sysctl {key:?} is not a valid sysctl")));
    }
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let needs = if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        (CloneFlags::CLONE_NEWIPC, "ipc")
    } else if key.starts_with("net.") {
        (CloneFlags::CLONE_NEWNET, "network")
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        (CloneFlags::CLONE_NEWUTS, "uts")
    } else {
        return Err(invalid(format!(
            "sysctl {key:?} is not namespaced: setting it would change the host"
        )));
    };
    if !ns.has(needs.0) {
        return Err(invalid(format!(
            "sysctl {key:?} needs the container's own {} namespace",
            needs.1
        )));
    }
    Ok(())
}

/// Path of a sysctl under /proc/sys.
pub fn sysctl_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

impl ProcessConfig {
    /// Validates a process spec (the container's, or one given to `exec`).
    pub fn new(p: &Process) -> Result<ProcessConfig, ConfigError> {
        let args = p.args().clone().unwrap_or_default();
        if args.is_empty() || args[0].is_empty() {
            return Err(invalid(
                "process.args is empty: set the command to run in the container",
            ));
        }
        let cstrings = |list: &[String], field: &str| {
            list.iter()
                .map(|s| {
                    CString::new(s.as_bytes())
                        .map_err(|_| invalid(format!("{field} entry {s:?} contains a NUL byte")))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let env_list = p.env().clone().unwrap_or_default();
        for e in &env_list {
            if !e.contains('=') || e.starts_with('=') {
                return Err(invalid(format!(
                    "process.env entry {e:?} is not of the form NAME=VALUE"
                )));
            }
        }
        if !p.cwd().is_absolute() {
            return Err(invalid(format!(
                "process.cwd {} is not an absolute path",
                p.cwd().display()
            )));
        }
        let mut rlimits: Vec<Rlimit> = Vec::new();
        for r in p.rlimits().iter().flatten() {
            if rlimits.iter().any(|x| x.name == r.typ()) {
                return Err(invalid(format!("process.rlimits sets {} twice", r.typ())));
            }
            if r.soft() > r.hard() {
                return Err(invalid(format!(
                    "process.rlimits {}: soft limit {} is above hard limit {}",
                    r.typ(),
                    r.soft(),
                    r.hard()
                )));
            }
            rlimits.push(Rlimit {
                resource: rlimit_resource(r.typ()),
                name: r.typ(),
                soft: r.soft(),
                hard: r.hard(),
            });
        }
        unsupported(p.scheduler().is_some(), "process.scheduler")?;
        unsupported(p.exec_cpu_affinity().is_some(), "process.execCPUAffinity")?;
        let io_priority = match p.io_priority() {
            None => None,
            Some(io) => {
                use oci_spec::runtime::IOPriorityClass as C;
                let class = match io.class() {
                    C::IoprioClassRt => 1,
                    C::IoprioClassBe => 2,
                    C::IoprioClassIdle => 3,
                };
                let prio = u32::try_from(io.priority())
                    .ok()
                    .filter(|p| *p <= 7)
                    .ok_or_else(|| invalid("process.ioPriority.priority must be 0 to 7"))?;
                Some((class, prio))
            }
        };
        let user = p.user();
        Ok(ProcessConfig {
            args: cstrings(&args, "process.args")?,
            env: cstrings(&env_list, "process.env")?,
            cwd: clean_container_path(p.cwd()),
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
            umask: user.umask(),
            rlimits,
            capabilities: p.capabilities().as_ref().map(cap_sets),
            no_new_privileges: p.no_new_privileges().unwrap_or(false),
            terminal: p.terminal().unwrap_or(false),
            console_size: p.console_size().map(|b| {
                (
                    b.height().min(u16::MAX as u64) as u16,
                    b.width().min(u16::MAX as u64) as u16,
                )
            }),
            apparmor_profile: p.apparmor_profile().clone().filter(|s| !s.is_empty()),
            selinux_label: p.selinux_label().clone().filter(|s| !s.is_empty()),
            io_priority,
            oom_score_adj: p.oom_score_adj(),
        })
    }

    /// The value of `name` in the environment, if set.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env.iter().find_map(|e| {
            let s = e.to_str().ok()?;
            let (k, v) = s.split_once('=')?;
            (k == name).then_some(v)
        })
    }
}

fn cap_sets(c: &LinuxCapabilities) -> CapSets {
    let conv = |set: &Option<oci_spec::runtime::Capabilities>| -> caps::CapsHashSet {
        set.iter()
            .flatten()
            .filter_map(|cap| format!("CAP_{cap}").parse::<caps::Capability>().ok())
            .collect()
    };
    CapSets {
        bounding: conv(c.bounding()),
        effective: conv(c.effective()),
        inheritable: conv(c.inheritable()),
        permitted: conv(c.permitted()),
        ambient: conv(c.ambient()),
    }
}

fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType as T;
    match t {
        T::RlimitCpu => libc::RLIMIT_CPU,
        T::RlimitFsize => libc::RLIMIT_FSIZE,
        T::RlimitData => libc::RLIMIT_DATA,
        T::RlimitStack => libc::RLIMIT_STACK,
        T::RlimitCore => libc::RLIMIT_CORE,
        T::RlimitRss => libc::RLIMIT_RSS,
        T::RlimitNproc => libc::RLIMIT_NPROC,
        T::RlimitNofile => libc::RLIMIT_NOFILE,
        T::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        T::RlimitAs => libc::RLIMIT_AS,
        T::RlimitLocks => libc::RLIMIT_LOCKS,
        T::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        T::RlimitNice => libc::RLIMIT_NICE,
        T::RlimitRtprio => libc::RLIMIT_RTPRIO,
        T::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A minimal valid config (as JSON, so tests can break it field by field).
    fn base() -> Value {
        json!({
            "ociVersion": "1.0.2",
            "root": {"path": "/"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                        "env": ["PATH=/bin"]},
            "hostname": "box",
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"},
                                     {"type": "network", "path": "/run/netns/x"}]}
        })
    }

    fn check(v: &Value) -> Result<ContainerConfig, ConfigError> {
        let spec = parse_spec(v.to_string().as_bytes(), Path::new("config.json"))?;
        ContainerConfig::new(spec, Path::new("/"))
    }

    fn error_of(v: &Value) -> String {
        match check(v) {
            Ok(_) => panic!("config accepted: {v}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn accepts_a_minimal_config() {
        let c = check(&base()).unwrap();
        assert_eq!(
            c.namespaces.new,
            CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS
        );
        assert_eq!(
            c.namespaces.join,
            vec![(CloneFlags::CLONE_NEWNET, PathBuf::from("/run/netns/x"))]
        );
        assert_eq!(c.hostname.as_deref(), Some("box"));
        assert_eq!(c.process.args, vec![CString::new("sh").unwrap()]);
        assert_eq!(c.process.capabilities, None);
    }

    #[test]
    fn translates_capabilities_and_rlimits() {
        let mut v = base();
        v["process"]["capabilities"] = json!({"bounding": ["CAP_KILL", "CAP_CHOWN"],
                                             "effective": ["CAP_KILL"]});
        v["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]);
        let c = check(&v).unwrap();
        let caps = c.process.capabilities.unwrap();
        assert_eq!(caps.bounding.len(), 2);
        assert!(caps.effective.contains(&caps::Capability::CAP_KILL));
        assert!(caps.ambient.is_empty());
        assert_eq!(c.process.rlimits[0].resource, libc::RLIMIT_NOFILE);
    }

    #[test]
    fn each_bad_field_gets_one_clear_sentence() {
        type Breaker = fn(&mut Value);
        let cases: Vec<(Breaker, &str)> = vec![
            (|v| v["ociVersion"] = json!("2.0.0"), "ociVersion"),
            (
                |v| v["root"]["path"] = json!("/does/not/exist"),
                "root.path",
            ),
            (
                |v| v["process"]["args"] = json!([]),
                "process.args is empty",
            ),
            (
                |v| v["process"]["args"] = json!([""]),
                "process.args is empty",
            ),
            (|v| v["process"]["cwd"] = json!("relative"), "process.cwd"),
            (|v| v["process"]["env"] = json!(["NOEQUALS"]), "NAME=VALUE"),
            (|v| v["process"]["args"] = json!(["a\u{0}b"]), "NUL"),
            (
                |v| {
                    v["process"]["rlimits"] =
                        json!([{"type": "RLIMIT_NOFILE", "soft": 2, "hard": 1}])
                },
                "soft limit",
            ),
            (
                |v| v["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "pid"}]),
                "twice",
            ),
            (
                |v| v["linux"]["namespaces"] = json!([{"type": "pid"}]),
                "UTS namespace",
            ),
            (
                |v| v["linux"]["namespaces"] = json!([{"type": "uts"}, {"type": "user"}]),
                "uidMappings",
            ),
            (
                |v| {
                    v["linux"]["uidMappings"] =
                        json!([{"containerID": 0, "hostID": 1000, "size": 1}])
                },
                "need a new user namespace",
            ),
            (
                |v| v["linux"]["sysctl"] = json!({"kernel.panic": "1"}),
                "not namespaced",
            ),
            (
                |v| v["linux"]["sysctl"] = json!({"kernel.shmmax": "1"}),
                "ipc namespace",
            ),
            (
                |v| v["linux"]["sysctl"] = json!({"net/../../x": "1"}),
                "not a valid sysctl",
            ),
            (
                |v| v["linux"]["maskedPaths"] = json!(["proc/kcore"]),
                "not absolute",
            ),
            (
                |v| v["linux"]["rootfsPropagation"] = json!("sideways"),
                "propagation",
            ),
            (
                |v| v["linux"]["cgroupsPath"] = json!("/a/../../b"),
                "\"..\"",
            ),
            (
                |v| v["linux"]["intelRdt"] = json!({"closID": "x"}),
                "not supported",
            ),
            (
                |v| v["mounts"] = json!([{"destination": "/", "type": "tmpfs"}]),
                "destination",
            ),
            (
                |v| v["mounts"] = json!([{"destination": "/x", "options": ["bind"]}]),
                "no source",
            ),
            (
                |v| {
                    v["linux"]["devices"] =
                        json!([{"path": "/dev/x", "type": "a", "major": 1, "minor": 1}])
                },
                "type \"a\"",
            ),
            (
                |v| v["hooks"] = json!({"prestart": [{"path": "relative/hook"}]}),
                "not absolute",
            ),
            (
                |v| {
                    v["linux"]["seccomp"] =
                        json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x"})
                },
                "listenerPath",
            ),
            (
                |v| v["process"]["user"] = json!("root"),
                "not a valid OCI runtime config",
            ),
        ];
        for (break_it, expected) in cases {
            let mut v = base();
            break_it(&mut v);
            let msg = error_of(&v);
            assert!(
                msg.contains(expected),
                "{msg:?} should mention {expected:?}"
            );
            assert!(!msg.contains('\n'), "one sentence, not {msg:?}");
        }
    }

    #[test]
    fn hostile_json_never_panics() {
        // Random truncations and byte flips of a valid config: every outcome is Ok or a
        // ConfigError, never a panic.
        let text = base().to_string().into_bytes();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let mut t = text.clone();
            match next() % 3 {
                0 => t.truncate((next() as usize) % t.len()),
                1 => {
                    let i = (next() as usize) % t.len();
                    t[i] = (next() % 256) as u8;
                }
                _ => {
                    let i = (next() as usize) % t.len();
                    let junk = [b"-1".as_slice(), b"1e999", b"null", b"\"\\u0000\"", b"[]"];
                    let j = junk[(next() as usize) % junk.len()];
                    t.splice(i..i, j.iter().copied());
                }
            }
            if let Ok(spec) = parse_spec(&t, Path::new("config.json")) {
                let _ = ContainerConfig::new(spec, Path::new("/"));
            }
        }
    }

    #[test]
    fn container_ids() {
        for ok in ["a", "web-1", "x_y.z+1", &"f".repeat(64)] {
            assert!(validate_id(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a b",
            "é",
            &"x".repeat(1025),
        ] {
            assert!(!validate_id(bad), "{bad}");
        }
    }

    #[test]
    fn sysctl_paths() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward"),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
    }
}
