//! The checked form of `rbox create`/`run` flags: one struct the container record keeps,
//! and the parsers that turn each flag's text into it. Every check that needs no kernel
//! object happens here, so bad input fails before anything is created.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::caps;
use super::seccomp;

/// A flag's value that cannot be used; the message names the flag and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidOption(pub String);

fn invalid<T>(msg: impl Into<String>) -> Result<T, InvalidOption> {
    Err(InvalidOption(msg.into()))
}

/// Everything a container was created with, checked (the record's `options`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ContainerOptions {
    pub name: Option<String>,
    /// The image reference as the user gave it.
    pub image: String,
    /// Arguments after the image (replace the image's Cmd when not empty).
    pub command: Vec<String>,
    /// `--entrypoint`: `Some(vec![])` resets the image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE` from `-e` and `--env-file`, in order (later wins).
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub binds: Vec<BindMount>,
    /// At least one: `bridge` unless `--network` was given.
    pub networks: Vec<NetworkRequest>,
    pub dns: DnsOptions,
    pub extra_hosts: Vec<ExtraHost>,
    pub resources: Resources,
    pub init: bool,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub seccomp: SeccompChoice,
    pub no_new_privileges: bool,
    /// `--security-opt` values as given (for `inspect`).
    pub security_opts: Vec<String>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    pub ports: Vec<PortSpec>,
    pub publish_all: bool,
    pub interactive: bool,
    pub tty: bool,
    pub auto_remove: bool,
    pub labels: BTreeMap<String, String>,
}

/// `-v SRC:DST[:OPTS]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
    /// Mount propagation (`rprivate` unless given).
    pub propagation: String,
}

/// One `--network`, with the options that apply to it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NetworkRequest {
    pub name: String,
    pub aliases: Vec<String>,
    pub ip: Option<IpAddr>,
    pub mac: Option<String>,
}

/// The special network modes that are not networks a container joins.
pub const NETWORK_HOST: &str = "host";
pub const NETWORK_NONE: &str = "none";
pub const NETWORK_DEFAULT: &str = "bridge";

