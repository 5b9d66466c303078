//! Image commands: `pull`, `images`, `rmi`, `load`, `save`, `login`, `logout`, and the
//! `image` group (`ls`, `rm`, `prune`, `inspect`, …) with Docker's names and output.

use std::fs::File;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::{ArgAction, Args, Subcommand};
use images::{
    Console, ConsoleProgress, Credentials, Image, ImageStore, NoProgress, Platform, Progress,
    PullOptions, Reference,
};

use super::GlobalOptions;
use super::deferred::Deferred;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Download an image from a registry
    Pull(Deferred<PullArgs>),
    /// List images
    Images(Deferred<ListArgs>),
    /// Remove one or more images
    Rmi(Deferred<RmiArgs>),
    /// Load images from a `docker save` or OCI archive (file or stdin)
    Load(Deferred<LoadArgs>),
    /// Save images to an OCI archive (file or stdout)
    Save(Deferred<SaveArgs>),
    /// Log in to a registry
    Login(Deferred<LoginArgs>),
    /// Log out from a registry
    Logout(Deferred<LogoutArgs>),
    /// Manage images
    #[command(subcommand)]
    Image(Deferred<ImageSubcommand>),
}

#[derive(Debug, Subcommand)]
pub enum ImageSubcommand {
    /// List images
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// Remove one or more images
    #[command(visible_alias = "remove")]
    Rm(RmiArgs),
    /// Remove unused images
    Prune(PruneArgs),
    /// Show images' details as JSON
    Inspect(InspectArgs),
    /// Download an image from a registry
    Pull(PullArgs),
    /// Load images from a `docker save` or OCI archive (file or stdin)
    Load(LoadArgs),
    /// Save images to an OCI archive (file or stdout)
    Save(SaveArgs),
}

/// `--tls-verify[=BOOL]`, as podman spells it.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// Require HTTPS with a verified certificate (`--tls-verify=false` allows plain
    /// HTTP and unverified TLS; loopback registries always allow them)
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    tls_verify: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image to pull, e.g. `busybox`, `localhost:5000/app:1`, `app@sha256:…`
    name: String,
    /// Platform to pick from a multi-platform image (os/arch[/variant])
    #[arg(long)]
    platform: Option<String>,
    /// Print only the image's name
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only images of this repository (and tag)
    reference: Option<String>,
    /// Show all images (there are no intermediate images: same as without)
    #[arg(short, long)]
    all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Don't truncate IDs
    #[arg(long)]
    no_trunc: bool,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Images (names or IDs)
    #[arg(required = true)]
    images: Vec<String>,
    /// Remove even if a container uses it (the image is untagged and stays until then)
    #[arg(short, long)]
    force: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all images no container uses, not just untagged ones
    #[arg(short, long)]
    all: bool,
    /// Do not ask for confirmation
    #[arg(short, long)]
    force: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Images (names or IDs)
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from this archive instead of stdin
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Print nothing
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Images (names or IDs)
    #[arg(required = true)]
    images: Vec<String>,
    /// Write to this file instead of stdout
    #[arg(short, long)]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry (host[:port]); Docker Hub when omitted
    server: Option<String>,
    #[arg(short, long)]
    username: Option<String>,
    /// Password (prefer --password-stdin: command lines are visible to others)
    #[arg(short, long)]
    password: Option<String>,
    /// Read the password from stdin
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry (host[:port]); Docker Hub when omitted
    server: Option<String>,
}

/// Runs one image command.
pub fn run(global: &GlobalOptions, command: ImageCommand) -> Result<ExitCode> {
    let store = ImageStore::open(&global.root)
        .with_context(|| format!("opening the image store in {}", global.root.display()))?;
    match command {
        ImageCommand::Image(sub) => match sub.into_inner() {
            ImageSubcommand::Ls(a) => list(&store, a),
            ImageSubcommand::Rm(a) => remove(&store, a),
            ImageSubcommand::Prune(a) => prune(&store, a),
            ImageSubcommand::Inspect(a) => inspect(&store, a),
            ImageSubcommand::Pull(a) => pull(&store, a),
            ImageSubcommand::Load(a) => load(&store, a),
            ImageSubcommand::Save(a) => save(&store, a),
        },
        ImageCommand::Pull(a) => pull(&store, a.into_inner()),
        ImageCommand::Images(a) => list(&store, a.into_inner()),
        ImageCommand::Rmi(a) => remove(&store, a.into_inner()),
        ImageCommand::Load(a) => load(&store, a.into_inner()),
        ImageCommand::Save(a) => save(&store, a.into_inner()),
        ImageCommand::Login(a) => login(&store, a.into_inner()),
        ImageCommand::Logout(a) => logout(&store, a.into_inner()),
    }
}

