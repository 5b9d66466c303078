//! rbox's rules, all in its own nftables table `inet rbox`; nothing else is touched.
//!
//! ```text
//! table inet rbox {
//!   chain forward {                  # filter hook forward priority filter; policy accept
//!     oifname "br-X" jump net-X-in   comment "rbox-net:X"   # routed into network X
//!     iifname "br-X" jump net-X-out  comment "rbox-net:X"   # routed out of network X
//!   }
//!   chain postrouting {              # nat hook postrouting priority srcnat; policy accept
//!     ip saddr 172.18.0.0/16 jump net-X-nat  comment "rbox-net:X"
//!   }
//!   chain net-X-in  { ct state established,related accept; iifname "br-X" accept; drop }
//!   chain net-X-out { accept }       # `drop` for --internal networks
//!   chain net-X-nat { oifname != "br-X" masquerade }   # absent for --internal networks
//! }
//! ```
//!
//! `X` is the network's short id. So: nothing opens a connection into a network from
//! outside it (another network included: isolation), replies come back, an internal
//! network has no way out and nothing in, and the others are masqueraded on their way
//! out. Each network's rules are one batch, applied atomically by the kernel, and
//! removed as one batch (its tagged jumps by handle, then its chains).
//!
//! Port publishing plugs in without restructuring: it adds its own base chains to
//! [`base_chains`] (`prerouting` and `output`, nat, dstnat priority) with
//! `ip daddr . th dport` DNAT maps (see the test `dnat_map_with_concatenated_keys`),
//! a `ct status dnat accept` rule at the top of each `net-X-in` chain so published
//! ports (and only they) get in, and hairpin/localhost masquerading in `postrouting`.

use ipnet::IpNet;

use crate::nft::{
    self, Batch, BaseChain, Chain, CmpOp, CtKey, Expr, Family, Hook, MetaKey, Nft, NftError, PayloadBase, REG_1, Rule,
    Verdict,
};

/// rbox's table.
pub const TABLE: &str = "rbox";
pub const FAMILY: Family = Family::Inet;

pub type FirewallError = NftError;

/// The base chains of rbox's table; created with the first network that needs rules.
pub fn base_chains() -> Vec<Chain> {
    vec![
        Chain {
            name: "forward".into(),
            base: Some(BaseChain {
                kind: "filter",
                hook: Hook::Forward,
                priority: 0,
            }),
        },
        Chain {
            name: "postrouting".into(),
            base: Some(BaseChain {
                kind: "nat",
                hook: Hook::Postrouting,
                priority: 100,
            }),
        },
    ]
}

/// What the rules of one bridged network depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRules {
    /// The network's short id: names its chains and tags its jumps.
    pub short_id: String,
    pub bridge: String,
    pub subnets: Vec<IpNet>,
    pub internal: bool,
    /// Masquerade traffic leaving the host (Docker's `enable_ip_masquerade`, default on).
    pub masquerade: bool,
}

impl NetworkRules {
    fn chain(&self, suffix: &str) -> String {
        format!("net-{}-{suffix}", self.short_id)
    }

    fn tag(&self) -> String {
        format!("rbox-net:{}", self.short_id)
    }

    /// The batch that installs the network's rules (and the table, if missing).
    pub fn install(&self) -> Batch {
        let mut b = Batch::new(FAMILY, TABLE);
        b.add_table();
        for chain in base_chains() {
            b.add_chain(&chain);
        }
        let (in_chain, out_chain, nat_chain) = (self.chain("in"), self.chain("out"), self.chain("nat"));
        let nat = !self.internal && self.masquerade;
        for name in [&in_chain, &out_chain] {
            b.add_chain(&Chain {
                name: name.clone(),
                base: None,
            });
        }
        if nat {
            b.add_chain(&Chain {
                name: nat_chain.clone(),
                base: None,
            });
        }
        let rule = |chain: &str, exprs: Vec<Expr>| Rule {
            chain: chain.to_string(),
            exprs,
            comment: None,
        };
        if !self.internal {
            b.add_rule(&rule(&in_chain, [ct_state_in(CT_ESTABLISHED | CT_RELATED), vec![verdict(Verdict::Accept)]].concat()));
        }
        b.add_rule(&rule(&in_chain, [ifname(MetaKey::Iifname, CmpOp::Eq, &self.bridge), vec![verdict(Verdict::Accept)]].concat()));
        b.add_rule(&rule(&in_chain, vec![Expr::Counter, verdict(Verdict::Drop)]));
        let out = if self.internal { Verdict::Drop } else { Verdict::Accept };
        b.add_rule(&rule(&out_chain, vec![Expr::Counter, verdict(out)]));
        let tagged = |chain: &str, exprs: Vec<Expr>| Rule {
            chain: chain.to_string(),
            exprs,
            comment: Some(self.tag()),
        };
        b.add_rule(&tagged("forward", [ifname(MetaKey::Oifname, CmpOp::Eq, &self.bridge), vec![verdict(Verdict::Jump(in_chain))]].concat()));
        b.add_rule(&tagged("forward", [ifname(MetaKey::Iifname, CmpOp::Eq, &self.bridge), vec![verdict(Verdict::Jump(out_chain))]].concat()));
        if nat {
            b.add_rule(&rule(&nat_chain, [ifname(MetaKey::Oifname, CmpOp::Neq, &self.bridge), vec![Expr::Masquerade]].concat()));
            for subnet in &self.subnets {
                b.add_rule(&tagged("postrouting", [saddr_in(subnet), vec![verdict(Verdict::Jump(nat_chain.clone()))]].concat()));
            }
        }
        b
    }

