//! IP address management: subnets for new networks (Docker's default pools, skipping
//! what other networks and the host already use), validation of `--subnet`,
//! `--ip-range`, `--gateway` and `--ip`, and the lease table of each network.
//!
//! Everything here is plain computation over [`IpAddr`]/[`IpNet`] (either family); the
//! caller holds the state lock around read-modify-write of a [`Leases`] table.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::model::Subnet;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpamError {
    #[error("invalid subnet {given}: it should be {canonical}")]
    NotCanonical { given: IpNet, canonical: IpNet },
    #[error("IP range {range} is not inside subnet {subnet}")]
    RangeOutsideSubnet { range: IpNet, subnet: IpNet },
    #[error("gateway {gateway} is not inside subnet {subnet}")]
    GatewayOutsideSubnet { gateway: IpAddr, subnet: IpNet },
    #[error("gateway {gateway} cannot be the network or broadcast address of {subnet}")]
    GatewayReserved { gateway: IpAddr, subnet: IpNet },
    #[error(
        "subnet {subnet} is too small for a network (needs room for a gateway and an endpoint)"
    )]
    SubnetTooSmall { subnet: IpNet },
    #[error("subnet {subnet} overlaps {other_subnet} of network {other}")]
    Overlap {
        subnet: IpNet,
        other_subnet: IpNet,
        other: String,
    },
    #[error(
        "no free subnet left in the default address pools: give one with --subnet, or remove unused networks (`rbox network prune`)"
    )]
    PoolsExhausted,
    #[error("address {addr} is not inside the network's subnet {subnet}")]
    AddressOutsideSubnet { addr: IpAddr, subnet: IpNet },
    #[error("address {addr} is not inside the network's IP range {range}")]
    AddressOutsideRange { addr: IpAddr, range: IpNet },
    #[error("address {addr} is reserved in {subnet} (network, broadcast or gateway address)")]
    AddressReserved { addr: IpAddr, subnet: IpNet },
    #[error("address {addr} is already in use by container {holder}")]
    AddressInUse { addr: IpAddr, holder: String },
    #[error("no free address left in {pool}")]
    Exhausted { pool: IpNet },
    #[error("address {addr} does not fit any subnet of the network")]
    NoSubnetForAddress { addr: IpAddr },
}

/// Docker's default address pools: (base, prefix length of the subnets cut from it).
const DEFAULT_POOLS: &[(&str, u8)] = &[
    ("172.17.0.0/16", 16),
    ("172.18.0.0/16", 16),
    ("172.19.0.0/16", 16),
    ("172.20.0.0/14", 16),
    ("172.24.0.0/14", 16),
    ("172.28.0.0/14", 16),
    ("192.168.0.0/16", 20),
];

/// True when the two subnets share any address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first subnet of the default pools that overlaps none of `in_use` (subnets of
/// other networks, routes and addresses of the host).
pub fn next_free_subnet(in_use: &[IpNet]) -> Result<IpNet, IpamError> {
    for (base, prefix) in DEFAULT_POOLS {
        let base: IpNet = base.parse().expect("default pool is a valid CIDR");
        let candidates = base
            .subnets(*prefix)
            .expect("pool prefix is longer than its base");
        for candidate in candidates {
            if !in_use.iter().any(|used| overlaps(used, &candidate)) {
                return Ok(candidate);
            }
        }
    }
    Err(IpamError::PoolsExhausted)
}

/// Checks a user's `--subnet`/`--ip-range`/`--gateway` and fills in the default gateway
/// (the first host address), as Docker does.
pub fn validate_subnet(
    subnet: IpNet,
    ip_range: Option<IpNet>,
    gateway: Option<IpAddr>,
) -> Result<Subnet, IpamError> {
    if subnet.trunc() != subnet {
        return Err(IpamError::NotCanonical {
            given: subnet,
            canonical: subnet.trunc(),
        });
    }
    if host_count(&subnet) < 2 {
        return Err(IpamError::SubnetTooSmall { subnet });
    }
    if let Some(range) = ip_range {
        if range.trunc() != range {
            return Err(IpamError::NotCanonical {
                given: range,
                canonical: range.trunc(),
            });
        }
        if !subnet.contains(&range) {
            return Err(IpamError::RangeOutsideSubnet { range, subnet });
        }
    }
    let gateway = match gateway {
        Some(gw) => {
            if !subnet.contains(&gw) {
                return Err(IpamError::GatewayOutsideSubnet {
                    gateway: gw,
                    subnet,
                });
            }
            if is_network_or_broadcast(&subnet, gw) {
                return Err(IpamError::GatewayReserved {
                    gateway: gw,
                    subnet,
                });
            }
            gw
        }
        None => offset(subnet.network(), 1),
    };
    Ok(Subnet {
        subnet,
        ip_range,
        gateway: Some(gateway),
    })
}

