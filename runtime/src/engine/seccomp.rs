//! Seccomp profiles in Docker's JSON format (what `--security-opt seccomp=PATH` reads),
//! Docker's default profile built in code, and their translation to the OCI form for one
//! container: rules are kept or dropped by the container's capabilities, the host's
//! architecture and kernel version, as moby does.

use std::collections::BTreeSet;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompOperator,
    LinuxSyscall,
};
use serde::Deserialize;

/// A profile as Docker's JSON format describes it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: LinuxSeccompAction,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    #[serde(default)]
    pub architectures: Vec<Arch>,
    #[serde(default)]
    pub arch_map: Vec<ArchMap>,
    #[serde(default)]
    pub syscalls: Vec<Rule>,
}

/// Architectures of a native architecture that its filter must also cover.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    pub architecture: Arch,
    #[serde(default)]
    pub sub_architectures: Option<Vec<Arch>>,
}

/// One rule: syscalls, an action, argument conditions, and when it applies.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub names: Vec<String>,
    /// The older single-name form.
    #[serde(default)]
    pub name: Option<String>,
    pub action: LinuxSeccompAction,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Vec<Arg>,
    #[serde(default)]
    pub includes: Filter,
    #[serde(default)]
    pub excludes: Filter,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: usize,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: LinuxSeccompOperator,
}

/// Conditions on the container: all listed capabilities, one of the architectures, a
/// kernel at least this version.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default)]
    pub caps: Vec<String>,
    #[serde(default)]
    pub arches: Vec<String>,
    #[serde(default)]
    pub min_kernel: Option<String>,
}

/// What a rule's conditions are checked against.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The container's bounding capabilities (`CAP_X`).
    pub caps: &'a BTreeSet<String>,
    /// The host's architecture in Docker's (Go's) naming: `amd64`, `arm64`, …
    pub arch: &'a str,
    /// The running kernel's (major, minor).
    pub kernel: (u32, u32),
}

impl Target<'_> {
    /// The host's architecture in Go's naming, which profiles use.
    pub fn native_arch() -> &'static str {
        match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" => "ppc64le",
            other => other,
        }
    }

    /// (major, minor) of the running kernel, from uname.
    pub fn running_kernel() -> (u32, u32) {
        nix::sys::utsname::uname()
            .ok()
            .and_then(|u| parse_kernel(&u.release().to_string_lossy()))
            .unwrap_or((0, 0))
    }
}

fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn native_seccomp_arch(go_arch: &str) -> Option<Arch> {
    Some(match go_arch {
        "amd64" => Arch::ScmpArchX86_64,
        "386" => Arch::ScmpArchX86,
        "arm64" => Arch::ScmpArchAarch64,
        "arm" => Arch::ScmpArchArm,
        "s390x" => Arch::ScmpArchS390x,
        "ppc64le" => Arch::ScmpArchPpc64le,
        "riscv64" => Arch::ScmpArchRiscv64,
        "mips64" => Arch::ScmpArchMips64,
        _ => return None,
    })
}

impl Profile {
    /// Reads a profile in Docker's JSON format.
    pub fn parse(text: &str) -> Result<Profile, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The OCI seccomp section of a container with these capabilities on this host.
    pub fn to_oci(&self, target: &Target) -> LinuxSeccomp {
        let mut arches = self.architectures.clone();
        if let Some(native) = native_seccomp_arch(target.arch)
            && let Some(map) = self.arch_map.iter().find(|m| m.architecture == native)
        {
            arches = vec![native];
            arches.extend(map.sub_architectures.iter().flatten().copied());
        }
        let syscalls = self
            .syscalls
            .iter()
            .filter(|r| r.applies_to(target))
            .map(|r| {
                let mut names = r.names.clone();
                names.extend(r.name.clone());
                let mut s = LinuxSyscall::default();
                s.set_names(names);
                s.set_action(r.action);
                s.set_errno_ret(r.errno_ret);
                if !r.args.is_empty() {
                    s.set_args(Some(
                        r.args
                            .iter()
                            .map(|a| {
                                let mut b = LinuxSeccompArgBuilder::default()
                                    .index(a.index)
                                    .value(a.value)
                                    .op(a.op);
                                if a.value_two != 0 {
                                    b = b.value_two(a.value_two);
                                }
                                b.build().expect("every field of a seccomp argument is set")
                            })
                            .collect(),
                    ));
                }
                s
            })
            .collect();
        let mut out = LinuxSeccomp::default();
        out.set_default_action(self.default_action);
        out.set_default_errno_ret(self.default_errno_ret);
        out.set_architectures((!arches.is_empty()).then_some(arches));
        out.set_syscalls(Some(syscalls));
        out
    }
}

