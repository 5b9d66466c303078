//! The redirect inside a sandbox: `127.0.0.11:53` → the responder's ports, as a tiny
//! nftables table of the sandbox's own namespace (Docker installs the same DNAT with
//! iptables). Port 53 itself stays free for a DNS server the container runs.
//!
//! Both functions must run inside the sandbox's namespace (on the namespace thread): the
//! netlink socket they open talks to the namespace it was created in.

use std::ffi::CStr;
use std::io;

use nftnl::expr::{Immediate, Nat, NatType, Register};
use nftnl::{Batch, Chain, ChainType, FinalizedBatch, Hook, MsgType, Policy, ProtoFamily, Rule};
use nftnl::{Table, nft_expr};

use super::netns::RESPONDER_ADDR;

/// The table, alone in the sandbox's namespace: nothing else there is touched.
pub const TABLE: &CStr = c"rbox_dns";
const CHAIN: &CStr = c"output";
/// Destination NAT priority (NF_IP_PRI_NAT_DST).
const NAT_DST_PRIORITY: i32 = -100;
const DNS_PORT: u16 = 53;

/// Replaces the table with one redirecting UDP and TCP to the given ports, atomically.
pub fn install(udp_port: u16, tcp_port: u16) -> io::Result<()> {
    let table = Table::new(TABLE, ProtoFamily::Ipv4);
    let mut chain = Chain::new(CHAIN, &table);
    chain.set_type(ChainType::Nat);
    chain.set_hook(Hook::Out, NAT_DST_PRIORITY);
    chain.set_policy(Policy::Accept);

    let mut batch = Batch::new();
    // Add-then-delete empties a table left by an earlier responder, in the same
    // transaction that rebuilds it: no moment without the redirect.
    batch.add(&table, MsgType::Add);
    batch.add(&table, MsgType::Del);
    batch.add(&table, MsgType::Add);
    batch.add(&chain, MsgType::Add);
    for (proto, port) in [(libc::IPPROTO_UDP, udp_port), (libc::IPPROTO_TCP, tcp_port)] {
        batch.add(&redirect_rule(&chain, proto as u8, port), MsgType::Add);
    }
    send(&batch.finalize())
}

/// Removes the table if it is there.
pub fn remove() -> io::Result<()> {
    let table = Table::new(TABLE, ProtoFamily::Ipv4);
    let mut batch = Batch::new();
    batch.add(&table, MsgType::Add);
    batch.add(&table, MsgType::Del);
    send(&batch.finalize())
}

/// `ip daddr 127.0.0.11 <proto> dport 53 dnat to 127.0.0.11:<port>`
fn redirect_rule<'a>(chain: &'a Chain<'a>, proto: u8, port: u16) -> Rule<'a> {
    let mut rule = Rule::new(chain);
    rule.add_expr(&nft_expr!(meta l4proto));
    rule.add_expr(&nft_expr!(cmp == proto));
    rule.add_expr(&nft_expr!(payload ipv4 daddr));
    rule.add_expr(&nft_expr!(cmp == RESPONDER_ADDR));
    // UDP and TCP keep the destination port at the same offset.
    if proto == libc::IPPROTO_UDP as u8 {
        rule.add_expr(&nft_expr!(payload udp dport));
    } else {
        rule.add_expr(&nft_expr!(payload tcp dport));
    }
    rule.add_expr(&nft_expr!(cmp == &DNS_PORT.to_be_bytes()[..]));
    rule.add_expr(&Immediate::new(RESPONDER_ADDR.octets(), Register::Reg1));
    rule.add_expr(&Immediate::new(port.to_be_bytes(), Register::Reg2));
    rule.add_expr(&Nat {
        nat_type: NatType::DNat,
        family: ProtoFamily::Ipv4,
        ip_register: Register::Reg1,
        port_register: Some(Register::Reg2),
    });
    rule
}

/// Sends a batch on a netlink socket of the current namespace and checks every ack.
fn send(batch: &FinalizedBatch) -> io::Result<()> {
    let socket = mnl::Socket::new(mnl::Bus::Netfilter)?;
    let portid = socket.portid();
    socket.send_all(batch)?;
    let mut buffer = vec![0; nftnl::nft_nlmsg_maxsize() as usize];
    let mut expected = batch.sequence_numbers();
    while !expected.is_empty() {
        for message in socket.recv(&mut buffer[..])? {
            let message = message?;
            let seq = expected
                .next()
                .ok_or_else(|| io::Error::other("nftables: unexpected acknowledgement"))?;
            mnl::cb_run(message, seq, portid)?;
        }
    }
    Ok(())
}
