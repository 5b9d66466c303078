//! The embedded DNS responder against real namespaces: sandboxes made with `ip netns` in a
//! lab host, records given as a snapshot file to the built `rbox internal-dns`, queries
//! sent from inside each sandbox to 127.0.0.11:53 (by this test, from a thread that joins
//! the sandbox's namespace, and by busybox's nslookup).
//!
//! Container-level labs (`rbox run` two containers, `ping NAME`) join these once the
//! engine and netlib's endpoints exist; until then the snapshot stands in for their state.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use rbox_tests::Host;
use serde_json::{Value, json};

const RESPONDER: &str = "127.0.0.11:53";
const N1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const N2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

/// A lab host with sandboxes, a snapshot file and a way to query from inside sandboxes.
struct Lab {
    host: Host,
    snapshot: PathBuf,
    /// Background commands, with the file where each wrote its PID.
    background: Vec<(Child, PathBuf)>,
}

impl Lab {
    /// A host with the named sandboxes (namespaces with loopback up).
    fn new(name: &str, sandboxes: &[&str]) -> Lab {
        let host = Host::new(name);
        for sb in sandboxes {
            host.sh_ok(&format!("ip netns add {sb} && ip -n {sb} link set lo up"));
        }
        let snapshot = host.dir().join("snapshot.json");
        Lab {
            host,
            snapshot,
            background: Vec::new(),
        }
    }

    /// The sandbox's namespace as this (outer) test process reaches it.
    fn netns(&self, sb: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root/run/netns/{sb}", self.host.pid()))
    }

    /// Writes the snapshot and makes the responder serve it; returns its report.
    fn sync(&self, snapshot: &Value) -> Value {
        fs::write(&self.snapshot, serde_json::to_vec(snapshot).unwrap()).unwrap();
        let out = self.host.rbox_ok(&[
            "internal-dns",
            "sync",
            "--snapshot",
            self.snapshot.to_str().unwrap(),
        ]);
        serde_json::from_str(out.trim()).unwrap()
    }

    /// PID of the running responder.
    fn responder_pid(&self) -> u32 {
        let path = format!("/proc/{}/root/run/rbox/dns/responder.pid", self.host.pid());
        fs::read_to_string(path).unwrap().trim().parse().unwrap()
    }

