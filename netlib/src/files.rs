//! The sandbox files the engine bind-mounts into a container: `/etc/hosts`,
//! `/etc/hostname` and `/etc/resolv.conf`, following Docker's rules. The one place that
//! reads the host's resolv.conf: the embedded DNS takes its upstreams ([`upstreams`])
//! and search list from here too, so it agrees with what containers are given.

use std::net::IpAddr;

use crate::model::{Endpoint, SandboxConfig};
use crate::store::{StoreError, write_atomic};

/// Where the embedded DNS answers inside a sandbox (Docker's address).
pub const EMBEDDED_DNS: &str = "127.0.0.11";
/// Docker's nameservers when the host has none a container can reach.
const FALLBACK_NAMESERVERS: &[&str] = &["8.8.8.8", "8.8.4.4"];

/// How a sandbox resolves names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsMode {
    /// On a network with the embedded DNS: `nameserver 127.0.0.11`, `options ndots:0`.
    Embedded,
    /// In the host's namespace: the host's resolvers as they are (loopback ones work).
    HostNetwork,
    /// Anything else (default bridge, none): the host's resolvers minus loopback ones.
    Filtered,
}

/// The parts of a resolv.conf rbox keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parses resolv.conf text (`domain` counts as a one-entry search list, as in glibc).
    pub fn parse(text: &str) -> ResolvConf {
        let mut rc = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // Drop a zone suffix (`fe80::1%eth0`): unusable from a container anyway.
                    if let Some(addr) = words.next().and_then(|w| w.split('%').next()?.parse().ok())
                    {
                        rc.nameservers.push(addr);
                    }
                }
                Some("search") | Some("domain") => rc.search = words.map(String::from).collect(),
                Some("options") => rc.options.extend(words.map(String::from)),
                _ => {}
            }
        }
        rc
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for ns in &self.nameservers {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.search.is_empty() {
            out.push_str(&format!("search {}\n", self.search.join(" ")));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

/// The container's resolv.conf from the host's and the container's `--dns*` flags
/// (`--dns-search .` means no search domain).
pub fn resolv_conf(host: &ResolvConf, config: &SandboxConfig, mode: DnsMode) -> ResolvConf {
    let pick = |given: &Vec<String>, host: &Vec<String>| {
        if given.is_empty() {
            host.clone()
        } else {
            given.clone()
        }
    };
    let mut search = pick(&config.dns_search, &host.search);
    search.retain(|d| d != ".");
    let mut options = pick(&config.dns_options, &host.options);
    let nameservers = match mode {
        // `--dns` servers become the embedded DNS's upstreams (they stay in the sandbox record).
        DnsMode::Embedded => {
            if !options.iter().any(|o| o.starts_with("ndots:")) {
                options.push("ndots:0".into());
            }
            vec![EMBEDDED_DNS.parse().expect("valid address")]
        }
        _ if !config.dns.is_empty() => config.dns.clone(),
        DnsMode::HostNetwork => host.nameservers.clone(),
        DnsMode::Filtered => {
            let reachable = reachable_from_sandbox(&host.nameservers);
            if reachable.is_empty() {
                FALLBACK_NAMESERVERS
                    .iter()
                    .map(|a| a.parse().expect("valid address"))
                    .collect()
            } else {
                reachable
            }
        }
    };
    ResolvConf {
        nameservers,
        search,
        options,
    }
}

/// Where the embedded DNS forwards a sandbox's other names (from inside the sandbox):
/// its `--dns` servers, else the host's nameservers that a sandbox can reach. None left
/// means SERVFAIL: the embedded DNS never falls back to public resolvers.
pub fn upstreams(host: &ResolvConf, config: &SandboxConfig) -> Vec<IpAddr> {
    if config.dns.is_empty() {
        reachable_from_sandbox(&host.nameservers)
    } else {
        config.dns.clone()
    }
}

/// Nameservers without those a sandbox's namespace cannot reach: loopback ones (the
/// host's own stub) and IPv6 link-local ones (they need the host's interface).
fn reachable_from_sandbox(nameservers: &[IpAddr]) -> Vec<IpAddr> {
    nameservers
        .iter()
        .copied()
        .filter(|a| match a {
            IpAddr::V4(v4) => !v4.is_loopback(),
            IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unicast_link_local(),
        })
        .collect()
}

/// Reads the host's resolv.conf; behind systemd-resolved's stub, the real upstreams.
pub fn host_resolv_conf() -> ResolvConf {
    let main = ResolvConf::parse(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
    let stub: IpAddr = "127.0.0.53".parse().expect("valid address");
    if main.nameservers == [stub]
        && let Ok(text) = std::fs::read_to_string("/run/systemd/resolve/resolv.conf")
    {
        return ResolvConf::parse(&text);
    }
    main
}

const HOSTS_HEADER: &str = "127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
";

/// The container's `/etc/hosts`: Docker's localhost lines, `--add-host` entries, then
/// each address of the container with its hostname, name and aliases.
pub fn hosts(config: &SandboxConfig, endpoints: &[Endpoint]) -> String {
    let mut out = String::from(HOSTS_HEADER);
    for (name, addr) in &config.extra_hosts {
        out.push_str(&format!("{addr}\t{name}\n"));
    }
    let host_names = |ep: &Endpoint| {
        let mut names = Vec::new();
        if let Some(domain) = config.domainname.as_deref().filter(|d| !d.is_empty()) {
            names.push(format!("{}.{domain}", config.hostname));
        }
        names.push(config.hostname.clone());
        for n in std::iter::once(&ep.container_name).chain(&ep.aliases) {
            if !n.is_empty() && !names.contains(n) {
                names.push(n.clone());
            }
        }
        names.join(" ")
    };
    for ep in endpoints {
        for addr in &ep.addresses {
            out.push_str(&format!("{}\t{}\n", addr.addr(), host_names(ep)));
        }
    }
    out
}

/// Writes `hosts`, `hostname` and `resolv.conf` into `config.files_dir`.
pub fn write(config: &SandboxConfig, hosts: &str, resolv: &ResolvConf) -> Result<(), StoreError> {
    let dir = &config.files_dir;
    std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
        action: "create directory",
        path: dir.clone(),
        source,
    })?;
    write_atomic(&dir.join("hosts"), hosts.as_bytes(), false)?;
    write_atomic(
        &dir.join("hostname"),
        format!("{}\n", config.hostname).as_bytes(),
        false,
    )?;
    write_atomic(&dir.join("resolv.conf"), resolv.render().as_bytes(), false)
}

/// The host's own `/etc/hosts` with `--add-host` entries, for host networking.
pub fn host_network_hosts(config: &SandboxConfig) -> String {
    let mut out =
        std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| HOSTS_HEADER.to_string());
    if !out.ends_with('\n') {
        out.push('\n');
    }
    for (name, addr) in &config.extra_hosts {
        out.push_str(&format!("{addr}\t{name}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::new_id;

    const HOST: &str = "# comment\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nnameserver fe80::1%eth0\nsearch corp.example lab\noptions edns0 timeout:2\n";

    fn config() -> SandboxConfig {
        SandboxConfig {
            hostname: "abc123".into(),
            ..Default::default()
        }
    }

    #[test]
    fn default_bridge_drops_loopback_nameservers() {
        let rc = resolv_conf(&ResolvConf::parse(HOST), &config(), DnsMode::Filtered);
        assert_eq!(
            rc.render(),
            "nameserver 10.0.0.2\nsearch corp.example lab\noptions edns0 timeout:2\n"
        );
    }

    #[test]
    fn falls_back_to_docker_defaults_when_only_loopback_remains() {
        let host = ResolvConf::parse("nameserver 127.0.0.1\n");
        let rc = resolv_conf(&host, &config(), DnsMode::Filtered);
        assert_eq!(rc.render(), "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }

    #[test]
    fn flags_override_and_embedded_dns_on_user_networks() {
        let mut cfg = config();
        cfg.dns = vec!["192.0.2.1".parse().unwrap()];
        cfg.dns_search = vec!["example.org".into()];
        cfg.dns_options = vec!["attempts:3".into()];
        let host = ResolvConf::parse(HOST);
        assert_eq!(
            resolv_conf(&host, &cfg, DnsMode::Filtered).render(),
            "nameserver 192.0.2.1\nsearch example.org\noptions attempts:3\n"
        );
        assert_eq!(
            resolv_conf(&host, &config(), DnsMode::Embedded).render(),
            "nameserver 127.0.0.11\nsearch corp.example lab\noptions edns0 timeout:2 ndots:0\n"
        );
        assert_eq!(
            resolv_conf(&host, &config(), DnsMode::HostNetwork)
                .nameservers
                .len(),
            4,
            "host networking keeps loopback resolvers"
        );
        let mut none = config();
        none.dns_search = vec![".".into()];
        assert_eq!(
            resolv_conf(&host, &none, DnsMode::Embedded).render(),
            "nameserver 127.0.0.11\noptions edns0 timeout:2 ndots:0\n"
        );
    }

    #[test]
    fn the_embedded_dns_forwards_to_dns_flags_else_reachable_host_servers() {
        let host = ResolvConf::parse(HOST);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(upstreams(&host, &config()), [ip("10.0.0.2")]);
        let mut cfg = config();
        cfg.dns = vec![ip("192.0.2.1"), ip("2001:db8::53")];
        assert_eq!(upstreams(&host, &cfg), cfg.dns);
        let stub_only = ResolvConf::parse("nameserver 127.0.0.53\n");
        assert!(upstreams(&stub_only, &config()).is_empty());
    }

    #[test]
    fn hosts_lists_localhost_extra_hosts_and_container_addresses() {
        let mut cfg = config();
        cfg.extra_hosts = vec![("db".into(), "10.1.1.1".parse().unwrap())];
        let ep = Endpoint {
            id: new_id(),
            network_id: new_id(),
            network_name: "n".into(),
            container_id: new_id(),
            container_name: "web".into(),
            aliases: vec!["www".into()],
            hostname: "abc123".into(),
            addresses: vec!["172.18.0.2/16".parse().unwrap()],
            mac_address: String::new(),
            netns: None,
            interface: "eth0".into(),
            host_interface: None,
            default_route: true,
        };
        let text = hosts(&cfg, &[ep]);
        assert!(
            text.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
        );
        assert!(text.contains("10.1.1.1\tdb\n"));
        assert!(text.ends_with("172.18.0.2\tabc123 web www\n"), "{text}");
    }
}
