//! `rbox run`, `create`, `start`, `stop`, `kill`, `restart`, `rm`, `ps`, `logs`, `exec`,
//! `inspect`, `wait`, `attach` and `container prune`: flags as Docker spells them.

use std::path::PathBuf;

use clap::{ArgAction, Args, Subcommand};

/// The flags `create` and `run` share: what the container is made of.
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// Assign a name to the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from rbox's environment).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines, # comments).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (name or uid) and optionally group: USER[:GROUP].
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Override the image's entrypoint ("" resets it).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Bind-mount a host path: SRC:DST[:ro|rw].
    #[arg(short = 'v', long = "volume", value_name = "SRC:DST[:OPTS]")]
    pub volumes: Vec<String>,
    /// The container's hostname.
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Connect to a network (repeatable): bridge (default), host, none, or a user network.
    #[arg(long = "network", alias = "net", value_name = "NETWORK")]
    pub networks: Vec<String>,
    /// IPv4 address on the (first) user network.
    #[arg(long)]
    pub ip: Option<String>,
    /// MAC address on the (first) network.
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    /// Network-scoped alias on the (first) network (repeatable).
    #[arg(long = "network-alias", alias = "net-alias", value_name = "ALIAS")]
    pub network_aliases: Vec<String>,
    /// DNS server for the container (repeatable).
    #[arg(long)]
    pub dns: Vec<String>,
    /// DNS search domain (repeatable).
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// DNS resolver option (repeatable).
    #[arg(long = "dns-option", alias = "dns-opt")]
    pub dns_options: Vec<String>,
    /// Add an entry to /etc/hosts: NAME:IP (repeatable).
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_hosts: Vec<String>,
    /// Memory limit (e.g. 512m, 1g).
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Number of CPUs (e.g. 0.5).
    #[arg(long)]
    pub cpus: Option<String>,
    /// Limit on the number of processes (-1: unlimited).
    #[arg(long = "pids-limit", allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    /// Run an init (tini) as PID 1 that reaps zombies and forwards signals.
    #[arg(long)]
    pub init: bool,
    /// Mount the container's root filesystem read-only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Add a capability (or ALL).
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability (or ALL).
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Give the container all capabilities, all devices, no seccomp filter.
    #[arg(long)]
    pub privileged: bool,
    /// seccomp=unconfined, seccomp=PROFILE.json, no-new-privileges.
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opts: Vec<String>,
    /// Signal that stops the container (default: the image's, else SIGTERM).
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Seconds to wait after the stop signal before SIGKILL (default 10).
    #[arg(long = "stop-timeout", allow_negative_numbers = true)]
    pub stop_timeout: Option<i64>,
    /// Publish a port: [IP:][HOSTPORT:]CONTAINERPORT[/PROTO].
    #[arg(short = 'p', long = "publish", value_name = "PORTS")]
    pub publish: Vec<String>,
    /// Publish every port the image exposes on random host ports.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Keep stdin open.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Set a label: KEY=VALUE (repeatable).
    #[arg(short = 'l', long = "label")]
    pub labels: Vec<String>,
    /// The image, then the command and its arguments.
    #[arg(value_name = "IMAGE [COMMAND [ARG...]]", required = true, num_args = 1.., trailing_var_arg = true)]
    pub image_and_command: Vec<String>,
    #[arg(long, action = ArgAction::Help, help = "Print help")]
    pub help: Option<bool>,
}

#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run in the background and print the container's id.
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[command(flatten)]
    pub create: CreateArgs,
}