    /// Runs `f` on a thread inside the sandbox's network namespace.
    fn in_sandbox<T: Send>(&self, sb: &str, f: impl FnOnce() -> T + Send) -> T {
        let netns = fs::File::open(self.netns(sb)).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns(2) on a namespace file we hold open; it changes only this
                // thread's network namespace, and the thread ends with the scope.
                let rc = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// One UDP query from inside the sandbox.
    fn query(&self, sb: &str, name: &str, rtype: RecordType) -> std::io::Result<Message> {
        let packet = query_packet(name, rtype);
        self.in_sandbox(sb, || udp_exchange(&packet, Duration::from_secs(4)))
    }

    fn query_ok(&self, sb: &str, name: &str, rtype: RecordType) -> Message {
        self.query(sb, name, rtype)
            .unwrap_or_else(|e| panic!("query {name} from {sb}: {e}"))
    }

    /// The IPv4 addresses answered for `name` in `sb` (empty unless NOERROR).
    fn a(&self, sb: &str, name: &str) -> Vec<Ipv4Addr> {
        addresses(&self.query_ok(sb, name, RecordType::A))
    }

    /// `nslookup NAME` of the test image's busybox, chrooted into the image with a
    /// resolv.conf as a container on a user-defined network gets; returns its output.
    fn container_nslookup(&self, sb: &str, name: &str) -> String {
        let rootfs = rbox_tests::test_image_dir().join("rootfs");
        // `ip netns exec` gives a mount namespace of its own: the tmpfs over the image's
        // /etc is seen by this command only.
        let out = self.host.sh(&format!(
            "ip netns exec {sb} sh -c 'set -e; etc=$(mktemp -d); cp -a {root}/etc/. $etc
             mount -t tmpfs tmpfs {root}/etc; cp -a $etc/. {root}/etc; rm -r $etc
             printf \"nameserver 127.0.0.11\\nsearch corp.example\\noptions ndots:0\\n\" \
                 > {root}/etc/resolv.conf
             chroot {root} /bin/nslookup {name}'",
            root = rootfs.display()
        ));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Starts `exec COMMAND` in the background in the host, killed when the lab ends.
    /// `ip netns exec` gives it its own mount namespace, out of the host's reach: its PID
    /// (the shell's, kept through the execs) is recorded to kill it by.
    fn spawn(&mut self, command: &str) {
        let pidfile = self
            .host
            .dir()
            .join(format!("background-{}.pid", self.background.len()));
        let script = format!("echo $$ > {}; exec {command}", pidfile.display());
        let child = self
            .host
            .command("sh")
            .args(["-c", &script])
            .spawn()
            .unwrap();
        self.background.push((child, pidfile));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (child, pidfile) in &mut self.background {
            let pid = fs::read_to_string(&*pidfile)
                .ok()
                .and_then(|p| p.trim().parse().ok());
            if let Some(pid) = pid {
                // SAFETY: kill(2) of the PID our own background command recorded.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn query_packet(name: &str, rtype: RecordType) -> Vec<u8> {
    let mut msg = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    msg.to_vec().unwrap()
}

fn rand_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    (nanos ^ (nanos >> 16)) as u16
}

/// Sends a query to the responder from the current namespace and reads its answer.
fn udp_exchange(packet: &[u8], wait: Duration) -> std::io::Result<Message> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.connect(RESPONDER)?;
    socket.set_read_timeout(Some(wait))?;
    socket.send(packet)?;
    let mut buf = [0u8; 65535];
    let n = socket.recv(&mut buf)?;
    let msg = Message::from_vec(&buf[..n]).map_err(std::io::Error::other)?;
    assert_eq!(msg.id, u16::from_be_bytes([packet[0], packet[1]]));
    Ok(msg)
}

/// The same over TCP.
fn tcp_exchange(packet: &[u8]) -> std::io::Result<Message> {
    let mut stream = TcpStream::connect(RESPONDER)?;
    stream.set_read_timeout(Some(Duration::from_secs(4)))?;
    let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(packet);
    stream.write_all(&framed)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut answer = vec![0; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut answer)?;
    Message::from_vec(&answer).map_err(std::io::Error::other)
}

fn addresses(msg: &Message) -> Vec<Ipv4Addr> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn sandbox(id: &str, networks: &[&str], upstreams: &[&str]) -> Value {
    json!({
        "id": id,
        "netns_path": format!("/run/netns/{id}"),
        "networks": networks,
        "upstreams": upstreams,
        "search": ["corp.example"],
    })
}

fn endpoint(names: &[&str], ipv4: &str) -> Value {
    json!({ "names": names, "ipv4": ipv4, "ipv6": null })
}

fn network(id: &str, name: &str, endpoints: Vec<Value>) -> Value {
    json!({ "id": id, "name": name, "dns_enabled": true, "endpoints": endpoints })
}

/// front (N1): web, web2 (alias www); back (N2): db, cache (alias www); the default
/// bridge without DNS. sb1 on front, sb2 on both, sb3 on back.
fn two_networks() -> Value {
    json!({
        "sandboxes": [
            sandbox("sb1", &[N1, "0000"], &[]),
            sandbox("sb2", &[N1, N2], &[]),
            sandbox("sb3", &[N2], &[]),
        ],
        "networks": [
            network(N1, "front", vec![
                endpoint(&["web"], "172.18.0.2"),
                endpoint(&["web2", "www", "web2-host"], "172.18.0.3"),
            ]),
            network(N2, "back", vec![
                endpoint(&["db"], "172.19.0.2"),
                endpoint(&["cache", "www"], "172.19.0.3"),
            ]),
            { "id": "0000", "name": "bridge", "dns_enabled": false,
              "endpoints": [endpoint(&["legacy"], "172.17.0.2")] },
        ],
    })
}

#[test]
fn names_resolve_only_in_sandboxes_of_their_networks() {
    let lab = Lab::new("dns-names", &["sb1", "sb2", "sb3"]);
    let report = lab.sync(&two_networks());
    assert_eq!(report["served"], 3, "{report}");

    // Names, aliases, hostnames; any case, trailing dot or not, NAME.NETWORK, search domain.
    assert_eq!(lab.a("sb1", "web."), [ip("172.18.0.2")]);
    assert_eq!(lab.a("sb1", "WEB2-HOST"), [ip("172.18.0.3")]);
    assert_eq!(lab.a("sb1", "web.front"), [ip("172.18.0.2")]);
    assert_eq!(lab.a("sb1", "web.corp.example"), [ip("172.18.0.2")]);

    // Isolation: names of other networks are not answered (no upstream here: SERVFAIL).
    let msg = lab.query_ok("sb1", "db", RecordType::A);
    assert_eq!(msg.response_code, ResponseCode::ServFail);
    assert!(addresses(&msg).is_empty());
    assert_eq!(
        lab.query_ok("sb3", "web", RecordType::A).response_code,
        ResponseCode::ServFail
    );
    // The default bridge network has no names.
    assert_eq!(
        lab.query_ok("sb1", "legacy", RecordType::A).response_code,
        ResponseCode::ServFail
    );
    // A sandbox on both networks resolves both, and a shared alias from both.
    assert_eq!(lab.a("sb2", "web"), [ip("172.18.0.2")]);
    assert_eq!(lab.a("sb2", "db"), [ip("172.19.0.2")]);
    let mut www = lab.a("sb2", "www");
    www.sort();
    assert_eq!(www, [ip("172.18.0.3"), ip("172.19.0.3")]);
    assert_eq!(lab.a("sb1", "www"), [ip("172.18.0.3")]);
    assert_eq!(lab.a("sb3", "www"), [ip("172.19.0.3")]);

    // Our name without such a record: NODATA, not upstream's answer.
    let msg = lab.query_ok("sb1", "web", RecordType::AAAA);
    assert_eq!(msg.response_code, ResponseCode::NoError);
    assert!(msg.answers.is_empty());

    // PTR, and TCP.
    let ptr = lab.query_ok("sb1", "3.0.18.172.in-addr.arpa.", RecordType::PTR);
    assert_eq!(ptr.answers.len(), 1);
    assert_eq!(ptr.answers[0].data.to_string(), "web2.front.");
    let over_tcp = lab.in_sandbox("sb2", || {
        tcp_exchange(&query_packet("cache.", RecordType::A))
    });
    assert_eq!(addresses(&over_tcp.unwrap()), [ip("172.19.0.3")]);

    // A real client: the test image's busybox nslookup, run as a container would run it
    // (its root, its resolv.conf naming only the responder).
    let out = lab.container_nslookup("sb1", "web2");
    assert!(out.contains("172.18.0.3"), "{out}");
    let out = lab.container_nslookup("sb3", "web2");
    assert!(out.contains("SERVFAIL"), "{out}");
    assert!(
        !out.contains("172.18.0.3"),
        "sb3 resolved front's names:\n{out}"
    );

    // 127.0.0.11:53 goes to the responder through a tiny table of the sandbox's own.
    let rules = lab.host.sh_ok("ip netns exec sb1 nft list ruleset");
    assert!(rules.contains("table ip rbox_dns"), "{rules}");
    assert!(
        rules.contains("udp dport 53 dnat to 127.0.0.11:"),
        "{rules}"
    );
    assert!(
        rules.contains("tcp dport 53 dnat to 127.0.0.11:"),
        "{rules}"
    );
    // The host's own namespace is left alone.
    assert_eq!(lab.host.sh_ok("nft list ruleset").trim(), "");
}

#[test]
fn shared_names_rotate_round_robin() {
    let lab = Lab::new("dns-rr", &["sb1"]);
    let endpoints = (2..5)
        .map(|i| endpoint(&[&format!("c{i}"), "svc"], &format!("172.18.0.{i}")))
        .collect();
    lab.sync(&json!({
        "sandboxes": [sandbox("sb1", &[N1], &[])],
        "networks": [network(N1, "front", endpoints)],
    }));
    let mut firsts = Vec::new();
    for _ in 0..6 {
        let got = lab.a("sb1", "svc");
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [ip("172.18.0.2"), ip("172.18.0.3"), ip("172.18.0.4")]
        );
        firsts.push(got[0]);
    }
    assert_eq!(
        firsts[0..3],
        firsts[3..6],
        "rotation has period 3: {firsts:?}"
    );
    let mut distinct = firsts[0..3].to_vec();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "each address leads in turn: {firsts:?}");
}

#[test]
fn records_change_before_sync_returns_and_no_query_is_lost() {
    let lab = Lab::new("dns-reload", &["sb1", "sb2"]);
    let with = |names: &[&str]| {
        let endpoints: Vec<Value> = names
            .iter()
            .enumerate()
            .map(|(i, n)| endpoint(&[n], &format!("172.18.0.{}", i + 2)))
            .collect();
        json!({
            "sandboxes": [sandbox("sb1", &[N1], &[])],
            "networks": [network(N1, "front", endpoints)],
        })
    };
    lab.sync(&with(&["web"]));

    // A client asks for `web` without pause while the records change under it.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (answered, lost) = std::thread::scope(|s| {
        let asker = s.spawn(|| {
            lab.in_sandbox("sb1", || {
                let (mut answered, mut lost) = (0, 0);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let packet = query_packet("web.", RecordType::A);
                    match udp_exchange(&packet, Duration::from_secs(3)) {
                        Ok(msg) => {
                            assert_eq!(addresses(&msg), [ip("172.18.0.2")]);
                            answered += 1;
                        }
                        Err(_) => lost += 1,
                    }
                }
                (answered, lost)
            })
        });
        for i in 0..15 {
            let name = format!("new{i}");
            let started = Instant::now();
            lab.sync(&with(&["web", &name]));
            let took = started.elapsed();
            // Served before sync returned: no retry, no sleep.
            assert_eq!(lab.a("sb1", &name), [ip("172.18.0.3")], "after {took:?}");
            lab.sync(&with(&["web"]));
            let msg = lab.query_ok("sb1", &name, RecordType::A);
            assert!(addresses(&msg).is_empty(), "{name} still resolves");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        asker.join().unwrap()
    });
    assert!(answered > 0);
    assert_eq!(
        lost,
        0,
        "{lost} of {} queries lost during reloads",
        answered + lost
    );

    // A new sandbox is served, and a sandbox that leaves loses its redirect but not its
    // namespace's other rules.
    let mut both = with(&["web"]);
    both["sandboxes"]
        .as_array_mut()
        .unwrap()
        .push(sandbox("sb2", &[N1], &[]));
    lab.sync(&both);
    assert_eq!(lab.a("sb2", "web"), [ip("172.18.0.2")]);
    lab.host.sh_ok("ip netns exec sb2 nft add table ip theirs");
    lab.sync(&with(&["web"]));
    let rules = lab.host.sh_ok("ip netns exec sb2 nft list tables");
    assert_eq!(rules.trim(), "table ip theirs");
    assert!(lab.query("sb2", "web.", RecordType::A).is_err());
}

