//! A small typed nf_tables netlink layer: tables, chains, rules, sets and maps
//! (concatenated keys and data included), encoded as one nfnetlink batch that the
//! kernel applies atomically, sent over a NETLINK_NETFILTER socket (netlink-sys).
//!
//! Why our own: it covers exactly what rbox needs (and what port publishing needs
//! next: `ip daddr . th dport` DNAT maps), has no C library (libnftnl is GPL-2+) and no
//! young dependency, and each expression is a plain enum value that unit tests can
//! inspect. Constants are from `linux/netfilter/nf_tables.h`.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nftables: {op}: {source}")]
    Io { op: String, source: io::Error },
    #[error("nftables rejected the change ({what}): {source}")]
    Rejected { what: String, source: io::Error },
}

type Result<T> = std::result::Result<T, NftError>;

// nfnetlink framing.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;

// Message types.
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;

// Attributes.
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_DATA_TYPE: u16 = 6;
const NFTA_SET_DATA_LEN: u16 = 7;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_USERDATA: u16 = 13;
const NFTA_SET_DESC: u16 = 9;
const NFTA_SET_DESC_CONCAT: u16 = 2;
const NFTA_SET_FIELD_LEN: u16 = 1;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;

/// `NFT_SET_MAP`: the set maps keys to data.
pub const SET_F_MAP: u32 = 0x8;
/// `NFT_SET_CONCAT`: keys are concatenations (with [`Set::fields`]).
pub const SET_F_CONCAT: u32 = 0x80;

/// Data types as `nft` names them (kernel-opaque; `nft list` prints by them).
pub mod datatype {
    /// The kernel's `NFT_DATA_VERDICT`: the data type of verdict maps.
    pub const VERDICT: u32 = 0xffff_ff00;
    pub const IPV4_ADDR: u32 = 7;
    pub const IPV6_ADDR: u32 = 8;
    pub const INET_PROTOCOL: u32 = 12;
    pub const INET_SERVICE: u32 = 13;
    pub const IFNAME: u32 = 41;
    /// The type of a concatenation `a . b . ...`.
    pub fn concat(types: &[u32]) -> u32 {
        types.iter().fold(0, |acc, t| (acc << 6) | t)
    }
}

/// `fib` flags and results (`enum nft_fib_flags`, `enum nft_fib_result`).
pub mod fib {
    pub const F_DADDR: u32 = 1 << 1;
    pub const RESULT_ADDRTYPE: u32 = 3;
    /// `RTN_LOCAL`: an address of this host.
    pub const RTN_LOCAL: u32 = 2;
}

/// Protocol family of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Inet = 1,
    Ipv4 = 2,
    Ipv6 = 10,
}

impl Family {
    /// The family of a listed object, if it is one of these.
    pub fn from_raw(raw: u8) -> Option<Family> {
        [Family::Inet, Family::Ipv4, Family::Ipv6]
            .into_iter()
            .find(|f| *f as u8 == raw)
    }
}

/// Netfilter hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting = 0,
    Input = 1,
    Forward = 2,
    Output = 3,
    Postrouting = 4,
}

/// What makes a chain a base chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseChain {
    /// `filter`, `nat` or `route`.
    pub kind: &'static str,
    pub hook: Hook,
    pub priority: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub base: Option<BaseChain>,
}

