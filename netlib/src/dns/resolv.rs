//! The host's resolver configuration, turned into what a sandbox forwards to.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use resolv_conf::{Config, ScopedIp};

/// The host's resolv.conf.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// systemd-resolved's list of the real upstream servers, behind its 127.0.0.53 stub.
pub const RESOLVED_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";

/// Upstream servers and search domains a container inherits from the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostResolvConf {
    /// Nameservers on port 53, in order, without the ones a container cannot reach
    /// from its own namespace: loopback and scoped (link-local) addresses.
    pub upstreams: Vec<SocketAddr>,
    pub search: Vec<String>,
}

impl HostResolvConf {
    /// Reads the host's configuration. When `/etc/resolv.conf` names only loopback
    /// servers (systemd-resolved's stub) and systemd-resolved's own list exists, the
    /// servers come from that list instead, as Docker does.
    pub fn read_host() -> io::Result<HostResolvConf> {
        Self::read(Path::new(HOST_RESOLV_CONF), Path::new(RESOLVED_RESOLV_CONF))
    }

    /// [`HostResolvConf::read_host`] with the two files given.
    pub fn read(resolv_conf: &Path, resolved: &Path) -> io::Result<HostResolvConf> {
        let mut conf = Self::parse(&std::fs::read_to_string(resolv_conf)?)?;
        if conf.upstreams.is_empty()
            && let Ok(text) = std::fs::read_to_string(resolved)
        {
            conf.upstreams = Self::parse(&text)?.upstreams;
        }
        Ok(conf)
    }

    /// Parses resolv.conf text.
    pub fn parse(text: &str) -> io::Result<HostResolvConf> {
        let config =
            Config::parse(text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let upstreams = config
            .nameservers
            .iter()
            .filter_map(|ns| match ns {
                ScopedIp::V6(_, Some(_)) => None,
                ns => Some(IpAddr::from(ns)),
            })
            .filter(|ip| !ip.is_loopback())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        let search = config
            .get_last_search_or_domain()
            .map(|d| d.to_string())
            .collect();
        Ok(HostResolvConf { upstreams, search })
    }
}

/// The resolv.conf of a container served by the responder (Docker's shape): the
/// responder as its only nameserver, the `--dns-search` domains (else the host's;
/// `--dns-search .` means none), and `ndots:0` (so a bare container name is asked as is
/// first) unless a `--dns-option` sets ndots, then the `--dns-option`s.
pub fn container_resolv_conf(
    host: &HostResolvConf,
    dns_search: Option<&[String]>,
    dns_options: &[String],
) -> String {
    let mut out = format!("nameserver {}\n", super::RESPONDER_ADDR);
    let search: Vec<&str> = dns_search
        .map(|s| s.iter().map(String::as_str).filter(|d| *d != ".").collect())
        .unwrap_or_else(|| host.search.iter().map(String::as_str).collect());
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    let mut options: Vec<&str> = Vec::new();
    if !dns_options.iter().any(|o| o.starts_with("ndots:")) {
        options.push("ndots:0");
    }
    options.extend(dns_options.iter().map(String::as_str));
    out.push_str(&format!("options {}\n", options.join(" ")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_scoped_servers_are_left_out() {
        let conf = HostResolvConf::parse(
            "# comment\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\n\
             nameserver fe80::1%eth0\nnameserver 2001:db8::53\nsearch corp.example lab\n\
             options ndots:2 edns0\n",
        )
        .unwrap();
        assert_eq!(
            conf.upstreams,
            [
                "10.0.0.2:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::53]:53".parse().unwrap()
            ]
        );
        assert_eq!(conf.search, ["corp.example", "lab"]);
    }

    #[test]
    fn containers_ask_the_responder() {
        let host = HostResolvConf {
            upstreams: vec!["10.0.0.2:53".parse().unwrap()],
            search: vec!["corp.example".into()],
        };
        assert_eq!(
            container_resolv_conf(&host, None, &[]),
            "nameserver 127.0.0.11\nsearch corp.example\noptions ndots:0\n"
        );
        let search = ["a.test".to_string(), "b.test".to_string()];
        let opts = ["ndots:2".to_string(), "timeout:1".to_string()];
        assert_eq!(
            container_resolv_conf(&host, Some(&search), &opts),
            "nameserver 127.0.0.11\nsearch a.test b.test\noptions ndots:2 timeout:1\n"
        );
        assert_eq!(
            container_resolv_conf(&host, Some(&[".".to_string()]), &[]),
            "nameserver 127.0.0.11\noptions ndots:0\n"
        );
    }

    #[test]
    fn systemd_resolved_stub_is_seen_through() {
        let dir = tempfile::tempdir().unwrap();
        let (stub, real) = (dir.path().join("stub"), dir.path().join("real"));
        std::fs::write(&stub, "nameserver 127.0.0.53\nsearch home\n").unwrap();
        std::fs::write(&real, "nameserver 192.168.1.1\n").unwrap();
        let conf = HostResolvConf::read(&stub, &real).unwrap();
        assert_eq!(
            conf.upstreams,
            ["192.168.1.1:53".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(conf.search, ["home"]);
        // Without resolved's list, nothing reachable is left: forwarding answers SERVFAIL.
        let conf = HostResolvConf::read(&stub, &dir.path().join("missing")).unwrap();
        assert!(conf.upstreams.is_empty());
    }
}