#[test]
fn the_responder_exits_when_idle_and_comes_back_when_killed() {
    let lab = Lab::new("dns-life", &["sb1"]);
    let snap = json!({
        "sandboxes": [sandbox("sb1", &[N1], &[])],
        "networks": [network(N1, "front", vec![endpoint(&["web"], "172.18.0.2")])],
    });
    lab.sync(&snap);
    let first = lab.responder_pid();
    let rss = fs::read_to_string(format!("/proc/{first}/status")).unwrap();
    let rss_kib: u64 = rss
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(rss_kib < 10 * 1024, "responder RSS {rss_kib} KiB");

    // Killed: queries fail at once (nothing listens behind the redirect)...
    lab.host.sh_ok(&format!("kill -9 {first}"));
    assert!(dies(first));
    assert!(lab.query("sb1", "web.", RecordType::A).is_err());
    // ... and the next sync brings it back, serving every sandbox from the state.
    let report = lab.sync(&snap);
    assert_eq!(report["served"], 1, "{report}");
    let second = lab.responder_pid();
    assert_ne!(second, first);
    assert_eq!(lab.a("sb1", "web"), [ip("172.18.0.2")]);

    // A monitor's `ensure` is a no-op while it runs, and brings it back when it does not.
    let ensure = [
        "internal-dns",
        "ensure",
        "--snapshot",
        lab.snapshot.to_str().unwrap(),
    ];
    lab.host.rbox_ok(&ensure);
    assert_eq!(lab.responder_pid(), second);
    lab.host.sh_ok(&format!("kill -9 {second}"));
    assert!(dies(second));
    lab.host.rbox_ok(&ensure);
    assert_ne!(lab.responder_pid(), second);
    assert_eq!(lab.a("sb1", "web"), [ip("172.18.0.2")]);

    // Nothing left to serve: it says so and exits.
    let pid = lab.responder_pid();
    let report = lab.sync(&json!({ "sandboxes": [], "networks": [] }));
    assert_eq!(report["exiting"], true, "{report}");
    assert!(lab.responder_gone(), "responder files left when idle");
    assert!(dies(pid), "responder still running when idle");
    // A sync with nothing to serve starts nothing that stays.
    let report = lab.sync(&json!({ "sandboxes": [], "networks": [] }));
    assert_eq!(report["exiting"], true);
    assert!(lab.responder_gone());
}