/// Registers: the verdict register, and the 32-bit data registers (`NFT_REG32_00` = 8
/// up); a 16-byte value in register 1 occupies 8..=11.
pub const REG_VERDICT: u32 = 0;
pub const REG_1: u32 = 8;
pub const REG_2: u32 = 9;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    Iifname = 6,
    Oifname = 7,
    Nfproto = 15,
    L4proto = 16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtKey {
    State = 0,
    Status = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadBase {
    Network = 1,
    Transport = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq = 0,
    Neq = 1,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Return,
    Jump(String),
    Goto(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    Snat = 0,
    Dnat = 1,
}

/// One nf_tables expression of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Meta {
        key: MetaKey,
        dreg: u32,
    },
    Ct {
        key: CtKey,
        dreg: u32,
    },
    Payload {
        base: PayloadBase,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    Bitwise {
        reg: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    Cmp {
        sreg: u32,
        op: CmpOp,
        data: Vec<u8>,
    },
    /// Set membership (`dreg: None`) or map lookup into `dreg` (`Some(REG_VERDICT)` for a vmap).
    Lookup {
        set: String,
        sreg: u32,
        dreg: Option<u32>,
    },
    Verdict(Verdict),
    /// Loads a constant into a data register (a NAT target, for instance).
    Immediate {
        dreg: u32,
        data: Vec<u8>,
    },
    Counter,
    Masquerade,
    /// A route lookup (`fib daddr type`): `result` of the lookup of the address `flags`
    /// name, into `dreg`.
    Fib {
        flags: u32,
        result: u32,
        dreg: u32,
    },
    /// NAT to the address (and port) held in registers.
    Nat {
        kind: NatKind,
        family: Family,
        addr_reg: u32,
        proto_reg: Option<u32>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub chain: String,
    pub exprs: Vec<Expr>,
    /// Shown by `nft list` as the rule's comment; rbox tags its per-network rules with it.
    pub comment: Option<String>,
}

/// A named set or map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub name: String,
    /// `SET_F_*` flags.
    pub flags: u32,
    pub key_type: u32,
    pub key_len: u32,
    /// Lengths of the concatenated fields of the key (empty for a plain key).
    pub fields: Vec<u32>,
    /// Type and length of the mapped data, for maps.
    pub data: Option<(u32, u32)>,
}

/// A set element: key, and data for maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub key: Vec<u8>,
    pub data: Option<Data>,
}

/// What a map element maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Value(Vec<u8>),
    /// For verdict maps (`vmap`).
    Verdict(Verdict),
}

/// One netlink message of a batch: type, extra flags and attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Message {
    kind: u16,
    flags: u16,
    attrs: Vec<u8>,
}

/// A transaction: every change in it is applied by the kernel at once, or none is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    family: Family,
    table: String,
    messages: Vec<Message>,
    /// Human-readable summary of each message, for errors and tests.
    pub summary: Vec<String>,
}