impl NetworkRequest {
    /// True for `bridge`, `host` and `none`: networks that exist from the start.
    pub fn is_predefined(&self) -> bool {
        matches!(
            self.name.as_str(),
            NETWORK_DEFAULT | NETWORK_HOST | NETWORK_NONE
        )
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DnsOptions {
    pub servers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// `--add-host NAME:IP`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExtraHost {
    pub name: String,
    pub ip: IpAddr,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Resources {
    /// Bytes.
    pub memory: Option<i64>,
    /// CPUs × 10⁹ (Docker's NanoCpus).
    pub nano_cpus: Option<i64>,
    pub pids_limit: Option<i64>,
}

/// Which seccomp profile the container gets.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub enum SeccompChoice {
    /// Docker's default profile.
    #[default]
    Default,
    Unconfined,
    /// A profile in Docker's JSON format, read when the container was created.
    Custom(String),
}

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One `-p [IP:][HOSTPORT:]CONTAINERPORT[/PROTO]`, ranges kept as ranges.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PortSpec {
    pub host_ip: Option<IpAddr>,
    /// `None`: a random host port (per container port).
    pub host_ports: Option<(u16, u16)>,
    pub container_ports: (u16, u16),
    pub protocol: Protocol,
}

/// `-e KEY=VALUE` as given, or `-e KEY` taking KEY from rbox's own environment (dropped
/// when unset, as Docker does).
pub fn parse_env(
    item: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, InvalidOption> {
    let key = item.split('=').next().unwrap_or_default();
    if key.is_empty() {
        return invalid(format!(
            "invalid environment variable {item:?}: the name is empty"
        ));
    }
    if key.chars().any(char::is_whitespace) {
        return invalid(format!(
            "invalid environment variable {item:?}: the name has whitespace"
        ));
    }
    if item.contains('=') {
        Ok(Some(item.to_string()))
    } else {
        Ok(lookup(key).map(|v| format!("{key}={v}")))
    }
}

/// The entries of an `--env-file`: one `KEY=VALUE` or `KEY` a line, `#` comments.
pub fn parse_env_file(
    path: &Path,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, InvalidOption> {
    let text = std::fs::read_to_string(path)
        .or_else(|e| invalid(format!("cannot read env file {}: {e}", path.display())))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(entry) = parse_env(line, &lookup)
            .map_err(|e| InvalidOption(format!("{} in env file {}", e.0, path.display())))?
        {
            out.push(entry);
        }
    }
    Ok(out)
}

/// `-v SRC:DST[:OPTS]`: SRC an existing absolute host path, DST an absolute path in the
/// container, OPTS among `ro`, `rw`, a propagation mode, and SELinux's `z`/`Z` (accepted,
/// nothing to relabel here).
pub fn parse_bind(spec: &str) -> Result<BindMount, InvalidOption> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [src, dst] => (*src, *dst, ""),
        [src, dst, opts] => (*src, *dst, *opts),
        _ => {
            return invalid(format!(
                "invalid volume {spec:?}: expected SOURCE:DESTINATION[:OPTIONS], e.g. -v /srv/data:/data:ro"
            ));
        }
    };
    if src.is_empty() || dst.is_empty() {
        return invalid(format!(
            "invalid volume {spec:?}: source and destination must not be empty"
        ));
    }
    if !src.starts_with('/') {
        return invalid(format!(
            "invalid volume {spec:?}: {src:?} is not an absolute host path (named volumes are not supported)"
        ));
    }
    if !dst.starts_with('/') {
        return invalid(format!(
            "invalid volume {spec:?}: the destination {dst:?} must be an absolute path in the container"
        ));
    }
    if dst.trim_end_matches('/').is_empty() {
        return invalid(format!(
            "invalid volume {spec:?}: cannot mount over the container's /"
        ));
    }
    if dst.split('/').any(|c| c == "..") {
        return invalid(format!(
            "invalid volume {spec:?}: the destination must not contain \"..\""
        ));
    }
    let source = PathBuf::from(src);
    if std::fs::symlink_metadata(&source).is_err() {
        return invalid(format!(
            "invalid volume {spec:?}: the host path {src} does not exist"
        ));
    }
    let mut bind = BindMount {
        source,
        destination: dst.to_string(),
        read_only: false,
        propagation: "rprivate".into(),
    };
    let (mut mode_seen, mut prop_seen) = (false, false);
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" | "rw" if !mode_seen => {
                bind.read_only = opt == "ro";
                mode_seen = true;
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" if !prop_seen => {
                bind.propagation = opt.to_string();
                prop_seen = true;
            }
            "z" | "Z" => {}
            _ => {
                return invalid(format!(
                    "invalid volume {spec:?}: unknown or repeated option {opt:?} (use ro or rw, and optionally one of private, rprivate, shared, rshared, slave, rslave)"
                ));
            }
        }
    }
    Ok(bind)
}

/// `--memory`: a byte count with an optional unit b, k, m, g, t (powers of 1024).
pub fn parse_memory(text: &str) -> Result<i64, InvalidOption> {
    let lower = text.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let unit = unit
        .strip_suffix('b')
        .filter(|u| !u.is_empty())
        .unwrap_or(unit);
    let scale: i64 = match unit {
        "" | "b" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => {
            return invalid(format!(
                "invalid memory size {text:?}: use a number with b, k, m, g or t, e.g. 512m"
            ));
        }
    };
    let value: f64 = number.parse().or_else(|_| {
        invalid(format!(
            "invalid memory size {text:?}: use a number with b, k, m, g or t, e.g. 512m"
        ))
    })?;
    let bytes = (value * scale as f64) as i64;
    const MIN: i64 = 6 << 20;
    if bytes < MIN {
        return invalid(format!("invalid memory size {text:?}: the minimum is 6m"));
    }
    Ok(bytes)
}