fn pull(store: &ImageStore, a: PullArgs) -> Result<ExitCode> {
    let reference = Reference::parse(&a.name)?;
    let opts = PullOptions {
        platform: a.platform.as_deref().map(Platform::parse).transpose()?,
        insecure: !a.tls.tls_verify,
        ..PullOptions::default()
    };
    let console = ConsoleProgress::new(Console::Stdout);
    let progress: &dyn Progress = if a.quiet { &NoProgress } else { &console };
    store.pull(&reference, &opts, progress)?;
    println!("{reference}");
    Ok(ExitCode::SUCCESS)
}

/// One row of `rbox images`: an image under one of its names.
struct Row<'a> {
    repository: String,
    tag: String,
    digest: String,
    image: &'a Image,
}

fn rows(images: &[Image]) -> Vec<Row<'_>> {
    let mut rows = Vec::new();
    for image in images {
        let digest_of = |name: &str| {
            image
                .repo_digests
                .iter()
                .find(|d| d.split('@').next() == Some(name))
                .and_then(|d| d.split('@').nth(1))
                .unwrap_or("<none>")
                .to_string()
        };
        let mut named = Vec::new();
        for n in &image.names {
            if let Ok(r) = Reference::parse(n) {
                named.push(r.name());
                rows.push(Row {
                    repository: r.familiar_name(),
                    tag: r.tag().unwrap_or("<none>").to_string(),
                    digest: digest_of(&r.name()),
                    image,
                });
            }
        }
        // Repositories known only by digest show with a <none> tag, as in Docker.
        for rd in &image.repo_digests {
            if let Ok(r) = Reference::parse(rd)
                && !named.contains(&r.name())
            {
                named.push(r.name());
                rows.push(Row {
                    repository: r.familiar_name(),
                    tag: "<none>".into(),
                    digest: r.digest().unwrap_or("<none>").to_string(),
                    image,
                });
            }
        }
        if named.is_empty() {
            rows.push(Row {
                repository: "<none>".into(),
                tag: "<none>".into(),
                digest: "<none>".into(),
                image,
            });
        }
    }
    rows
}

