//! `rbox-runc`: runc's command line over [`crate::oci`], so that podman (`--runtime`)
//! and containerd's runc shim (`BinaryName`) can drive rbox. Output, error wording that
//! clients match ("does not exist") and exit codes follow runc.

mod exec;
mod foreground;
mod info;
mod lifecycle;
mod log;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::oci;

#[derive(Debug, Parser)]
#[command(
    name = "rbox-runc",
    about = "rbox's OCI runtime, with runc's command line",
    disable_version_flag = true
)]
pub struct Cli {
    /// Directory for the containers' state.
    #[arg(long, global = true, default_value = "/run/rbox-runc")]
    root: PathBuf,
    /// Also write log lines (and errors) to this file.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Format of the log lines.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log debug lines too.
    #[arg(long, global = true)]
    debug: bool,
    /// cgroupsPath is systemd's slice:prefix:name (the cgroups are still made directly).
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility (rbox-runc runs as root).
    #[arg(long, hide = true)]
    rootless: Option<String>,
    /// Print the version.
    #[arg(short = 'v', long = "version")]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a container from a bundle (it waits for `start`).
    Create(lifecycle::CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Create and start a container, wait for it and delete it (or detach).
    Run(lifecycle::RunArgs),
    /// Print a container's state as JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to a container's init, or to all its processes.
    Kill {
        /// Send to every process of the container.
        #[arg(short, long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Delete a container (with --force, even a running one).
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Run a new process in a running container.
    Exec(exec::ExecArgs),
    /// Suspend every process of a container.
    Pause { id: String },
    /// Resume a paused container.
    Resume { id: String },
    /// List the containers under --root.
    #[command(visible_alias = "ls")]
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        format: Format,
        /// Only the ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show a container's processes (`ps` arguments after the id).
    Ps {
        #[arg(short, long, value_enum, default_value = "table")]
        format: Format,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Write a default config.json (runc's) into the bundle directory.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// Accepted for runc compatibility.
        #[arg(long)]
        rootless: bool,
    },
    /// Print what this runtime supports, as JSON.
    Features,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

/// Runs `rbox-runc` and returns its exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.version {
        let libseccomp = libseccomp::ScmpVersion::current()
            .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
            .unwrap_or_default();
        println!(
            "rbox-runc version {}\nspec: {}\nlibseccomp: {libseccomp}",
            env!("CARGO_PKG_VERSION"),
            oci_spec::runtime::VERSION
        );
        return ExitCode::SUCCESS;
    }
    // Before any descriptor of ours exists: those passed on must be the caller's.
    let preserve = match &cli.command {
        Some(Command::Create(a)) => lifecycle::preserved(a.preserve_fds),
        Some(Command::Run(a)) => lifecycle::preserved(a.create.preserve_fds),
        Some(Command::Exec(a)) => a.preserve_fds,
        _ => 0,
    };
    if let Err(e) = oci::check_preserved_fds(preserve) {
        eprintln!("{e}");
        return ExitCode::from(1);
    }
    let logger = log::Logger::new(cli.log.as_deref(), cli.log_format, cli.debug);
    let Some(command) = cli.command else {
        eprintln!("rbox-runc: no command given (see --help)");
        return ExitCode::from(1);
    };
    // Commands that put processes in containers run from a sealed copy of this binary,
    // unless the exec stub suffices (see oci's `exe`).
    let needs_seal = match &command {
        Command::Create(a) => a.needs_seal(),
        Command::Run(a) => a.create.needs_seal(),
        Command::Exec(_) => true,
        _ => false,
    };
    if needs_seal && let Err(e) = oci::seal_current_exe() {
        logger.error(&e.to_string());
        return ExitCode::from(1);
    }
    let rt = oci::Runtime::new(&cli.root).with_systemd_cgroup(cli.systemd_cgroup);
    logger.debug(&format!("{command:?}"));
    match dispatch(&rt, command, &logger) {
        Ok(code) => code,
        Err(e) => {
            logger.error(&e.to_string());
            ExitCode::from(1)
        }
    }
}

fn dispatch(rt: &oci::Runtime, command: Command, logger: &log::Logger) -> oci::Result<ExitCode> {
    use lifecycle as l;
    let ok = |r: oci::Result<()>| r.map(|_| ExitCode::SUCCESS);
    match command {
        Command::Create(a) => ok(l::create(rt, a)),
        Command::Start { id } => ok(rt.load(&id)?.start()),
        Command::Run(a) => l::run(rt, a, logger),
        Command::State { id } => ok(l::state(rt, &id)),
        Command::Kill { all, id, signal } => ok(l::kill(rt, &id, signal.as_deref(), all)),
        Command::Delete { force, id } => ok(l::delete(rt, &id, force)),
        Command::Exec(a) => exec::exec(rt, a, logger),
        Command::Pause { id } => ok(rt.load(&id)?.pause()),
        Command::Resume { id } => ok(rt.load(&id)?.resume()),
        Command::List { format, quiet } => ok(info::list(rt, format, quiet)),
        Command::Ps {
            format,
            id,
            ps_args,
        } => ok(info::ps(rt, &id, format, &ps_args)),
        Command::Spec {
            bundle,
            rootless: _,
        } => ok(info::spec(&bundle)),
        Command::Features => ok(info::features()),
    }
}

/// Writes `pid` to `path` through a temporary file (clients read it as soon as it exists).
fn write_pid_file(path: &std::path::Path, pid: i32) -> oci::Result<()> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, pid.to_string())
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| oci::Error::io(format!("write pid file {}", path.display()), e))
}
