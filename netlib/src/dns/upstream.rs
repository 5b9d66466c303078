//! Forwarding names that are not the networks' own to the sandbox's upstream servers.
//!
//! The query goes out from inside the sandbox (its sockets are made in its namespace), so
//! an `--internal` network has no way out and a macvlan network asks what its LAN can
//! reach, as in Docker. The client's bytes are passed on with a fresh random ID from a
//! fresh random port; the answer must match ID and question. Servers are tried in order
//! within one time budget, UDP first, TCP when a TCP client gets a truncated UDP answer;
//! when none answers the client gets SERVFAIL before its own timeout.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Header, Message, MessageType, Query, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use socket2::Type;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::time::Instant;

use super::answer::{Forward, Transport, encode};
use super::netns::{Netns, NetnsThreads};

/// Time for all upstream attempts of one query together: well under the 5 s a stub
/// resolver waits, so it gets SERVFAIL rather than a timeout.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(2);
/// Classic DNS limit for UDP answers to queries without EDNS.
const PLAIN_UDP_ANSWER: usize = 512;

/// Makes connected sockets towards an upstream server.
pub trait Connector: Sync {
    fn udp(&self, server: SocketAddr) -> impl Future<Output = io::Result<UdpSocket>> + Send;
    fn tcp(&self, server: SocketAddr) -> impl Future<Output = io::Result<TcpStream>> + Send;
}

/// Sockets made inside a sandbox's namespace.
pub struct SandboxConnector {
    pub threads: NetnsThreads,
    pub netns: Netns,
}

impl Connector for SandboxConnector {
    async fn udp(&self, server: SocketAddr) -> io::Result<UdpSocket> {
        let socket = self
            .threads
            .socket(&self.netns, server, Type::DGRAM)
            .await?;
        let socket = UdpSocket::from_std(socket.into())?;
        socket.connect(server).await?;
        Ok(socket)
    }

    async fn tcp(&self, server: SocketAddr) -> io::Result<TcpStream> {
        let socket = self
            .threads
            .socket(&self.netns, server, Type::STREAM)
            .await?;
        let socket = TcpSocket::from_std_stream(socket.into());
        socket.connect(server).await
    }
}

/// The answer to `query` from the first upstream that gives a usable one, with the
/// client's ID, sized for the client; SERVFAIL when none does within `budget`.
pub async fn forward<C: Connector>(
    connector: &C,
    upstreams: &[SocketAddr],
    query: &Forward,
    transport: Transport,
    budget: Duration,
) -> Vec<u8> {
    let deadline = Instant::now() + budget;
    // An upstream's own SERVFAIL or REFUSED: the answer if no other server does better.
    let mut failure = None;
    for (i, &server) in upstreams.iter().enumerate() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        // Each remaining server gets an equal share of the remaining time.
        let share = (deadline - now) / (upstreams.len() - i) as u32;
        let Ok(Ok(answer)) =
            tokio::time::timeout(share, exchange(connector, server, query, transport)).await
        else {
            continue;
        };
        let rcode = ResponseCode::from_low(answer[3] & 0x0f);
        if rcode == ResponseCode::ServFail || rcode == ResponseCode::Refused {
            failure = Some(answer);
            continue;
        }
        return fit(answer, query);
    }
    failure.map_or_else(|| query.servfail(), |answer| fit(answer, query))
}

