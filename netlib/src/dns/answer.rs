//! From a query's bytes to what to do with it: answer from the name table, hand it to the
//! upstream forwarder, or drop it. Every decision is made here, apart from sockets.

use hickory_proto::op::{Edns, Header, Message, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::op::{MessageType, emit_message_parts};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};

use super::table::{Family, NameTable, normalize};

/// The largest query accepted: stub resolvers' queries are a few hundred bytes.
pub const MAX_QUERY_LEN: usize = 4096;
/// Largest UDP answer, whatever a client's EDNS offers (loopback never fragments).
const MAX_UDP_ANSWER: u16 = 4096;
/// Classic DNS limit for UDP answers to clients without EDNS.
const PLAIN_UDP_ANSWER: u16 = 512;
/// Seconds clients may keep our answers: short, so a removed container's name does not
/// live on in a caching client for long.
pub const TTL: u32 = 60;
const HEADER_LEN: usize = 12;

/// How the query came in, which bounds the answer's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What to do with one incoming packet.
#[derive(Debug)]
pub enum Action {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not a name of the sandbox's networks: ask its upstream servers.
    Forward(Forward),
    /// Not something to answer (a response, or too short to hold a header).
    Drop,
}

/// A query to forward, with what is needed to check and size the upstream answer.
#[derive(Debug)]
pub struct Forward {
    /// The client's bytes, passed on unchanged but for the ID.
    pub bytes: Vec<u8>,
    pub request: Message,
    /// Largest answer the client takes over its transport.
    pub limit: u16,
}

impl Forward {
    pub fn question(&self) -> &Query {
        &self.request.queries[0]
    }

    /// SERVFAIL for this query: no upstream answered.
    pub fn servfail(&self) -> Vec<u8> {
        respond(
            &self.request,
            ResponseCode::ServFail,
            Vec::new(),
            self.limit,
        )
    }
}

/// Decides what to do with `packet`, received from the sandbox `sandbox_id`.
pub fn handle(packet: &[u8], table: &NameTable, sandbox_id: &str, transport: Transport) -> Action {
    let Ok(header) = Header::read(&mut BinDecoder::new(packet)) else {
        return Action::Drop;
    };
    if header.message_type != MessageType::Query {
        // Never answer an answer: that is how reflection loops start.
        return Action::Drop;
    }
    if packet.len() > MAX_QUERY_LEN {
        return Action::Reply(error(&header.metadata, ResponseCode::FormErr));
    }
    let Ok(request) = Message::from_vec(packet) else {
        return Action::Reply(error(&header.metadata, ResponseCode::FormErr));
    };
    if request.op_code != OpCode::Query {
        return Action::Reply(error(&header.metadata, ResponseCode::NotImp));
    }
    if request.queries.len() != 1 {
        return Action::Reply(error(&header.metadata, ResponseCode::FormErr));
    }
    let limit = match (transport, &request.edns) {
        (Transport::Tcp, _) => u16::MAX,
        (Transport::Udp, Some(edns)) => edns.max_payload().clamp(PLAIN_UDP_ANSWER, MAX_UDP_ANSWER),
        (Transport::Udp, None) => PLAIN_UDP_ANSWER,
    };
    if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return Action::Reply(respond(&request, ResponseCode::BADVERS, Vec::new(), limit));
    }
    let Some(sandbox) = table.sandbox(sandbox_id) else {
        // The sandbox is being removed: it gets no more answers.
        return Action::Reply(respond(&request, ResponseCode::Refused, Vec::new(), limit));
    };

    let query = &request.queries[0];
    if query.query_class() == DNSClass::IN {
        let name = normalize(&query.name().to_ascii());
        let want = match query.query_type() {
            RecordType::A => Some(Family::V4),
            RecordType::AAAA => Some(Family::V6),
            RecordType::ANY => Some(Family::Both),
            _ => None,
        };
        match want {
            Some(family) => {
                if let Some(found) = table.resolve(sandbox, &name, family) {
                    let owner = query.name().clone();
                    let v4 = found.v4.into_iter().map(|ip| RData::A(A(ip)));
                    let v6 = found.v6.into_iter().map(|ip| RData::AAAA(AAAA(ip)));
                    let answers = v4
                        .chain(v6)
                        .map(|rdata| Record::from_rdata(owner.clone(), TTL, rdata))
                        .collect();
                    return Action::Reply(respond(&request, ResponseCode::NoError, answers, limit));
                }
            }
            None if query.query_type() == RecordType::PTR => {
                let ip = query
                    .name()
                    .parse_arpa_name()
                    .ok()
                    .filter(|net| net.prefix_len() == net.max_prefix_len())
                    .map(|net| net.addr());
                let targets = ip.map(|ip| table.reverse(sandbox, ip)).unwrap_or_default();
                if !targets.is_empty() {
                    let owner = query.name().clone();
                    let answers = targets
                        .into_iter()
                        .map(|t| Record::from_rdata(owner.clone(), TTL, RData::PTR(PTR(t))))
                        .collect();
                    return Action::Reply(respond(&request, ResponseCode::NoError, answers, limit));
                }
            }
            None => {}
        }
        // Another type for one of our names: the name exists, it has no such record.
        if table.resolve(sandbox, &name, Family::Neither).is_some() {
            return Action::Reply(respond(&request, ResponseCode::NoError, Vec::new(), limit));
        }
    }
    Action::Forward(Forward {
        bytes: packet.to_vec(),
        request,
        limit,
    })
}