impl Batch {
    /// A batch of changes to table `table` of `family`.
    pub fn new(family: Family, table: &str) -> Batch {
        Batch {
            family,
            table: table.to_string(),
            messages: Vec::new(),
            summary: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    fn push(&mut self, kind: u16, flags: u16, attrs: Attrs, summary: String) {
        self.messages.push(Message {
            kind,
            flags,
            attrs: attrs.0,
        });
        self.summary.push(summary);
    }

    /// Creates the table if it does not exist.
    pub fn add_table(&mut self) {
        let mut a = Attrs::default();
        a.str(NFTA_TABLE_NAME, &self.table);
        self.push(
            NFT_MSG_NEWTABLE,
            NLM_F_CREATE,
            a,
            format!("add table {}", self.table),
        );
    }

    /// Deletes the table and everything in it.
    pub fn delete_table(&mut self) {
        let mut a = Attrs::default();
        a.str(NFTA_TABLE_NAME, &self.table);
        self.push(
            NFT_MSG_DELTABLE,
            0,
            a,
            format!("delete table {}", self.table),
        );
    }

    /// Creates the chain if it does not exist (an existing chain is left as it is).
    pub fn add_chain(&mut self, chain: &Chain) {
        let mut a = self.chain_attrs(&chain.name);
        if let Some(base) = &chain.base {
            a.nested(NFTA_CHAIN_HOOK, |h| {
                h.u32(NFTA_HOOK_HOOKNUM, base.hook as u32);
                h.u32(NFTA_HOOK_PRIORITY, base.priority as u32);
            });
            a.u32(NFTA_CHAIN_POLICY, 1); // NF_ACCEPT: rbox never drops others' traffic by policy
            a.str(NFTA_CHAIN_TYPE, base.kind);
        }
        self.push(
            NFT_MSG_NEWCHAIN,
            NLM_F_CREATE,
            a,
            format!("add chain {}", chain.name),
        );
    }

    /// Deletes every rule of `chain`.
    pub fn flush_chain(&mut self, chain: &str) {
        let mut a = Attrs::default();
        a.str(NFTA_RULE_TABLE, &self.table);
        a.str(NFTA_RULE_CHAIN, chain);
        self.push(NFT_MSG_DELRULE, 0, a, format!("flush chain {chain}"));
    }

    /// Deletes `chain` (it must be empty and unreferenced by then).
    pub fn delete_chain(&mut self, chain: &str) {
        let a = self.chain_attrs(chain);
        self.push(NFT_MSG_DELCHAIN, 0, a, format!("delete chain {chain}"));
    }

    /// Appends `rule` to its chain.
    pub fn add_rule(&mut self, rule: &Rule) {
        let mut a = Attrs::default();
        a.str(NFTA_RULE_TABLE, &self.table);
        a.str(NFTA_RULE_CHAIN, &rule.chain);
        a.nested(NFTA_RULE_EXPRESSIONS, |list| {
            for expr in &rule.exprs {
                list.nested(NFTA_LIST_ELEM, |e| encode_expr(e, expr));
            }
        });
        if let Some(comment) = &rule.comment {
            a.bytes(NFTA_RULE_USERDATA, &comment_udata(comment));
        }
        self.push(
            NFT_MSG_NEWRULE,
            NLM_F_CREATE | NLM_F_APPEND,
            a,
            format!("add rule {} {:?}", rule.chain, rule.exprs),
        );
    }

    /// Puts `rule` at the top of its chain.
    pub fn insert_rule(&mut self, rule: &Rule) {
        self.add_rule(rule);
        let last = self.messages.last_mut().expect("just added");
        last.flags = NLM_F_CREATE;
        let summary = self.summary.last_mut().expect("just added");
        *summary = summary.replacen("add rule", "insert rule", 1);
    }

    /// Deletes the rule with kernel handle `handle` from `chain`.
    pub fn delete_rule(&mut self, chain: &str, handle: u64) {
        let mut a = Attrs::default();
        a.str(NFTA_RULE_TABLE, &self.table);
        a.str(NFTA_RULE_CHAIN, chain);
        a.bytes(NFTA_RULE_HANDLE, &handle.to_be_bytes());
        self.push(
            NFT_MSG_DELRULE,
            0,
            a,
            format!("delete rule {chain} handle {handle}"),
        );
    }

    /// Creates set or map `set` if it does not exist.
    pub fn add_set(&mut self, set: &Set, id: u32) {
        let mut a = Attrs::default();
        a.str(NFTA_SET_TABLE, &self.table);
        a.str(NFTA_SET_NAME, &set.name);
        let mut flags = set.flags;
        if set.data.is_some() {
            flags |= SET_F_MAP;
        }
        if !set.fields.is_empty() {
            flags |= SET_F_CONCAT;
        }
        a.u32(NFTA_SET_FLAGS, flags);
        a.u32(NFTA_SET_KEY_TYPE, set.key_type);
        a.u32(NFTA_SET_KEY_LEN, set.key_len);
        if let Some((ty, len)) = set.data {
            a.u32(NFTA_SET_DATA_TYPE, ty);
            if ty != datatype::VERDICT {
                a.u32(NFTA_SET_DATA_LEN, len);
            }
        }
        a.u32(NFTA_SET_ID, id);
        if set.key_type == datatype::IFNAME {
            // nft's set userdata: key byte order = host (strings are stored as they are);
            // without it `nft list` cannot print the keys.
            const NFTNL_UDATA_SET_KEYBYTEORDER: u8 = 0;
            const BYTEORDER_HOST_ENDIAN: u32 = 1;
            let mut udata = vec![NFTNL_UDATA_SET_KEYBYTEORDER, 4];
            udata.extend_from_slice(&BYTEORDER_HOST_ENDIAN.to_ne_bytes());
            a.bytes(NFTA_SET_USERDATA, &udata);
        }
        if !set.fields.is_empty() {
            a.nested(NFTA_SET_DESC, |d| {
                d.nested(NFTA_SET_DESC_CONCAT, |c| {
                    for len in &set.fields {
                        c.nested(NFTA_LIST_ELEM, |f| f.u32(NFTA_SET_FIELD_LEN, *len));
                    }
                });
            });
        }
        self.push(
            NFT_MSG_NEWSET,
            NLM_F_CREATE,
            a,
            format!("add set {}", set.name),
        );
    }

    /// Adds elements to `set`; `exclusive` refuses keys already there.
    pub fn add_elements(&mut self, set: &str, elements: &[Element], exclusive: bool) {
        let a = self.elements_attrs(set, elements);
        let flags = NLM_F_CREATE | if exclusive { NLM_F_EXCL } else { 0 };
        self.push(
            NFT_MSG_NEWSETELEM,
            flags,
            a,
            format!("add {} element(s) to {set}", elements.len()),
        );
    }

    pub fn delete_elements(&mut self, set: &str, elements: &[Element]) {
        let a = self.elements_attrs(set, elements);
        self.push(
            NFT_MSG_DELSETELEM,
            0,
            a,
            format!("delete {} element(s) from {set}", elements.len()),
        );
    }

    fn chain_attrs(&self, chain: &str) -> Attrs {
        let mut a = Attrs::default();
        a.str(NFTA_CHAIN_TABLE, &self.table);
        a.str(NFTA_CHAIN_NAME, chain);
        a
    }

    fn elements_attrs(&self, set: &str, elements: &[Element]) -> Attrs {
        let mut a = Attrs::default();
        a.str(NFTA_SET_ELEM_LIST_TABLE, &self.table);
        a.str(NFTA_SET_ELEM_LIST_SET, set);
        a.nested(NFTA_SET_ELEM_LIST_ELEMENTS, |list| {
            for el in elements {
                list.nested(NFTA_LIST_ELEM, |e| {
                    e.nested(NFTA_SET_ELEM_KEY, |k| k.bytes(NFTA_DATA_VALUE, &el.key));
                    match &el.data {
                        Some(Data::Value(v)) => {
                            e.nested(NFTA_SET_ELEM_DATA, |d| d.bytes(NFTA_DATA_VALUE, v))
                        }
                        Some(Data::Verdict(v)) => e.nested(NFTA_SET_ELEM_DATA, |d| {
                            d.nested(NFTA_DATA_VERDICT, |vd| encode_verdict(vd, v))
                        }),
                        None => {}
                    }
                });
            }
        });
        a
    }

    /// The batch as bytes: BATCH_BEGIN, the messages (each asking for an ack), BATCH_END.
    fn encode(&self, first_seq: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut seq = first_seq;
        put_message(
            &mut out,
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            seq,
            0,
            NFNL_SUBSYS_NFTABLES,
            &[],
        );
        for m in &self.messages {
            seq += 1;
            let kind = (NFNL_SUBSYS_NFTABLES << 8) | m.kind;
            put_message(
                &mut out,
                kind,
                NLM_F_REQUEST | NLM_F_ACK | m.flags,
                seq,
                self.family as u8,
                0,
                &m.attrs,
            );
        }
        put_message(
            &mut out,
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            seq + 1,
            0,
            NFNL_SUBSYS_NFTABLES,
            &[],
        );
        out
    }
}

/// A rule as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRule {
    /// Protocol family of the table (`Family` as a number: 1 inet, 2 ip, 10 ip6, ...).
    pub family: u8,
    pub table: String,
    pub chain: String,
    pub handle: u64,
    pub comment: Option<String>,
}

/// A chain as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedChain {
    pub family: u8,
    pub table: String,
    pub name: String,
    /// Hook number, for base chains.
    pub hook: Option<u32>,
    /// `NF_ACCEPT` (1) or `NF_DROP` (0), for base chains.
    pub policy: Option<u32>,
}