#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct CreateCmd {
    #[command(flatten)]
    pub create: CreateArgs,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach to the container's output and wait for it to exit.
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach stdin too.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before killing (default: the container's stop timeout).
    #[arg(
        short = 't',
        long = "time",
        alias = "timeout",
        allow_negative_numbers = true
    )]
    pub time: Option<i64>,
    /// Signal to send (default: the container's stop signal).
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send.
    #[arg(short = 's', long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill and remove running containers.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove anonymous volumes (accepted; rbox makes none).
    #[arg(short = 'v', long)]
    pub volumes: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers, not only running ones.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Do not truncate ids and commands.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Filter: id=, name=, status=, exited=, label=, ancestor=, network=.
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Show the latest created container only.
    #[arg(short = 'l', long)]
    pub latest: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow the log until the container stops.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Number of lines from the end ("all" for every line).
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps.
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Only lines since a time (RFC 3339, Unix seconds, or a duration such as 10m).
    #[arg(long)]
    pub since: Option<String>,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin open.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Run in the background.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Set an environment variable.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Working directory.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// User: USER[:GROUP].
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Give the process extended privileges (all capabilities).
    #[arg(long)]
    pub privileged: bool,
    /// The container, then the command and its arguments.
    #[arg(value_name = "CONTAINER COMMAND [ARG...]", required = true, num_args = 2.., trailing_var_arg = true)]
    pub container_and_command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Show sizes (accepted).
    #[arg(short = 's', long)]
    pub size: bool,
    /// Only objects of this type: container or image.
    #[arg(long = "type")]
    pub kind: Option<String>,
    #[arg(required = true, value_name = "NAME|ID")]
    pub targets: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ContainersArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Seconds to wait before killing.
    #[arg(
        short = 't',
        long = "time",
        alias = "timeout",
        allow_negative_numbers = true
    )]
    pub time: Option<i64>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Do not attach stdin.
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Forward signals received to the container (accepted; always on).
    #[arg(long = "sig-proxy", default_value_t = true, action = ArgAction::Set)]
    pub sig_proxy: bool,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation (rbox never asks).
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// The container verbs, at the top level (`rbox run`) and under `rbox container`.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Create and start a container.
    Run(Deferred<RunArgs>),
    /// Create a container without starting it.
    Create(Deferred<CreateCmd>),
    /// Start stopped containers.
    Start(Deferred<StartArgs>),
    /// Stop running containers.
    Stop(Deferred<StopArgs>),
    /// Send a signal to running containers.
    Kill(Deferred<KillArgs>),
    /// Restart containers.
    Restart(Deferred<RestartArgs>),
    /// Remove containers.
    Rm(Deferred<RmArgs>),
    /// Show a container's log.
    Logs(Deferred<LogsArgs>),
    /// Run a command in a running container.
    Exec(Deferred<ExecArgs>),
    /// Show containers (or images) in Docker's JSON shape.
    Inspect(Deferred<InspectArgs>),
    /// Wait for containers to stop and print their exit codes.
    Wait(Deferred<ContainersArgs>),
    /// Attach to a running container's stdio.
    Attach(Deferred<AttachArgs>),
}

/// `rbox container ...`: Docker's management command for containers.
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    #[command(flatten)]
    Verb(Verb),
    /// List containers.
    #[command(alias = "list", alias = "ps")]
    Ls(Deferred<PsArgs>),
    /// Remove all stopped containers.
    Prune(Deferred<PruneArgs>),
}

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsFd;
use std::process::ExitCode;

use super::GlobalOptions;
use super::deferred::Deferred;
use super::ps;
use crate::engine::options::{self, ContainerOptions, InvalidOption, NetworkRequest};
use crate::engine::pump::Local;
use crate::engine::record::Status;
use crate::engine::{
    self, Engine, Error, create, exec, inspect, launch, lifecycle, logs, terminal,
};

