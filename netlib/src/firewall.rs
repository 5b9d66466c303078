//! rbox's rules, all in its own nftables table `inet rbox`; nothing else is touched.
//!
//! ```text
//! table inet rbox {
//!   map forward_in  { type ifname : verdict }   # "br-X" : jump net-X-in
//!   map forward_out { type ifname : verdict }   # "br-X" : jump net-X-out
//!   chain forward {              # filter hook forward priority filter; policy accept
//!     oifname vmap @forward_in   # routed into one of our networks
//!     iifname vmap @forward_out  # routed out of one of our networks
//!   }
//!   chain postrouting {          # nat hook postrouting priority srcnat; policy accept
//!     ip saddr 172.18.0.0/16 jump net-X-nat  comment "rbox-net:X"
//!   }
//!   chain net-X-in  { ct status dnat accept; ct state established,related accept;
//!                     iifname "br-X" accept; drop }
//!   chain net-X-out { accept }   # `drop` for --internal networks
//!   chain net-X-nat { oifname != "br-X" masquerade;       # absent for --internal networks
//!                     oifname "br-X" ct status dnat masquerade }
//! }
//! ```
//!
//! `X` is the network's short id. Every `net-X-in` ends in a verdict, so a packet routed
//! from one of our networks into another is judged by the second's `in` chain: nothing
//! opens a connection into a network from outside it (isolation), replies come back, an
//! internal network has no way out and nothing in, and the others are masqueraded on
//! their way out. The per-packet cost does not grow with the number of networks in
//! `forward` (one map lookup each way). A network's rules are one batch, applied
//! atomically by the kernel, and removed as one batch (map elements, its tagged
//! postrouting jumps by handle, its chains).
//!
//! Other tools' forward chains with a `drop` policy (iptables-nft's `ip filter FORWARD`
//! once Docker or ufw ran, for instance) would drop our networks' traffic whatever our
//! table says, since a drop in any base chain is final. So, when a network's rules are
//! installed, rbox puts two rules of its own at the top of each such chain:
//! `oifname "br-X" accept` and `iifname "br-X" accept`, tagged `rbox-net:X` like the
//! rest and removed with the network. They let through only our bridges' traffic, and
//! only what our own chains accept (our `drop` verdicts stay final); nothing of the
//! other tool's rules changes. Chains of legacy (non-nftables) iptables are out of reach.
//!
//! Published ports ([`crate::publish`]) have their own base chains and DNAT map in this
//! table; here each `net-X-in` starts with `ct status dnat accept` so that published
//! ports (and only they) get in from outside, and `net-X-nat` masquerades DNATed flows
//! that go back out the network's own bridge (hairpin between two members).

use ipnet::IpNet;

use crate::nft::{
    self, BaseChain, Batch, Chain, CmpOp, CtKey, Data, Element, Expr, Family, Hook, MetaKey, Nft,
    NftError, PayloadBase, REG_1, Rule, Set, Verdict, datatype,
};

const IFNAMSIZ: usize = 16;

/// rbox's table.
pub const TABLE: &str = "rbox";
pub const FAMILY: Family = Family::Inet;

pub type FirewallError = NftError;

/// The objects of rbox's table that all networks share, made once with the table.
pub struct TableBase;

impl TableBase {
    /// Maps of bridge name to the network's chains.
    pub const FORWARD_IN: &str = "forward_in";
    pub const FORWARD_OUT: &str = "forward_out";