/// Waits until process `pid` has exited (gone, or a zombie not yet reaped).
fn dies(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat)
                if stat
                    .rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')) =>
            {
                return true;
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    false
}

impl Lab {
    /// Waits until no responder runs: its pid file and control socket are gone.
    fn responder_gone(&self) -> bool {
        self.host.wait_for(
            "! test -e /run/rbox/dns/responder.pid && ! test -e /run/rbox/dns/control.sock",
            Duration::from_secs(5),
        )
    }
}

/// Builds: sb1 (10.88.0.11) and sbint (no route out) on the host's bridge br0; the host
/// routes to `up` (10.99.0.53), which runs dnsmasq answering example.test.
fn forwarding_lab(name: &str) -> Lab {
    let mut lab = Lab::new(name, &["sb1", "sbint"]);
    lab.host.sh_ok(
        "set -e
         sysctl -qw net.ipv4.ip_forward=1
         ip link add br0 type bridge && ip addr add 10.88.0.1/24 dev br0 && ip link set br0 up
         ip link add v-sb1 type veth peer name eth0 netns sb1
         ip link set v-sb1 master br0 up
         ip -n sb1 addr add 10.88.0.11/24 dev eth0 && ip -n sb1 link set eth0 up
         ip -n sb1 route add default via 10.88.0.1
         ip netns add up && ip -n up link set lo up
         ip link add v-up type veth peer name eth0 netns up
         ip addr add 10.99.0.1/24 dev v-up && ip link set v-up up
         ip -n up addr add 10.99.0.53/24 dev eth0 && ip -n up link set eth0 up
         ip -n up route add default via 10.99.0.1",
    );
    let log = lab.host.dir().join("dnsmasq.log");
    lab.spawn(&format!(
        "ip netns exec up dnsmasq --keep-in-foreground --no-resolv --no-hosts \
         --user=root --pid-file= --listen-address=10.99.0.53 --bind-interfaces \
         --conf-file=/dev/null --address=/example.test/10.20.30.40 --address=/invalid/ --log-queries --log-facility={}",
        log.display()
    ));
    assert!(
        lab.host.wait_for(
            "ip netns exec up ss -uln | grep -q 10.99.0.53:53",
            Duration::from_secs(5)
        ),
        "dnsmasq did not start"
    );
    lab
}