impl CreateArgs {
    /// Checks every flag and builds the container's options (nothing is created).
    pub fn to_options(&self) -> Result<ContainerOptions, InvalidOption> {
        let (image, command) = self
            .image_and_command
            .split_first()
            .ok_or_else(|| InvalidOption("give an image to run".into()))?;
        if let Some(n) = &self.name {
            engine::ids::validate_name(n).map_err(InvalidOption)?;
        }
        let lookup = |k: &str| std::env::var(k).ok();
        let mut env = Vec::new();
        for f in &self.env_file {
            env.extend(options::parse_env_file(f, lookup)?);
        }
        for e in &self.env {
            env.extend(options::parse_env(e, lookup)?);
        }
        let mut networks = self
            .networks
            .iter()
            .map(|n| options::parse_network(n))
            .collect::<Result<Vec<NetworkRequest>, _>>()?;
        if networks.is_empty() {
            networks.push(NetworkRequest {
                name: options::NETWORK_DEFAULT.into(),
                ..Default::default()
            });
        }
        let first = &mut networks[0];
        if let Some(ip) = &self.ip {
            first.ip = Some(options::parse_ip("--ip", ip)?);
        }
        if let Some(mac) = &self.mac_address {
            first.mac = Some(options::parse_mac(mac)?);
        }
        first.aliases.extend(self.network_aliases.iter().cloned());
        let security = options::parse_security_opts(&self.security_opts)?;
        let opts = ContainerOptions {
            name: self
                .name
                .clone()
                .map(|n| n.trim_start_matches('/').to_string()),
            image: image.clone(),
            command: command.to_vec(),
            entrypoint: self.entrypoint.as_ref().map(|e| {
                if e.is_empty() {
                    Vec::new()
                } else {
                    vec![e.clone()]
                }
            }),
            env,
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self
                .hostname
                .as_deref()
                .map(options::parse_hostname)
                .transpose()?,
            binds: self
                .volumes
                .iter()
                .map(|v| options::parse_bind(v))
                .collect::<Result<_, _>>()?,
            networks,
            dns: options::DnsOptions {
                servers: self
                    .dns
                    .iter()
                    .map(|d| options::parse_ip("--dns", d))
                    .collect::<Result<_, _>>()?,
                search: self.dns_search.clone(),
                options: self.dns_options.clone(),
            },
            extra_hosts: self
                .add_hosts
                .iter()
                .map(|h| options::parse_extra_host(h))
                .collect::<Result<_, _>>()?,
            resources: options::Resources {
                memory: self
                    .memory
                    .as_deref()
                    .map(options::parse_memory)
                    .transpose()?,
                nano_cpus: self
                    .cpus
                    .as_deref()
                    // Only then: counting the CPUs reads several cgroup files.
                    .map(|c| {
                        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
                        options::parse_cpus(c, available)
                    })
                    .transpose()?,
                pids_limit: self.pids_limit,
            },
            init: self.init,
            read_only: self.read_only,
            cap_add: options::parse_caps("--cap-add", &self.cap_add)?,
            cap_drop: options::parse_caps("--cap-drop", &self.cap_drop)?,
            privileged: self.privileged,
            seccomp: security.seccomp,
            no_new_privileges: security.no_new_privileges,
            security_opts: self.security_opts.clone(),
            stop_signal: self
                .stop_signal
                .as_deref()
                .map(|s| options::parse_signal(s).map(|s| s.as_str().to_string()))
                .transpose()?,
            stop_timeout: self.stop_timeout,
            ports: self
                .publish
                .iter()
                .map(|p| options::parse_port(p))
                .collect::<Result<_, _>>()?,
            publish_all: self.publish_all,
            interactive: self.interactive,
            tty: self.tty,
            auto_remove: self.rm,
            labels: self
                .labels
                .iter()
                .map(|l| options::parse_label(l))
                .collect::<Result<BTreeMap<_, _>, _>>()?,
        };
        options::check_combinations(&opts)?;
        Ok(opts)
    }
}

fn open(global: &GlobalOptions) -> Result<Engine, Error> {
    Engine::open(
        global.root.clone(),
        global.runroot.clone(),
        global.cgroup_parent.clone(),
        global.debug,
    )
}