    /// The batch that removes the network's rules, given the table's current rules.
    pub fn remove(&self, listed: &[nft::ListedRule]) -> Batch {
        let mut b = Batch::new(FAMILY, TABLE);
        let tag = self.tag();
        for r in listed.iter().filter(|r| r.comment.as_deref() == Some(tag.as_str())) {
            b.delete_rule(&r.chain, r.handle);
        }
        for suffix in ["in", "out", "nat"] {
            let chain = self.chain(suffix);
            if listed.iter().any(|r| r.chain == chain) {
                b.flush_chain(&chain);
                b.delete_chain(&chain);
            }
        }
        b
    }
}

/// Installs and removes network rules in the kernel.
pub struct Firewall;

impl Firewall {
    /// Installs the network's rules unless they are there; returns whether it did.
    /// Call under the state lock.
    pub fn ensure_network(&self, rules: &NetworkRules) -> Result<bool, FirewallError> {
        let mut nft = Nft::open()?;
        if nft.chain_exists(FAMILY, TABLE, &rules.chain("in"))? {
            return Ok(false);
        }
        nft.apply(&rules.install())?;
        Ok(true)
    }

    /// Removes the network's rules (nothing to do when they are not there).
    pub fn remove_network(&self, rules: &NetworkRules) -> Result<(), FirewallError> {
        let mut nft = Nft::open()?;
        let listed = nft.rules(FAMILY, TABLE)?;
        nft.apply(&rules.remove(&listed))
    }
}

// Conntrack state bits (`NF_CT_STATE_BIT(IP_CT_ESTABLISHED)` = 2, related = 4).
const CT_ESTABLISHED: u32 = 1 << 1;
const CT_RELATED: u32 = 1 << 2;

fn verdict(v: Verdict) -> Expr {
    Expr::Verdict(v)
}

/// `iifname/oifname ==/!= NAME`: the name padded to IFNAMSIZ, as nft compares it.
fn ifname(key: MetaKey, op: CmpOp, name: &str) -> Vec<Expr> {
    let mut data = name.as_bytes().to_vec();
    data.resize(16, 0);
    vec![Expr::Meta { key, dreg: REG_1 }, Expr::Cmp { sreg: REG_1, op, data }]
}

/// `ip saddr NET` / `ip6 saddr NET` (with the family check an inet table needs).
fn saddr_in(net: &IpNet) -> Vec<Expr> {
    let (nfproto, offset, addr, mask) = match net {
        IpNet::V4(n) => (2u8, 12, n.network().octets().to_vec(), n.netmask().octets().to_vec()),
        IpNet::V6(n) => (10u8, 8, n.network().octets().to_vec(), n.netmask().octets().to_vec()),
    };
    let len = addr.len() as u32;
    vec![
        Expr::Meta {
            key: MetaKey::Nfproto,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: vec![nfproto],
        },
        Expr::Payload {
            base: PayloadBase::Network,
            offset,
            len,
            dreg: REG_1,
        },
        Expr::Bitwise {
            reg: REG_1,
            xor: vec![0; mask.len()],
            mask,
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: addr,
        },
    ]
}

