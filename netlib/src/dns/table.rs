//! The name table: an immutable index of every network's names, built from a [`Snapshot`]
//! and looked up by the asking sandbox, so a name is answered only to sandboxes attached to
//! its network. Plain data, tested apart from any socket.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::rr::Name;

use super::snapshot::Snapshot;

/// Every network's records and every served sandbox's view of them.
#[derive(Debug, Default)]
pub struct NameTable {
    sandboxes: HashMap<String, SandboxEntry>,
    networks: Vec<NetworkTable>,
}

/// What one sandbox may resolve, and where the rest goes.
#[derive(Debug)]
pub struct SandboxEntry {
    /// Indices into [`NameTable::networks`]: the sandbox's DNS-enabled networks.
    networks: Vec<usize>,
    pub upstreams: Vec<SocketAddr>,
    /// Search domains, lower case, without leading or trailing dots.
    search: Vec<String>,
}

#[derive(Debug)]
struct NetworkTable {
    /// Lower case: `NAME.NETWORK` is answered as `NAME` on this network.
    name: String,
    by_name: HashMap<String, RecordSet>,
    /// PTR targets: `first-name.network.` of the endpoint holding the address.
    by_addr: HashMap<IpAddr, Vec<Name>>,
}

/// The addresses under one name on one network, with their round-robin turns.
#[derive(Debug, Default)]
struct RecordSet {
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
    // One turn per family: clients ask A and AAAA in pairs, and a shared counter would
    // then advance by two per A query and never rotate a pair of addresses.
    turn_v4: AtomicUsize,
    turn_v6: AtomicUsize,
}

/// Which address families a query wants (A, AAAA, both for ANY, neither when only
/// asking whether the name exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
    Both,
    Neither,
}

impl Family {
    fn v4(self) -> bool {
        matches!(self, Family::V4 | Family::Both)
    }
    fn v6(self) -> bool {
        matches!(self, Family::V6 | Family::Both)
    }
}

/// The addresses of a name the sandbox's networks own, rotated for this query.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Addresses {
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
}