/// `--cpus`: a positive decimal, at most the number of CPUs; returns NanoCpus.
pub fn parse_cpus(text: &str, available: usize) -> Result<i64, InvalidOption> {
    let cpus: f64 = text.trim().parse().or_else(|_| {
        invalid(format!(
            "invalid --cpus {text:?}: use a decimal number such as 0.5 or 2"
        ))
    })?;
    if !(cpus > 0.0 && cpus.is_finite()) || cpus < 0.01 || cpus > available as f64 {
        return invalid(format!(
            "invalid --cpus {text:?}: the range of CPUs is from 0.01 to {available}"
        ));
    }
    Ok((cpus * 1e9).round() as i64)
}

/// A signal by name (`TERM`, `SIGTERM`, any case) or number; returns the canonical name.
pub fn parse_signal(text: &str) -> Result<nix::sys::signal::Signal, InvalidOption> {
    use nix::sys::signal::Signal;
    use std::str::FromStr;
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Signal::try_from(n).or_else(|_| invalid(format!("invalid signal {text:?}")));
    }
    let upper = t.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).or_else(|_| invalid(format!("invalid signal {text:?}")))
}

/// `--add-host NAME:IP` (also `NAME=IP`; an IPv6 address may be in brackets).
pub fn parse_extra_host(text: &str) -> Result<ExtraHost, InvalidOption> {
    let (name, ip) = text
        .split_once('=')
        .or_else(|| text.split_once(':'))
        .ok_or_else(|| InvalidOption(format!("invalid --add-host {text:?}: expected NAME:IP")))?;
    let ip_text = ip.trim_start_matches('[').trim_end_matches(']');
    if ip_text == "host-gateway" {
        return invalid(format!(
            "invalid --add-host {text:?}: host-gateway is not supported; give the address"
        ));
    }
    if name.is_empty() || name.chars().any(|c| c.is_whitespace()) {
        return invalid(format!("invalid --add-host {text:?}: bad host name"));
    }
    let ip = ip_text.parse().or_else(|_| {
        invalid(format!(
            "invalid --add-host {text:?}: {ip_text:?} is not an IP address"
        ))
    })?;
    Ok(ExtraHost {
        name: name.to_string(),
        ip,
    })
}

/// A MAC address `xx:xx:xx:xx:xx:xx`, unicast; returned in lowercase.
pub fn parse_mac(text: &str) -> Result<String, InvalidOption> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|p| {
            if p.len() == 2 {
                u8::from_str_radix(p, 16).ok()
            } else {
                None
            }
        })
        .collect::<Option<Vec<u8>>>()
        .filter(|b| b.len() == 6)
        .ok_or_else(|| {
            InvalidOption(format!(
                "invalid MAC address {text:?}: expected xx:xx:xx:xx:xx:xx"
            ))
        })?;
    if bytes[0] & 1 == 1 {
        return invalid(format!(
            "invalid MAC address {text:?}: it is a multicast address"
        ));
    }
    Ok(text.to_ascii_lowercase())
}

/// `--hostname`: RFC 1123 labels, at most 64 characters in all.
pub fn parse_hostname(text: &str) -> Result<String, InvalidOption> {
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if text.len() > 64 || !text.split('.').all(ok_label) {
        return invalid(format!(
            "invalid hostname {text:?}: use letters, digits, '-' and '.' (at most 64 characters)"
        ));
    }
    Ok(text.to_string())
}