/// An answer to `request` with these records, sized to `limit` (truncated with TC set
/// when they do not all fit).
fn respond(request: &Message, rcode: ResponseCode, answers: Vec<Record>, limit: u16) -> Vec<u8> {
    let mut response = Message::new(request.id, MessageType::Response, request.op_code);
    response.metadata = Metadata::response_from_request(&request.metadata);
    response.metadata.recursion_available = true;
    response.metadata.authoritative = rcode == ResponseCode::NoError;
    response.metadata.response_code = rcode;
    response.queries = request.queries.clone();
    response.answers = answers;
    if let Some(asked) = &request.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_ANSWER);
        edns.set_dnssec_ok(asked.flags().dnssec_ok);
        response.edns = Some(edns);
    }
    encode(&response, limit)
}

/// Encodes a message in at most `limit` bytes: answers that do not fit are left out and
/// TC is set, while the question and the OPT record (if any) always stay.
pub fn encode(message: &Message, limit: u16) -> Vec<u8> {
    let opt = message.edns.as_ref().map(|edns| {
        let mut edns = edns.clone();
        edns.set_rcode_high(message.response_code.high());
        Record::from(&edns)
    });
    let opt_len = opt
        .as_ref()
        .map_or(0, |r| r.to_bytes().map_or(0, |b| b.len()));
    let mut buf = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut buf);
    encoder.set_max_size(limit.saturating_sub(opt_len as u16));
    let no_records: [Record; 0] = [];
    let written = emit_message_parts(
        &message.metadata,
        &mut message.queries.iter(),
        &mut message.answers.iter(),
        &mut message.authorities.iter(),
        &mut no_records.iter(),
        None,
        None,
        &mut encoder,
    );
    if written.is_err() {
        // Not even the question fits: answer with the bare header.
        let mut bare = Message::new(message.id, MessageType::Response, message.op_code);
        bare.metadata = message.metadata;
        bare.metadata.truncation = true;
        return bare.to_vec().unwrap_or_default();
    }
    if let Some(opt) = opt {
        encoder.set_max_size(limit);
        if opt.emit(&mut encoder).is_ok() {
            let additionals = u16::from_be_bytes([buf[10], buf[11]]) + 1;
            buf[10..HEADER_LEN].copy_from_slice(&additionals.to_be_bytes());
        }
    }
    buf
}