/// Refuses `candidate` if it overlaps a subnet of another network (`(name, subnet)` pairs).
pub fn check_overlap<'a>(
    candidate: &IpNet,
    others: impl IntoIterator<Item = (&'a str, &'a IpNet)>,
) -> Result<(), IpamError> {
    for (name, other) in others {
        if overlaps(candidate, other) {
            return Err(IpamError::Overlap {
                subnet: *candidate,
                other_subnet: *other,
                other: name.to_string(),
            });
        }
    }
    Ok(())
}

/// Who holds an address of a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub endpoint_id: String,
    pub container_id: String,
    pub container_name: String,
}

/// A network's leased addresses: `<runroot>/netlib/leases/<network-id>.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leases {
    pub addresses: BTreeMap<IpAddr, Lease>,
}

impl Leases {
    /// Leases `requested` (validated) or the lowest free address of each subnet's range
    /// for `lease`; returns the addresses with their subnet's prefix length. On error
    /// nothing is leased.
    pub fn allocate(
        &mut self,
        subnets: &[Subnet],
        requested: &[IpAddr],
        lease: &Lease,
    ) -> Result<Vec<IpNet>, IpamError> {
        for addr in requested {
            if !subnets.iter().any(|s| s.subnet.contains(addr)) {
                return Err(
                    match subnets.iter().find(|s| same_family(&s.subnet, addr)) {
                        Some(s) => IpamError::AddressOutsideSubnet {
                            addr: *addr,
                            subnet: s.subnet,
                        },
                        None => IpamError::NoSubnetForAddress { addr: *addr },
                    },
                );
            }
        }
        let mut chosen = Vec::with_capacity(subnets.len());
        for subnet in subnets {
            let addr = match requested.iter().find(|a| subnet.subnet.contains(*a)) {
                Some(addr) => self.check_static(subnet, *addr)?,
                None => self.first_free(subnet)?,
            };
            chosen.push(
                IpNet::new(addr, subnet.subnet.prefix_len()).expect("prefix of a valid subnet"),
            );
        }
        for net in &chosen {
            self.addresses.insert(net.addr(), lease.clone());
        }
        Ok(chosen)
    }

    /// Releases every address held by `endpoint_id`; returns how many were released.
    pub fn release(&mut self, endpoint_id: &str) -> usize {
        let before = self.addresses.len();
        self.addresses.retain(|_, l| l.endpoint_id != endpoint_id);
        before - self.addresses.len()
    }

    fn check_static(&self, subnet: &Subnet, addr: IpAddr) -> Result<IpAddr, IpamError> {
        if let Some(range) = subnet.ip_range
            && !range.contains(&addr)
        {
            return Err(IpamError::AddressOutsideRange { addr, range });
        }
        if is_network_or_broadcast(&subnet.subnet, addr) || subnet.gateway == Some(addr) {
            return Err(IpamError::AddressReserved {
                addr,
                subnet: subnet.subnet,
            });
        }
        if let Some(holder) = self.addresses.get(&addr) {
            return Err(IpamError::AddressInUse {
                addr,
                holder: holder.container_name.clone(),
            });
        }
        Ok(addr)
    }