/// `--network NAME` or Docker's long form `--network name=NAME,alias=A,ip=IP,mac-address=M`.
pub fn parse_network(text: &str) -> Result<NetworkRequest, InvalidOption> {
    if text.is_empty() {
        return invalid("invalid --network \"\": give a network name");
    }
    if !text.contains('=') {
        if text.starts_with("container:") {
            return invalid(format!(
                "invalid --network {text:?}: joining another container's network is not supported"
            ));
        }
        return Ok(NetworkRequest {
            name: text.to_string(),
            ..Default::default()
        });
    }
    let mut req = NetworkRequest::default();
    for field in text.split(',') {
        let (k, v) = field.split_once('=').ok_or_else(|| {
            InvalidOption(format!(
                "invalid --network {text:?}: expected KEY=VALUE in {field:?}"
            ))
        })?;
        match k {
            "name" => req.name = v.to_string(),
            "alias" => req.aliases.push(v.to_string()),
            "ip" => req.ip = Some(parse_ip("--network ip", v)?),
            "mac-address" => req.mac = Some(parse_mac(v)?),
            _ => {
                return invalid(format!(
                    "invalid --network {text:?}: unknown key {k:?} (name, alias, ip, mac-address)"
                ));
            }
        }
    }
    if req.name.is_empty() {
        return invalid(format!("invalid --network {text:?}: name= is missing"));
    }
    Ok(req)
}

/// An IP address given to `flag`.
pub fn parse_ip(flag: &str, text: &str) -> Result<IpAddr, InvalidOption> {
    text.parse()
        .or_else(|_| invalid(format!("invalid {flag} {text:?}: not an IP address")))
}

/// `-p [IP:][HOSTPORT:]CONTAINERPORT[/PROTO]` with ranges (`8000-8010:80-90`) and IPv6
/// host addresses in brackets (`[::1]:8080:80`).
pub fn parse_port(text: &str) -> Result<PortSpec, InvalidOption> {
    let bad = |why: &str| InvalidOption(format!("invalid -p {text:?}: {why}"));
    let (rest, protocol) = match text.rsplit_once('/') {
        Some((r, "tcp")) => (r, Protocol::Tcp),
        Some((r, "udp")) => (r, Protocol::Udp),
        Some((r, "sctp")) => (r, Protocol::Sctp),
        Some(_) => return Err(bad("the protocol must be tcp, udp or sctp")),
        None => (text, Protocol::Tcp),
    };
    // Split off a bracketed IPv6 address first, then the colon-separated fields.
    let (host_ip, fields): (Option<IpAddr>, Vec<&str>) = if let Some(after) = rest.strip_prefix('[')
    {
        let (ip, tail) = after.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        let ip = ip.parse().map_err(|_| bad("bad IPv6 address"))?;
        let tail = tail
            .strip_prefix(':')
            .ok_or_else(|| bad("expected ':' after the address"))?;
        (Some(ip), tail.split(':').collect())
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        if parts.len() == 3 {
            let ip = if parts[0].is_empty() {
                None
            } else {
                Some(parts[0].parse().map_err(|_| bad("bad host IP address"))?)
            };
            (ip, parts[1..].to_vec())
        } else {
            (None, parts)
        }
    };
    let (host, container) = match fields.as_slice() {
        [c] if host_ip.is_none() => ("", *c),
        [h, c] => (*h, *c),
        _ => return Err(bad("expected [IP:][HOSTPORT:]CONTAINERPORT[/PROTOCOL]")),
    };
    let range = |s: &str| -> Result<(u16, u16), InvalidOption> {
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| bad("ports are numbers from 1 to 65535"))
        };
        let (a, b) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(s)?, port(s)?),
        };
        if a > b {
            return Err(bad("a port range must go upwards"));
        }
        Ok((a, b))
    };
    let container_ports = range(container)?;
    let host_ports = if host.is_empty() {
        None
    } else {
        Some(range(host)?)
    };
    if let Some((a, b)) = host_ports {
        let (ca, cb) = container_ports;
        if b - a != cb - ca && ca != cb {
            return Err(bad(
                "the host and container port ranges must have the same size",
            ));
        }
    }
    Ok(PortSpec {
        host_ip,
        host_ports,
        container_ports,
        protocol,
    })
}

