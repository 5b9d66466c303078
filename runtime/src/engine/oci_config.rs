//! The OCI `config.json` of a container: its record (image config + flags) turned into
//! Docker's defaults: namespaces, mounts, masked and read-only paths, the default
//! capability set and seccomp profile, cgroup limits and device rules.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxCpu, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType,
    LinuxMemory, LinuxNamespace, LinuxNamespaceType, LinuxPids, LinuxResources, Mount, Process,
    Root, Spec, User,
};

use super::caps;
use super::options::SeccompChoice;
use super::record::ContainerRecord;
use super::seccomp;

/// Where `--init` puts tini inside the container (Docker's path for docker-init).
pub const INIT_PATH_IN_CONTAINER: &str = "/sbin/docker-init";

/// Where the container's network namespace comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum NetNs {
    /// The host's: no network namespace entry.
    Host,
    /// A fresh one with only loopback (`--network none`).
    Fresh,
    /// The sandbox pinned at this path.
    Join(PathBuf),
}

/// A user resolved against the container's `/etc/passwd` and `/etc/group`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
}

/// What the OCI config needs beyond the record, known only when the container starts.
#[derive(Debug, Clone)]
pub struct StartContext<'a> {
    pub rootfs: &'a Path,
    pub netns: NetNs,
    pub user: ResolvedUser,
    pub additional_gids: Vec<u32>,
    /// `hosts`, `hostname`, `resolv.conf` of the container, bind-mounted over `/etc/*`.
    pub etc_dir: &'a Path,
    /// The static tini for `--init`.
    pub init_binary: Option<&'a Path>,
    pub cgroup_v2: bool,
}

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn mount(dst: &str, typ: &str, src: &str, opts: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(dst.into());
    m.set_typ(Some(typ.into()));
    m.set_source(Some(src.into()));
    m.set_options(Some(opts.iter().map(|s| s.to_string()).collect()));
    m
}

fn bind(dst: &str, src: &Path, read_only: bool, propagation: &str) -> Mount {
    let mut m = mount(
        dst,
        "bind",
        "",
        &["rbind", propagation, if read_only { "ro" } else { "rw" }],
    );
    m.set_source(Some(src.to_path_buf()));
    m
}

fn namespace(typ: LinuxNamespaceType, path: Option<PathBuf>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns.set_path(path);
    ns
}

fn device_rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut d = LinuxDeviceCgroup::default();
    d.set_allow(allow);
    d.set_typ(Some(typ));
    d.set_major(major);
    d.set_minor(minor);
    d.set_access(Some(access.into()));
    d
}

/// Docker's device cgroup rules: nothing but mknod and the standard devices.
fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{A, B, C};
    vec![
        device_rule(false, A, None, None, "rwm"),
        device_rule(true, C, None, None, "m"),
        device_rule(true, B, None, None, "m"),
        device_rule(true, C, Some(1), Some(3), "rwm"), // null
        device_rule(true, C, Some(1), Some(5), "rwm"), // zero
        device_rule(true, C, Some(1), Some(7), "rwm"), // full
        device_rule(true, C, Some(1), Some(8), "rwm"), // random
        device_rule(true, C, Some(1), Some(9), "rwm"), // urandom
        device_rule(true, C, Some(5), Some(0), "rwm"), // tty
        device_rule(true, C, Some(5), Some(1), "rwm"), // console
        device_rule(true, C, Some(5), Some(2), "rwm"), // ptmx
        device_rule(true, C, Some(136), None, "rwm"),  // pts
    ]
}

/// The host's devices under /dev, for `--privileged` (Docker gives them all).
fn host_devices() -> Vec<LinuxDevice> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::from("/dev")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                if !matches!(
                    e.file_name().to_str(),
                    Some("pts" | "shm" | "mqueue" | "fd")
                ) {
                    dirs.push(path);
                }
                continue;
            }
            let typ = if ft.is_char_device() {
                LinuxDeviceType::C
            } else if ft.is_block_device() {
                LinuxDeviceType::B
            } else {
                continue;
            };
            if path == Path::new("/dev/console") || path == Path::new("/dev/ptmx") {
                continue;
            }
            let rdev = meta.rdev();
            let mut d = LinuxDevice::default();
            d.set_path(path);
            d.set_typ(typ);
            d.set_major(libc::major(rdev) as i64);
            d.set_minor(libc::minor(rdev) as i64);
            d.set_file_mode(Some(meta.mode() & 0o7777));
            d.set_uid(Some(meta.uid()));
            d.set_gid(Some(meta.gid()));
            out.push(d);
        }
    }
    out
}

