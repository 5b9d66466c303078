//! Protection of the runtime binary against a container overwriting it (CVE-2019-5736):
//! the container's processes are clones of the runtime until they execute their
//! program, so `/proc/PID/exe` (and a `#!/proc/self/exe` interpreter) reaches the
//! runtime's executable. Before creating containers, the runtime re-executes itself once
//! from a private, detached, read-only bind mount of its own binary: /proc/self/exe
//! then names a file that nothing can write through, and that mount is in no mount
//! namespace, so no one (not even a privileged container) can make it writable.
//! Where the mount API is missing (Linux < 5.12), a sealed memfd copy does the same job
//! at the price of a copy of the binary.
//!
//! That re-execution costs a start of the whole runtime (3 ms here). A container whose
//! setup no other process can watch (a new pid namespace, no hooks run inside it) can do
//! without it: the exposure is then only its final execve, where a program that is (or
//! whose interpreter is) `/proc/self/exe` would run the runtime. On x86_64 that execve
//! goes through [`exec_stub`]: a 200-byte static program in a sealed memfd, which
//! executes the container's program. `/proc/self/exe` is then the stub, which nothing
//! can write and which runs nothing when not called by the runtime.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use super::Error;

/// Whether this process's executable cannot be written: it lives on a read-only mount
/// or is a write-sealed memfd.
pub fn is_sealed() -> bool {
    let Ok(f) = std::fs::File::open("/proc/self/exe") else {
        return false;
    };
    if let Ok(s) = nix::sys::statvfs::fstatvfs(&f)
        && s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY)
    {
        return true;
    }
    // SAFETY: fcntl(2) F_GET_SEALS on a descriptor we own; no memory is passed.
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & libc::F_SEAL_WRITE != 0
}

/// Where a sealed process's binary came from, for [`program_path`].
const SEALED_FROM: &str = "RBOX_SEALED_FROM";

/// The path of this program's binary, also when it runs sealed (from a mount or memfd
/// without a path): to start another instance of it.
pub fn program_path() -> std::path::PathBuf {
    if is_sealed()
        && let Some(path) = std::env::var_os(SEALED_FROM)
    {
        return path.into();
    }
    std::env::current_exe().unwrap_or_else(|_| "rbox".into())
}

/// Re-executes the current program (same arguments and environment) from a read-only
/// view of its binary, unless it already runs from one. Call it first thing in `main`
/// of any program that creates containers or executes processes in them; it returns
/// `Ok` when the process is (already) protected, and does not return when it re-executes.
pub fn seal_current_exe() -> Result<(), Error> {
    if is_sealed() {
        return Ok(());
    }
    let exe = read_only_mount(c"/proc/self/exe").or_else(|_| sealed_copy())?;
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()).expect("arguments have no NUL"))
        .collect();
    // The sealed binary has no path (/proc/self/exe reads "/"); keep the original for
    // programs this one starts later (the DNS responder).
    let original = std::fs::read_link("/proc/self/exe").ok();
    let env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != SEALED_FROM)
        .chain(original.map(|p| (SEALED_FROM.into(), p.into_os_string())))
        .map(|(k, v)| {
            let mut b = k.as_bytes().to_vec();
            b.push(b'=');
            b.extend_from_slice(v.as_bytes());
            CString::new(b).expect("environment has no NUL")
        })
        .collect();
    let err = nix::unistd::execveat(&exe, c"", &args, &env, nix::fcntl::AtFlags::AT_EMPTY_PATH)
        .unwrap_err();
    Err(Error::io(
        "re-execute the runtime from its sealed binary",
        err,
    ))
}

/// argv[0] the runtime gives the stub; called with any other, it exits 127 at once.
const STUB_ARG0: &std::ffi::CStr = c"rbox-exec";