/// What `--security-opt` asked for.
#[derive(Debug, Default, PartialEq)]
pub struct SecurityOpts {
    pub seccomp: SeccompChoice,
    pub no_new_privileges: bool,
}

/// `--security-opt seccomp=unconfined|PATH`, `no-new-privileges[=true|false]`.
pub fn parse_security_opts(opts: &[String]) -> Result<SecurityOpts, InvalidOption> {
    let mut out = SecurityOpts::default();
    for opt in opts {
        let (key, value) = opt
            .split_once('=')
            .or_else(|| opt.split_once(':'))
            .unwrap_or((opt.as_str(), ""));
        match (key, value) {
            ("seccomp", "unconfined") => out.seccomp = SeccompChoice::Unconfined,
            ("seccomp", "") => {
                return invalid(
                    "invalid --security-opt seccomp: give unconfined or a profile path",
                );
            }
            ("seccomp", path) => {
                let text = std::fs::read_to_string(path)
                    .or_else(|e| invalid(format!("cannot read seccomp profile {path}: {e}")))?;
                seccomp::Profile::parse(&text)
                    .map_err(|e| InvalidOption(format!("invalid seccomp profile {path}: {e}")))?;
                out.seccomp = SeccompChoice::Custom(text);
            }
            ("no-new-privileges", "" | "true") => out.no_new_privileges = true,
            ("no-new-privileges", "false") => out.no_new_privileges = false,
            _ => {
                return invalid(format!(
                    "unsupported --security-opt {opt:?}: rbox knows seccomp=unconfined, seccomp=PATH and no-new-privileges"
                ));
            }
        }
    }
    Ok(out)
}

/// Checks `--cap-add`/`--cap-drop` names and returns them as `CAP_X` (or `ALL`).
pub fn parse_caps(flag: &str, names: &[String]) -> Result<Vec<String>, InvalidOption> {
    names
        .iter()
        .map(|n| {
            caps::normalize(n)
                .ok_or_else(|| InvalidOption(format!("invalid {flag} {n:?}: unknown capability")))
        })
        .collect()
}

