//! `rbox network ...`: create, ls, inspect, rm, prune (Docker's flags and output).
//! `connect`/`disconnect` need a running container and come with the engine; netlib's
//! `join`/`leave` already work on a live sandbox.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ipnet::IpNet;
use netlib::{Netlib, Network, NetworkCreate};
use serde::Serialize;

use super::{EXIT_RBOX_ERROR, GlobalOptions};

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network.
    Create(CreateArgs),
    /// List networks.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks.
    Inspect(InspectArgs),
    /// Remove one or more networks.
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove all unused networks.
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name of the new network.
    pub name: String,
    /// Driver to manage the network.
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format (e.g. 172.20.0.0/16).
    #[arg(long)]
    pub subnet: Vec<String>,
    /// Gateway for the subnet (default: its first address).
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Allocate container addresses from this sub-range (CIDR).
    #[arg(long)]
    pub ip_range: Vec<String>,
    /// Restrict external access to the network.
    #[arg(long)]
    pub internal: bool,
    /// Enable IPv6 networking (not supported yet).
    #[arg(long)]
    pub ipv6: bool,
    /// Set metadata on the network (KEY=VALUE).
    #[arg(long)]
    pub label: Vec<String>,
    /// Driver specific options (KEY=VALUE), e.g. com.docker.network.bridge.name=mybr.
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only display network IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter output (name=, id=, driver=, label=KEY[=VALUE], type=custom|builtin).
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Do not truncate the output.
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Networks (names or ids).
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Networks (names or ids).
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

/// Runs one `rbox network` subcommand.
pub fn run(global: &GlobalOptions, command: NetworkCommand) -> Result<ExitCode> {
    // Parse everything the user gave before touching any state.
    let create = match &command {
        NetworkCommand::Create(args) => Some(create_request(args)?),
        _ => None,
    };
    let filters = match &command {
        NetworkCommand::Ls(args) => parse_filters(&args.filter)?,
        _ => Vec::new(),
    };
    let netlib = global.open_netlib()?;
    match command {
        NetworkCommand::Create(_) => {
            let network = netlib.create_network(create.expect("parsed above"))?;
            println!("{}", network.id);
            if let Some(note) = netlib.create_note(&network) {
                eprintln!("rbox: {note}");
            }
        }
        NetworkCommand::Ls(args) => ls(&netlib, &args, &filters)?,
        NetworkCommand::Inspect(args) => return inspect(&netlib, &args.networks),
        NetworkCommand::Rm(args) => return rm(&netlib, &args.networks),
        NetworkCommand::Prune(args) => prune(&netlib, args.force)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn create_request(args: &CreateArgs) -> Result<NetworkCreate> {
    let cidr = |what: &str, s: &String| -> Result<IpNet> {
        s.parse()
            .with_context(|| format!("invalid {what} {s:?}: give a CIDR such as 172.20.0.0/16"))
    };
    let subnets = args
        .subnet
        .iter()
        .map(|s| cidr("subnet", s))
        .collect::<Result<Vec<_>>>()?;
    let ip_ranges = args
        .ip_range
        .iter()
        .map(|s| cidr("IP range", s))
        .collect::<Result<Vec<_>>>()?;
    let gateways = args
        .gateway
        .iter()
        .map(|g| {
            g.parse::<IpAddr>().with_context(|| {
                format!("invalid gateway {g:?}: give an IP address such as 172.20.0.1")
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(NetworkCreate {
        name: args.name.clone(),
        driver: Some(args.driver.clone()),
        subnets,
        ip_ranges,
        gateways,
        internal: args.internal,
        ipv6: args.ipv6,
        labels: key_values("--label", &args.label, true)?,
        options: key_values("-o/--opt", &args.opt, false)?,
    })
}

/// `KEY=VALUE` pairs (`KEY` alone allowed for labels, with an empty value).
fn key_values(flag: &str, items: &[String], bare_ok: bool) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in items {
        let (k, v) = match item.split_once('=') {
            Some((k, v)) => (k, v),
            None if bare_ok => (item.as_str(), ""),
            None => bail!("invalid {flag} {item:?}: give KEY=VALUE"),
        };
        if k.is_empty() {
            bail!("invalid {flag} {item:?}: the key is empty");
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Filter {
    Name(String),
    Id(String),
    Driver(String),
    Label(String, Option<String>),
    Custom(bool),
}

fn parse_filters(items: &[String]) -> Result<Vec<Filter>> {
    items
        .iter()
        .map(|item| {
            let Some((key, value)) = item.split_once('=') else {
                bail!("invalid filter {item:?}: give KEY=VALUE (name, id, driver, label, type)");
            };
            Ok(match key {
                "name" => Filter::Name(value.to_string()),
                "id" => Filter::Id(value.to_string()),
                "driver" => Filter::Driver(value.to_string()),
                "label" => match value.split_once('=') {
                    Some((k, v)) => Filter::Label(k.to_string(), Some(v.to_string())),
                    None => Filter::Label(value.to_string(), None),
                },
                "type" => match value {
                    "custom" => Filter::Custom(true),
                    "builtin" => Filter::Custom(false),
                    _ => bail!("invalid filter 'type={value}': use custom or builtin"),
                },
                _ => bail!("invalid filter {key:?}: use name, id, driver, label or type"),
            })
        })
        .collect()
}

/// Docker's rule: values of one key are alternatives; different keys must all match.
fn matches(network: &Network, filters: &[Filter]) -> bool {
    let test = |f: &Filter| match f {
        Filter::Name(v) => network.name.contains(v.as_str()),
        Filter::Id(v) => network.id.starts_with(v.as_str()),
        Filter::Driver(v) => &network.driver == v,
        Filter::Label(k, v) => network
            .labels
            .get(k)
            .is_some_and(|have| v.as_ref().is_none_or(|v| v == have)),
        Filter::Custom(custom) => network.is_predefined() != *custom,
    };
    let kind = |f: &Filter| std::mem::discriminant(f);
    filters
        .iter()
        .all(|f| filters.iter().filter(|g| kind(g) == kind(f)).any(test))
}

fn ls(netlib: &Netlib, args: &LsArgs, filters: &[Filter]) -> Result<()> {
    let networks: Vec<Network> = netlib
        .networks()?
        .into_iter()
        .filter(|n| matches(n, filters))
        .collect();
    let id = |n: &Network| {
        if args.no_trunc {
            n.id.clone()
        } else {
            n.short_id().to_string()
        }
    };
    let mut out = std::io::stdout().lock();
    if args.quiet {
        for n in &networks {
            writeln!(out, "{}", id(n))?;
        }
        return Ok(());
    }
    let mut rows = vec![[
        "NETWORK ID".to_string(),
        "NAME".into(),
        "DRIVER".into(),
        "SCOPE".into(),
    ]];
    rows.extend(
        networks
            .iter()
            .map(|n| [id(n), n.name.clone(), n.driver.clone(), "local".into()]),
    );
    write!(out, "{}", table(&rows))?;
    Ok(())
}

/// Columns as Docker's tabwriter lays them out (minimum width 10, padding 3; last column unpadded).
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| {
            rows.iter()
                .map(|r| r[c].len() + 3)
                .max()
                .unwrap_or(0)
                .max(10)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == N {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}", width = widths[c]));
            }
        }
        out.push('\n');
    }
    out
}

fn inspect(netlib: &Netlib, names: &[String]) -> Result<ExitCode> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in names {
        match netlib.network(name) {
            Ok(network) => found.push(netlib.inspect(&network)?),
            Err(netlib::Error::NetworkNotFound(_)) => missing.push(name),
            Err(e) => return Err(e.into()),
        }
    }
    print_json(&found)?;
    for name in &missing {
        eprintln!("rbox: no such network: {name}");
    }
    Ok(if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_RBOX_ERROR)
    })
}

/// JSON indented by four spaces, as Docker prints it.
fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut out,
        serde_json::ser::PrettyFormatter::with_indent(b"    "),
    );
    value.serialize(&mut ser)?;
    writeln!(out)?;
    Ok(())
}