impl Rule {
    fn applies_to(&self, t: &Target) -> bool {
        let inc = &self.includes;
        let exc = &self.excludes;
        let kernel_at_least = |v: &Option<String>| {
            v.as_deref()
                .and_then(parse_kernel)
                .is_some_and(|min| t.kernel >= min)
        };
        let included = inc.caps.iter().all(|c| t.caps.contains(c))
            && (inc.arches.is_empty() || inc.arches.iter().any(|a| a == t.arch))
            && (inc.min_kernel.is_none() || kernel_at_least(&inc.min_kernel));
        let excluded = exc.caps.iter().any(|c| t.caps.contains(c))
            || exc.arches.iter().any(|a| a == t.arch)
            || (exc.min_kernel.is_some() && kernel_at_least(&exc.min_kernel));
        included && !excluded
    }
}

// Docker's default profile: deny with EPERM, allow what ordinary programs use, and allow
// the syscalls that need a capability only when the container holds it.

const FILES: &[&str] = &[
    "access",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "close",
    "close_range",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futimesat",
    "getcwd",
    "getdents",
    "getdents64",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "name_to_handle_at",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pread64",
    "preadv",
    "preadv2",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "sendfile",
    "sendfile64",
    "setxattr",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "tee",
    "truncate",
    "truncate64",
    "umask",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vmsplice",
    "write",
    "writev",
];

const ASYNC_IO: &[&str] = &[
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioctl",
    "pipe",
    "pipe2",
    "poll",
    "ppoll",
    "ppoll_time64",
    "pselect6",
    "pselect6_time64",
    "select",
    "_newselect",
    "signalfd",
    "signalfd4",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
];

const PROCESSES: &[&str] = &[
    "capget",
    "capset",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "getrusage",
    "getsid",
    "gettid",
    "getuid",
    "getuid32",
    "ioprio_get",
    "ioprio_set",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "membarrier",
    "pidfd_open",
    "pidfd_send_signal",
    "prctl",
    "prlimit64",
    "process_mrelease",
    "restart_syscall",
    "rseq",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "setsid",
    "setuid",
    "setuid32",
    "tgkill",
    "tkill",
    "ugetrlimit",
    "uname",
    "vfork",
    "wait4",
    "waitid",
    "waitpid",
];

const SIGNALS: &[&str] = &[
    "pause",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sigaltstack",
    "sigprocmask",
    "sigreturn",
];

const MEMORY: &[&str] = &[
    "brk",
    "futex",
    "futex_time64",
    "futex_waitv",
    "madvise",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mremap",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "remap_file_pages",
];

const TIME: &[&str] = &[
    "adjtimex",
    "alarm",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "getitimer",
    "gettimeofday",
    "nanosleep",
    "setitimer",
    "sysinfo",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "times",
    "getrandom",
];

const NETWORK: &[&str] = &[
    "accept",
    "accept4",
    "bind",
    "connect",
    "getpeername",
    "getsockname",
    "getsockopt",
    "listen",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "send",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setsockopt",
    "shutdown",
    "socketcall",
    "socketpair",
];

const IPC: &[&str] = &[
    "ipc",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
];

/// (capability, syscalls it unlocks).
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// (architectures, syscalls only those have).
const BY_ARCH: &[(&[&str], &[&str])] = &[
    (&["ppc64le"], &["sync_file_range2", "swapcontext"]),
    (
        &["arm", "arm64"],
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
    ),
    (&["amd64", "x32"], &["arch_prctl"]),
    (&["amd64", "x32", "x86"], &["modify_ldt"]),
    (
        &["s390", "s390x"],
        &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
    ),
    (&["riscv64"], &["riscv_flush_icache"]),
];

/// Values of personality(2) that ordinary programs use: Linux, 32-bit Linux, the
/// `uname26` flag on each, and the query value.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// Namespace flags of clone(2); without CAP_SYS_ADMIN a clone asking for any is refused.
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