/// Lower case, without a trailing dot: the form names are compared in.
pub fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl NameTable {
    /// Indexes a snapshot. Networks without DNS and sandboxes on none of the DNS-enabled
    /// networks are left out; endpoints without names only lose their records.
    pub fn build(snapshot: &Snapshot) -> NameTable {
        let mut networks = Vec::new();
        let mut index_of = HashMap::new();
        for net in snapshot.networks.iter().filter(|n| n.dns_enabled) {
            let mut table = NetworkTable {
                name: normalize(&net.name),
                by_name: HashMap::new(),
                by_addr: HashMap::new(),
            };
            for ep in &net.endpoints {
                for name in ep.names.iter().map(|n| normalize(n)) {
                    if name.is_empty() {
                        continue;
                    }
                    let set = table.by_name.entry(name).or_default();
                    if let Some(ip) = ep.ipv4.filter(|ip| !set.v4.contains(ip)) {
                        set.v4.push(ip);
                    }
                    if let Some(ip) = ep.ipv6.filter(|ip| !set.v6.contains(ip)) {
                        set.v6.push(ip);
                    }
                }
                let target =
                    ep.names.first().map(|n| normalize(n)).and_then(|first| {
                        Name::from_ascii(format!("{first}.{}.", table.name)).ok()
                    });
                if let Some(target) = target {
                    let addrs = ep.ipv4.map(IpAddr::V4).into_iter();
                    for ip in addrs.chain(ep.ipv6.map(IpAddr::V6)) {
                        let targets = table.by_addr.entry(ip).or_default();
                        if !targets.contains(&target) {
                            targets.push(target.clone());
                        }
                    }
                }
            }
            index_of.insert(net.id.as_str(), networks.len());
            networks.push(table);
        }

        let mut sandboxes = HashMap::new();
        for sb in &snapshot.sandboxes {
            let mut nets: Vec<usize> = sb
                .networks
                .iter()
                .filter_map(|id| index_of.get(id.as_str()).copied())
                .collect();
            nets.dedup();
            if nets.is_empty() {
                continue;
            }
            let search = sb
                .search
                .iter()
                .map(|d| normalize(d.trim_start_matches('.')))
                .filter(|d| !d.is_empty())
                .collect();
            sandboxes.insert(
                sb.id.clone(),
                SandboxEntry {
                    networks: nets,
                    upstreams: sb.upstreams.clone(),
                    search,
                },
            );
        }
        NameTable {
            sandboxes,
            networks,
        }
    }

    /// The served sandbox with this id, if it is one.
    pub fn sandbox(&self, id: &str) -> Option<&SandboxEntry> {
        self.sandboxes.get(id)
    }

    /// The addresses of `name` (normalized) of the wanted families on the sandbox's
    /// networks, in rotated order, or `None` when the name is not theirs (it goes
    /// upstream). A name with no address of a wanted family is still theirs: the answer
    /// is then NODATA, not upstream's.
    pub fn resolve(&self, sb: &SandboxEntry, name: &str, want: Family) -> Option<Addresses> {
        if let Some(found) = self.resolve_in_networks(sb, name, want) {
            return Some(found);
        }
        // Resolvers append the search domains before asking: strip them back off.
        sb.search.iter().find_map(|domain| {
            let stem = strip_domain(name, domain)?;
            self.resolve_in_networks(sb, stem, want)
        })
    }

    /// `name` on any of the sandbox's networks, else `name` as `NAME.NETWORK`.
    fn resolve_in_networks(
        &self,
        sb: &SandboxEntry,
        name: &str,
        want: Family,
    ) -> Option<Addresses> {
        let direct = self.collect(sb.networks.iter().copied(), name, want);
        if direct.is_some() {
            return direct;
        }
        sb.networks.iter().find_map(|&i| {
            let stem = strip_domain(name, &self.networks[i].name)?;
            self.collect(std::iter::once(i), stem, want)
        })
    }

    /// Merged, rotated addresses of `name` on the given networks; `None` if on none.
    fn collect(
        &self,
        nets: impl Iterator<Item = usize>,
        name: &str,
        want: Family,
    ) -> Option<Addresses> {
        let mut found: Option<Addresses> = None;
        for i in nets {
            let Some(set) = self.networks[i].by_name.get(name) else {
                continue;
            };
            let out = found.get_or_insert_with(Addresses::default);
            if want.v4() {
                merge(&mut out.v4, rotated(&set.v4, &set.turn_v4));
            }
            if want.v6() {
                merge(&mut out.v6, rotated(&set.v6, &set.turn_v6));
            }
        }
        found
    }

    /// PTR targets for an address on one of the sandbox's networks (empty: not ours).
    pub fn reverse(&self, sb: &SandboxEntry, ip: IpAddr) -> Vec<Name> {
        let mut out: Vec<Name> = Vec::new();
        for &i in &sb.networks {
            for target in self.networks[i].by_addr.get(&ip).into_iter().flatten() {
                if !out.contains(target) {
                    out.push(target.clone());
                }
            }
        }
        out
    }
}

/// `stem` when `name` is `stem.domain` (both normalized).
fn strip_domain<'a>(name: &'a str, domain: &str) -> Option<&'a str> {
    let stem = name.strip_suffix(domain)?.strip_suffix('.')?;
    (!stem.is_empty()).then_some(stem)
}

fn merge<T: PartialEq>(into: &mut Vec<T>, items: impl Iterator<Item = T>) {
    for item in items {
        if !into.contains(&item) {
            into.push(item);
        }
    }
}

