//! The redirect inside a sandbox: `127.0.0.11:53` → the responder's ports, as a tiny
//! nftables table of the sandbox's own namespace (Docker installs the same DNAT with
//! iptables). Port 53 itself stays free for a DNS server the container runs.
//!
//! Both functions must run inside the sandbox's namespace (on the namespace thread): the
//! netlink socket they open talks to the namespace it was created in.

use std::io;

use crate::nft::{
    BaseChain, Batch, Chain, CmpOp, Expr, Family, Hook, MetaKey, NatKind, Nft, NftError,
    PayloadBase, REG_1, REG_2, Rule,
};

use super::netns::RESPONDER_ADDR;

/// The table, alone in the sandbox's namespace: nothing else there is touched.
pub const TABLE: &str = "rbox_dns";
const CHAIN: &str = "output";
/// Destination NAT priority (NF_IP_PRI_NAT_DST).
const NAT_DST_PRIORITY: i32 = -100;
const DNS_PORT: u16 = 53;

/// Replaces the table with one redirecting UDP and TCP to the given ports, atomically.
pub fn install(udp_port: u16, tcp_port: u16) -> io::Result<()> {
    let mut batch = Batch::new(Family::Ipv4, TABLE);
    // Flushing the chain in the transaction that refills it replaces the rules of an
    // earlier responder with no moment without the redirect. (Deleting and re-adding
    // the table would do too, but a table deletion makes the kernel wait for an RCU
    // grace period: milliseconds on every join.)
    batch.add_table();
    batch.add_chain(&Chain {
        name: CHAIN.into(),
        base: Some(BaseChain {
            kind: "nat",
            hook: Hook::Output,
            priority: NAT_DST_PRIORITY,
        }),
    });
    batch.flush_chain(CHAIN);
    for (proto, port) in [(libc::IPPROTO_UDP, udp_port), (libc::IPPROTO_TCP, tcp_port)] {
        batch.add_rule(&redirect_rule(proto as u8, port));
    }
    apply(&batch)
}

/// Removes the table if it is there.
pub fn remove() -> io::Result<()> {
    let mut batch = Batch::new(Family::Ipv4, TABLE);
    batch.add_table();
    batch.delete_table();
    apply(&batch)
}

/// `ip daddr 127.0.0.11 <proto> dport 53 dnat to 127.0.0.11:<port>`
fn redirect_rule(proto: u8, port: u16) -> Rule {
    let cmp = |data: &[u8]| Expr::Cmp {
        sreg: REG_1,
        op: CmpOp::Eq,
        data: data.to_vec(),
    };
    Rule {
        chain: CHAIN.into(),
        exprs: vec![
            Expr::Meta {
                key: MetaKey::L4proto,
                dreg: REG_1,
            },
            cmp(&[proto]),
            // The IPv4 destination address.
            Expr::Payload {
                base: PayloadBase::Network,
                offset: 16,
                len: 4,
                dreg: REG_1,
            },
            cmp(&RESPONDER_ADDR.octets()),
            // UDP and TCP keep the destination port at the same offset.
            Expr::Payload {
                base: PayloadBase::Transport,
                offset: 2,
                len: 2,
                dreg: REG_1,
            },
            cmp(&DNS_PORT.to_be_bytes()),
            Expr::Immediate {
                dreg: REG_1,
                data: RESPONDER_ADDR.octets().to_vec(),
            },
            Expr::Immediate {
                dreg: REG_2,
                data: port.to_be_bytes().to_vec(),
            },
            Expr::Nat {
                kind: NatKind::Dnat,
                family: Family::Ipv4,
                addr_reg: REG_1,
                proto_reg: Some(REG_2),
            },
        ],
        comment: None,
    }
}

/// Applies a batch on a netlink socket of the current namespace.
fn apply(batch: &Batch) -> io::Result<()> {
    Nft::open()
        .and_then(|mut nft| nft.apply(batch))
        .map_err(|e| {
            let kind = match &e {
                NftError::Io { source, .. } | NftError::Rejected { source, .. } => source.kind(),
            };
            io::Error::new(kind, e.to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_matches_protocol_address_and_port_then_dnats() {
        let rule = redirect_rule(libc::IPPROTO_TCP as u8, 11053);
        assert_eq!(
            rule.exprs[1],
            Expr::Cmp {
                sreg: REG_1,
                op: CmpOp::Eq,
                data: vec![6],
            }
        );
        assert_eq!(
            rule.exprs[7],
            Expr::Immediate {
                dreg: REG_2,
                data: 11053u16.to_be_bytes().to_vec(),
            }
        );
        assert!(matches!(
            rule.exprs.last(),
            Some(Expr::Nat {
                kind: NatKind::Dnat,
                proto_reg: Some(REG_2),
                ..
            })
        ));
    }

    /// Against the real kernel, in a private network namespace (root).
    #[test]
    fn installs_replaces_and_removes_the_table() {
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("unshare (needs root)");
                let list = || {
                    let out = std::process::Command::new("nft")
                        .args(["list", "ruleset"])
                        .output()
                        .unwrap();
                    String::from_utf8(out.stdout).unwrap()
                };
                install(11053, 11054).unwrap();
                install(12053, 12054).unwrap();
                let rules = list();
                for want in [
                    "table ip rbox_dns",
                    "type nat hook output priority -100; policy accept;",
                    "ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:12053",
                    "ip daddr 127.0.0.11 tcp dport 53 dnat to 127.0.0.11:12054",
                ] {
                    assert!(rules.contains(want), "missing {want:?} in:\n{rules}");
                }
                assert!(!rules.contains("11053"), "old rules kept:\n{rules}");
                remove().unwrap();
                assert_eq!(list().trim(), "");
                remove().unwrap();
            })
            .join()
            .unwrap()
        });
    }
}