/// Capability names (`CAP_X`) as the OCI config's set.
pub fn capability_set(set: &BTreeSet<String>) -> HashSet<Capability> {
    set.iter()
        .filter_map(|c| serde_json::from_value(serde_json::Value::String(c.clone())).ok())
        .collect()
}

/// The final environment: PATH if the image has none, HOSTNAME, TERM with a terminal,
/// then the record's (image then flags, later entries replacing earlier ones by key).
pub fn environment(env: &[String], hostname: &str, tty: bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut set = |entry: String| {
        let key = entry.split('=').next().unwrap_or_default().to_string();
        if let Some(slot) = out
            .iter_mut()
            .find(|e| e.split('=').next() == Some(key.as_str()))
        {
            *slot = entry;
        } else {
            out.push(entry);
        }
    };
    set(DEFAULT_PATH.to_string());
    set(format!("HOSTNAME={hostname}"));
    if tty {
        set("TERM=xterm".to_string());
    }
    for e in env {
        set(e.clone());
    }
    out
}

/// Builds the container's OCI config.
pub fn build(rec: &ContainerRecord, ctx: &StartContext) -> Result<Spec, String> {
    let o = &rec.options;
    let privileged = o.privileged;
    let available = caps::all_available();
    let capset = caps::effective(privileged, &o.cap_add, &o.cap_drop, &available)?;

    // Process.
    let mut argv = rec.config.argv();
    if argv.is_empty() {
        return Err("no command specified: the image has none and none was given".into());
    }
    if ctx.init_binary.is_some() {
        argv = [INIT_PATH_IN_CONTAINER.to_string(), "--".to_string()]
            .into_iter()
            .chain(argv)
            .collect();
    }
    let mut user = User::default();
    user.set_uid(ctx.user.uid);
    user.set_gid(ctx.user.gid);
    if !ctx.additional_gids.is_empty() {
        user.set_additional_gids(Some(ctx.additional_gids.clone()));
    }
    let bounding = capability_set(&capset);
    // A non-root process gets the bounding set only, as Docker does: it can gain
    // capabilities only through file capabilities or setuid binaries.
    let active = if ctx.user.uid == 0 {
        bounding.clone()
    } else {
        HashSet::new()
    };
    let mut capabilities = LinuxCapabilities::default();
    capabilities.set_bounding(Some(bounding));
    capabilities.set_permitted(Some(active.clone()));
    capabilities.set_effective(Some(active));
    capabilities.set_inheritable(Some(HashSet::new()));
    capabilities.set_ambient(Some(HashSet::new()));
    let mut process = Process::default();
    process.set_terminal(Some(o.tty));
    process.set_user(user);
    process.set_args(Some(argv));
    process.set_env(Some(environment(
        &rec.config.env,
        &rec.config.hostname,
        o.tty,
    )));
    process.set_cwd(PathBuf::from(if rec.config.workdir.is_empty() {
        "/"
    } else {
        &rec.config.workdir
    }));
    process.set_capabilities(Some(capabilities));
    process.set_rlimits(None);
    process.set_no_new_privileges(Some(o.no_new_privileges));
    process.set_oom_score_adj(None);

    // Mounts, in Docker's order.
    let host_net = ctx.netns == NetNs::Host;
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &[
                "nosuid",
                "noexec",
                "nodev",
                if privileged { "rw" } else { "ro" },
            ],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &[
                "nosuid",
                "noexec",
                "nodev",
                "relatime",
                if privileged { "rw" } else { "ro" },
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
    ];
    for f in ["resolv.conf", "hostname", "hosts"] {
        mounts.push(bind(
            &format!("/etc/{f}"),
            &ctx.etc_dir.join(f),
            o.read_only,
            "rprivate",
        ));
    }
    for b in &o.binds {
        mounts.push(bind(&b.destination, &b.source, b.read_only, &b.propagation));
    }
    if let Some(init) = ctx.init_binary {
        mounts.push(bind(INIT_PATH_IN_CONTAINER, init, true, "rprivate"));
    }

    // Namespaces.
    let mut namespaces = vec![
        namespace(LinuxNamespaceType::Pid, None),
        namespace(LinuxNamespaceType::Ipc, None),
        namespace(LinuxNamespaceType::Uts, None),
        namespace(LinuxNamespaceType::Mount, None),
    ];
    match &ctx.netns {
        NetNs::Host => {}
        NetNs::Fresh => namespaces.push(namespace(LinuxNamespaceType::Network, None)),
        NetNs::Join(p) => namespaces.push(namespace(LinuxNamespaceType::Network, Some(p.clone()))),
    }
    if ctx.cgroup_v2 {
        namespaces.push(namespace(LinuxNamespaceType::Cgroup, None));
    }

    // Resources.
    let mut resources = LinuxResources::default();
    let mut devices = default_device_rules();
    if privileged {
        devices = vec![device_rule(true, LinuxDeviceType::A, None, None, "rwm")];
    }
    resources.set_devices(Some(devices));
    if let Some(limit) = o.resources.memory {
        let mut m = LinuxMemory::default();
        m.set_limit(Some(limit));
        resources.set_memory(Some(m));
    }
    if let Some(nano) = o.resources.nano_cpus {
        const PERIOD: u64 = 100_000;
        let mut c = LinuxCpu::default();
        c.set_period(Some(PERIOD));
        c.set_quota(Some(nano * PERIOD as i64 / 1_000_000_000));
        resources.set_cpu(Some(c));
    }
    if let Some(limit) = o.resources.pids_limit.filter(|&l| l > 0) {
        let mut p = LinuxPids::default();
        p.set_limit(limit);
        resources.set_pids(Some(p));
    }

    let mut linux = oci_spec::runtime::Linux::default();
    linux.set_namespaces(Some(namespaces));
    linux.set_resources(Some(resources));
    linux.set_cgroups_path(Some(PathBuf::from(format!(
        "/{}/{}",
        rec.cgroup_parent.trim_matches('/'),
        rec.id
    ))));
    linux.set_uid_mappings(None);
    linux.set_gid_mappings(None);
    linux.set_devices(privileged.then(host_devices));
    if privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    } else {
        linux.set_masked_paths(Some(MASKED_PATHS.iter().map(|s| s.to_string()).collect()));
        linux.set_readonly_paths(Some(READONLY_PATHS.iter().map(|s| s.to_string()).collect()));
    }
    linux.set_sysctl((!host_net).then(|| {
        HashMap::from([
            (
                "net.ipv4.ip_unprivileged_port_start".to_string(),
                "0".to_string(),
            ),
            (
                "net.ipv4.ping_group_range".to_string(),
                "0 2147483647".to_string(),
            ),
        ])
    }));
    let profile = match (&o.seccomp, privileged) {
        (_, true) | (SeccompChoice::Unconfined, _) => None,
        (SeccompChoice::Default, _) => Some(seccomp::docker_default()),
        (SeccompChoice::Custom(text), _) => Some(
            seccomp::Profile::parse(text).map_err(|e| format!("invalid seccomp profile: {e}"))?,
        ),
    };
    let target = seccomp::Target {
        caps: &capset,
        arch: seccomp::Target::native_arch(),
        kernel: seccomp::Target::running_kernel(),
    };
    linux.set_seccomp(profile.map(|p| p.to_oci(&target)));
    linux.set_rootfs_propagation(Some("rprivate".into()));

    let mut root = Root::default();
    root.set_path(ctx.rootfs.to_path_buf());
    root.set_readonly(Some(o.read_only));

    let mut spec = Spec::default();
    spec.set_version("1.0.2".into());
    spec.set_root(Some(root));
    spec.set_process(Some(process));
    spec.set_hostname(Some(rec.config.hostname.clone()));
    spec.set_mounts(Some(mounts));
    spec.set_hooks(None);
    spec.set_annotations(None);
    spec.set_linux(Some(linux));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::options::{BindMount, ContainerOptions};
    use crate::engine::record::{ContainerState, ImageInfo, ProcessConfig};

    fn record(options: ContainerOptions) -> ContainerRecord {
        ContainerRecord {
            id: "a".repeat(64),
            name: "box".into(),
            created: chrono::Utc::now(),
            image: ImageInfo {
                reference: "docker.io/library/busybox:latest".into(),
                id: "sha256:x".into(),
            },
            config: ProcessConfig {
                cmd: vec!["sh".into()],
                env: vec!["PATH=/bin".into(), "A=1".into()],
                hostname: "aaaaaaaaaaaa".into(),
                ..Default::default()
            },
            options,
            cgroup_parent: "rbox".into(),
            state: ContainerState::default(),
        }
    }

    fn ctx<'a>(netns: NetNs) -> StartContext<'a> {
        StartContext {
            rootfs: Path::new("/r"),
            netns,
            user: ResolvedUser::default(),
            additional_gids: vec![],
            etc_dir: Path::new("/c"),
            init_binary: None,
            cgroup_v2: false,
        }
    }

    fn json(spec: &Spec) -> serde_json::Value {
        serde_json::to_value(spec).unwrap()
    }

    #[test]
    fn docker_defaults() {
        let spec = build(
            &record(ContainerOptions::default()),
            &ctx(NetNs::Join("/run/rbox/netns/x".into())),
        )
        .unwrap();
        let j = json(&spec);
        assert_eq!(j["process"]["args"], serde_json::json!(["sh"]));
        assert_eq!(
            j["process"]["env"],
            serde_json::json!(["PATH=/bin", "HOSTNAME=aaaaaaaaaaaa", "A=1"])
        );
        assert_eq!(
            j["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            caps::DOCKER_DEFAULT.len()
        );
        assert!(j["process"].get("rlimits").is_none());
        assert_eq!(
            j["linux"]["cgroupsPath"],
            format!("/rbox/{}", "a".repeat(64))
        );
        let ns = j["linux"]["namespaces"].as_array().unwrap();
        assert!(
            ns.iter()
                .any(|n| n["type"] == "network" && n["path"] == "/run/rbox/netns/x")
        );
        assert!(
            j["linux"]["maskedPaths"]
                .as_array()
                .unwrap()
                .contains(&"/proc/kcore".into())
        );
        assert_eq!(j["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        let dests: Vec<&str> = j["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        for d in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/etc/hosts",
            "/etc/hostname",
            "/etc/resolv.conf",
        ] {
            assert!(dests.contains(&d), "{d} missing");
        }
        let sys = j["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert!(sys["options"].as_array().unwrap().contains(&"ro".into()));
        assert_eq!(
            j["linux"]["sysctl"]["net.ipv4.ping_group_range"],
            "0 2147483647"
        );
        // The config deserialises back: oci-spec accepts what we wrote.
        let _: Spec = serde_json::from_value(j).unwrap();
    }

    #[test]
    fn flags_reach_the_config() {
        let o = ContainerOptions {
            read_only: true,
            tty: true,
            resources: crate::engine::options::Resources {
                memory: Some(64 << 20),
                nano_cpus: Some(500_000_000),
                pids_limit: Some(50),
            },
            seccomp: SeccompChoice::Unconfined,
            no_new_privileges: true,
            binds: vec![BindMount {
                source: "/tmp".into(),
                destination: "/data".into(),
                read_only: true,
                propagation: "rprivate".into(),
            }],
            ..Default::default()
        };
        let mut c = ctx(NetNs::Host);
        let tini = PathBuf::from("/usr/bin/tini-static");
        c.init_binary = Some(&tini);
        c.user = ResolvedUser {
            uid: 1000,
            gid: 1000,
        };
        let j = json(&build(&record(o), &c).unwrap());
        assert_eq!(j["root"]["readonly"], true);
        assert_eq!(j["process"]["terminal"], true);
        assert!(
            j["process"]["env"]
                .as_array()
                .unwrap()
                .contains(&"TERM=xterm".into())
        );
        assert_eq!(
            j["process"]["args"],
            serde_json::json!(["/sbin/docker-init", "--", "sh"])
        );
        assert_eq!(j["process"]["noNewPrivileges"], true);
        assert_eq!(
            j["process"]["capabilities"]["effective"]
                .as_array()
                .unwrap()
                .len(),
            0
        );
        assert_eq!(j["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(j["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(j["linux"]["resources"]["pids"]["limit"], 50);
        assert!(j["linux"].get("seccomp").is_none());
        assert!(
            j["linux"].get("sysctl").is_none(),
            "no netns sysctls on the host network"
        );
        assert!(
            !j["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["type"] == "network")
        );
        let data = j["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/data")
            .unwrap();
        assert!(data["options"].as_array().unwrap().contains(&"ro".into()));
        let hosts = j["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/etc/hosts")
            .unwrap();
        assert!(
            hosts["options"].as_array().unwrap().contains(&"ro".into()),
            "read-only rootfs: read-only /etc files"
        );
    }

    #[test]
    fn privileged() {
        let o = ContainerOptions {
            privileged: true,
            ..Default::default()
        };
        let j = json(&build(&record(o), &ctx(NetNs::Fresh)).unwrap());
        assert!(j["linux"].get("seccomp").is_none());
        assert!(j["linux"].get("maskedPaths").is_none());
        assert_eq!(j["linux"]["resources"]["devices"][0]["allow"], true);
        assert!(
            j["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len()
                >= caps::DOCKER_DEFAULT.len()
        );
    }

    #[test]
    fn environment_merges_by_key() {
        let env = environment(&["PATH=/x".into(), "A=1".into(), "A=2".into()], "h", false);
        assert_eq!(env, ["PATH=/x", "HOSTNAME=h", "A=2"]);
    }
}