    fn chains() -> Vec<Chain> {
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

    /// Adds the table, its base chains, the forward maps and the rules using them.
    pub fn install(b: &mut Batch) {
        b.add_table();
        for chain in Self::chains() {
            b.add_chain(&chain);
        }
        for (id, (map, key)) in [
            (Self::FORWARD_IN, MetaKey::Oifname),
            (Self::FORWARD_OUT, MetaKey::Iifname),
        ]
        .into_iter()
        .enumerate()
        {
            b.add_set(
                &Set {
                    name: map.into(),
                    flags: 0,
                    key_type: datatype::IFNAME,
                    key_len: IFNAMSIZ as u32,
                    fields: Vec::new(),
                    data: Some((datatype::VERDICT, 0)),
                },
                id as u32 + 1,
            );
            b.add_rule(&Rule {
                chain: "forward".into(),
                exprs: vec![
                    Expr::Meta { key, dreg: REG_1 },
                    Expr::Lookup {
                        set: map.into(),
                        sreg: REG_1,
                        dreg: Some(nft::REG_VERDICT),
                    },
                ],
                comment: None,
            });
        }
    }
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

    /// The batch that installs the network's rules (after [`TableBase`] when `with_base`).
    pub fn install(&self, with_base: bool) -> Batch {
        let mut b = Batch::new(FAMILY, TABLE);
        if with_base {
            TableBase::install(&mut b);
        }
        let (in_chain, out_chain, nat_chain) =
            (self.chain("in"), self.chain("out"), self.chain("nat"));
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
            // Published ports (DNATed by the publish chains) get in; nothing else does.
            b.add_rule(&rule(
                &in_chain,
                [ct_status_dnat(), vec![verdict(Verdict::Accept)]].concat(),
            ));
            b.add_rule(&rule(
                &in_chain,
                [
                    ct_state_in(CT_ESTABLISHED | CT_RELATED),
                    vec![verdict(Verdict::Accept)],
                ]
                .concat(),
            ));
        }
        b.add_rule(&rule(
            &in_chain,
            [
                ifname(MetaKey::Iifname, CmpOp::Eq, &self.bridge),
                vec![verdict(Verdict::Accept)],
            ]
            .concat(),
        ));
        b.add_rule(&rule(
            &in_chain,
            vec![Expr::Counter, verdict(Verdict::Drop)],
        ));
        let out = if self.internal {
            Verdict::Drop
        } else {
            Verdict::Accept
        };
        b.add_rule(&rule(&out_chain, vec![Expr::Counter, verdict(out)]));
        b.add_elements(TableBase::FORWARD_IN, &[self.jump_element(&in_chain)], true);
        b.add_elements(
            TableBase::FORWARD_OUT,
            &[self.jump_element(&out_chain)],
            true,
        );
        if nat {
            b.add_rule(&rule(
                &nat_chain,
                [
                    ifname(MetaKey::Oifname, CmpOp::Neq, &self.bridge),
                    vec![Expr::Masquerade],
                ]
                .concat(),
            ));
            // Hairpin: a member reaching a published port of a container on this same
            // network through a host address; without it the reply would go straight
            // back over the bridge, un-NATed.
            b.add_rule(&rule(
                &nat_chain,
                [
                    ifname(MetaKey::Oifname, CmpOp::Eq, &self.bridge),
                    ct_status_dnat(),
                    vec![Expr::Masquerade],
                ]
                .concat(),
            ));
            for subnet in &self.subnets {
                b.add_rule(&Rule {
                    chain: "postrouting".into(),
                    exprs: [
                        saddr_in(subnet),
                        vec![verdict(Verdict::Jump(nat_chain.clone()))],
                    ]
                    .concat(),
                    comment: Some(self.tag()),
                });
            }
        }
        b
    }

    /// One batch per other table with a forward chain whose policy is drop: our two
    /// accept rules at the top of that chain.
    pub fn pass_foreign_drop_chains(&self, chains: &[nft::ListedChain]) -> Vec<Batch> {
        let foreign = chains.iter().filter(|c| {
            c.hook == Some(Hook::Forward as u32)
                && c.policy == Some(0)
                && !(c.family == FAMILY as u8 && c.table == TABLE)
        });
        let mut batches = Vec::new();
        for chain in foreign {
            // IPv4 and dual-stack tables (IPv6 ones join with IPv6 networks).
            let Some(family @ (Family::Inet | Family::Ipv4)) = Family::from_raw(chain.family)
            else {
                continue;
            };
            let mut b = Batch::new(family, &chain.table);
            for key in [MetaKey::Oifname, MetaKey::Iifname] {
                b.insert_rule(&Rule {
                    chain: chain.name.clone(),
                    exprs: [
                        ifname(key, CmpOp::Eq, &self.bridge),
                        vec![verdict(Verdict::Accept)],
                    ]
                    .concat(),
                    comment: Some(self.tag()),
                });
            }
            batches.push(b);
        }
        batches
    }

