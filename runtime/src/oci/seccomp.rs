//! The config's seccomp profile, compiled with libseccomp to a BPF program in the caller
//! (so a bad profile fails before anything is created, and the child has nothing to
//! compute), then loaded in the container's process just before it runs the program.

use std::io::{Read, Seek};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("linux.seccomp.listenerPath is not supported by rbox-runc (no seccomp notify)")]
    Listener,
    #[error("linux.seccomp uses SCMP_ACT_NOTIFY, which needs a listenerPath: not supported")]
    Notify,
    #[error("linux.seccomp rule for {names:?} compares argument {index}: syscalls have 6")]
    ArgIndex { names: Vec<String>, index: usize },
    #[error("linux.seccomp: {0}")]
    Libseccomp(String),
    #[error("cannot load the seccomp filter: {0}")]
    Load(nix::Error),
}

/// A compiled filter, ready for seccomp(2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// `struct sock_filter` array, as libseccomp exported it.
    pub bpf: Vec<u8>,
    /// `SECCOMP_FILTER_FLAG_*` for seccomp(2).
    pub flags: libc::c_ulong,
}

/// Structural checks that need no libseccomp (run while validating config.json).
pub fn check(s: &LinuxSeccomp) -> Result<(), SeccompError> {
    if s.listener_path().is_some() {
        return Err(SeccompError::Listener);
    }
    let notify = |a: LinuxSeccompAction| matches!(a, LinuxSeccompAction::ScmpActNotify);
    if notify(s.default_action()) || s.syscalls().iter().flatten().any(|r| notify(r.action())) {
        return Err(SeccompError::Notify);
    }
    for rule in s.syscalls().iter().flatten() {
        for arg in rule.args().iter().flatten() {
            if arg.index() > 5 {
                return Err(SeccompError::ArgIndex {
                    names: rule.names().clone(),
                    index: arg.index(),
                });
            }
        }
    }
    Ok(())
}

fn lib(e: libseccomp::error::SeccompError) -> SeccompError {
    SeccompError::Libseccomp(e.to_string())
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> ScmpAction {
    use LinuxSeccompAction as A;
    let errno = errno.map(|e| e as i32);
    match a {
        A::ScmpActKill | A::ScmpActKillThread => ScmpAction::KillThread,
        A::ScmpActKillProcess => ScmpAction::KillProcess,
        A::ScmpActTrap => ScmpAction::Trap,
        A::ScmpActErrno => ScmpAction::Errno(errno.unwrap_or(libc::EPERM)),
        A::ScmpActTrace => ScmpAction::Trace(errno.unwrap_or(libc::EPERM) as u16),
        A::ScmpActLog => ScmpAction::Log,
        A::ScmpActAllow => ScmpAction::Allow,
        A::ScmpActNotify => ScmpAction::Notify,
    }
}

fn arch(a: Arch) -> ScmpArch {
    match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
        Arch::ScmpArchSh => ScmpArch::Sh,
    }
}

fn op(o: LinuxSeccompOperator, value_two: Option<u64>) -> ScmpCompareOp {
    use LinuxSeccompOperator as O;
    match o {
        O::ScmpCmpNe => ScmpCompareOp::NotEqual,
        O::ScmpCmpLt => ScmpCompareOp::Less,
        O::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        O::ScmpCmpEq => ScmpCompareOp::Equal,
        O::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        O::ScmpCmpGt => ScmpCompareOp::Greater,
        O::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(value_two.unwrap_or(0)),
    }
}