    fn first_free(&self, subnet: &Subnet) -> Result<IpAddr, IpamError> {
        let pool = subnet.ip_range.unwrap_or(subnet.subnet);
        let start = to_u128(pool.network());
        let end = to_u128(pool.broadcast());
        let mut n = start;
        while n <= end {
            let addr = from_u128(n, pool.addr().is_ipv4());
            if !is_network_or_broadcast(&subnet.subnet, addr)
                && subnet.gateway != Some(addr)
                && !self.addresses.contains_key(&addr)
            {
                return Ok(addr);
            }
            n += 1;
        }
        Err(IpamError::Exhausted { pool })
    }
}

/// Docker's generated MAC address for an IPv4 endpoint: `02:42` then the four address bytes.
pub fn mac_from_ipv4(addr: Ipv4Addr) -> [u8; 6] {
    let o = addr.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// A random locally administered unicast MAC address (for links without an IPv4 address).
pub fn random_mac() -> [u8; 6] {
    let mut mac: [u8; 6] = rand::random();
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (unicast only).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    (mac[0] & 1 == 0).then_some(mac)
}

fn same_family(net: &IpNet, addr: &IpAddr) -> bool {
    net.addr().is_ipv4() == addr.is_ipv4()
}

/// Network and broadcast addresses are reserved in IPv4; in IPv6 only the
/// subnet-router anycast address (the network address) is.
fn is_network_or_broadcast(subnet: &IpNet, addr: IpAddr) -> bool {
    addr == subnet.network() || (addr.is_ipv4() && addr == subnet.broadcast())
}

/// Usable host addresses of a subnet (saturating for huge IPv6 ones).
fn host_count(subnet: &IpNet) -> u128 {
    let bits = u32::from(subnet.max_prefix_len() - subnet.prefix_len());
    let total = 1u128.checked_shl(bits).unwrap_or(u128::MAX);
    if subnet.addr().is_ipv4() {
        total.saturating_sub(2)
    } else {
        total.saturating_sub(1)
    }
}

fn to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(n: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

fn offset(addr: IpAddr, by: u128) -> IpAddr {
    from_u128(to_u128(addr) + by, addr.is_ipv4())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn lease(n: &str) -> Lease {
        Lease {
            endpoint_id: n.into(),
            container_id: n.into(),
            container_name: n.into(),
        }
    }

    #[test]
    fn pool_skips_used_subnets_and_host_routes() {
        assert_eq!(next_free_subnet(&[]).unwrap(), net("172.17.0.0/16"));
        let used = [net("172.17.0.0/16"), net("172.18.0.0/16")];
        assert_eq!(next_free_subnet(&used).unwrap(), net("172.19.0.0/16"));
        // A host route inside a candidate disqualifies it; so does a covering one.
        let used = [
            net("172.17.0.0/16"),
            net("172.18.5.0/24"),
            net("172.19.0.0/16"),
        ];
        assert_eq!(next_free_subnet(&used).unwrap(), net("172.20.0.0/16"));
        let used = [net("172.16.0.0/12")];
        assert_eq!(next_free_subnet(&used).unwrap(), net("192.168.0.0/20"));
        let used = [net("172.16.0.0/12"), net("192.168.0.0/17")];
        assert_eq!(next_free_subnet(&used).unwrap(), net("192.168.128.0/20"));
        let used = [net("172.16.0.0/12"), net("192.168.0.0/16")];
        assert_eq!(next_free_subnet(&used), Err(IpamError::PoolsExhausted));
    }

    #[test]
    fn validation_of_subnet_range_gateway() {
        let s = validate_subnet(net("10.1.0.0/24"), None, None).unwrap();
        assert_eq!(s.gateway, Some(ip("10.1.0.1")));
        let s = validate_subnet(
            net("10.1.0.0/24"),
            Some(net("10.1.0.128/25")),
            Some(ip("10.1.0.254")),
        )
        .unwrap();
        assert_eq!(s.gateway, Some(ip("10.1.0.254")));
        assert!(matches!(
            validate_subnet(net("10.1.0.1/24"), None, None),
            Err(IpamError::NotCanonical { .. })
        ));
        assert!(matches!(
            validate_subnet(net("10.1.0.0/24"), Some(net("10.2.0.0/25")), None),
            Err(IpamError::RangeOutsideSubnet { .. })
        ));
        assert!(matches!(
            validate_subnet(net("10.1.0.0/24"), None, Some(ip("10.9.0.1"))),
            Err(IpamError::GatewayOutsideSubnet { .. })
        ));
        assert!(matches!(
            validate_subnet(net("10.1.0.0/24"), None, Some(ip("10.1.0.255"))),
            Err(IpamError::GatewayReserved { .. })
        ));
        assert!(matches!(
            validate_subnet(net("10.1.0.0/31"), None, None),
            Err(IpamError::SubnetTooSmall { .. })
        ));
        // Address-family agnostic: an IPv6 subnet validates the same way.
        let s = validate_subnet(net("fd00:1::/64"), None, None).unwrap();
        assert_eq!(s.gateway, Some(ip("fd00:1::1")));
    }

    #[test]
    fn overlap_is_refused_with_the_other_network_named() {
        let other = net("172.18.0.0/16");
        let err = check_overlap(&net("172.18.1.0/24"), [("localnet", &other)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "subnet 172.18.1.0/24 overlaps 172.18.0.0/16 of network localnet"
        );
        assert!(check_overlap(&net("172.19.0.0/16"), [("localnet", &other)]).is_ok());
    }

    #[test]
    fn allocation_skips_gateway_and_takes_range() {
        let s = validate_subnet(net("10.1.0.0/29"), None, None).unwrap();
        let mut leases = Leases::default();
        let got: Vec<_> = (0..5)
            .map(|i| {
                leases
                    .allocate(std::slice::from_ref(&s), &[], &lease(&i.to_string()))
                    .unwrap()[0]
            })
            .collect();
        let got: Vec<String> = got.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            got,
            [
                "10.1.0.2/29",
                "10.1.0.3/29",
                "10.1.0.4/29",
                "10.1.0.5/29",
                "10.1.0.6/29"
            ]
        );
        assert!(matches!(
            leases.allocate(std::slice::from_ref(&s), &[], &lease("x")),
            Err(IpamError::Exhausted { .. })
        ));
        assert_eq!(leases.release("2"), 1);
        assert_eq!(
            leases.allocate(&[s], &[], &lease("y")).unwrap()[0].to_string(),
            "10.1.0.4/29"
        );

        let s = validate_subnet(net("10.1.0.0/24"), Some(net("10.1.0.128/25")), None).unwrap();
        let mut leases = Leases::default();
        assert_eq!(
            leases.allocate(&[s], &[], &lease("a")).unwrap()[0].to_string(),
            "10.1.0.128/24"
        );
    }

    #[test]
    fn static_addresses_are_validated() {
        let s = validate_subnet(net("10.1.0.0/24"), Some(net("10.1.0.0/25")), None).unwrap();
        let subnets = [s];
        let mut leases = Leases::default();
        assert_eq!(
            leases
                .allocate(&subnets, &[ip("10.1.0.10")], &lease("a"))
                .unwrap()[0]
                .to_string(),
            "10.1.0.10/24"
        );
        let cases = [
            ("10.1.0.10", "already in use by container a"),
            ("10.1.0.1", "reserved"),
            ("10.1.0.0", "reserved"),
            ("10.1.0.200", "not inside the network's IP range"),
            ("10.2.0.5", "not inside the network's subnet"),
            ("fd00::5", "does not fit any subnet"),
        ];
        for (addr, msg) in cases {
            let err = leases
                .allocate(&subnets, &[ip(addr)], &lease("b"))
                .unwrap_err();
            assert!(err.to_string().contains(msg), "{addr}: {err}");
        }
        assert_eq!(
            leases.addresses.len(),
            1,
            "failed allocations leased nothing"
        );
    }

    #[test]
    fn macs() {
        let mac = mac_from_ipv4("172.18.0.2".parse().unwrap());
        assert_eq!(format_mac(&mac), "02:42:ac:12:00:02");
        assert_eq!(parse_mac("02:42:ac:12:00:02"), Some(mac));
        assert_eq!(parse_mac("01:00:5e:00:00:01"), None, "multicast refused");
        assert_eq!(parse_mac("02:42:ac:12:00"), None);
        let r = random_mac();
        assert_eq!(r[0] & 0x03, 0x02, "locally administered unicast");
    }
}