    /// One batch per other table holding rules tagged for this network: deletes them.
    pub fn remove_foreign(&self, listed: &[nft::ListedRule]) -> Vec<Batch> {
        let tag = self.tag();
        let mut batches: Vec<Batch> = Vec::new();
        let mut tables: Vec<(u8, &str)> = Vec::new();
        for r in listed
            .iter()
            .filter(|r| r.comment.as_deref() == Some(tag.as_str()))
        {
            if r.family == FAMILY as u8 && r.table == TABLE {
                continue;
            }
            let Some(family) = Family::from_raw(r.family) else {
                continue;
            };
            let i = match tables
                .iter()
                .position(|t| *t == (r.family, r.table.as_str()))
            {
                Some(i) => i,
                None => {
                    tables.push((r.family, &r.table));
                    batches.push(Batch::new(family, &r.table));
                    tables.len() - 1
                }
            };
            batches[i].delete_rule(&r.chain, r.handle);
        }
        batches
    }

    /// `"br-X" : jump CHAIN`.
    fn jump_element(&self, chain: &str) -> Element {
        Element {
            key: ifname_key(&self.bridge),
            data: Some(Data::Verdict(Verdict::Jump(chain.to_string()))),
        }
    }

    /// The batch that removes the network's rules, given the table's current rules.
    pub fn remove(&self, listed: &[nft::ListedRule]) -> Batch {
        let mut b = Batch::new(FAMILY, TABLE);
        let tag = self.tag();
        let listed: Vec<&nft::ListedRule> = listed
            .iter()
            .filter(|r| r.family == FAMILY as u8 && r.table == TABLE)
            .collect();
        for r in listed
            .iter()
            .filter(|r| r.comment.as_deref() == Some(tag.as_str()))
        {
            b.delete_rule(&r.chain, r.handle);
        }
        // The map elements exist exactly when the chains do (one batch made both).
        if listed.iter().any(|r| r.chain == self.chain("in")) {
            b.delete_elements(
                TableBase::FORWARD_IN,
                &[self.jump_element(&self.chain("in"))],
            );
            b.delete_elements(
                TableBase::FORWARD_OUT,
                &[self.jump_element(&self.chain("out"))],
            );
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
        let with_base = !nft.chain_exists(FAMILY, TABLE, "forward")?;
        nft.apply(&rules.install(with_base))?;
        let foreign = nft.all_chains().and_then(|chains| {
            for batch in rules.pass_foreign_drop_chains(&chains) {
                nft.apply(&batch)?;
            }
            Ok(())
        });
        if let Err(e) = foreign {
            let _ = self.remove_network(rules);
            return Err(e);
        }
        Ok(true)
    }

    /// Removes the network's rules, in our table and in others' chains (nothing to do
    /// when they are not there).
    pub fn remove_network(&self, rules: &NetworkRules) -> Result<(), FirewallError> {
        let mut nft = Nft::open()?;
        let listed = nft.all_rules()?;
        for batch in rules.remove_foreign(&listed) {
            nft.apply(&batch)?;
        }
        nft.apply(&rules.remove(&listed))
    }
}

// Conntrack state bits (`NF_CT_STATE_BIT(IP_CT_ESTABLISHED)` = 2, related = 4).
const CT_ESTABLISHED: u32 = 1 << 1;
const CT_RELATED: u32 = 1 << 2;

/// `IPS_DST_NAT`: the connection's destination was rewritten (a published port).
const IPS_DST_NAT: u32 = 1 << 5;

/// `ct status dnat`.
pub(crate) fn ct_status_dnat() -> Vec<Expr> {
    vec![
        Expr::Ct {
            key: CtKey::Status,
            dreg: REG_1,
        },
        Expr::Bitwise {
            reg: REG_1,
            mask: IPS_DST_NAT.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Neq,
            data: vec![0; 4],
        },
    ]
}

fn verdict(v: Verdict) -> Expr {
    Expr::Verdict(v)
}

/// An interface name padded to IFNAMSIZ, as nft compares and stores it.
fn ifname_key(name: &str) -> Vec<u8> {
    let mut data = name.as_bytes().to_vec();
    data.resize(IFNAMSIZ, 0);
    data
}

/// `iifname/oifname ==/!= NAME`.
fn ifname(key: MetaKey, op: CmpOp, name: &str) -> Vec<Expr> {
    vec![
        Expr::Meta { key, dreg: REG_1 },
        Expr::Cmp {
            sreg: REG_1,
            op,
            data: ifname_key(name),
        },
    ]
}

/// `ip saddr NET` / `ip6 saddr NET` (with the family check an inet table needs).
pub(crate) fn saddr_in(net: &IpNet) -> Vec<Expr> {
    let (nfproto, offset, addr, mask) = match net {
        IpNet::V4(n) => (
            2u8,
            12,
            n.network().octets().to_vec(),
            n.netmask().octets().to_vec(),
        ),
        IpNet::V6(n) => (
            10u8,
            8,
            n.network().octets().to_vec(),
            n.netmask().octets().to_vec(),
        ),
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
        let b = rules(false).install(true);
        let s: Vec<String> = b
            .summary
            .iter()
            .map(|l| l.chars().take(60).collect())
            .collect();
        assert_eq!(
            &s[..7],
            [
                "add table rbox",
                "add chain forward",
                "add chain postrouting",
                "add set forward_in",
                "add rule forward [Meta { key: Oifname, dreg: 8 }, Lookup { s",
                "add set forward_out",
                "add rule forward [Meta { key: Iifname, dreg: 8 }, Lookup { s",
            ]
        );
        let own = rules(false).install(false).summary;
        assert_eq!(
            own,
            b.summary[7..],
            "the network's part is the same with or without the base"
        );
        assert_eq!(
            &own[..3],
            [
                "add chain net-0123456789ab-in",
                "add chain net-0123456789ab-out",
                "add chain net-0123456789ab-nat"
            ]
        );
        assert!(
            own[3].starts_with("add rule net-0123456789ab-in")
                && own[3].contains("Status")
                && own[3].contains("Accept"),
            "published ports get in first"
        );
        assert!(own[4].starts_with("add rule net-0123456789ab-in") && own[4].contains("State"));
        assert!(own[5].starts_with("add rule net-0123456789ab-in") && own[5].contains("Iifname"));
        assert!(own[6].starts_with("add rule net-0123456789ab-in") && own[6].contains("Drop"));
        assert!(own[7].starts_with("add rule net-0123456789ab-out") && own[7].contains("Accept"));
        assert_eq!(
            own[8..10],
            [
                "add 1 element(s) to forward_in",
                "add 1 element(s) to forward_out"
            ]
        );
        assert!(
            own[10].starts_with("add rule net-0123456789ab-nat")
                && own[10].contains("Masquerade")
                && own[10].contains("Neq")
        );
        assert!(
            own[11].starts_with("add rule net-0123456789ab-nat")
                && own[11].contains("Status")
                && own[11].contains("Masquerade"),
            "hairpin"
        );
        assert!(own[12].starts_with("add rule postrouting") && own[12].contains("[172, 18, 0, 0]"));
        assert_eq!(own.len(), 13);
    }

    #[test]
    fn internal_network_has_no_way_out_and_no_nat() {
        let b = rules(true).install(false);
        assert!(
            !b.summary
                .iter()
                .any(|l| l.contains("nat") || l.contains("Masquerade") || l.contains("State"))
        );
        let out: Vec<_> = b
            .summary
            .iter()
            .filter(|l| l.starts_with("add rule net-0123456789ab-out"))
            .collect();
        assert_eq!(out.len(), 1);
        assert!(out[0].contains("Drop"));
    }

    fn listed(family: u8, table: &str, chain: &str, handle: u64, tag: Option<&str>) -> ListedRule {
        ListedRule {
            family,
            table: table.into(),
            chain: chain.into(),
            handle,
            comment: tag.map(String::from),
        }
    }

    #[test]
    fn remove_batch_deletes_only_this_networks_rules() {
        let mine = Some("rbox-net:0123456789ab");
        let listed = [
            listed(1, TABLE, "postrouting", 4, mine),
            listed(1, TABLE, "postrouting", 5, Some("rbox-net:ffffffffffff")),
            listed(1, TABLE, "net-0123456789ab-in", 6, None),
            listed(1, TABLE, "net-0123456789ab-out", 7, None),
            listed(2, "filter", "FORWARD", 8, mine),
            listed(2, "filter", "FORWARD", 9, mine),
            listed(2, "filter", "FORWARD", 10, None),
            listed(1, "other", "c", 11, mine),
        ];
        let b = rules(false).remove(&listed);
        assert_eq!(
            b.summary,
            [
                "delete rule postrouting handle 4",
                "delete 1 element(s) from forward_in",
                "delete 1 element(s) from forward_out",
                "flush chain net-0123456789ab-in",
                "delete chain net-0123456789ab-in",
                "flush chain net-0123456789ab-out",
                "delete chain net-0123456789ab-out",
            ]
        );
        let foreign: Vec<Vec<String>> = rules(false)
            .remove_foreign(&listed)
            .into_iter()
            .map(|b| b.summary)
            .collect();
        assert_eq!(
            foreign,
            [
                vec![
                    "delete rule FORWARD handle 8".to_string(),
                    "delete rule FORWARD handle 9".to_string()
                ],
                vec!["delete rule c handle 11".to_string()],
            ]
        );
    }

    #[test]
    fn only_other_tables_forward_chains_with_drop_policy_get_our_accepts() {
        let chain = |family, table: &str, name: &str, hook, policy| nft::ListedChain {
            family,
            table: table.into(),
            name: name.into(),
            hook,
            policy,
        };
        let chains = [
            chain(2, "filter", "FORWARD", Some(2), Some(0)),
            chain(2, "filter", "INPUT", Some(1), Some(0)),
            chain(1, "firewalld", "filter_FORWARD", Some(2), Some(1)),
            chain(1, TABLE, "forward", Some(2), Some(0)),
            chain(2, "filter", "DOCKER", None, None),
        ];
        let batches = rules(false).pass_foreign_drop_chains(&chains);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].summary.len(), 2);
        assert!(
            batches[0].summary[0].starts_with("insert rule FORWARD")
                && batches[0].summary[0].contains("Oifname")
        );
        assert!(
            batches[0].summary[1].starts_with("insert rule FORWARD")
                && batches[0].summary[1].contains("Iifname")
        );
    }
}