fn list(store: &ImageStore, a: ListArgs) -> Result<ExitCode> {
    let mut images = store.list()?;
    images.sort_by(|x, y| y.created.cmp(&x.created).then(y.added.cmp(&x.added)));
    let mut rows = rows(&images);
    if let Some(filter) = &a.reference {
        // `busybox` matches every tag of the repository; `busybox:1` only that tag.
        let (repo, tag) = match filter.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, Some(t)),
            _ => (filter.as_str(), None),
        };
        let wanted = Reference::parse(repo)?.familiar_name();
        rows.retain(|r| r.repository == wanted && tag.is_none_or(|t| r.tag == t));
    }
    let id = |i: &Image| {
        if a.no_trunc {
            i.id.to_string()
        } else {
            i.id.short().to_string()
        }
    };
    let mut out = io::stdout().lock();
    if a.quiet {
        let mut seen = Vec::new();
        for r in &rows {
            let id = id(r.image);
            if !seen.contains(&id) {
                writeln!(out, "{id}")?;
                seen.push(id);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let _ = a.all;
    let now = Utc::now();
    let mut table = vec![{
        let mut h = vec!["REPOSITORY", "TAG"];
        if a.digests {
            h.push("DIGEST");
        }
        h.extend(["IMAGE ID", "CREATED", "SIZE"]);
        h.into_iter().map(String::from).collect::<Vec<_>>()
    }];
    for r in &rows {
        let mut line = vec![r.repository.clone(), r.tag.clone()];
        if a.digests {
            line.push(r.digest.clone());
        }
        line.push(id(r.image));
        line.push(
            r.image
                .created
                .map_or("N/A".into(), |c| format!("{} ago", human_duration(now, c))),
        );
        line.push(human_size(r.image.size));
        table.push(line);
    }
    print_table(&mut out, &table)?;
    Ok(ExitCode::SUCCESS)
}

/// Columns padded to their widest cell plus three spaces (Docker's tabwriter).
fn print_table(out: &mut impl Write, table: &[Vec<String>]) -> io::Result<()> {
    let cols = table.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in table {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == cols {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}", w = widths[c] + 3));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Docker's human durations: "5 seconds", "About a minute", "3 weeks", "2 years".
fn human_duration(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds().max(0);
    let (m, h, d) = (60, 3600, 86400);
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < m => format!("{s} seconds"),
        s if s < 2 * m => "About a minute".into(),
        s if s < h => format!("{} minutes", s / m),
        s if s < 2 * h => "About an hour".into(),
        s if s < 2 * d => format!("{} hours", s / h),
        s if s < 7 * d * 2 => format!("{} days", s / d),
        s if s < 30 * d * 2 => format!("{} weeks", s / (7 * d)),
        s if s < 365 * d * 2 => format!("{} months", s / (30 * d)),
        s => format!("{} years", s / (365 * d)),
    }
}

/// Docker's sizes: decimal units, three significant digits ("4.26MB", "120kB").
fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let mut s = format!("{v:.digits$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", units[u])
}

fn remove(store: &ImageStore, a: RmiArgs) -> Result<ExitCode> {
    let mut failed = Vec::new();
    for name in &a.images {
        match store.remove(name, a.force) {
            Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
            Err(e) => {
                eprintln!("rbox: {e}");
                failed.push(name.as_str());
            }
        }
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("could not remove {}", failed.join(", "))
    }
}

fn prune(store: &ImageStore, a: PruneArgs) -> Result<ExitCode> {
    if !a.force {
        let what = if a.all {
            "all images without at least one container associated to them"
        } else {
            "all dangling images"
        };
        print!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
        io::stdout().flush()?;
        let mut answer = String::new();
        io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let report = store.prune(a.all)?;
    if !report.lines.is_empty() {
        println!("Deleted Images:");
        report.lines.iter().for_each(|l| println!("{l}"));
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        human_size(report.reclaimed_bytes)
    );
    Ok(ExitCode::SUCCESS)
}

fn inspect(store: &ImageStore, a: InspectArgs) -> Result<ExitCode> {
    let mut found = Vec::new();
    let mut missing = None;
    for name in &a.images {
        match store.inspect(name) {
            Ok(v) => found.push(v),
            Err(e) => {
                eprintln!("rbox: {e}");
                missing = Some(e);
            }
        }
    }
    let mut out = io::stdout().lock();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut out,
        serde_json::ser::PrettyFormatter::with_indent(b"    "),
    );
    serde::Serialize::serialize(&found, &mut ser)?;
    writeln!(out)?;
    match missing {
        Some(e) => Err(e).context("inspecting images"),
        None => Ok(ExitCode::SUCCESS),
    }
}

fn load(store: &ImageStore, a: LoadArgs) -> Result<ExitCode> {
    let loaded = match &a.input {
        Some(path) => {
            let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            store.load(io::BufReader::with_capacity(1 << 20, file))?
        }
        None => {
            if io::stdin().is_terminal() {
                bail!(
                    "requested load from stdin, but stdin is a terminal: use -i FILE or redirect"
                );
            }
            store.load(io::BufReader::with_capacity(1 << 20, io::stdin().lock()))?
        }
    };
    if !a.quiet {
        for image in loaded {
            if image.names.is_empty() {
                println!("Loaded image ID: {}", image.id);
            }
            for n in image.names {
                println!("Loaded image: {n}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn save(store: &ImageStore, a: SaveArgs) -> Result<ExitCode> {
    let names: Vec<&str> = a.images.iter().map(String::as_str).collect();
    // Check every image first: a bad name must not leave a half-written archive.
    for n in &names {
        store.resolve(n)?;
    }
    match &a.output {
        Some(path) => save_to_file(store, &names, path)?,
        None => {
            if io::stdout().is_terminal() {
                bail!("refusing to write an archive to a terminal: use -o FILE or redirect");
            }
            store.save(
                &names,
                io::BufWriter::with_capacity(1 << 20, io::stdout().lock()),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes next to `path` and renames, so a failed save leaves no partial archive.
fn save_to_file(store: &ImageStore, names: &[&str], path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path.file_name().context("the output needs a file name")?;
    let tmp = dir.join(format!(
        ".{}.rbox-save-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        store.save(names, io::BufWriter::with_capacity(1 << 20, &file))?;
        file.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `https://host:5000/v2/` → `host:5000`; no server → Docker Hub.
fn registry_arg(server: Option<&str>) -> String {
    let Some(s) = server else {
        return "docker.io".into();
    };
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        h => h.to_string(),
    }
}

fn prompt(question: &str) -> Result<String> {
    eprint!("{question}");
    io::stderr().flush()?;
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Reads a password from the terminal without echoing it.
fn prompt_password() -> Result<String> {
    use nix::sys::termios::{self, LocalFlags, SetArg};
    let stdin = io::stdin();
    let saved = termios::tcgetattr(&stdin)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    termios::tcsetattr(&stdin, SetArg::TCSANOW, &quiet)?;
    let answer = prompt("Password: ");
    termios::tcsetattr(&stdin, SetArg::TCSANOW, &saved)?;
    eprintln!();
    answer
}

fn login(store: &ImageStore, a: LoginArgs) -> Result<ExitCode> {
    let registry = registry_arg(a.server.as_deref());
    if a.password.is_some() && a.password_stdin {
        bail!("--password and --password-stdin are mutually exclusive");
    }
    let interactive = io::stdin().is_terminal();
    let username = match a.username {
        Some(u) => u,
        None if interactive && !a.password_stdin => prompt("Username: ")?,
        None => bail!("a username is needed: use -u USER"),
    };
    let password = if let Some(p) = a.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p
    } else if a.password_stdin {
        let mut p = String::new();
        io::stdin().lock().read_to_string(&mut p)?;
        p.trim_end_matches(['\n', '\r']).to_string()
    } else if interactive {
        prompt_password()?
    } else {
        bail!("a password is needed: use --password-stdin or -p");
    };
    if username.is_empty() || password.is_empty() {
        bail!("the username and the password must not be empty");
    }
    let opts = PullOptions {
        insecure: !a.tls.tls_verify,
        ..PullOptions::default()
    };
    let file = store.login(&registry, &Credentials { username, password }, &opts)?;
    eprintln!("Credentials saved in {}", file.display());
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

fn logout(store: &ImageStore, a: LogoutArgs) -> Result<ExitCode> {
    let registry = registry_arg(a.server.as_deref());
    if store.logout(&registry)? {
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(120_000), "120kB");
        assert_eq!(human_size(1_200_000_000), "1.2GB");
        assert_eq!(human_size(7_170), "7.17kB");
        assert_eq!(human_size(10_000_000), "10MB");
    }

    #[test]
    fn durations_like_docker() {
        let now = Utc::now();
        let ago = |s: i64| human_duration(now, now - chrono::Duration::seconds(s));
        assert_eq!(ago(0), "Less than a second");
        assert_eq!(ago(30), "30 seconds");
        assert_eq!(ago(90), "About a minute");
        assert_eq!(ago(600), "10 minutes");
        assert_eq!(ago(5400), "About an hour");
        assert_eq!(ago(5 * 3600), "5 hours");
        assert_eq!(ago(3 * 86400), "3 days");
        assert_eq!(ago(21 * 86400), "3 weeks");
        assert_eq!(ago(90 * 86400), "3 months");
        assert_eq!(ago(3 * 365 * 86400), "3 years");
    }

    #[test]
    fn registry_arguments() {
        assert_eq!(registry_arg(None), "docker.io");
        assert_eq!(
            registry_arg(Some("https://index.docker.io/v1/")),
            "docker.io"
        );
        assert_eq!(registry_arg(Some("localhost:5000")), "localhost:5000");
        assert_eq!(
            registry_arg(Some("http://127.0.0.1:5000/v2/")),
            "127.0.0.1:5000"
        );
    }
}