/// `--label KEY[=VALUE]`.
pub fn parse_label(text: &str) -> Result<(String, String), InvalidOption> {
    let (k, v) = text.split_once('=').unwrap_or((text, ""));
    if k.is_empty() {
        return invalid(format!("invalid --label {text:?}: the key is empty"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Checks the whole set for combinations that cannot work (each flag alone is fine).
pub fn check_combinations(o: &ContainerOptions) -> Result<(), InvalidOption> {
    let special = o
        .networks
        .iter()
        .find(|n| n.name == NETWORK_HOST || n.name == NETWORK_NONE);
    if let Some(s) = special
        && o.networks.len() > 1
    {
        return invalid(format!(
            "conflicting options: the {} network cannot be combined with other networks",
            s.name
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for n in &o.networks {
        if !seen.insert(n.name.as_str()) {
            return invalid(format!("network {:?} is given more than once", n.name));
        }
        if n.is_predefined() && !n.aliases.is_empty() {
            return invalid(format!(
                "network-scoped aliases are supported only on user-defined networks, not {:?}",
                n.name
            ));
        }
        if n.is_predefined() && n.ip.is_some() {
            return invalid(format!(
                "a user-specified IP address is supported only on user-defined networks, not {:?}",
                n.name
            ));
        }
        if (n.name == NETWORK_HOST || n.name == NETWORK_NONE) && n.mac.is_some() {
            return invalid(format!(
                "--mac-address cannot be used with the {} network",
                n.name
            ));
        }
    }
    if let Some(s) = special {
        if s.name == NETWORK_HOST && o.hostname.is_some() {
            return invalid("conflicting options: --hostname and the host network");
        }
        if !o.dns.servers.is_empty() && s.name == NETWORK_HOST {
            return invalid("conflicting options: --dns and the host network");
        }
        if !o.ports.is_empty() || o.publish_all {
            return invalid(format!(
                "conflicting options: ports cannot be published on the {} network",
                s.name
            ));
        }
    }
    let mut dests = std::collections::HashSet::new();
    for b in &o.binds {
        if !dests.insert(b.destination.trim_end_matches('/')) {
            return invalid(format!("duplicate mount point: {}", b.destination));
        }
    }
    if let Some(w) = &o.workdir
        && !w.starts_with('/')
    {
        return invalid(format!(
            "the working directory {w:?} is invalid: it needs to be an absolute path"
        ));
    }
    if o.stop_timeout.is_some_and(|t| t < -1) {
        return invalid("--stop-timeout must be -1 (wait forever) or a number of seconds");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_forms() {
        let lookup = |k: &str| (k == "HOME").then(|| "/root".to_string());
        assert_eq!(parse_env("A=1", lookup).unwrap().as_deref(), Some("A=1"));
        assert_eq!(parse_env("A=", lookup).unwrap().as_deref(), Some("A="));
        assert_eq!(
            parse_env("HOME", lookup).unwrap().as_deref(),
            Some("HOME=/root")
        );
        assert_eq!(parse_env("UNSET", lookup).unwrap(), None);
        assert!(parse_env("=x", lookup).is_err());
    }

    #[test]
    fn env_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("env");
        std::fs::write(&f, "# comment\nA=1\n\n  B=two words\nHOME\n").unwrap();
        let got = parse_env_file(&f, |_| Some("/h".into())).unwrap();
        assert_eq!(got, ["A=1", "B=two words", "HOME=/h"]);
        assert!(parse_env_file(&dir.path().join("missing"), |_| None).is_err());
    }

    #[test]
    fn binds() {
        let b = parse_bind("/tmp:/data").unwrap();
        assert_eq!(
            (b.source.as_path(), b.destination.as_str(), b.read_only),
            (Path::new("/tmp"), "/data", false)
        );
        assert_eq!(b.propagation, "rprivate");
        let b = parse_bind("/tmp:/data:ro,rshared").unwrap();
        assert!(b.read_only);
        assert_eq!(b.propagation, "rshared");
        for bad in [
            "/tmp",
            "data:/data",
            "/tmp:data",
            "/tmp:/",
            "/tmp:/a:bogus",
            "/tmp:/a:ro,rw",
            "/does/not/exist/rbox:/a",
            "/tmp:/a/../b",
            "/tmp:/a:ro:x",
        ] {
            let err = parse_bind(bad).unwrap_err().0;
            assert!(err.contains("invalid volume"), "{bad}: {err}");
        }
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_memory("10485760").unwrap(), 10 << 20);
        assert_eq!(parse_memory("1.5g").unwrap(), 3 << 29);
        assert!(parse_memory("1m").is_err());
        assert!(parse_memory("12q").is_err());
        assert!(parse_memory("m").is_err());
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("0.5", 2).unwrap(), 500_000_000);
        assert_eq!(parse_cpus("2", 2).unwrap(), 2_000_000_000);
        assert!(parse_cpus("3", 2).is_err());
        assert!(parse_cpus("0", 2).is_err());
        assert!(parse_cpus("abc", 2).is_err());
    }

    #[test]
    fn signals() {
        use nix::sys::signal::Signal;
        assert_eq!(parse_signal("TERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("sigusr1").unwrap(), Signal::SIGUSR1);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn extra_hosts() {
        let h = parse_extra_host("db:10.0.0.5").unwrap();
        assert_eq!(
            (h.name.as_str(), h.ip.to_string().as_str()),
            ("db", "10.0.0.5")
        );
        let h = parse_extra_host("v6=[::1]").unwrap();
        assert_eq!(h.ip.to_string(), "::1");
        assert!(parse_extra_host("db").is_err());
        assert!(parse_extra_host("db:notanip").is_err());
    }

    #[test]
    fn macs_and_hostnames() {
        assert_eq!(parse_mac("02:42:AC:11:00:02").unwrap(), "02:42:ac:11:00:02");
        assert!(parse_mac("01:00:5e:00:00:01").is_err());
        assert!(parse_mac("02:42:ac").is_err());
        assert!(parse_hostname("web-1.example").is_ok());
        assert!(parse_hostname("-web").is_err());
        assert!(parse_hostname("a_b").is_err());
    }

    #[test]
    fn networks() {
        assert_eq!(parse_network("localnet").unwrap().name, "localnet");
        let n = parse_network("name=a,alias=x,alias=y,ip=10.1.0.5,mac-address=02:00:00:00:00:01")
            .unwrap();
        assert_eq!(n.aliases, ["x", "y"]);
        assert_eq!(n.ip.unwrap().to_string(), "10.1.0.5");
        assert!(parse_network("alias=x").is_err());
        assert!(parse_network("name=a,bogus=1").is_err());
        assert!(parse_network("container:abc").is_err());
    }

    #[test]
    fn ports() {
        let p = parse_port("80").unwrap();
        assert_eq!(
            (p.host_ip, p.host_ports, p.container_ports, p.protocol),
            (None, None, (80, 80), Protocol::Tcp)
        );
        let p = parse_port("5000:80/udp").unwrap();
        assert_eq!(
            (p.host_ports, p.protocol),
            (Some((5000, 5000)), Protocol::Udp)
        );
        let p = parse_port("127.0.0.1:5000:80").unwrap();
        assert_eq!(p.host_ip.unwrap().to_string(), "127.0.0.1");
        let p = parse_port("127.0.0.1::80").unwrap();
        assert_eq!(p.host_ports, None);
        let p = parse_port("[::1]:8080:80").unwrap();
        assert_eq!(p.host_ip.unwrap().to_string(), "::1");
        let p = parse_port("8000-8010:80-90").unwrap();
        assert_eq!(
            (p.host_ports, p.container_ports),
            (Some((8000, 8010)), (80, 90))
        );
        for bad in [
            "0",
            "70000",
            "80/icmp",
            "8000-8001:80-90",
            "90-80",
            "a:b:c:d",
            "x:80",
        ] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn security_opts() {
        let s = parse_security_opts(&["seccomp=unconfined".into(), "no-new-privileges".into()])
            .unwrap();
        assert_eq!(s.seccomp, SeccompChoice::Unconfined);
        assert!(s.no_new_privileges);
        assert!(parse_security_opts(&["apparmor=x".into()]).is_err());
        assert!(parse_security_opts(&["seccomp=/no/such/profile.json".into()]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.json");
        std::fs::write(&f, r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#).unwrap();
        let s = parse_security_opts(&[format!("seccomp={}", f.display())]).unwrap();
        assert!(matches!(s.seccomp, SeccompChoice::Custom(_)));
    }

    #[test]
    fn combinations() {
        let net = |n: &str| NetworkRequest {
            name: n.into(),
            ..Default::default()
        };
        let mut o = ContainerOptions {
            networks: vec![net("host"), net("x")],
            ..Default::default()
        };
        assert!(check_combinations(&o).is_err());
        o.networks = vec![net("x"), net("x")];
        assert!(check_combinations(&o).is_err());
        o.networks = vec![NetworkRequest {
            name: "bridge".into(),
            aliases: vec!["a".into()],
            ..Default::default()
        }];
        assert!(check_combinations(&o).is_err());
        o.networks = vec![net("host")];
        o.hostname = Some("h".into());
        assert!(check_combinations(&o).is_err());
        o.hostname = None;
        assert!(check_combinations(&o).is_ok());
        o.workdir = Some("rel".into());
        assert!(check_combinations(&o).is_err());
    }
}