/// Against the real kernel, each in a private network namespace of its own (root).
#[cfg(test)]
mod kernel_tests {
    use super::*;
    use crate::netns::in_private_netns;
    use crate::nft::{Data, Element, NatKind, REG_2, Set, datatype};
    use std::process::Command;

    fn nft_list() -> String {
        let out = Command::new("nft")
            .args(["list", "ruleset"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
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
            assert!(
                !Firewall.ensure_network(&a).unwrap(),
                "second ensure is a no-op"
            );
            assert!(Firewall.ensure_network(&b).unwrap());
            let text = nft_list();
            for want in [
                "table inet rbox",
                "type filter hook forward priority filter; policy accept;",
                "oifname vmap @forward_in",
                "iifname vmap @forward_out",
                "\"br-aaaaaaaaaaaa\" : jump net-aaaaaaaaaaaa-in",
                "\"br-aaaaaaaaaaaa\" : jump net-aaaaaaaaaaaa-out",
                "type ifname : verdict",
                "ip saddr 172.18.0.0/16 jump net-aaaaaaaaaaaa-nat comment \"rbox-net:aaaaaaaaaaaa\"",
                "type nat hook postrouting priority srcnat; policy accept;",
                "ip saddr 172.18.0.0/16 jump net-aaaaaaaaaaaa-nat",
                "ct state established,related accept",
                "ct status dnat accept",
                "oifname \"br-aaaaaaaaaaaa\" ct status dnat masquerade",
                "oifname != \"br-aaaaaaaaaaaa\" masquerade",
                "chain net-bbbbbbbbbbbb-out",
            ] {
                assert!(text.contains(want), "missing {want:?} in:\n{text}");
            }
            let other =
                &text[text.find("table ip other").unwrap()..text.find("table inet rbox").unwrap()];
            assert!(
                other.contains(
                    "oifname \"br-aaaaaaaaaaaa\" accept comment \"rbox-net:aaaaaaaaaaaa\""
                ) && other.contains(
                    "iifname \"br-bbbbbbbbbbbb\" accept comment \"rbox-net:bbbbbbbbbbbb\""
                ),
                "our bridges pass the other table's drop policy:\n{other}"
            );
            assert!(
                !text.contains("net-bbbbbbbbbbbb-nat"),
                "internal networks are not masqueraded"
            );
            Firewall.remove_network(&a).unwrap();
            let text = nft_list();
            assert!(!text.contains("aaaaaaaaaaaa"), "{text}");
            assert!(text.contains("net-bbbbbbbbbbbb-in"));
            Firewall.remove_network(&b).unwrap();
            Firewall.remove_network(&b).unwrap();
            let text = nft_list();
            assert!(
                !text.contains("net-") && !text.contains("rbox-net"),
                "{text}"
            );
            assert!(
                text.contains("table ip other") && text.contains("policy drop"),
                "foreign table untouched:\n{text}"
            );
        });
    }