/// Prints an error as Docker does and gives the exit status it goes with.
fn report(err: &Error) -> ExitCode {
    eprintln!("rbox: {err}");
    ExitCode::from(err.exit_code())
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(c.clamp(0, 255) as u8)
}

/// Runs `f` on each container named; prints each name done (as Docker does) or the
/// error; exit status 1 if any failed.
fn each(
    engine: &Engine,
    names: &[String],
    quiet: bool,
    f: impl Fn(&str) -> Result<(), Error>,
) -> ExitCode {
    let mut failed = false;
    for n in names {
        match engine.store.resolve(n).and_then(|id| f(&id)) {
            Ok(()) if !quiet => println!("{n}"),
            Ok(()) => {}
            Err(e) => {
                eprintln!("rbox: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs container `id` with this process as its monitor, attached to the user's
/// terminal or pipes; returns the container's exit code.
fn run_foreground(engine: &Engine, id: &str, remove_on_failure: bool) -> Result<i32, Error> {
    let rec = engine.store.load(id)?;
    let (tty, interactive) = (rec.options.tty, rec.options.interactive);
    launch::set_subreaper();
    let window = if tty {
        terminal::window_size(std::io::stdout())
    } else {
        None
    };
    let launched = launch::launch(engine, id, window).inspect_err(|_| {
        if remove_on_failure {
            let _ = launch::remove_container(engine, id);
        }
    })?;
    let stdin = std::io::stdin();
    let _raw = (tty && interactive && terminal::is_terminal(stdin.as_fd()))
        .then(|| terminal::RawMode::enter(stdin.as_fd()).ok())
        .flatten();
    Ok(launch::supervise(
        engine,
        id,
        launched,
        Some(Local {
            stdin: interactive,
            tty,
        }),
    ))
}

fn run(global: &GlobalOptions, args: &RunArgs) -> ExitCode {
    let result = (|| -> Result<ExitCode, Error> {
        let opts = args.create.to_options()?;
        let engine = open(global)?;
        let rec = create::create(&engine, opts)?;
        if args.detach {
            if let Err(e) = launch::launch_detached(&engine, &rec.id) {
                let _ = launch::remove_container(&engine, &rec.id);
                return Err(e);
            }
            println!("{}", rec.id);
            return Ok(ExitCode::SUCCESS);
        }
        run_foreground(&engine, &rec.id, true).map(code)
    })();
    result.unwrap_or_else(|e| report(&e))
}

fn create_cmd(global: &GlobalOptions, args: &CreateCmd) -> ExitCode {
    let result = (|| -> Result<(), Error> {
        let opts = args.create.to_options()?;
        let engine = open(global)?;
        let rec = create::create(&engine, opts)?;
        println!("{}", rec.id);
        Ok(())
    })();
    result
        .map(|()| ExitCode::SUCCESS)
        .unwrap_or_else(|e| report(&e))
}

fn start(engine: &Engine, args: StartArgs) -> ExitCode {
    if args.attach || args.interactive {
        if args.containers.len() > 1 {
            eprintln!("rbox: you cannot start and attach several containers at once");
            return ExitCode::from(1);
        }
        let result = lifecycle::resolve_live(engine, &args.containers[0]).and_then(|id| {
            let rec = engine.store.load(&id)?;
            if rec.state.status == Status::Running {
                return engine::client::attach(engine, &id, args.interactive);
            }
            run_foreground(engine, &id, false)
        });
        return result.map(code).unwrap_or_else(|e| report(&e));
    }
    each(engine, &args.containers, false, |id| {
        lifecycle::start(engine, id)
    })
}

fn signal_arg(s: Option<&str>) -> Result<Option<nix::sys::signal::Signal>, Error> {
    Ok(s.map(options::parse_signal).transpose()?)
}

fn ps(engine: &Engine, args: PsArgs) -> ExitCode {
    let result = (|| -> Result<(), Error> {
        let mut recs = lifecycle::list(engine)?;
        for f in &args.filters {
            let mut kept = Vec::new();
            for r in recs {
                if ps::matches(&r, f).map_err(|e| Error::InvalidOption(InvalidOption(e)))? {
                    kept.push(r);
                }
            }
            recs = kept;
        }
        if !args.all
            && !args.latest
            && !args
                .filters
                .iter()
                .any(|f| f.starts_with("status=") || f.starts_with("exited="))
        {
            recs.retain(|r| r.state.status == Status::Running);
        }
        if args.latest {
            recs.truncate(1);
        }
        let mut out = std::io::stdout().lock();
        if args.quiet {
            for r in &recs {
                let _ = writeln!(
                    out,
                    "{}",
                    if args.no_trunc {
                        r.id.as_str()
                    } else {
                        engine::ids::short(&r.id)
                    }
                );
            }
        } else {
            let _ = out.write_all(
                ps::table(
                    ps::HEADER,
                    &ps::rows(&recs, args.no_trunc, chrono::Utc::now()),
                )
                .as_bytes(),
            );
        }
        Ok(())
    })();
    result
        .map(|()| ExitCode::SUCCESS)
        .unwrap_or_else(|e| report(&e))
}

fn logs_cmd(engine: &Engine, args: LogsArgs) -> ExitCode {
    let result = (|| -> Result<(), Error> {
        let opts = logs::LogsOptions {
            follow: args.follow,
            tail: logs::parse_tail(&args.tail)?,
            timestamps: args.timestamps,
            since: args
                .since
                .as_deref()
                .map(|s| logs::parse_since(s, chrono::Utc::now()))
                .transpose()?,
        };
        let id = engine.store.resolve(&args.container)?;
        logs::logs(engine, &id, &opts)
    })();
    result.map(|()| ExitCode::SUCCESS).unwrap_or_else(|e| {
        eprintln!("rbox: {e}");
        ExitCode::from(1)
    })
}

fn inspect_cmd(engine: &Engine, args: InspectArgs) -> ExitCode {
    let mut out = Vec::new();
    let mut failed = false;
    for t in &args.targets {
        let container = match args.kind.as_deref() {
            Some("image") => None,
            _ => lifecycle::resolve_live(engine, t)
                .ok()
                .and_then(|id| engine.store.load(&id).ok()),
        };
        if let Some(rec) = container {
            out.push(inspect::container(engine, &rec));
            continue;
        }
        let image = match args.kind.as_deref() {
            Some("container") => None,
            _ => engine
                .images()
                .ok()
                .and_then(|s| s.inspect(t).ok())
                .and_then(|i| serde_json::to_value(i).ok()),
        };
        match image {
            Some(v) => out.push(v),
            None => {
                eprintln!("rbox: no such object: {t}");
                failed = true;
            }
        }
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&out).expect("JSON values serialise")
    );
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn wait_cmd(engine: &Engine, args: ContainersArgs) -> ExitCode {
    let mut failed = false;
    for n in &args.containers {
        match engine
            .store
            .resolve(n)
            .and_then(|id| lifecycle::wait(engine, &id))
        {
            Ok(c) => println!("{c}"),
            Err(e) => {
                eprintln!("rbox: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn prune(engine: &Engine) -> ExitCode {
    match lifecycle::prune(engine) {
        Ok(ids) => {
            println!("Deleted Containers:");
            for id in ids {
                println!("{id}");
            }
            println!("\nTotal reclaimed space: 0B");
            ExitCode::SUCCESS
        }
        Err(e) => report(&e),
    }
}

fn exec_cmd(engine: &Engine, args: ExecArgs) -> ExitCode {
    let (container, command) = args
        .container_and_command
        .split_first()
        .expect("clap requires a container and a command");
    let result = (|| -> Result<i32, Error> {
        let lookup = |k: &str| std::env::var(k).ok();
        let mut env = Vec::new();
        for e in &args.env {
            env.extend(options::parse_env(e, lookup)?);
        }
        let id = lifecycle::resolve_live(engine, container)?;
        exec::exec(
            engine,
            &id,
            &exec::ExecOptions {
                command: command.to_vec(),
                env,
                workdir: args.workdir.clone(),
                user: args.user.clone(),
                interactive: args.interactive,
                tty: args.tty,
                detach: args.detach,
                privileged: args.privileged,
            },
        )
    })();
    result.map(code).unwrap_or_else(|e| report(&e))
}

/// Whether the verb named `verb` needs rbox's own binary out of the containers' reach
/// (CVE-2019-5736) by re-executing it sealed: `exec`, whose process joins a container
/// where others can watch it; and, without an exec stub (see `oci::exe`), every verb
/// that starts one.
pub fn verb_needs_seal(verb: &str) -> bool {
    match verb {
        "exec" => true,
        "run" | "start" | "restart" => !crate::oci::has_exec_stub(),
        _ => false,
    }
}

fn needs_seal(cmd: &ContainerCommand) -> bool {
    verb_needs_seal(match cmd {
        ContainerCommand::Verb(Verb::Exec(_)) => "exec",
        ContainerCommand::Verb(Verb::Run(_)) => "run",
        ContainerCommand::Verb(Verb::Start(_)) => "start",
        ContainerCommand::Verb(Verb::Restart(_)) => "restart",
        _ => return false,
    })
}

/// Runs one container command; the exit status is Docker's.
pub fn dispatch(global: &GlobalOptions, cmd: ContainerCommand) -> ExitCode {
    if needs_seal(&cmd)
        && let Err(e) = crate::oci::seal_current_exe()
    {
        return report(&Error::Runtime(e.to_string()));
    }
    let verb = match cmd {
        ContainerCommand::Verb(Verb::Run(a)) => return run(global, &a),
        ContainerCommand::Verb(Verb::Create(a)) => return create_cmd(global, &a),
        other => other,
    };
    let engine = match open(global) {
        Ok(e) => e,
        Err(e) => return report(&e),
    };
    let verb = match verb {
        ContainerCommand::Ls(a) => return ps(&engine, a.into_inner()),
        ContainerCommand::Prune(_) => return prune(&engine),
        ContainerCommand::Verb(v) => v,
    };
    match verb {
        Verb::Run(_) | Verb::Create(_) => unreachable!("handled above"),
        Verb::Start(a) => start(&engine, a.into_inner()),
        Verb::Stop(a) => match signal_arg(a.signal.as_deref()) {
            Ok(sig) => each(&engine, &a.containers, false, |id| {
                lifecycle::stop(&engine, id, a.time, sig)
            }),
            Err(e) => report(&e),
        },
        Verb::Kill(a) => match options::parse_signal(&a.signal) {
            Ok(sig) => each(&engine, &a.containers, false, |id| {
                lifecycle::kill(&engine, id, sig)
            }),
            Err(e) => report(&e.into()),
        },
        Verb::Restart(a) => each(&engine, &a.containers, false, |id| {
            lifecycle::stop(&engine, id, a.time, None)?;
            lifecycle::start(&engine, id)
        }),
        Verb::Rm(a) => each(&engine, &a.containers, false, |id| {
            lifecycle::remove(&engine, id, a.force)
        }),
        Verb::Logs(a) => logs_cmd(&engine, a.into_inner()),
        Verb::Exec(a) => exec_cmd(&engine, a.into_inner()),
        Verb::Inspect(a) => inspect_cmd(&engine, a.into_inner()),
        Verb::Wait(a) => wait_cmd(&engine, a.into_inner()),
        Verb::Attach(a) => {
            let result = lifecycle::resolve_live(&engine, &a.container)
                .and_then(|id| engine::client::attach(&engine, &id, !a.no_stdin));
            result.map(code).unwrap_or_else(|e| report(&e))
        }
    }
}