/// The stub's code (x86_64): with argv = [STUB_ARG0, path, args...], execve(path, args,
/// envp); when that fails, exit 127 for ENOENT, else 126 (the shell's codes).
#[cfg(target_arch = "x86_64")]
const STUB_CODE: &[u8] = &[
    0x48, 0x8b, 0x4c, 0x24, 0x08, // mov rcx, [rsp+8]          argv[0]
    0x48, 0x8b, 0x09, //             mov rcx, [rcx]            its first 8 bytes
    0x48, 0xba, b'r', b'b', b'o', b'x', b'-', b'e', b'x', b'e', // mov rdx, "rbox-exe"
    0x48, 0x39, 0xd1, //             cmp rcx, rdx
    0x75, 0x27, //                   jne not_called_by_us
    0x48, 0x8b, 0x04, 0x24, //       mov rax, [rsp]            argc
    0x48, 0x8d, 0x54, 0xc4, 0x10, // lea rdx, [rsp+rax*8+16]   envp
    0x48, 0x8d, 0x74, 0x24, 0x18, // lea rsi, [rsp+24]         argv + 2
    0x48, 0x8b, 0x7c, 0x24, 0x10, // mov rdi, [rsp+16]         argv[1]
    0xb8, 0x3b, 0x00, 0x00, 0x00, // mov eax, 59               execve
    0x0f, 0x05, //                   syscall
    0x48, 0x83, 0xf8, 0xfe, //       cmp rax, -ENOENT
    0x74, 0x07, //                   je not_found
    0xbf, 0x7e, 0x00, 0x00, 0x00, // mov edi, 126
    0xeb, 0x05, //                   jmp exit
    // not_called_by_us, not_found:
    0xbf, 0x7f, 0x00, 0x00, 0x00, // mov edi, 127
    // exit:
    0xb8, 0xe7, 0x00, 0x00, 0x00, // mov eax, 231              exit_group
    0x0f, 0x05, //                   syscall
];

/// The stub as a static ELF executable: header, one loadable segment, the code.
#[cfg(target_arch = "x86_64")]
fn stub_elf() -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const HEADERS: u64 = 64 + 56;
    let size = HEADERS + STUB_CODE.len() as u64;
    let mut elf = Vec::with_capacity(size as usize);
    // e_ident: ELF, 64-bit, little-endian, version 1, System V ABI.
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    elf.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    elf.extend_from_slice(&(BASE + HEADERS).to_le_bytes()); // e_entry
    elf.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for half in [64u16, 56, 1, 0, 0, 0] {
        // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        elf.extend_from_slice(&half.to_le_bytes());
    }
    elf.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // PF_R | PF_X
    for word in [0, BASE, BASE, size, size, 0x1000] {
        // p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
        elf.extend_from_slice(&word.to_le_bytes());
    }
    elf.extend_from_slice(STUB_CODE);
    elf
}

/// Whether this build has the exec stub (else containers need a sealed runtime).
pub fn has_exec_stub() -> bool {
    cfg!(target_arch = "x86_64")
}

/// The exec stub in a sealed memfd (close-on-exec), numbered `min_fd` or above so it
/// stays clear of descriptors a container keeps. `None` where there is no stub.
pub fn exec_stub(min_fd: i32) -> Result<Option<OwnedFd>, Error> {
    #[cfg(target_arch = "x86_64")]
    {
        let mut file = std::fs::File::from(executable_memfd(STUB_ARG0)?);
        std::io::Write::write_all(&mut file, &stub_elf())
            .map_err(|e| Error::io("write the exec stub", e))?;
        let seals =
            libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
        // SAFETY: fcntl(2) F_ADD_SEALS and F_DUPFD_CLOEXEC with integer arguments on our
        // memfd; the duplicate is a new descriptor we own.
        let high = unsafe {
            nix::Error::result(libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals))
                .map_err(|e| Error::io("seal the exec stub", e))?;
            let high =
                nix::Error::result(libc::fcntl(file.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min_fd))
                    .map_err(|e| Error::io("move the exec stub", e))?;
            OwnedFd::from_raw_fd(high)
        };
        Ok(Some(high))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = min_fd;
        Ok(None)
    }
}

/// Executes `path` (argv `args`, environment `env`) through the stub; returns only on
/// failure. Where seccomp refuses execveat, execve of the stub's /proc path does it.
pub fn exec_through_stub(
    stub: std::os::fd::BorrowedFd<'_>,
    path: &std::ffi::CStr,
    args: &[CString],
    env: &[CString],
) -> nix::Error {
    let mut argv: Vec<&std::ffi::CStr> = Vec::with_capacity(args.len() + 2);
    argv.push(STUB_ARG0);
    argv.push(path);
    argv.extend(args.iter().map(CString::as_c_str));
    let err = nix::unistd::execveat(stub, c"", &argv, env, nix::fcntl::AtFlags::AT_EMPTY_PATH)
        .unwrap_err();
    match err {
        nix::Error::EPERM | nix::Error::ENOSYS | nix::Error::EACCES => {
            let via_proc = CString::new(format!("/proc/self/fd/{}", stub.as_raw_fd()))
                .expect("no NUL in a number");
            nix::unistd::execve(&via_proc, &argv, env).unwrap_err()
        }
        other => other,
    }
}