/// The list rotated by one more step each call: DNS round robin.
fn rotated<'a, T: Copy>(items: &'a [T], turn: &AtomicUsize) -> impl Iterator<Item = T> + 'a {
    let start = match items.len() {
        0 | 1 => 0,
        n => turn.fetch_add(1, Ordering::Relaxed) % n,
    };
    items[start..].iter().chain(&items[..start]).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::snapshot::{EndpointNames, NetworkRecords, SandboxView};

    fn ep(names: &[&str], v4: &str, v6: Option<&str>) -> EndpointNames {
        EndpointNames {
            names: names.iter().map(|n| n.to_string()).collect(),
            ipv4: Some(v4.parse().unwrap()),
            ipv6: v6.map(|a| a.parse().unwrap()),
        }
    }

    fn sb(id: &str, nets: &[&str], search: &[&str]) -> SandboxView {
        SandboxView {
            id: id.into(),
            netns_path: format!("/run/rbox/netns/{id}").into(),
            networks: nets.iter().map(|n| n.to_string()).collect(),
            upstreams: vec!["10.0.0.53:53".parse().unwrap()],
            search: search.iter().map(|n| n.to_string()).collect(),
        }
    }

    /// Networks: `front` (web, web2 aliased "www", db with IPv6), `back` (db, cache),
    /// `bridge` without DNS (legacy). Sandboxes: a on front, b on front+back, c on back,
    /// d on bridge only.
    fn table() -> NameTable {
        NameTable::build(&Snapshot {
            networks: vec![
                NetworkRecords {
                    id: "n1".into(),
                    name: "front".into(),
                    dns_enabled: true,
                    endpoints: vec![
                        ep(&["web", "www"], "172.18.0.2", Some("fd00::2")),
                        ep(
                            &["Web2", "www.", "web2-host"],
                            "172.18.0.3",
                            Some("fd00::3"),
                        ),
                        ep(&["db"], "172.18.0.4", Some("fd00::4")),
                    ],
                },
                NetworkRecords {
                    id: "n2".into(),
                    name: "back".into(),
                    dns_enabled: true,
                    endpoints: vec![
                        ep(&["db"], "172.19.0.4", None),
                        ep(&["cache"], "172.19.0.5", None),
                    ],
                },
                NetworkRecords {
                    id: "n0".into(),
                    name: "bridge".into(),
                    dns_enabled: false,
                    endpoints: vec![ep(&["legacy"], "172.17.0.2", None)],
                },
            ],
            sandboxes: vec![
                sb("a", &["n1"], &["corp.example"]),
                sb("b", &["n1", "n2"], &[]),
                sb("c", &["n2"], &[]),
                sb("d", &["n0"], &[]),
            ],
        })
    }

    fn v4(t: &NameTable, sandbox: &str, name: &str) -> Option<Vec<String>> {
        let sb = t.sandbox(sandbox).unwrap();
        t.resolve(sb, &normalize(name), Family::V4)
            .map(|a| a.v4.iter().map(|ip| ip.to_string()).collect())
    }

    #[test]
    fn names_aliases_and_hostnames_resolve_case_insensitively() {
        let t = table();
        assert_eq!(v4(&t, "a", "web").unwrap(), ["172.18.0.2"]);
        assert_eq!(v4(&t, "a", "WEB2.").unwrap(), ["172.18.0.3"]);
        assert_eq!(v4(&t, "a", "web2-host").unwrap(), ["172.18.0.3"]);
        assert_eq!(v4(&t, "a", "nothing"), None);
    }

    #[test]
    fn network_and_search_domain_suffixes_are_stripped() {
        let t = table();
        assert_eq!(v4(&t, "a", "web.front").unwrap(), ["172.18.0.2"]);
        assert_eq!(v4(&t, "a", "web.corp.example").unwrap(), ["172.18.0.2"]);
        assert_eq!(
            v4(&t, "a", "web.front.corp.example").unwrap(),
            ["172.18.0.2"]
        );
        // b has no search domain; c is not on front.
        assert_eq!(v4(&t, "b", "web.corp.example"), None);
        assert_eq!(v4(&t, "c", "web.front"), None);
        // A suffix alone is not a name.
        assert_eq!(v4(&t, "a", "front"), None);
        assert_eq!(v4(&t, "a", ".front"), None);
    }

    #[test]
    fn names_are_answered_only_on_attached_networks() {
        let t = table();
        assert_eq!(v4(&t, "a", "cache"), None);
        assert_eq!(v4(&t, "c", "web"), None);
        assert_eq!(v4(&t, "c", "cache").unwrap(), ["172.19.0.5"]);
        // A sandbox on two networks sees both.
        assert_eq!(v4(&t, "b", "cache").unwrap(), ["172.19.0.5"]);
        assert_eq!(v4(&t, "b", "web").unwrap(), ["172.18.0.2"]);
        // Networks without DNS are not served, nor are sandboxes only on them.
        assert!(t.sandbox("d").is_none());
        assert_eq!(t.sandboxes.len(), 3);
        // `db.back` picks one network's db.
        assert_eq!(v4(&t, "b", "db.back").unwrap(), ["172.19.0.4"]);
    }

    #[test]
    fn shared_names_rotate_round_robin() {
        let t = table();
        let mut firsts = Vec::new();
        for _ in 0..4 {
            let got = v4(&t, "a", "www").unwrap();
            let mut sorted = got.clone();
            sorted.sort();
            assert_eq!(sorted, ["172.18.0.2", "172.18.0.3"]);
            firsts.push(got[0].clone());
        }
        assert_eq!(
            firsts,
            ["172.18.0.2", "172.18.0.3", "172.18.0.2", "172.18.0.3"]
        );
        // AAAA queries in between do not disturb the IPv4 rotation.
        let sb = t.sandbox("a").unwrap();
        let v6 = t.resolve(sb, "www", Family::V6).unwrap();
        assert_eq!(v6.v6.len(), 2);
        assert!(v6.v4.is_empty());
        let next = v4(&t, "a", "www").unwrap();
        assert_eq!(next[0], "172.18.0.2");
    }

    #[test]
    fn a_name_on_two_networks_merges_addresses() {
        let t = table();
        let sb = t.sandbox("b").unwrap();
        let got = t.resolve(sb, "db", Family::Both).unwrap();
        let mut v4 = got.v4.clone();
        v4.sort();
        assert_eq!(
            v4,
            [
                "172.18.0.4".parse::<Ipv4Addr>().unwrap(),
                "172.19.0.4".parse().unwrap()
            ]
        );
        assert_eq!(got.v6, ["fd00::4".parse::<Ipv6Addr>().unwrap()]);
        // A name with no IPv6 is still ours: empty v6, not None.
        let cache = t.resolve(sb, "cache", Family::V6).unwrap();
        assert!(cache.v6.is_empty() && cache.v4.is_empty());
    }

    #[test]
    fn reverse_lookups_name_the_container_on_its_network() {
        let t = table();
        let a = t.sandbox("a").unwrap();
        let names = t.reverse(a, "172.18.0.3".parse().unwrap());
        assert_eq!(names, [Name::from_ascii("web2.front.").unwrap()]);
        assert_eq!(
            t.reverse(a, "fd00::4".parse().unwrap()),
            [Name::from_ascii("db.front.").unwrap()]
        );
        // Not on a's networks.
        assert!(t.reverse(a, "172.19.0.5".parse().unwrap()).is_empty());
        assert!(t.reverse(a, "172.17.0.2".parse().unwrap()).is_empty());
    }

    #[test]
    fn build_scales_to_hundreds_of_endpoints() {
        let endpoints: Vec<_> = (0..1000u32)
            .map(|i| {
                let ip = Ipv4Addr::from(0xac12_0000 + i + 2).to_string();
                ep(&[&format!("c{i}"), &format!("alias{}", i % 10)], &ip, None)
            })
            .collect();
        let snap = Snapshot {
            networks: vec![NetworkRecords {
                id: "n".into(),
                name: "big".into(),
                dns_enabled: true,
                endpoints,
            }],
            sandboxes: (0..1000)
                .map(|i| sb(&format!("s{i}"), &["n"], &[]))
                .collect(),
        };
        let started = std::time::Instant::now();
        let t = NameTable::build(&snap);
        let took = started.elapsed();
        eprintln!("built a table of 1000 endpoints and 1000 sandboxes in {took:?}");
        let s = t.sandbox("s7").unwrap();
        assert_eq!(t.resolve(s, "c999", Family::V4).unwrap().v4.len(), 1);
        assert_eq!(t.resolve(s, "alias3", Family::V4).unwrap().v4.len(), 100);
    }
}
