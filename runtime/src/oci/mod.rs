//! The OCI level: a bundle (`config.json` + root file system) in, a running process out.
//!
//! This is what `rbox-runc` exposes as runc's command line, and what the `rbox` engine
//! calls in-process. The API:
//!
//! ```text
//! seal_current_exe()                      first thing in main() of a program that creates
//!                                         or execs containers (CVE-2019-5736; see exe.rs)
//! Runtime::new(state_root)                runc's --root; the engine uses <runroot>/runtime
//!   .with_systemd_cgroup(bool)            read cgroupsPath as slice:prefix:name
//!   .create(id, bundle, CreateOptions)    -> Created { container, console }
//!   .create_from_spec(id, bundle, spec, CreateOptions)
//!   .load(id) -> Container                .list() -> Vec<Container>
//! Container
//!   .id() .pid() .bundle() .status() -> Status      .state() -> StateReport (runc's JSON)
//!   .start()                              run the program (status must be created)
//!   .kill(signal, all)                    all: every process of the container's cgroup
//!   .pause() .resume()                    cgroup freezer
//!   .exec(&Process, ExecOptions) -> ExecProcess { pid, console }
//!   .pids() -> Vec<i32>                   .spec() -> Spec (as created)
//!   .delete(force)                        force: kill a running container first
//! CreateOptions / ExecOptions { stdio: Stdio { stdin, stdout, stderr: Option<OwnedFd> },
//!                               console: Option<Console>, preserve_fds,
//!                               (create only:) no_pivot, start }
//!                                         start: run the program right away (no exec
//!                                         fifo, no separate start(): what `run` does)
//! Console::Return                         the pty master comes back in the result
//! Console::Socket(path)                   it is sent over a console socket (runc protocol)
//! Error                                   one enum; Display is one sentence
//! ```
//!
//! Processes: the init (and every exec'd process) is a child of the calling process —
//! the caller `waitpid`s it for the exit status. It is made with clone(2) straight from
//! the caller, without re-executing the runtime; the caller must therefore be
//! single-threaded when it calls `create` or `exec` (checked: [`Error::Threaded`]).
//! `None` stdio entries mean the child keeps the caller's descriptor; given descriptors
//! (pipes, /dev/null, a pty slave) become the process's 0, 1, 2. With
//! `process.terminal`, a new pty is opened from the container's devpts and its master
//! goes where `console` says.
//!
//! ```no_run
//! use rbox_runtime::oci::{self, Console, CreateOptions, Runtime};
//! # fn main() -> Result<(), oci::Error> {
//! oci::seal_current_exe()?; // at the top of main()
//! let rt = Runtime::new("/run/rbox/runtime");
//! let created = rt.create("web", "/var/lib/rbox/containers/web/bundle".as_ref(),
//!     CreateOptions { console: Some(Console::Return), ..Default::default() })?;
//! let pty_master = created.console; // relay it to the user
//! created.container.start()?;
//! let status = nix::sys::wait::waitpid(
//!     nix::unistd::Pid::from_raw(created.container.pid()), None);
//! rt.load("web")?.delete(false)?;
//! # let _ = (pty_master, status); Ok(()) }
//! ```

mod cgroups;
mod channel;
mod config;
mod container;
mod error;
mod exe;
mod hooks;
mod init;
mod mounts;
mod pathres;
mod process;
mod rootfs;
mod seccomp;
mod spawn;
mod state;
mod syscall;
mod terminal;

pub mod example;
pub mod features;

pub use cgroups::CgroupError;
pub use config::{ConfigError, load_spec, parse_process, parse_spec, validate_id};
pub use container::{
    Console, Container, CreateOptions, Created, ExecOptions, ExecProcess, Runtime, Stdio,
    check_preserved_fds, stub_suffices,
};
pub use error::{Error, Result};
pub use exe::{has_exec_stub, is_sealed, program_path, seal_current_exe};
pub use hooks::HookError;
pub use seccomp::SeccompError;
pub use state::{StateError, StateReport, Status};
pub use terminal::{get_size as terminal_size, set_size as set_terminal_size};
