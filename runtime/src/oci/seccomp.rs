//! The config's seccomp profile, compiled with libseccomp to a BPF program in the caller
//! (so a bad profile fails before anything is created, and the child has nothing to
//! compute), then loaded in the container's process just before it runs the program.
//!
//! Programs are binary trees of syscall numbers (libseccomp's optimisation level 2), not
//! its default list: loading Docker's profile as a list (976 instructions for three
//! architectures) took the kernel 1.2 ms at every start here, mostly to precompute its
//! per-syscall cache by running the list once for each syscall number; as a tree it
//! takes 0.5 ms, and every syscall the container makes is matched in about ten
//! comparisons instead of up to 300.
//!
//! Compiling a large profile (Docker's) costs libseccomp milliseconds of CPU at every
//! create and exec, so programs are kept in a cache under the state root, as crun does:
//! a file per profile, named by the SHA-256 of what the program depends on (the profile,
//! libseccomp's version, the architecture) and holding those bytes in full, so that a
//! cached program is used only for exactly the input it was compiled from.

use std::io::{Read, Seek};
use std::path::Path;

use sha2::{Digest, Sha256};

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
    // libseccomp < 2.5 has no tree: its list is as correct, only slower.
    let _ = ctx.set_ctl_optimize(2);
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

/// The directory of cached programs, under a state root (not a valid container id).
pub const CACHE_DIR: &str = ".seccomp-cache";

const CACHE_MAGIC: &[u8] = b"rbox-seccomp-cache-1\n";

/// [`compile`], through the cache in `cache_dir` (made if missing). A cache that cannot
/// be read or written only costs the compilation.
pub fn compile_cached(s: &LinuxSeccomp, cache_dir: &Path) -> Result<Program, SeccompError> {
    check(s)?;
    let key = cache_key(s);
    let path = cache_dir.join(hex::encode(Sha256::digest(&key)));
    if let Some(p) = std::fs::read(&path)
        .ok()
        .and_then(|bytes| decode_cached(&bytes, &key))
    {
        return Ok(p);
    }
    let program = compile(s)?;
    let _ = write_cached(cache_dir, &path, &encode_cached(&key, &program));
    Ok(program)
}

/// How [`compile`] shapes programs: part of the cache key, so that programs of another
/// shape (rbox before trees, say) are never taken from a shared cache.
const PROGRAM_SHAPE: &str = "tree";

/// Everything the compiled program depends on.
fn cache_key(s: &LinuxSeccomp) -> Vec<u8> {
    let version = libseccomp::ScmpVersion::current()
        .map(|v| v.to_string())
        .unwrap_or_default();
    let mut key = format!("{}\0{version}\0{PROGRAM_SHAPE}\0", std::env::consts::ARCH).into_bytes();
    key.extend(serde_json::to_vec(s).expect("a seccomp profile serialises"));
    key
}

/// magic, key length, key, flags, BPF.
fn encode_cached(key: &[u8], p: &Program) -> Vec<u8> {
    let mut out = CACHE_MAGIC.to_vec();
    out.extend((key.len() as u64).to_le_bytes());
    out.extend(key);
    out.extend(p.flags.to_le_bytes());
    out.extend(&p.bpf);
    out
}

/// The program in a cache file, if the file holds exactly `key`'s and is whole.
fn decode_cached(bytes: &[u8], key: &[u8]) -> Option<Program> {
    let rest = bytes.strip_prefix(CACHE_MAGIC)?;
    let (len, rest) = rest.split_first_chunk::<8>()?;
    let rest = rest
        .strip_prefix(key)
        .filter(|_| u64::from_le_bytes(*len) == key.len() as u64)?;
    let (flags, bpf) = rest.split_first_chunk::<{ std::mem::size_of::<libc::c_ulong>() }>()?;
    let insn = std::mem::size_of::<libc::sock_filter>();
    (!bpf.is_empty() && bpf.len() % insn == 0 && bpf.len() / insn <= u16::MAX as usize).then(|| {
        Program {
            bpf: bpf.to_vec(),
            flags: libc::c_ulong::from_le_bytes(*flags),
        }
    })
}

fn write_cached(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
    {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    // Readers see no file or a whole one; they check it anyway.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
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

    /// The jumps of a program that compare the syscall number with `>` or `>=`: a list
    /// has none, a tree one per inner node.
    fn range_jumps(p: &Program) -> usize {
        const JGT: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
        const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
        p.bpf
            .chunks_exact(std::mem::size_of::<libc::sock_filter>())
            .filter(|i| matches!(u16::from_ne_bytes([i[0], i[1]]), JGT | JGE))
            .count()
    }

    #[test]
    fn programs_are_trees_of_syscall_numbers() {
        // 32 syscalls allowed, the rest denied.
        let names: Vec<&str> = "read write open close stat fstat lstat poll lseek mmap \
            mprotect munmap brk ioctl pread64 pwrite64 readv writev access pipe select \
            sched_yield mremap msync mincore madvise dup dup2 pause nanosleep getpid socket"
            .split_whitespace()
            .collect();
        let p = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]
        })))
        .unwrap();
        assert!(range_jumps(&p) >= 4, "{} range jumps", range_jumps(&p));
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
    fn the_cache_gives_the_compiled_program_for_the_same_profile_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join(CACHE_DIR);
        let a = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]
        }));
        let b = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]
        }));
        let first = compile_cached(&a, &cache).unwrap();
        assert_eq!(first, compile(&a).unwrap());
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
        assert_eq!(compile_cached(&a, &cache).unwrap(), first);
        assert_eq!(compile_cached(&b, &cache).unwrap(), compile(&b).unwrap());
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
        // A damaged or foreign file is not used (and is replaced).
        for entry in std::fs::read_dir(&cache).unwrap() {
            let path = entry.unwrap().path();
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.truncate(bytes.len() - 3);
            std::fs::write(&path, bytes).unwrap();
        }
        assert_eq!(compile_cached(&a, &cache).unwrap(), first);
        let key = cache_key(&a);
        let other = encode_cached(&cache_key(&b), &compile(&b).unwrap());
        assert_eq!(decode_cached(&other, &key), None);
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