/// A header-only error answer to a query that could not be read (no question echoed).
fn error(request: &Metadata, rcode: ResponseCode) -> Vec<u8> {
    let mut response = Message::error_msg(request.id, request.op_code, rcode);
    response.metadata.recursion_desired = request.recursion_desired;
    response.metadata.recursion_available = true;
    response.to_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use hickory_proto::rr::Name;

    use super::*;
    use crate::dns::snapshot::{EndpointNames, NetworkRecords, SandboxView, Snapshot};

    fn table() -> NameTable {
        let ep = |name: &str, last: u8| EndpointNames {
            names: vec![name.to_string(), "shared".into()],
            ipv4: Some(Ipv4Addr::new(172, 18, 0, last)),
            ipv6: (last == 2).then(|| Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)),
        };
        let mut endpoints = vec![ep("web", 2), ep("web2", 3)];
        // Enough addresses under one name to overflow 512 bytes.
        endpoints.extend((10..100).map(|i| EndpointNames {
            names: vec![format!("many{i}"), "many".into()],
            ipv4: Some(Ipv4Addr::new(172, 18, 1, i)),
            ipv6: None,
        }));
        NameTable::build(&Snapshot {
            networks: vec![NetworkRecords {
                id: "n1".into(),
                name: "front".into(),
                dns_enabled: true,
                endpoints,
            }],
            sandboxes: vec![SandboxView {
                id: "sb".into(),
                netns_path: "/run/rbox/netns/sb".into(),
                networks: vec!["n1".into()],
                upstreams: vec![],
                search: vec![],
            }],
        })
    }

    fn query(name: &str, rtype: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut msg = Message::new(0x1234, MessageType::Query, OpCode::Query);
        msg.metadata.recursion_desired = true;
        msg.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            msg.set_edns(e);
        }
        msg.to_vec().unwrap()
    }

    fn reply(packet: &[u8], transport: Transport) -> Message {
        match handle(packet, &table(), "sb", transport) {
            Action::Reply(bytes) => Message::from_vec(&bytes).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn a_and_aaaa_answers_echo_the_question() {
        let msg = reply(&query("WEB.", RecordType::A, None), Transport::Udp);
        assert_eq!(msg.id, 0x1234);
        assert_eq!(msg.message_type, MessageType::Response);
        assert!(msg.recursion_desired && msg.recursion_available && msg.authoritative);
        assert_eq!(msg.response_code, ResponseCode::NoError);
        assert_eq!(msg.queries.len(), 1);
        assert_eq!(msg.answers.len(), 1);
        assert_eq!(msg.answers[0].ttl, TTL);
        assert_eq!(msg.answers[0].name.to_ascii(), "WEB.");
        assert_eq!(
            msg.answers[0].data,
            RData::A(A(Ipv4Addr::new(172, 18, 0, 2)))
        );
        let msg = reply(&query("web.", RecordType::AAAA, None), Transport::Udp);
        assert_eq!(msg.answers.len(), 1);
        assert!(matches!(msg.answers[0].data, RData::AAAA(_)));
        let msg = reply(&query("web.", RecordType::ANY, None), Transport::Udp);
        assert_eq!(msg.answers.len(), 2);
    }

    #[test]
    fn our_names_without_such_records_are_nodata() {
        for (name, rtype) in [
            ("web2.", RecordType::AAAA),
            ("web.", RecordType::MX),
            ("web.", RecordType::TXT),
            ("web.front.", RecordType::SRV),
        ] {
            let msg = reply(&query(name, rtype, None), Transport::Udp);
            assert_eq!(msg.response_code, ResponseCode::NoError, "{name} {rtype}");
            assert!(msg.answers.is_empty(), "{name} {rtype}");
        }
    }

    #[test]
    fn other_names_and_classes_go_upstream() {
        for packet in [
            query("example.com.", RecordType::A, None),
            query("webx.", RecordType::A, None),
            query("9.9.9.9.in-addr.arpa.", RecordType::PTR, None),
            query("18.172.in-addr.arpa.", RecordType::PTR, None),
        ] {
            match handle(&packet, &table(), "sb", Transport::Udp) {
                Action::Forward(f) => {
                    assert_eq!(f.bytes, packet);
                    assert_eq!(f.limit, 512);
                }
                other => panic!("expected forward, got {other:?}"),
            }
        }
        let mut chaos = Message::new(1, MessageType::Query, OpCode::Query);
        let mut q = Query::query(Name::from_ascii("web.").unwrap(), RecordType::TXT);
        q.set_query_class(DNSClass::CH);
        chaos.add_query(q);
        assert!(matches!(
            handle(&chaos.to_vec().unwrap(), &table(), "sb", Transport::Udp),
            Action::Forward(_)
        ));
    }

    #[test]
    fn ptr_names_the_container() {
        let msg = reply(
            &query("3.0.18.172.in-addr.arpa.", RecordType::PTR, None),
            Transport::Udp,
        );
        assert_eq!(msg.answers.len(), 1);
        assert_eq!(
            msg.answers[0].data,
            RData::PTR(PTR(Name::from_ascii("web2.front.").unwrap()))
        );
        let v6 = Name::from(std::net::IpAddr::V6(Ipv6Addr::new(
            0xfd00, 0, 0, 0, 0, 0, 0, 2,
        )));
        let msg = reply(
            &query(&v6.to_ascii(), RecordType::PTR, None),
            Transport::Udp,
        );
        assert_eq!(
            msg.answers[0].data,
            RData::PTR(PTR(Name::from_ascii("web.front.").unwrap()))
        );
    }

    #[test]
    fn malformed_and_unsupported_queries() {
        let table = table();
        // Too short for a header, and answers: dropped.
        assert!(matches!(
            handle(&[1, 2, 3], &table, "sb", Transport::Udp),
            Action::Drop
        ));
        let mut response = query("web.", RecordType::A, None);
        response[2] |= 0x80;
        assert!(matches!(
            handle(&response, &table, "sb", Transport::Udp),
            Action::Drop
        ));

        let rcode = |packet: &[u8]| match handle(packet, &table, "sb", Transport::Udp) {
            Action::Reply(bytes) => {
                let msg = Message::from_vec(&bytes).unwrap();
                assert_eq!(msg.id, u16::from_be_bytes([packet[0], packet[1]]));
                msg.response_code
            }
            other => panic!("expected a reply, got {other:?}"),
        };
        // A header claiming a question that is not there.
        let good = query("web.", RecordType::A, None);
        assert_eq!(rcode(&good[..HEADER_LEN + 3]), ResponseCode::FormErr);
        // Garbage after a valid header.
        let mut garbage = good[..HEADER_LEN].to_vec();
        garbage.extend([0xff; 40]);
        assert_eq!(rcode(&garbage), ResponseCode::FormErr);
        // Oversized.
        let mut big = good.clone();
        big.resize(MAX_QUERY_LEN + 1, 0);
        assert_eq!(rcode(&big), ResponseCode::FormErr);
        // Two questions, and none.
        let mut two = Message::new(7, MessageType::Query, OpCode::Query);
        two.add_query(Query::query(
            Name::from_ascii("web.").unwrap(),
            RecordType::A,
        ));
        two.add_query(Query::query(
            Name::from_ascii("web2.").unwrap(),
            RecordType::A,
        ));
        assert_eq!(rcode(&two.to_vec().unwrap()), ResponseCode::FormErr);
        let none = Message::new(8, MessageType::Query, OpCode::Query);
        assert_eq!(rcode(&none.to_vec().unwrap()), ResponseCode::FormErr);
        // Other opcodes.
        let mut notify = Message::from_vec(&good).unwrap();
        notify.metadata.op_code = OpCode::Notify;
        assert_eq!(rcode(&notify.to_vec().unwrap()), ResponseCode::NotImp);
        // EDNS version 1.
        let mut v1 = Message::from_vec(&query("web.", RecordType::A, Some(1232))).unwrap();
        v1.edns.as_mut().unwrap().set_version(1);
        // BADVERS shares its code (16) with BADSIG, which decoding picks.
        assert_eq!(u16::from(rcode(&v1.to_vec().unwrap())), 16);
        // A sandbox not (or no longer) served.
        match handle(&good, &table, "gone", Transport::Udp) {
            Action::Reply(bytes) => assert_eq!(
                Message::from_vec(&bytes).unwrap().response_code,
                ResponseCode::Refused
            ),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn big_answers_are_truncated_on_udp_without_edns() {
        let packet = query("many.", RecordType::A, None);
        let bytes = match handle(&packet, &table(), "sb", Transport::Udp) {
            Action::Reply(bytes) => bytes,
            other => panic!("expected a reply, got {other:?}"),
        };
        assert!(bytes.len() <= 512, "{} bytes", bytes.len());
        let msg = Message::from_vec(&bytes).unwrap();
        assert!(msg.truncation);
        assert!(!msg.answers.is_empty() && msg.answers.len() < 90);

        // With EDNS room, or over TCP, all 90 fit.
        let msg = reply(&query("many.", RecordType::A, Some(4096)), Transport::Udp);
        assert!(!msg.truncation);
        assert_eq!(msg.answers.len(), 90);
        assert!(msg.edns.is_some());
        let msg = reply(&packet, Transport::Tcp);
        assert!(!msg.truncation);
        assert_eq!(msg.answers.len(), 90);

        // A small EDNS size truncates but keeps the OPT record.
        let bytes = match handle(
            &query("many.", RecordType::A, Some(600)),
            &table(),
            "sb",
            Transport::Udp,
        ) {
            Action::Reply(bytes) => bytes,
            other => panic!("expected a reply, got {other:?}"),
        };
        assert!(bytes.len() <= 600);
        let msg = Message::from_vec(&bytes).unwrap();
        assert!(msg.truncation && msg.edns.is_some());
    }

    #[test]
    fn round_robin_shows_in_answers() {
        let table = table();
        let first = |t: &NameTable| match handle(
            &query("shared.", RecordType::A, None),
            t,
            "sb",
            Transport::Udp,
        ) {
            Action::Reply(bytes) => Message::from_vec(&bytes).unwrap().answers[0].data.clone(),
            other => panic!("expected a reply, got {other:?}"),
        };
        let a = first(&table);
        let b = first(&table);
        assert_ne!(a, b);
        assert_eq!(first(&table), a);
    }
}