/// A NETLINK_NETFILTER socket in the calling thread's network namespace.
pub struct Nft {
    socket: Socket,
    seq: u32,
}

impl Nft {
    pub fn open() -> Result<Nft> {
        let io = |source| NftError::Io {
            op: "open netlink socket".into(),
            source,
        };
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(io)?;
        socket.bind_auto().map_err(io)?;
        let timeout = nix::sys::time::TimeVal::from(libc::timeval {
            tv_sec: REPLY_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        });
        nix::sys::socket::setsockopt(
            &socket.as_fd(),
            nix::sys::socket::sockopt::ReceiveTimeout,
            &timeout,
        )
        .map_err(|e| io(e.into()))?;
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() as u32);
        Ok(Nft { socket, seq })
    }

    /// Sends `batch` and waits for the kernel's verdict on each message. The kernel
    /// applies the whole batch or, on any error, none of it.
    pub fn apply(&mut self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let first = self.next_seq();
        self.seq += batch.messages.len() as u32 + 1;
        let bytes = batch.encode(first);
        self.send(&bytes, "send batch")?;
        let last = first + batch.messages.len() as u32;
        let mut acked = 0;
        while acked < batch.messages.len() {
            for (kind, seq, payload) in self.receive("read batch result")? {
                if kind != NLMSG_ERROR || seq < first || seq > last {
                    continue;
                }
                let code = i32::from_ne_bytes(payload[..4].try_into().expect("error payload"));
                if code != 0 {
                    let what = match seq - first {
                        0 => "begin batch".to_string(),
                        n => batch.summary[n as usize - 1].clone(),
                    };
                    return Err(NftError::Rejected {
                        what,
                        source: io::Error::from_raw_os_error(-code),
                    });
                }
                acked += 1;
            }
        }
        Ok(())
    }

    /// True when chain `chain` exists in `table`.
    pub fn chain_exists(&mut self, family: Family, table: &str, chain: &str) -> Result<bool> {
        let mut a = Attrs::default();
        a.str(NFTA_CHAIN_TABLE, table);
        a.str(NFTA_CHAIN_NAME, chain);
        let seq = self.next_seq();
        let mut out = Vec::new();
        put_message(
            &mut out,
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETCHAIN,
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            family as u8,
            0,
            &a.0,
        );
        self.send(&out, "query chain")?;
        loop {
            for (kind, rseq, payload) in self.receive("query chain")? {
                if rseq != seq {
                    continue;
                }
                if kind == NLMSG_ERROR {
                    let code = i32::from_ne_bytes(payload[..4].try_into().expect("error payload"));
                    return match -code {
                        0 => Ok(true),
                        libc::ENOENT => Ok(false),
                        errno => Err(NftError::Io {
                            op: format!("query chain {table} {chain}"),
                            source: io::Error::from_raw_os_error(errno),
                        }),
                    };
                }
                return Ok(true);
            }
        }
    }

    /// Every rule of `table` (none when the table does not exist).
    pub fn rules(&mut self, family: Family, table: &str) -> Result<Vec<ListedRule>> {
        let mut a = Attrs::default();
        a.str(NFTA_RULE_TABLE, table);
        let rules = self.dump(NFT_MSG_GETRULE, family as u8, &a, parse_rule, "list rules")?;
        Ok(rules.into_iter().filter(|r| r.table == table).collect())
    }

    /// Every rule of every table, of every family.
    pub fn all_rules(&mut self) -> Result<Vec<ListedRule>> {
        self.dump(
            NFT_MSG_GETRULE,
            0,
            &Attrs::default(),
            parse_rule,
            "list rules",
        )
    }

    /// Every chain of every table, of every family.
    pub fn all_chains(&mut self) -> Result<Vec<ListedChain>> {
        self.dump(
            NFT_MSG_GETCHAIN,
            0,
            &Attrs::default(),
            parse_chain,
            "list chains",
        )
    }

    /// Runs a dump request and parses each object with `parse(family, attributes)`.
    fn dump<T>(
        &mut self,
        kind: u16,
        family: u8,
        attrs: &Attrs,
        parse: fn(u8, &[u8]) -> Option<T>,
        op: &str,
    ) -> Result<Vec<T>> {
        let seq = self.next_seq();
        let mut out = Vec::new();
        put_message(
            &mut out,
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
            family,
            0,
            &attrs.0,
        );
        self.send(&out, op)?;
        let mut items = Vec::new();
        loop {
            for (kind, rseq, payload) in self.receive(op)? {
                if rseq != seq {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(items),
                    NLMSG_ERROR => {
                        let code =
                            i32::from_ne_bytes(payload[..4].try_into().expect("error payload"));
                        if -code == libc::ENOENT {
                            return Ok(items);
                        }
                        return Err(NftError::Io {
                            op: op.into(),
                            source: io::Error::from_raw_os_error(-code),
                        });
                    }
                    // nfgenmsg (family, version, resource id), then attributes.
                    _ if payload.len() >= 4 => items.extend(parse(payload[0], &payload[4..])),
                    _ => {}
                }
            }
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    fn send(&self, bytes: &[u8], op: &str) -> Result<()> {
        self.socket
            .send_to(bytes, &SocketAddr::new(0, 0), 0)
            .map(|_| ())
            .map_err(|source| NftError::Io {
                op: op.into(),
                source,
            })
    }

    /// Reads one datagram; returns its messages as (type, seq, payload).
    fn receive(&self, op: &str) -> Result<Vec<(u16, u32, Vec<u8>)>> {
        let mut buf = vec![0u8; 1 << 16];
        let n = self
            .socket
            .recv(&mut &mut buf[..], 0)
            .map_err(|source| NftError::Io {
                op: op.into(),
                source,
            })?;
        let mut out = Vec::new();
        let mut rest = &buf[..n];
        while rest.len() >= 16 {
            let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
            if len < 16 || len > rest.len() {
                break;
            }
            let kind = u16::from_ne_bytes(rest[4..6].try_into().unwrap());
            let seq = u32::from_ne_bytes(rest[8..12].try_into().unwrap());
            out.push((kind, seq, rest[16..len].to_vec()));
            rest = &rest[align(len).min(rest.len())..];
        }
        Ok(out)
    }
}

/// Timeout after which a silent kernel is an error (never expected).
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The attributes of a message, as (type without flags, payload).
fn attributes(mut attrs: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes(attrs[0..2].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(attrs[2..4].try_into().unwrap()) & !NLA_F_NESTED;
        if len < 4 || len > attrs.len() {
            break;
        }
        out.push((kind, &attrs[4..len]));
        attrs = &attrs[align(len).min(attrs.len())..];
    }
    out
}

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data)
        .trim_end_matches('\0')
        .to_string()
}