    #[test]
    fn a_failing_batch_changes_nothing() {
        in_private_netns(|| {
            let mut b = rules("cccccccccccc", false).install(true);
            // A jump to a chain that does not exist makes the kernel refuse the whole batch.
            b.add_rule(&Rule {
                chain: "forward".into(),
                exprs: vec![Expr::Verdict(Verdict::Jump("missing".into()))],
                comment: None,
            });
            let err = Nft::open().unwrap().apply(&b).unwrap_err().to_string();
            assert!(err.contains("missing"), "{err}");
            assert!(
                !nft_list().contains("rbox"),
                "nothing of the batch was applied"
            );
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
                base: Some(BaseChain {
                    kind: "nat",
                    hook: Hook::Prerouting,
                    priority: -100,
                }),
            });
            b.add_set(
                &Set {
                    name: "publish4".into(),
                    flags: 0,
                    key_type: ipv4_port,
                    key_len: 8,
                    fields: vec![4, 2],
                    data: Some((ipv4_port, 8)),
                },
                1,
            );
            let key = [[10, 0, 0, 1, 0x1f, 0x90, 0, 0]].concat(); // 10.0.0.1 . 8080
            let data = [[172, 18, 0, 2, 0, 80, 0, 0]].concat(); // 172.18.0.2 . 80
            b.add_elements(
                "publish4",
                &[Element {
                    key,
                    data: Some(Data::Value(data)),
                }],
                true,
            );
            b.add_rule(&Rule {
                chain: "prerouting".into(),
                exprs: vec![
                    Expr::Meta {
                        key: MetaKey::Nfproto,
                        dreg: REG_1,
                    },
                    Expr::Cmp {
                        sreg: REG_1,
                        op: CmpOp::Eq,
                        data: vec![2],
                    },
                    Expr::Meta {
                        key: MetaKey::L4proto,
                        dreg: REG_1,
                    },
                    Expr::Cmp {
                        sreg: REG_1,
                        op: CmpOp::Eq,
                        data: vec![6],
                    },
                    Expr::Payload {
                        base: PayloadBase::Network,
                        offset: 16,
                        len: 4,
                        dreg: REG_1,
                    },
                    Expr::Payload {
                        base: PayloadBase::Transport,
                        offset: 2,
                        len: 2,
                        dreg: REG_2,
                    },
                    Expr::Lookup {
                        set: "publish4".into(),
                        sreg: REG_1,
                        dreg: Some(REG_1),
                    },
                    Expr::Nat {
                        kind: NatKind::Dnat,
                        family: Family::Ipv4,
                        addr_reg: REG_1,
                        proto_reg: Some(REG_2),
                    },
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