#[test]
fn other_names_are_forwarded_from_inside_the_sandbox() {
    let lab = forwarding_lab("dns-fwd");
    lab.sync(&json!({
        "sandboxes": [
            sandbox("sb1", &[N1], &["10.99.0.53:53"]),
            sandbox("sbint", &[N1], &["10.99.0.53:53"]),
        ],
        "networks": [network(N1, "front", vec![endpoint(&["web"], "172.18.0.2")])],
    }));

    // Outside names come from the upstream, over UDP and TCP; ours still from us.
    assert_eq!(lab.a("sb1", "www.example.test"), [ip("10.20.30.40")]);
    let msg = lab
        .in_sandbox("sb1", || {
            tcp_exchange(&query_packet("a.example.test.", RecordType::A))
        })
        .unwrap();
    assert_eq!(addresses(&msg), [ip("10.20.30.40")]);
    assert_eq!(lab.a("sb1", "web"), [ip("172.18.0.2")]);
    let msg = lab.query_ok("sb1", "nothing.invalid", RecordType::A);
    assert_eq!(msg.response_code, ResponseCode::NXDomain);
    // The upstream saw the sandbox's address: the query left from inside it.
    let log = fs::read_to_string(lab.host.dir().join("dnsmasq.log")).unwrap();
    assert!(
        log.contains("www.example.test from 10.88.0.11"),
        "dnsmasq log:\n{log}"
    );

    // A sandbox with no way out (as on an --internal network) gets SERVFAIL at once.
    let started = Instant::now();
    let msg = lab.query_ok("sbint", "www.example.test", RecordType::A);
    assert_eq!(msg.response_code, ResponseCode::ServFail);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(lab.a("sbint", "web"), [ip("172.18.0.2")]);
}