fn be_u32(data: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(data.try_into().ok()?))
}

fn parse_rule(family: u8, attrs: &[u8]) -> Option<ListedRule> {
    let (mut table, mut chain, mut handle, mut comment) = (None, None, None, None);
    for (kind, data) in attributes(attrs) {
        match kind {
            NFTA_RULE_TABLE => table = Some(text(data)),
            NFTA_RULE_CHAIN => chain = Some(text(data)),
            NFTA_RULE_HANDLE => handle = Some(u64::from_be_bytes(data.try_into().ok()?)),
            NFTA_RULE_USERDATA => comment = parse_comment_udata(data),
            _ => {}
        }
    }
    Some(ListedRule {
        family,
        table: table?,
        chain: chain?,
        handle: handle?,
        comment,
    })
}

fn parse_chain(family: u8, attrs: &[u8]) -> Option<ListedChain> {
    let (mut table, mut name, mut hook, mut policy) = (None, None, None, None);
    for (kind, data) in attributes(attrs) {
        match kind {
            NFTA_CHAIN_TABLE => table = Some(text(data)),
            NFTA_CHAIN_NAME => name = Some(text(data)),
            NFTA_CHAIN_HOOK => {
                hook = attributes(data)
                    .into_iter()
                    .find(|(k, _)| *k == NFTA_HOOK_HOOKNUM)
                    .and_then(|(_, d)| be_u32(d))
            }
            NFTA_CHAIN_POLICY => policy = be_u32(data),
            _ => {}
        }
    }
    Some(ListedChain {
        family,
        table: table?,
        name: name?,
        hook,
        policy,
    })
}