/// One server: UDP, then TCP if the client came over TCP and the UDP answer was
/// truncated. Returns the answer with the client's ID.
async fn exchange<C: Connector>(
    connector: &C,
    server: SocketAddr,
    query: &Forward,
    transport: Transport,
) -> io::Result<Vec<u8>> {
    let id: u16 = rand::random();
    let mut bytes = query.bytes.clone();
    bytes[..2].copy_from_slice(&id.to_be_bytes());

    let socket = connector.udp(server).await?;
    socket.send(&bytes).await?;
    // Room for what the client's EDNS lets the server send, and one byte to spot more.
    let room = query
        .request
        .edns
        .as_ref()
        .map_or(PLAIN_UDP_ANSWER, |e| usize::from(e.max_payload()));
    let mut buf = vec![0; room + 1];
    let answer = loop {
        // A connected socket only hears from the server; ICMP errors end the attempt.
        let n = socket.recv(&mut buf).await?;
        if n <= room && answers(&buf[..n], id, query.question()) {
            break &mut buf[..n];
        }
    };
    let truncated = answer[2] & 0x02 != 0;
    if truncated && transport == Transport::Tcp {
        return exchange_tcp(connector, server, &bytes, id, query).await;
    }
    answer[..2].copy_from_slice(&query.request.id.to_be_bytes());
    Ok(answer.to_vec())
}

async fn exchange_tcp<C: Connector>(
    connector: &C,
    server: SocketAddr,
    bytes: &[u8],
    id: u16,
    query: &Forward,
) -> io::Result<Vec<u8>> {
    let mut stream = connector.tcp(server).await?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut answer = vec![0; usize::from(len)];
    stream.read_exact(&mut answer).await?;
    if !answers(&answer, id, query.question()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "upstream TCP answer does not match the query",
        ));
    }
    answer[..2].copy_from_slice(&query.request.id.to_be_bytes());
    Ok(answer)
}

/// Whether `packet` is the answer to our query `id` for `question` (an error answer may
/// leave the question out).
fn answers(packet: &[u8], id: u16, question: &Query) -> bool {
    let mut decoder = BinDecoder::new(packet);
    let Ok(header) = Header::read(&mut decoder) else {
        return false;
    };
    if header.id != id || header.message_type != MessageType::Response {
        return false;
    }
    if header.counts.queries == 0 {
        return header.response_code != ResponseCode::NoError;
    }
    Query::read(&mut decoder).is_ok_and(|q| {
        q.name() == question.name()
            && q.query_type() == question.query_type()
            && q.query_class() == question.query_class()
    })
}