/// A detached, read-only bind mount of a file (open_tree + mount_setattr).
fn read_only_mount(path: &std::ffi::CStr) -> Result<OwnedFd, Error> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    // SAFETY: open_tree(2) reads the NUL-terminated path; it returns a new descriptor.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    let fd = nix::Error::result(fd).map_err(|e| Error::io("open_tree of the runtime binary", e))?;
    // SAFETY: the kernel returned this new descriptor; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr(2) reads `attr` of the given size; the empty path with
    // AT_EMPTY_PATH names the descriptor itself.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    nix::Error::result(rc)
        .map_err(|e| Error::io("make the runtime binary's mount read-only", e))?;
    Ok(fd)
}

/// A memfd that can be executed and sealed: with MFD_EXEC where the kernel knows it
/// (6.3 and later, whose vm.memfd_noexec may make memfds unexecutable by default).
fn executable_memfd(name: &std::ffi::CStr) -> Result<OwnedFd, Error> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let flags = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
    match memfd_create(name, flags | MFdFlags::from_bits_retain(libc::MFD_EXEC)) {
        Err(nix::Error::EINVAL) => memfd_create(name, flags),
        other => other,
    }
    .map_err(|e| Error::io("memfd_create", e))
}

/// A sealed memfd holding a copy of our binary.
fn sealed_copy() -> Result<OwnedFd, Error> {
    let fd = executable_memfd(c"rbox-runc")?;
    let mut src = std::fs::File::open("/proc/self/exe")
        .map_err(|e| Error::io("open the runtime binary", e))?;
    let mut dst = std::fs::File::from(fd);
    std::io::copy(&mut src, &mut dst).map_err(|e| Error::io("copy the runtime binary", e))?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl(2) F_ADD_SEALS with an integer argument on our memfd.
    let rc = unsafe { libc::fcntl(dst.as_raw_fd(), libc::F_ADD_SEALS, seals) };
    nix::Error::result(rc).map_err(|e| Error::io("seal the runtime binary's copy", e))?;
    Ok(OwnedFd::from(dst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_copy_cannot_be_written() {
        let fd = sealed_copy().unwrap();
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let err = std::fs::OpenOptions::new().write(true).open(&path);
        // Opening may succeed, writing may not: the write seal forbids every write.
        if let Ok(mut f) = err {
            use std::io::Write;
            assert!(f.write_all(b"x").is_err());
        }
        // SAFETY: fcntl(2) F_GET_SEALS on our descriptor.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        assert_ne!(seals & libc::F_SEAL_WRITE, 0);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_exec_stub_runs_the_program_only_for_the_runtime() {
        use std::os::unix::process::CommandExt;
        let stub = exec_stub(3).unwrap().unwrap();
        assert!(stub.as_raw_fd() >= 3);
        let path = format!("/proc/self/fd/{}", stub.as_raw_fd());
        // Sealed: no write gets through.
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&path) {
            use std::io::Write;
            assert!(f.write_all(b"x").is_err());
        }
        let run = |arg0: &str, args: &[&str]| {
            // The child reaches the stub through our /proc/self/fd path: keep it open.
            let fd = stub.as_raw_fd();
            let mut cmd = std::process::Command::new(&path);
            cmd.arg0(arg0).args(args).env("STUB_TEST", "env passed");
            // SAFETY: fcntl(2) F_SETFD on a descriptor the child inherited.
            unsafe {
                cmd.pre_exec(move || {
                    libc::fcntl(fd, libc::F_SETFD, 0);
                    Ok(())
                });
            }
            cmd.output().unwrap()
        };
        let script = "echo $0 $1 $STUB_TEST";
        let out = run("rbox-exec", &["/bin/sh", "sh", "-c", script, "zero", "one"]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "zero one env passed\n"
        );
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(
            run("rbox-exec", &["/nonexistent", "x"]).status.code(),
            Some(127)
        );
        assert_eq!(
            run("rbox-exec", &["/etc/hostname", "x"]).status.code(),
            Some(126)
        );
        assert_eq!(
            run("rbox-exec", &[]).status.code(),
            Some(126),
            "no program: EFAULT"
        );
        // Not called by the runtime (a `#!/proc/self/exe` script, say): runs nothing.
        let out = run("/proc/self/exe", &["/bin/sh", "sh", "-c", "echo ran"]);
        assert_eq!(out.status.code(), Some(127));
        assert!(out.stdout.is_empty());
    }

    #[test]
    fn a_read_only_mount_refuses_writes() {
        // Needs CAP_SYS_ADMIN (tests run as root).
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("binary");
        std::fs::write(&file, "original").unwrap();
        let c = CString::new(file.as_os_str().as_bytes()).unwrap();
        let fd = read_only_mount(&c).unwrap();
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let err = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "original");
    }
}