/// Rule userdata in libnftnl's TLV format: type 0 (comment), length, NUL-terminated text.
fn comment_udata(comment: &str) -> Vec<u8> {
    let mut text = comment.as_bytes()[..comment.len().min(126)].to_vec();
    text.push(0);
    let mut out = vec![0u8, text.len() as u8];
    out.extend(text);
    out
}

fn parse_comment_udata(mut data: &[u8]) -> Option<String> {
    while data.len() >= 2 {
        let (kind, len) = (data[0], data[1] as usize);
        let value = data.get(2..2 + len)?;
        if kind == 0 {
            return Some(
                String::from_utf8_lossy(value)
                    .trim_end_matches('\0')
                    .to_string(),
            );
        }
        data = &data[2 + len..];
    }
    None
}

fn encode_expr(e: &mut Attrs, expr: &Expr) {
    let (name, data): (&str, Attrs) = match expr {
        Expr::Meta { key, dreg } => (
            "meta",
            Attrs::build(|a| {
                a.u32(1, *dreg); // NFTA_META_DREG
                a.u32(2, *key as u32); // NFTA_META_KEY
            }),
        ),
        Expr::Ct { key, dreg } => (
            "ct",
            Attrs::build(|a| {
                a.u32(1, *dreg); // NFTA_CT_DREG
                a.u32(2, *key as u32); // NFTA_CT_KEY
            }),
        ),
        Expr::Payload {
            base,
            offset,
            len,
            dreg,
        } => (
            "payload",
            Attrs::build(|a| {
                a.u32(1, *dreg); // NFTA_PAYLOAD_DREG
                a.u32(2, *base as u32); // NFTA_PAYLOAD_BASE
                a.u32(3, *offset); // NFTA_PAYLOAD_OFFSET
                a.u32(4, *len); // NFTA_PAYLOAD_LEN
            }),
        ),
        Expr::Bitwise { reg, mask, xor } => (
            "bitwise",
            Attrs::build(|a| {
                a.u32(1, *reg); // NFTA_BITWISE_SREG
                a.u32(2, *reg); // NFTA_BITWISE_DREG
                a.u32(3, mask.len() as u32); // NFTA_BITWISE_LEN
                a.nested(4, |d| d.bytes(NFTA_DATA_VALUE, mask)); // NFTA_BITWISE_MASK
                a.nested(5, |d| d.bytes(NFTA_DATA_VALUE, xor)); // NFTA_BITWISE_XOR
            }),
        ),
        Expr::Cmp { sreg, op, data } => (
            "cmp",
            Attrs::build(|a| {
                a.u32(1, *sreg); // NFTA_CMP_SREG
                a.u32(2, *op as u32); // NFTA_CMP_OP
                a.nested(3, |d| d.bytes(NFTA_DATA_VALUE, data)); // NFTA_CMP_DATA
            }),
        ),
        Expr::Lookup { set, sreg, dreg } => (
            "lookup",
            Attrs::build(|a| {
                a.str(1, set); // NFTA_LOOKUP_SET
                a.u32(2, *sreg); // NFTA_LOOKUP_SREG
                if let Some(dreg) = dreg {
                    a.u32(3, *dreg); // NFTA_LOOKUP_DREG
                }
            }),
        ),
        Expr::Verdict(v) => (
            "immediate",
            Attrs::build(|a| {
                a.u32(1, REG_VERDICT); // NFTA_IMMEDIATE_DREG
                a.nested(2, |d| {
                    // NFTA_IMMEDIATE_DATA
                    d.nested(NFTA_DATA_VERDICT, |vd| encode_verdict(vd, v));
                });
            }),
        ),
        Expr::Immediate { dreg, data } => (
            "immediate",
            Attrs::build(|a| {
                a.u32(1, *dreg); // NFTA_IMMEDIATE_DREG
                a.nested(2, |d| d.bytes(NFTA_DATA_VALUE, data)); // NFTA_IMMEDIATE_DATA
            }),
        ),
        Expr::Counter => ("counter", Attrs::default()),
        Expr::Fib {
            flags,
            result,
            dreg,
        } => (
            "fib",
            Attrs::build(|a| {
                a.u32(1, *dreg); // NFTA_FIB_DREG
                a.u32(2, *result); // NFTA_FIB_RESULT
                a.u32(3, *flags); // NFTA_FIB_FLAGS
            }),
        ),
        Expr::Masquerade => ("masq", Attrs::default()),
        Expr::Nat {
            kind,
            family,
            addr_reg,
            proto_reg,
        } => (
            "nat",
            Attrs::build(|a| {
                a.u32(1, *kind as u32); // NFTA_NAT_TYPE
                a.u32(2, *family as u32); // NFTA_NAT_FAMILY
                a.u32(3, *addr_reg); // NFTA_NAT_REG_ADDR_MIN
                if let Some(p) = proto_reg {
                    a.u32(5, *p); // NFTA_NAT_REG_PROTO_MIN
                }
            }),
        ),
    };
    e.str(NFTA_EXPR_NAME, name);
    if !data.0.is_empty() {
        e.bytes_nested(NFTA_EXPR_DATA, &data.0);
    }
}