fn rm(netlib: &Netlib, names: &[String]) -> Result<ExitCode> {
    let mut failed = false;
    for name in names {
        match netlib.remove_network(name) {
            Ok(_) => println!("{name}"),
            Err(e) => {
                eprintln!("rbox: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(EXIT_RBOX_ERROR)
    } else {
        ExitCode::SUCCESS
    })
}

fn prune(netlib: &Netlib, force: bool) -> Result<()> {
    if !force {
        eprint!(
            "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] "
        );
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(());
        }
    }
    let removed = netlib.prune()?;
    if !removed.is_empty() {
        println!("Deleted Networks:");
        for n in removed {
            println!("{}", n.name);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_dockers_layout() {
        let rows = [
            [
                "NETWORK ID".to_string(),
                "NAME".into(),
                "DRIVER".into(),
                "SCOPE".into(),
            ],
            [
                "6a2a8b5d1a2f".into(),
                "bridge".into(),
                "bridge".into(),
                "local".into(),
            ],
        ];
        assert_eq!(
            table(&rows),
            "NETWORK ID     NAME      DRIVER    SCOPE\n6a2a8b5d1a2f   bridge    bridge    local\n"
        );
    }

    #[test]
    fn filters_combine_like_dockers() {
        let mut net = netlib::defaults::predefined("bridge");
        net.labels.insert("env".into(), "prod".into());
        let f = |items: &[&str]| {
            parse_filters(&items.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
        };
        assert!(matches(&net, &f(&["name=bri"])));
        assert!(
            matches(&net, &f(&["name=nope", "name=bri"])),
            "same key: any"
        );
        assert!(
            !matches(&net, &f(&["name=bri", "driver=host"])),
            "different keys: all"
        );
        assert!(matches(
            &net,
            &f(&["label=env", "label=env=prod", "type=builtin"])
        ));
        assert!(!matches(&net, &f(&["label=env=dev"])));
        assert!(!matches(&net, &f(&["type=custom"])));
        assert!(matches(&net, &f(&[&format!("id={}", &net.id[..5])])));
        assert!(parse_filters(&["bogus=1".to_string()]).is_err());
    }

    #[test]
    fn bad_input_is_refused_before_anything_happens() {
        let args = |subnet: &str, opt: &str| CreateArgs {
            name: "n".into(),
            driver: "bridge".into(),
            subnet: vec![subnet.into()],
            gateway: vec![],
            ip_range: vec![],
            internal: false,
            ipv6: false,
            label: vec!["a".into()],
            opt: vec![opt.into()],
        };
        assert!(
            create_request(&args("300.1.0.0/16", "k=v"))
                .unwrap_err()
                .to_string()
                .contains("invalid subnet")
        );
        assert!(
            create_request(&args("10.0.0.0/8", "novalue"))
                .unwrap_err()
                .to_string()
                .contains("KEY=VALUE")
        );
        let req = create_request(&args("10.0.0.0/8", "k=v")).unwrap();
        assert_eq!(req.labels.get("a").map(String::as_str), Some(""));
    }
}