#[test]
fn unreachable_upstreams_give_servfail_within_the_budget() {
    let lab = forwarding_lab("dns-servfail");
    // 10.99.0.77 does not exist: queries to it vanish. Port 5399 on the upstream is closed.
    lab.sync(&json!({
        "sandboxes": [sandbox("sb1", &[N1], &["10.99.0.77:53"])],
        "networks": [network(N1, "front", vec![])],
    }));
    let started = Instant::now();
    let msg = lab.query_ok("sb1", "www.example.test", RecordType::A);
    let took = started.elapsed();
    assert_eq!(msg.response_code, ResponseCode::ServFail);
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_millis(3000),
        "SERVFAIL after {took:?}, expected about the 2 s budget"
    );

    // A dead first server, then a good one: answered within the first one's share.
    lab.sync(&json!({
        "sandboxes": [sandbox("sb1", &[N1], &["10.99.0.77:53", "10.99.0.53:53"])],
        "networks": [network(N1, "front", vec![])],
    }));
    let started = Instant::now();
    assert_eq!(lab.a("sb1", "x.example.test"), [ip("10.20.30.40")]);
    assert!(started.elapsed() < Duration::from_millis(1500));

    // A closed port answers with ICMP: the next server is asked at once.
    lab.sync(&json!({
        "sandboxes": [sandbox("sb1", &[N1], &["10.99.0.53:5399", "10.99.0.53:53"])],
        "networks": [network(N1, "front", vec![])],
    }));
    let started = Instant::now();
    assert_eq!(lab.a("sb1", "y.example.test"), [ip("10.20.30.40")]);
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[test]
fn a_dns_server_of_the_container_keeps_port_53() {
    let mut lab = Lab::new("dns-own53", &["sb1"]);
    let snap = json!({
        "sandboxes": [sandbox("sb1", &[N1], &[])],
        "networks": [network(N1, "front", vec![endpoint(&["web"], "172.18.0.2")])],
    });
    lab.sync(&snap);
    // The container's own server binds every address on port 53.
    lab.spawn(
        "ip netns exec sb1 dnsmasq --keep-in-foreground --no-resolv --no-hosts \
         --user=root --pid-file= --conf-file=/dev/null --port=53 --address=/own.test/10.1.2.3",
    );
    assert!(lab.host.wait_for(
        "ip netns exec sb1 ss -uln | grep -q '0.0.0.0:53 '",
        Duration::from_secs(5)
    ));
    let own = |lab: &Lab| {
        lab.in_sandbox("sb1", || {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.connect("127.0.0.1:53").unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(3)))
                .unwrap();
            socket
                .send(&query_packet("x.own.test.", RecordType::A))
                .unwrap();
            let mut buf = [0u8; 512];
            let n = socket.recv(&mut buf).unwrap();
            addresses(&Message::from_vec(&buf[..n]).unwrap())
        })
    };
    assert_eq!(own(&lab), [ip("10.1.2.3")]);
    assert_eq!(lab.a("sb1", "web"), [ip("172.18.0.2")]);

    // A responder started after the container's server binds beside it just the same.
    lab.host.rbox_ok(&["internal-dns", "stop"]);
    lab.sync(&snap);
    assert_eq!(lab.a("sb1", "web"), [ip("172.18.0.2")]);
    assert_eq!(own(&lab), [ip("10.1.2.3")]);
}