const AF_VSOCK: u64 = 40;

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn allow(list: &[&str]) -> Rule {
    Rule {
        names: names(list),
        action: LinuxSeccompAction::ScmpActAllow,
        ..Default::default()
    }
}

fn arg(index: usize, value: u64, op: LinuxSeccompOperator) -> Arg {
    Arg {
        index,
        value,
        value_two: 0,
        op,
    }
}

/// Docker's default seccomp profile (moby `profiles/seccomp/default.json` semantics).
pub fn docker_default() -> Profile {
    use LinuxSeccompOperator::*;
    let mut rules = vec![allow(
        &[
            FILES, ASYNC_IO, PROCESSES, SIGNALS, MEMORY, TIME, NETWORK, IPC,
        ]
        .concat(),
    )];
    // Tracing other processes became safe under seccomp with kernel 4.8.
    rules.push(Rule {
        includes: Filter {
            min_kernel: Some("4.8".into()),
            ..Default::default()
        },
        ..allow(&["process_vm_readv", "process_vm_writev", "ptrace"])
    });
    // Any socket family but AF_VSOCK, which reaches the hypervisor.
    rules.push(Rule {
        args: vec![arg(0, AF_VSOCK, ScmpCmpNe)],
        ..allow(&["socket"])
    });
    for &p in PERSONALITIES {
        rules.push(Rule {
            args: vec![arg(0, p, ScmpCmpEq)],
            ..allow(&["personality"])
        });
    }
    for (arches, list) in BY_ARCH {
        rules.push(Rule {
            includes: Filter {
                arches: names(arches),
                ..Default::default()
            },
            ..allow(list)
        });
    }
    for (cap, list) in BY_CAPABILITY {
        rules.push(Rule {
            includes: Filter {
                caps: vec![cap.to_string()],
                ..Default::default()
            },
            ..allow(list)
        });
    }
    // Without CAP_SYS_ADMIN: clone without namespace flags (s390 swaps the first two
    // arguments), and clone3 (whose flags seccomp cannot see) fails with ENOSYS so that
    // libc falls back to clone.
    let masked = |index| Arg {
        index,
        value: CLONE_NAMESPACE_FLAGS,
        value_two: 0,
        op: ScmpCmpMaskedEq,
    };
    rules.push(Rule {
        args: vec![masked(0)],
        excludes: Filter {
            caps: vec!["CAP_SYS_ADMIN".into()],
            arches: names(&["s390", "s390x"]),
            ..Default::default()
        },
        ..allow(&["clone"])
    });
    rules.push(Rule {
        args: vec![masked(1)],
        includes: Filter {
            arches: names(&["s390", "s390x"]),
            ..Default::default()
        },
        excludes: Filter {
            caps: vec!["CAP_SYS_ADMIN".into()],
            ..Default::default()
        },
        ..allow(&["clone"])
    });
    rules.push(Rule {
        names: names(&["clone3"]),
        action: LinuxSeccompAction::ScmpActErrno,
        errno_ret: Some(libc::ENOSYS as u32),
        excludes: Filter {
            caps: vec!["CAP_SYS_ADMIN".into()],
            ..Default::default()
        },
        ..Default::default()
    });
    Profile {
        default_action: LinuxSeccompAction::ScmpActErrno,
        default_errno_ret: Some(libc::EPERM as u32),
        architectures: Vec::new(),
        arch_map: vec![
            ArchMap {
                architecture: Arch::ScmpArchX86_64,
                sub_architectures: Some(vec![Arch::ScmpArchX86, Arch::ScmpArchX32]),
            },
            ArchMap {
                architecture: Arch::ScmpArchAarch64,
                sub_architectures: Some(vec![Arch::ScmpArchArm]),
            },
            ArchMap {
                architecture: Arch::ScmpArchS390x,
                sub_architectures: Some(vec![Arch::ScmpArchS390]),
            },
            ArchMap {
                architecture: Arch::ScmpArchRiscv64,
                sub_architectures: None,
            },
        ],
        syscalls: rules,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(s: &LinuxSeccomp, name: &str) -> Vec<LinuxSyscall> {
        s.syscalls()
            .iter()
            .flatten()
            .filter(|r| r.names().iter().any(|n| n == name))
            .cloned()
            .collect()
    }

    fn target(caps: &BTreeSet<String>) -> Target<'_> {
        Target {
            caps,
            arch: "amd64",
            kernel: (6, 1),
        }
    }

    #[test]
    fn default_profile_without_sys_admin() {
        let caps: BTreeSet<String> = super::super::caps::DOCKER_DEFAULT
            .iter()
            .map(|s| s.to_string())
            .collect();
        let s = docker_default().to_oci(&target(&caps));
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(s.default_errno_ret(), Some(1));
        assert_eq!(
            s.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        assert!(allowed(&s, "unshare").is_empty());
        assert!(allowed(&s, "mount").is_empty());
        assert!(allowed(&s, "reboot").is_empty());
        assert_eq!(allowed(&s, "read").len(), 1);
        assert_eq!(allowed(&s, "arch_prctl").len(), 1);
        assert!(allowed(&s, "s390_runtime_instr").is_empty());
        assert_eq!(
            allowed(&s, "chroot").len(),
            1,
            "CAP_SYS_CHROOT is a default capability"
        );
        assert_eq!(allowed(&s, "ptrace").len(), 1, "kernel >= 4.8");
        // clone only without namespace flags; clone3 gets ENOSYS.
        let clone = allowed(&s, "clone");
        assert_eq!(clone.len(), 1);
        let a = clone[0].args().as_ref().unwrap()[0];
        assert_eq!(
            (a.index(), a.value(), a.op()),
            (
                0,
                CLONE_NAMESPACE_FLAGS,
                LinuxSeccompOperator::ScmpCmpMaskedEq
            )
        );
        let clone3 = allowed(&s, "clone3");
        assert_eq!(
            (clone3[0].action(), clone3[0].errno_ret()),
            (LinuxSeccompAction::ScmpActErrno, Some(38))
        );
        assert_eq!(allowed(&s, "personality").len(), PERSONALITIES.len());
        let socket = &allowed(&s, "socket")[0];
        assert_eq!(
            socket.args().as_ref().unwrap()[0].op(),
            LinuxSeccompOperator::ScmpCmpNe
        );
    }

    #[test]
    fn default_profile_with_sys_admin() {
        let caps: BTreeSet<String> = ["CAP_SYS_ADMIN".to_string()].into();
        let s = docker_default().to_oci(&target(&caps));
        assert_eq!(allowed(&s, "mount").len(), 1);
        assert_eq!(allowed(&s, "unshare").len(), 1);
        // clone and clone3 unconditionally allowed; no restricted variants.
        assert!(allowed(&s, "clone").iter().all(|r| r.args().is_none()));
        assert!(
            allowed(&s, "clone3")
                .iter()
                .all(|r| r.action() == LinuxSeccompAction::ScmpActAllow)
        );
        assert!(allowed(&s, "chroot").is_empty());
    }

    #[test]
    fn old_kernel_drops_min_kernel_rules() {
        let caps = BTreeSet::new();
        let s = docker_default().to_oci(&Target {
            caps: &caps,
            arch: "amd64",
            kernel: (4, 4),
        });
        assert!(allowed(&s, "ptrace").is_empty());
    }

    #[test]
    fn docker_format_profile_parses() {
        let p = Profile::parse(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":13},
                {"name":"chmod","action":"SCMP_ACT_ERRNO","args":[{"index":1,"value":511,"op":"SCMP_CMP_EQ"}]},
                {"names":["reboot"],"action":"SCMP_ACT_ERRNO","excludes":{"caps":["CAP_SYS_BOOT"]}}]}"#,
        )
        .unwrap();
        let caps = BTreeSet::new();
        let s = p.to_oci(&target(&caps));
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActAllow);
        assert_eq!(allowed(&s, "mkdir")[0].errno_ret(), Some(13));
        assert_eq!(
            allowed(&s, "chmod")[0].args().as_ref().unwrap()[0].value(),
            511
        );
        assert_eq!(allowed(&s, "reboot").len(), 1);
        assert!(Profile::parse("{}").is_err());
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel("6.18.44-fc-v782"), Some((6, 18)));
        assert_eq!(parse_kernel("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel("x"), None);
    }
}