/// `ct state { bits }`.
fn ct_state_in(bits: u32) -> Vec<Expr> {
    vec![
        Expr::Ct {
            key: CtKey::State,
            dreg: REG_1,
        },
        Expr::Bitwise {
            reg: REG_1,
            mask: bits.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Neq,
            data: vec![0; 4],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::ListedRule;

    fn rules(internal: bool) -> NetworkRules {
        NetworkRules {
            short_id: "0123456789ab".into(),
            bridge: "br-0123456789ab".into(),
            subnets: vec!["172.18.0.0/16".parse().unwrap()],
            internal,
            masquerade: true,
        }
    }

    #[test]
    fn install_batch_for_a_normal_network() {
        let b = rules(false).install();
        let s = &b.summary;
        assert_eq!(&s[..6], [
            "add table rbox",
            "add chain forward",
            "add chain postrouting",
            "add chain net-0123456789ab-in",
            "add chain net-0123456789ab-out",
            "add chain net-0123456789ab-nat",
        ]);
        let rules: Vec<&String> = s.iter().filter(|l| l.starts_with("add rule")).collect();
        assert_eq!(rules.len(), 8);
        assert!(rules[0].starts_with("add rule net-0123456789ab-in") && rules[0].contains("State"));
        assert!(rules[2].contains("Drop"));
        assert!(rules[3].starts_with("add rule net-0123456789ab-out") && rules[3].contains("Accept"));
        assert!(rules[4].starts_with("add rule forward") && rules[4].contains("Oifname") && rules[4].contains("Jump(\"net-0123456789ab-in\")"));
        assert!(rules[5].starts_with("add rule forward") && rules[5].contains("Iifname"));
        assert!(rules[6].starts_with("add rule net-0123456789ab-nat") && rules[6].contains("Masquerade") && rules[6].contains("Neq"));
        assert!(rules[7].starts_with("add rule postrouting") && rules[7].contains("[172, 18, 0, 0]"));
    }

    #[test]
    fn internal_network_has_no_way_out_and_no_nat() {
        let b = rules(true).install();
        assert!(!b.summary.iter().any(|l| l.contains("nat") || l.contains("Masquerade") || l.contains("State")));
        let out: Vec<_> = b.summary.iter().filter(|l| l.starts_with("add rule net-0123456789ab-out")).collect();
        assert_eq!(out.len(), 1);
        assert!(out[0].contains("Drop"));
    }

    #[test]
    fn remove_batch_deletes_only_this_networks_rules() {
        let listed = [
            ListedRule { chain: "forward".into(), handle: 4, comment: Some("rbox-net:0123456789ab".into()) },
            ListedRule { chain: "forward".into(), handle: 5, comment: Some("rbox-net:ffffffffffff".into()) },
            ListedRule { chain: "net-0123456789ab-in".into(), handle: 6, comment: None },
            ListedRule { chain: "net-0123456789ab-out".into(), handle: 7, comment: None },
        ];
        let b = rules(false).remove(&listed);
        assert_eq!(b.summary, [
            "delete rule forward handle 4",
            "flush chain net-0123456789ab-in",
            "delete chain net-0123456789ab-in",
            "flush chain net-0123456789ab-out",
            "delete chain net-0123456789ab-out",
        ]);
    }
}

/// Against the real kernel, each in a private network namespace of its own (root).
#[cfg(test)]
mod kernel_tests {
    use super::*;
    use crate::nft::{Element, Set, datatype, NatKind, REG_2};
    use std::process::Command;

    /// Runs `f` on a thread inside a fresh network namespace; commands it spawns run there too.
    fn in_private_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare (needs root)");
                f()
            })
            .join()
            .unwrap()
        })
    }

    fn nft_list() -> String {
        let out = Command::new("nft").args(["list", "ruleset"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn rules(short: &str, internal: bool) -> NetworkRules {
        NetworkRules {
            short_id: short.into(),
            bridge: format!("br-{short}"),
            subnets: vec!["172.18.0.0/16".parse().unwrap()],
            internal,
            masquerade: true,
        }
    }

    #[test]
    fn network_rules_install_once_and_remove_cleanly() {
        in_private_netns(|| {
            // Someone else's table must survive everything we do.
            let st = Command::new("nft").args(["add table ip other; add chain ip other c { type filter hook forward priority 0; policy drop; }"]).status().unwrap();
            assert!(st.success());
            let (a, b) = (rules("aaaaaaaaaaaa", false), rules("bbbbbbbbbbbb", true));
            assert!(Firewall.ensure_network(&a).unwrap());
            assert!(!Firewall.ensure_network(&a).unwrap(), "second ensure is a no-op");
            assert!(Firewall.ensure_network(&b).unwrap());
            let text = nft_list();
            for want in [
                "table inet rbox",
                "type filter hook forward priority filter; policy accept;",
                "oifname \"br-aaaaaaaaaaaa\" jump net-aaaaaaaaaaaa-in comment \"rbox-net:aaaaaaaaaaaa\"",
                "iifname \"br-aaaaaaaaaaaa\" jump net-aaaaaaaaaaaa-out",
                "type nat hook postrouting priority srcnat; policy accept;",
                "ip saddr 172.18.0.0/16 jump net-aaaaaaaaaaaa-nat",
                "ct state established,related accept",
                "oifname != \"br-aaaaaaaaaaaa\" masquerade",
                "chain net-bbbbbbbbbbbb-out",
            ] {
                assert!(text.contains(want), "missing {want:?} in:\n{text}");
            }
            assert!(!text.contains("net-bbbbbbbbbbbb-nat"), "internal networks are not masqueraded");
            Firewall.remove_network(&a).unwrap();
            let text = nft_list();
            assert!(!text.contains("aaaaaaaaaaaa"), "{text}");
            assert!(text.contains("net-bbbbbbbbbbbb-in"));
            Firewall.remove_network(&b).unwrap();
            Firewall.remove_network(&b).unwrap();
            let text = nft_list();
            assert!(!text.contains("net-"), "{text}");
            assert!(text.contains("table ip other") && text.contains("policy drop"), "foreign table untouched:\n{text}");
        });
    }

    #[test]
    fn a_failing_batch_changes_nothing() {
        in_private_netns(|| {
            let mut b = rules("cccccccccccc", false).install();
            // A jump to a chain that does not exist makes the kernel refuse the whole batch.
            b.add_rule(&Rule { chain: "forward".into(), exprs: vec![Expr::Verdict(Verdict::Jump("missing".into()))], comment: None });
            let err = Nft::open().unwrap().apply(&b).unwrap_err().to_string();
            assert!(err.contains("missing"), "{err}");
            assert!(!nft_list().contains("rbox"), "nothing of the batch was applied");
        });
    }

    /// What port publishing needs: `ip daddr . th dport` → `addr . port` DNAT maps.
    #[test]
    fn dnat_map_with_concatenated_keys() {
        in_private_netns(|| {
            let ipv4_port = datatype::concat(&[datatype::IPV4_ADDR, datatype::INET_SERVICE]);
            let mut b = Batch::new(FAMILY, TABLE);
            b.add_table();
            b.add_chain(&Chain {
                name: "prerouting".into(),
                base: Some(BaseChain { kind: "nat", hook: Hook::Prerouting, priority: -100 }),
            });
            b.add_set(
                &Set { name: "publish4".into(), flags: 0, key_type: ipv4_port, key_len: 8, fields: vec![4, 2], data: Some((ipv4_port, 8)) },
                1,
            );
            let key = [[10, 0, 0, 1, 0x1f, 0x90, 0, 0]].concat(); // 10.0.0.1 . 8080
            let data = [[172, 18, 0, 2, 0, 80, 0, 0]].concat(); // 172.18.0.2 . 80
            b.add_elements("publish4", &[Element { key, data: Some(data) }], true);
            b.add_rule(&Rule {
                chain: "prerouting".into(),
                exprs: vec![
                    Expr::Meta { key: MetaKey::Nfproto, dreg: REG_1 },
                    Expr::Cmp { sreg: REG_1, op: CmpOp::Eq, data: vec![2] },
                    Expr::Meta { key: MetaKey::L4proto, dreg: REG_1 },
                    Expr::Cmp { sreg: REG_1, op: CmpOp::Eq, data: vec![6] },
                    Expr::Payload { base: PayloadBase::Network, offset: 16, len: 4, dreg: REG_1 },
                    Expr::Payload { base: PayloadBase::Transport, offset: 2, len: 2, dreg: REG_2 },
                    Expr::Lookup { set: "publish4".into(), sreg: REG_1, dreg: Some(REG_1) },
                    Expr::Nat { kind: NatKind::Dnat, family: Family::Ipv4, addr_reg: REG_1, proto_reg: Some(REG_2) },
                ],
                comment: None,
            });
            Nft::open().unwrap().apply(&b).unwrap();
            let text = nft_list();
            for want in [
                "map publish4 {",
                "type ipv4_addr . inet_service : ipv4_addr . inet_service",
                "10.0.0.1 . 8080 : 172.18.0.2 . 80",
                "dnat ip to ip daddr . tcp dport map @publish4",
            ] {
                assert!(text.contains(want), "missing {want:?} in:\n{text}");
            }
        });
    }
}