#[test]
fn garbage_and_floods_leave_it_answering() {
    let lab = Lab::new("dns-garbage", &["sb1"]);
    lab.sync(&json!({
        "sandboxes": [sandbox("sb1", &[N1], &[])],
        "networks": [network(N1, "front", vec![endpoint(&["web"], "172.18.0.2")])],
    }));
    let pid = lab.responder_pid();
    lab.in_sandbox("sb1", || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        socket.connect(RESPONDER).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 65535];

        // A header claiming a question that is cut off: FORMERR with the same ID.
        let good = query_packet("web.", RecordType::A);
        socket.send(&good[..15]).unwrap();
        let n = socket.recv(&mut buf).unwrap();
        let msg = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(msg.response_code, ResponseCode::FormErr);
        assert_eq!(msg.id, u16::from_be_bytes([good[0], good[1]]));
        // An oversized datagram: FORMERR too.
        let mut big = good.clone();
        big.resize(60_000, 0xab);
        socket.send(&big).unwrap();
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(
            Message::from_vec(&buf[..n]).unwrap().response_code,
            ResponseCode::FormErr
        );

        // A flood: random bytes, short packets, answers, valid queries, as fast as we can.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut response = good.clone();
        response[2] |= 0x80;
        for i in 0..20_000 {
            let packet: Vec<u8> = match i % 4 {
                0 => (0..(next() % 600) as usize).map(|_| next() as u8).collect(),
                1 => good[..(next() % 12) as usize].to_vec(),
                2 => response.clone(),
                _ => good.clone(),
            };
            let _ = socket.send(&packet);
        }
    });
    // Huge and stalled TCP messages, and more connections than a sandbox may hold.
    lab.in_sandbox("sb1", || {
        let mut huge = TcpStream::connect(RESPONDER).unwrap();
        huge.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        huge.write_all(&[0xff, 0xff, 1, 2, 3]).unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(
            huge.read(&mut byte).unwrap_or(0),
            0,
            "huge length not refused"
        );

        let idle: Vec<TcpStream> = (0..16)
            .map(|_| TcpStream::connect(RESPONDER).unwrap())
            .collect();
        let mut extra = TcpStream::connect(RESPONDER).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let started = Instant::now();
        assert_eq!(extra.read(&mut byte).unwrap_or(0), 0);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "over-limit connection kept"
        );
        // UDP is unaffected while TCP is full.
        let msg =
            udp_exchange(&query_packet("web.", RecordType::A), Duration::from_secs(2)).unwrap();
        assert_eq!(addresses(&msg), [ip("172.18.0.2")]);
        drop(idle);
    });

    // Still there, still right, still small.
    assert_eq!(lab.responder_pid(), pid);
    assert_eq!(lab.a("sb1", "web"), [ip("172.18.0.2")]);
    // TCP takes new connections again once the idle ones are seen closed.
    let over_tcp = lab.in_sandbox("sb1", || {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match tcp_exchange(&query_packet("web.", RecordType::A)) {
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                answer => return answer,
            }
        }
    });
    assert_eq!(addresses(&over_tcp.unwrap()), [ip("172.18.0.2")]);
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        rss_kib < 10 * 1024,
        "responder RSS {rss_kib} KiB after the flood"
    );
}

#[test]
fn unreachable_sandboxes_are_reported_and_others_served() {
    let lab = Lab::new("dns-missing", &["sb1"]);
    let report = lab.sync(&json!({
        "sandboxes": [sandbox("sb1", &[N1], &[]), sandbox("gone", &[N1], &[])],
        "networks": [network(N1, "front", vec![endpoint(&["web"], "172.18.0.2")])],
    }));
    assert_eq!(report["served"], 1, "{report}");
    assert_eq!(report["unbound"][0]["id"], "gone", "{report}");
    assert_eq!(lab.a("sb1", "web"), [ip("172.18.0.2")]);
    // Once the namespace exists, the next sync serves it.
    lab.host
        .sh_ok("ip netns add gone && ip -n gone link set lo up");
    let report = lab.sync(&json!({
        "sandboxes": [sandbox("sb1", &[N1], &[]), sandbox("gone", &[N1], &[])],
        "networks": [network(N1, "front", vec![endpoint(&["web"], "172.18.0.2")])],
    }));
    assert_eq!(report["served"], 2, "{report}");
    assert_eq!(lab.a("gone", "web"), [ip("172.18.0.2")]);
}

#[test]
fn a_bad_snapshot_fails_the_sync_and_keeps_the_records_served() {
    let lab = Lab::new("dns-bad", &["sb1"]);
    // At start: the responder cannot load, says so, and nothing stays running.
    fs::write(&lab.snapshot, "{ not json").unwrap();
    let sync = [
        "internal-dns",
        "sync",
        "--snapshot",
        lab.snapshot.to_str().unwrap(),
    ];
    let (code, err) = lab.host.rbox_fails(&sync);
    assert_eq!(code, 125);
    assert!(err.contains("responder.log"), "{err}");
    assert!(lab.responder_gone());

    // While running: the reload fails, and the records loaded before are still served.
    lab.sync(&json!({
        "sandboxes": [sandbox("sb1", &[N1], &[])],
        "networks": [network(N1, "front", vec![endpoint(&["web"], "172.18.0.2")])],
    }));
    fs::write(&lab.snapshot, "{ not json").unwrap();
    let (code, err) = lab.host.rbox_fails(&sync);
    assert_eq!(code, 125);
    assert!(err.contains("cannot load the DNS records"), "{err}");
    assert_eq!(lab.a("sb1", "web"), [ip("172.18.0.2")]);
}