/// Compiles the profile. Syscall names libseccomp does not know (newer than it, or of
/// another architecture) are skipped, as runc does, so one profile serves many hosts.
pub fn compile(s: &LinuxSeccomp) -> Result<Program, SeccompError> {
    check(s)?;
    let default = action(s.default_action(), s.default_errno_ret());
    let mut ctx = ScmpFilterContext::new(default).map_err(lib)?;
    // The runtime sets no_new_privs itself, only when the config asks for it.
    ctx.set_ctl_nnp(false).map_err(lib)?;
    for a in s.architectures().iter().flatten() {
        let a = arch(*a);
        if a != ScmpArch::Native && !ctx.is_arch_present(a).map_err(lib)? {
            ctx.add_arch(a).map_err(lib)?;
        }
    }
    for rule in s.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret());
        if act == default {
            continue; // libseccomp refuses rules that repeat the default action
        }
        let args = rule.args().as_deref().unwrap_or(&[]);
        let conds: Vec<ScmpArgCompare> = args
            .iter()
            .map(|a| ScmpArgCompare::new(a.index() as u32, op(a.op(), a.value_two()), a.value()))
            .collect();
        // Several conditions on one argument can never all hold: runc reads them as
        // alternatives (one rule each); conditions on distinct arguments must all hold.
        let mut indexes: Vec<usize> = args.iter().map(|a| a.index()).collect();
        indexes.sort_unstable();
        let repeated = indexes.windows(2).any(|w| w[0] == w[1]);
        for name in rule.names() {
            let Ok(call) = ScmpSyscall::from_name(name) else {
                continue;
            };
            if conds.is_empty() {
                ctx.add_rule(act, call).map_err(lib)?;
            } else if repeated {
                for c in &conds {
                    ctx.add_rule_conditional(act, call, std::slice::from_ref(c))
                        .map_err(lib)?;
                }
            } else {
                ctx.add_rule_conditional(act, call, &conds).map_err(lib)?;
            }
        }
    }
    let mut flags: libc::c_ulong = 0;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 1 << 5,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
        };
    }
    Ok(Program {
        bpf: export(&ctx)?,
        flags,
    })
}

/// The BPF program of a filter (libseccomp 2.5 exports only to a file descriptor).
fn export(ctx: &ScmpFilterContext) -> Result<Vec<u8>, SeccompError> {
    let fd = nix::sys::memfd::memfd_create(c"seccomp-bpf", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| SeccompError::Libseccomp(format!("memfd_create: {e}")))?;
    ctx.export_bpf(&fd).map_err(lib)?;
    let mut file = std::fs::File::from(fd);
    let mut bpf = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut bpf))
        .map_err(|e| SeccompError::Libseccomp(format!("reading the exported filter: {e}")))?;
    Ok(bpf)
}

/// Installs the filter on the calling thread (async-signal-safe: one system call).
pub fn load(p: &Program) -> Result<(), SeccompError> {
    let prog = libc::sock_fprog {
        len: (p.bpf.len() / std::mem::size_of::<libc::sock_filter>()) as u16,
        filter: p.bpf.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: seccomp(2) reads `prog`, whose filter points into `p.bpf`, alive for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            p.flags,
            &prog as *const libc::sock_fprog,
        )
    };
    nix::Error::result(rc).map(drop).map_err(SeccompError::Load)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(v: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn compiles_rules_with_conditions_and_arches() {
        let p = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42},
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                          {"index": 0, "value": 131072, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["no_such_syscall_anywhere"], "action": "SCMP_ACT_KILL"},
                {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}
            ]
        })))
        .unwrap();
        assert!(!p.bpf.is_empty());
        assert_eq!(p.bpf.len() % std::mem::size_of::<libc::sock_filter>(), 0);
        assert_eq!(p.flags, libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW);
    }

    #[test]
    fn same_profile_same_program() {
        let v = serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "syscalls": [{"names": ["read", "write", "exit"], "action": "SCMP_ACT_ALLOW"}]});
        assert_eq!(
            compile(&profile(v.clone())).unwrap(),
            compile(&profile(v)).unwrap()
        );
    }

    #[test]
    fn rejects_what_it_cannot_do() {
        let bad_index = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}));
        assert!(matches!(
            compile(&bad_index),
            Err(SeccompError::ArgIndex { index: 6, .. })
        ));
        let notify = profile(serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
        assert!(matches!(compile(&notify), Err(SeccompError::Notify)));
    }
}