fn encode_verdict(a: &mut Attrs, v: &Verdict) {
    let (code, chain): (i32, Option<&str>) = match v {
        Verdict::Accept => (1, None),
        Verdict::Drop => (0, None),
        Verdict::Return => (-5, None),
        Verdict::Jump(c) => (-3, Some(c)),
        Verdict::Goto(c) => (-4, Some(c)),
    };
    a.u32(NFTA_VERDICT_CODE, code as u32);
    if let Some(chain) = chain {
        a.str(NFTA_VERDICT_CHAIN, chain);
    }
}

/// Netlink attributes being built.
#[derive(Default)]
struct Attrs(Vec<u8>);

impl Attrs {
    fn build(f: impl FnOnce(&mut Attrs)) -> Attrs {
        let mut a = Attrs::default();
        f(&mut a);
        a
    }

    fn header(&mut self, kind: u16, len: usize) {
        self.0.extend_from_slice(&((4 + len) as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
    }

    fn pad(&mut self) {
        self.0.resize(align(self.0.len()), 0);
    }

    fn bytes(&mut self, kind: u16, data: &[u8]) {
        self.header(kind, data.len());
        self.0.extend_from_slice(data);
        self.pad();
    }

    fn bytes_nested(&mut self, kind: u16, data: &[u8]) {
        self.bytes(kind | NLA_F_NESTED, data);
    }

    fn str(&mut self, kind: u16, s: &str) {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        self.bytes(kind, &data);
    }

    /// nf_tables numbers are big-endian on the wire.
    fn u32(&mut self, kind: u16, v: u32) {
        self.bytes(kind, &v.to_be_bytes());
    }

    fn nested(&mut self, kind: u16, f: impl FnOnce(&mut Attrs)) {
        let inner = Attrs::build(f);
        self.bytes_nested(kind, &inner.0);
    }
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// Appends one netlink message with an nfgenmsg header.
fn put_message(
    out: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    attrs: &[u8],
) {
    let len = 16 + 4 + attrs.len();
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    out.push(family);
    out.push(0); // NFNETLINK_V0
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(attrs);
    out.resize(align(out.len()), 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_aligned_and_big_endian() {
        let mut a = Attrs::default();
        a.str(1, "rbox");
        a.u32(2, 7);
        // "rbox\0" (5 bytes) + 4 header = 9, padded to 12; then 8 for the u32.
        assert_eq!(a.0.len(), 12 + 8);
        assert_eq!(&a.0[0..2], &9u16.to_ne_bytes());
        assert_eq!(&a.0[16..20], &[0, 0, 0, 7]);
    }

    #[test]
    fn batch_is_framed_by_begin_and_end() {
        let mut b = Batch::new(Family::Inet, "t");
        b.add_table();
        b.add_chain(&Chain {
            name: "c".into(),
            base: None,
        });
        let bytes = b.encode(100);
        let mut kinds = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
            kinds.push(u16::from_ne_bytes(rest[4..6].try_into().unwrap()));
            rest = &rest[align(len)..];
        }
        assert_eq!(kinds, [0x10, 0x0a00, 0x0a03, 0x11]);
        assert_eq!(b.summary, ["add table t", "add chain c"]);
    }

    #[test]
    fn comments_round_trip_through_userdata() {
        let ud = comment_udata("rbox-net:abc");
        assert_eq!(parse_comment_udata(&ud).as_deref(), Some("rbox-net:abc"));
    }

    #[test]
    fn concat_type_matches_nft() {
        // nft's `ipv4_addr . inet_service` is (7 << 6) | 13.
        assert_eq!(
            datatype::concat(&[datatype::IPV4_ADDR, datatype::INET_SERVICE]),
            7 << 6 | 13
        );
    }
}