/// The answer as is when it fits the client's limit, else its truncated form.
fn fit(answer: Vec<u8>, query: &Forward) -> Vec<u8> {
    if answer.len() <= usize::from(query.limit) {
        return answer;
    }
    match Message::from_vec(&answer) {
        Ok(message) => encode(&message.truncate(), query.limit),
        Err(_) => query.servfail(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use hickory_proto::op::{Edns, OpCode};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    use super::*;
    use crate::dns::answer::{Action, handle};
    use crate::dns::snapshot::{NetworkRecords, SandboxView, Snapshot};
    use crate::dns::table::NameTable;

    /// Plain sockets in the test's own namespace.
    struct Local;

    impl Connector for Local {
        async fn udp(&self, server: SocketAddr) -> io::Result<UdpSocket> {
            let socket = UdpSocket::bind("127.0.0.1:0").await?;
            socket.connect(server).await?;
            Ok(socket)
        }
        async fn tcp(&self, server: SocketAddr) -> io::Result<TcpStream> {
            TcpStream::connect(server).await
        }
    }

    /// What a stub upstream does with a query.
    #[derive(Clone, Copy)]
    enum Behaviour {
        /// Answers with `n` A records (TC set over UDP when more than 512 bytes).
        Answer(u8),
        ServFail,
        Silent,
        /// Sends an answer with a wrong ID first, then the right one.
        SpoofThenAnswer,
    }

    fn answer_to(query: &Message, n: u8, udp: bool) -> Vec<u8> {
        let mut m = Message::new(query.id, MessageType::Response, OpCode::Query);
        m.queries = query.queries.clone();
        for i in 0..n {
            let rdata = RData::A(A(Ipv4Addr::new(10, 20, 30, i)));
            m.add_answer(Record::from_rdata(
                query.queries[0].name().clone(),
                60,
                rdata,
            ));
        }
        let limit = if udp { 512 } else { u16::MAX };
        encode(&m, limit)
    }

    /// A stub server on UDP and TCP at one loopback port.
    async fn upstream(behaviour: Behaviour) -> SocketAddr {
        let udp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = udp.local_addr().unwrap();
        let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
        tokio::spawn(async move {
            let mut buf = [0; 4096];
            loop {
                let (n, peer) = udp.recv_from(&mut buf).await.unwrap();
                let query = Message::from_vec(&buf[..n]).unwrap();
                let reply = match behaviour {
                    Behaviour::Answer(k) => answer_to(&query, k, true),
                    Behaviour::ServFail => {
                        let mut m =
                            Message::error_msg(query.id, OpCode::Query, ResponseCode::ServFail);
                        m.queries = query.queries.clone();
                        m.to_vec().unwrap()
                    }
                    Behaviour::Silent => continue,
                    Behaviour::SpoofThenAnswer => {
                        let mut spoof = answer_to(&query, 1, true);
                        spoof[..2].copy_from_slice(&query.id.wrapping_add(1).to_be_bytes());
                        udp.send_to(&spoof, peer).await.unwrap();
                        answer_to(&query, 2, true)
                    }
                };
                udp.send_to(&reply, peer).await.unwrap();
            }
        });
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = tcp.accept().await.unwrap();
                let len = stream.read_u16().await.unwrap();
                let mut buf = vec![0; len as usize];
                stream.read_exact(&mut buf).await.unwrap();
                let query = Message::from_vec(&buf).unwrap();
                let Behaviour::Answer(k) = behaviour else {
                    continue;
                };
                let reply = answer_to(&query, k, false);
                stream.write_u16(reply.len() as u16).await.unwrap();
                stream.write_all(&reply).await.unwrap();
            }
        });
        addr
    }

    /// A closed port: the kernel answers with ICMP port unreachable.
    async fn closed() -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.local_addr().unwrap()
    }

    fn forward_of(name: &str, edns: Option<u16>) -> Forward {
        let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        let table = NameTable::build(&Snapshot {
            networks: vec![NetworkRecords {
                id: "n".into(),
                name: "n".into(),
                dns_enabled: true,
                endpoints: vec![],
            }],
            sandboxes: vec![SandboxView {
                id: "sb".into(),
                netns_path: "/nonexistent".into(),
                networks: vec!["n".into()],
                upstreams: vec![],
                search: vec![],
            }],
        });
        match handle(&m.to_vec().unwrap(), &table, "sb", Transport::Udp) {
            Action::Forward(f) => f,
            other => panic!("expected forward, got {other:?}"),
        }
    }

    async fn run(
        upstreams: &[SocketAddr],
        fwd: &Forward,
        transport: Transport,
        budget: Duration,
    ) -> (Message, Duration) {
        let started = Instant::now();
        let bytes = forward(&Local, upstreams, fwd, transport, budget).await;
        (Message::from_vec(&bytes).unwrap(), started.elapsed())
    }

    #[tokio::test]
    async fn answers_are_relayed_with_the_client_id() {
        let good = upstream(Behaviour::Answer(2)).await;
        let fwd = forward_of("example.test.", None);
        let (msg, _) = run(&[good], &fwd, Transport::Udp, DEFAULT_BUDGET).await;
        assert_eq!(msg.id, 0x4242);
        assert_eq!(msg.response_code, ResponseCode::NoError);
        assert_eq!(msg.answers.len(), 2);
    }

    #[tokio::test]
    async fn dead_servers_are_skipped_within_the_budget() {
        let good = upstream(Behaviour::Answer(1)).await;
        let silent = upstream(Behaviour::Silent).await;
        let refused = closed().await;
        let fwd = forward_of("example.test.", None);
        let budget = Duration::from_millis(600);

        // A closed port fails at once.
        let (msg, took) = run(&[refused, good], &fwd, Transport::Udp, budget).await;
        assert_eq!(msg.answers.len(), 1);
        assert!(took < Duration::from_millis(200), "{took:?}");

        // A silent server costs its share of the budget, then the next one answers.
        let (msg, took) = run(&[silent, good], &fwd, Transport::Udp, budget).await;
        assert_eq!(msg.answers.len(), 1);
        assert!(
            took >= Duration::from_millis(290) && took < budget,
            "{took:?}"
        );

        // Nobody answers: SERVFAIL by the end of the budget, not later.
        let (msg, took) = run(&[silent, refused], &fwd, Transport::Udp, budget).await;
        assert_eq!(msg.response_code, ResponseCode::ServFail);
        assert_eq!(msg.id, 0x4242);
        assert_eq!(msg.queries.len(), 1);
        assert!(took < budget + Duration::from_millis(100), "{took:?}");

        // No upstream at all: SERVFAIL at once.
        let (msg, took) = run(&[], &fwd, Transport::Udp, budget).await;
        assert_eq!(msg.response_code, ResponseCode::ServFail);
        assert!(took < Duration::from_millis(50));
    }

    #[tokio::test]
    async fn servfail_moves_on_to_the_next_server() {
        let failing = upstream(Behaviour::ServFail).await;
        let good = upstream(Behaviour::Answer(1)).await;
        let fwd = forward_of("example.test.", None);
        let (msg, _) = run(&[failing, good], &fwd, Transport::Udp, DEFAULT_BUDGET).await;
        assert_eq!(msg.response_code, ResponseCode::NoError);
        // Only failures: the upstream's own SERVFAIL is the answer.
        let (msg, _) = run(&[failing], &fwd, Transport::Udp, DEFAULT_BUDGET).await;
        assert_eq!(msg.response_code, ResponseCode::ServFail);
        assert_eq!(msg.id, 0x4242);
    }

    #[tokio::test]
    async fn truncated_answers_fall_back_to_tcp_for_tcp_clients() {
        let big = upstream(Behaviour::Answer(60)).await;
        let fwd = forward_of("example.test.", None);
        // A UDP client gets the truncated answer and retries over TCP itself.
        let (msg, _) = run(&[big], &fwd, Transport::Udp, DEFAULT_BUDGET).await;
        assert!(msg.truncation);
        assert!(msg.answers.len() < 60);
        // A TCP client gets the whole answer, fetched over TCP.
        let mut tcp = forward_of("example.test.", None);
        tcp.limit = u16::MAX;
        let (msg, _) = run(&[big], &tcp, Transport::Tcp, DEFAULT_BUDGET).await;
        assert!(!msg.truncation);
        assert_eq!(msg.answers.len(), 60);
        assert_eq!(msg.id, 0x4242);
    }

    #[tokio::test]
    async fn answers_with_another_id_are_ignored() {
        let spoofing = upstream(Behaviour::SpoofThenAnswer).await;
        let fwd = forward_of("example.test.", None);
        let (msg, _) = run(&[spoofing], &fwd, Transport::Udp, DEFAULT_BUDGET).await;
        assert_eq!(msg.answers.len(), 2);
    }

    #[test]
    fn oversized_answers_are_cut_to_the_client_limit() {
        let fwd = forward_of("example.test.", None);
        let query = Message::from_vec(&fwd.bytes).unwrap();
        let big = answer_to(&query, 60, false);
        assert!(big.len() > 512);
        let cut = Message::from_vec(&fit(big, &fwd)).unwrap();
        assert!(cut.truncation);
        assert_eq!(cut.queries.len(), 1);
    }

    #[test]
    fn answers_must_match_id_and_question() {
        let fwd = forward_of("example.test.", None);
        let query = Message::from_vec(&fwd.bytes).unwrap();
        let good = answer_to(&query, 1, true);
        assert!(answers(&good, 0x4242, fwd.question()));
        assert!(!answers(&good, 0x4243, fwd.question()));
        let other = Query::query(Name::from_ascii("other.test.").unwrap(), RecordType::A);
        assert!(!answers(&good, 0x4242, &other));
        assert!(
            !answers(&fwd.bytes, 0x4242, fwd.question()),
            "a query is no answer"
        );
        assert!(!answers(&good[..5], 0x4242, fwd.question()));
    }
}
