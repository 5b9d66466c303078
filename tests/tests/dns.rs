//! The embedded DNS responder against real namespaces, with its state made through netlib
//! as `rbox run` makes it: each test re-runs itself inside a lab host (as
//! `network_lib.rs` does), creates networks and sandboxes with `Netlib` (which starts and
//! reloads the built `rbox internal-dns` responder), and sends queries to 127.0.0.11:53
//! from inside the sandboxes: from a thread that joins the sandbox's namespace, and with
//! the test image's busybox `nslookup`.

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use netlib::dns::ResponderCommand;
use netlib::model::new_id;
use netlib::{EndpointConfig, Netlib, NetworkCreate, SandboxConfig};
use rbox_tests::{Background, Host, bin, expect_ok, test_image_dir};

const RESPONDER: &str = "127.0.0.11:53";
const INNER: &str = "RBOX_LAB_INNER";
const ROOT: &str = "/var/lib/rbox";
const RUNROOT: &str = "/run/rbox";

// ---- running inside a lab host ----

/// True when running inside the lab (the second run).
fn inner() -> bool {
    std::env::var_os(INNER).is_some()
}

/// Re-runs test `name` of this binary inside `host`.
fn run_inside(host: &Host, name: &str) {
    let exe = std::env::current_exe().unwrap();
    let out = host
        .command(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .output()
        .unwrap();
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let stdout = expect_ok(&format!("{name} inside lab {}", host.name()), out);
    assert!(
        stdout.contains("1 passed"),
        "inner test did not run:\n{stdout}"
    );
}

/// Runs `rbox ARGS` in the lab.
fn rbox(args: &[&str]) -> std::process::Output {
    Command::new(bin("rbox")).args(args).output().unwrap()
}

fn sh(script: &str) -> String {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    expect_ok(&format!("sh -c {script:?}"), out)
}

// ---- state through netlib ----

/// Netlib for the lab host; its DNS responder is the built rbox.
fn open() -> Netlib {
    let mut netlib = Netlib::open(Path::new(ROOT), Path::new(RUNROOT)).unwrap();
    netlib.set_dns_responder(ResponderCommand::rbox(
        bin("rbox"),
        Path::new(ROOT),
        Path::new(RUNROOT),
        std::iter::empty::<&str>(),
    ));
    netlib
}

fn network(netlib: &Netlib, name: &str, internal: bool) -> String {
    netlib
        .create_network(NetworkCreate {
            name: name.into(),
            internal,
            ..Default::default()
        })
        .unwrap()
        .id
}

/// A new container's sandbox with `hostname`, `--dns` servers and the search domain
/// `corp.example`; returns its id.
fn sandbox(netlib: &Netlib, hostname: &str, dns: &[&str]) -> String {
    let id = new_id();
    let config = SandboxConfig {
        hostname: hostname.into(),
        dns: dns.iter().map(|a| a.parse().unwrap()).collect(),
        dns_search: vec!["corp.example".into()],
        files_dir: PathBuf::from(format!("/run/lab-files/{id}")),
        ..Default::default()
    };
    netlib.create_sandbox(&id, config).unwrap();
    id
}

/// Joins `id` to `network` as `name` with `aliases`; returns its address there.
fn join(netlib: &Netlib, id: &str, network: &str, name: &str, aliases: &[&str]) -> Ipv4Addr {
    let config = EndpointConfig {
        container_name: name.into(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    };
    match netlib
        .join(id, network, config)
        .unwrap()
        .ipv4()
        .unwrap()
        .addr()
    {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(_) => unreachable!("an IPv4 network"),
    }
}

/// A sandbox joined to one network as `name`: (id, address).
fn container(netlib: &Netlib, network: &str, name: &str, aliases: &[&str]) -> (String, Ipv4Addr) {
    let id = sandbox(netlib, name, &[]);
    let addr = join(netlib, &id, network, name, aliases);
    (id, addr)
}

fn pin(id: &str) -> PathBuf {
    Path::new(RUNROOT).join("netns").join(id)
}

// ---- queries from inside sandboxes ----

/// Runs `f` on a thread inside the sandbox's network namespace.
fn in_sandbox<T: Send>(id: &str, f: impl FnOnce() -> T + Send) -> T {
    let netns = fs::File::open(pin(id)).unwrap();
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
fn query(id: &str, name: &str, rtype: RecordType) -> std::io::Result<Message> {
    let packet = query_packet(name, rtype);
    in_sandbox(id, || udp_exchange(&packet, Duration::from_secs(4)))
}

fn query_ok(id: &str, name: &str, rtype: RecordType) -> Message {
    query(id, name, rtype).unwrap_or_else(|e| panic!("query {name}: {e}"))
}

/// The IPv4 addresses answered for `name` in sandbox `id` (empty unless NOERROR).
fn a(id: &str, name: &str) -> Vec<Ipv4Addr> {
    addresses(&query_ok(id, name, RecordType::A))
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

/// `nslookup NAME` of the test image's busybox, run as the sandbox's container would
/// run it: chrooted into the image, with the resolv.conf netlib wrote for it.
fn container_nslookup(id: &str, name: &str) -> String {
    let root = test_image_dir().join("rootfs");
    let script = format!(
        "set -e; etc=$(mktemp -d); cp -a {root}/etc/. $etc
         mount -t tmpfs tmpfs {root}/etc; cp -a $etc/. {root}/etc; rm -r $etc
         cp /run/lab-files/{id}/resolv.conf {root}/etc/
         chroot {root} /bin/nslookup {name}",
        root = root.display()
    );
    let out = Command::new("nsenter")
        .arg(format!("--net={}", pin(id).display()))
        .args(["unshare", "--mount", "sh", "-c", &script])
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---- the responder process ----

/// PID of the running responder.
fn responder_pid() -> u32 {
    fs::read_to_string(format!("{RUNROOT}/dns/responder.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
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

/// Waits until no responder runs: its pid file and control socket are gone.
fn responder_gone() -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    let dir = Path::new(RUNROOT).join("dns");
    while dir.join("responder.pid").exists() || dir.join("control.sock").exists() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

// ---- the tests ----

#[test]
fn names_resolve_only_in_sandboxes_of_their_networks() {
    if !inner() {
        return run_inside(
            &Host::new("dns-names"),
            "names_resolve_only_in_sandboxes_of_their_networks",
        );
    }
    let netlib = open();
    network(&netlib, "front", false);
    network(&netlib, "back", false);
    // front: web, web2 (alias www, hostname web2-host); back: db, cache (alias www);
    // both: on the two; legacy: on the default bridge.
    let (web, web_addr) = container(&netlib, "front", "web", &[]);
    let web2 = sandbox(&netlib, "web2-host", &[]);
    let web2_addr = join(&netlib, &web2, "front", "web2", &["www"]);
    let (db, db_addr) = container(&netlib, "back", "db", &[]);
    let (_, cache_addr) = container(&netlib, "back", "cache", &["www"]);
    let both = sandbox(&netlib, "both", &[]);
    join(&netlib, &both, "front", "both", &[]);
    join(&netlib, &both, "back", "both", &[]);
    container(&netlib, "bridge", "legacy", &[]);

    // Names, aliases, hostnames; any case, trailing dot or not, NAME.NETWORK, search domain.
    assert_eq!(a(&web, "web."), [web_addr]);
    assert_eq!(a(&web, "WEB2-HOST"), [web2_addr]);
    assert_eq!(a(&web, "web.front"), [web_addr]);
    assert_eq!(a(&web, "web.corp.example"), [web_addr]);

    // Isolation: names of other networks are not answered (no upstream here: SERVFAIL).
    let msg = query_ok(&web, "db", RecordType::A);
    assert_eq!(msg.response_code, ResponseCode::ServFail);
    assert!(addresses(&msg).is_empty());
    assert_eq!(
        query_ok(&db, "web", RecordType::A).response_code,
        ResponseCode::ServFail
    );
    // The default bridge network has no names.
    assert_eq!(
        query_ok(&web, "legacy", RecordType::A).response_code,
        ResponseCode::ServFail
    );
    // A sandbox on both networks resolves both, and a shared alias from both.
    assert_eq!(a(&both, "web"), [web_addr]);
    assert_eq!(a(&both, "db"), [db_addr]);
    let mut www = a(&both, "www");
    www.sort();
    let mut expected = vec![web2_addr, cache_addr];
    expected.sort();
    assert_eq!(www, expected);
    assert_eq!(a(&web, "www"), [web2_addr]);
    assert_eq!(a(&db, "www"), [cache_addr]);

    // Our name without such a record: NODATA, not upstream's answer.
    let msg = query_ok(&web, "web", RecordType::AAAA);
    assert_eq!(msg.response_code, ResponseCode::NoError);
    assert!(msg.answers.is_empty());

    // PTR, and TCP.
    let o = web2_addr.octets();
    let reverse = format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0]);
    let ptr = query_ok(&web, &reverse, RecordType::PTR);
    assert_eq!(ptr.answers.len(), 1);
    assert_eq!(ptr.answers[0].data.to_string(), "web2.front.");
    let over_tcp = in_sandbox(&both, || {
        tcp_exchange(&query_packet("cache.", RecordType::A))
    });
    assert_eq!(addresses(&over_tcp.unwrap()), [cache_addr]);

    // A real client: busybox's nslookup with the resolv.conf netlib wrote.
    let out = container_nslookup(&web, "web2");
    assert!(out.contains(&web2_addr.to_string()), "{out}");
    let out = container_nslookup(&db, "web2");
    assert!(out.contains("SERVFAIL"), "{out}");
    assert!(!out.contains(&web2_addr.to_string()), "{out}");

    // 127.0.0.11:53 goes to the responder through a tiny table of the sandbox's own.
    let rules = sh(&format!(
        "nsenter --net={} nft list ruleset",
        pin(&web).display()
    ));
    assert!(rules.contains("table ip rbox_dns"), "{rules}");
    assert!(
        rules.contains("udp dport 53 dnat to 127.0.0.11:"),
        "{rules}"
    );
    assert!(
        rules.contains("tcp dport 53 dnat to 127.0.0.11:"),
        "{rules}"
    );
    // The host's own namespace has none.
    assert!(!sh("nft list ruleset").contains("rbox_dns"));
}

#[test]
fn shared_names_rotate_round_robin() {
    if !inner() {
        return run_inside(&Host::new("dns-rr"), "shared_names_rotate_round_robin");
    }
    let netlib = open();
    network(&netlib, "front", false);
    let (client, _) = container(&netlib, "front", "client", &[]);
    let mut all: Vec<Ipv4Addr> = (2..5)
        .map(|i| container(&netlib, "front", &format!("c{i}"), &["svc"]).1)
        .collect();
    all.sort();
    let mut firsts = Vec::new();
    for _ in 0..6 {
        let got = a(&client, "svc");
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, all);
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
fn records_change_before_join_returns_and_no_query_is_lost() {
    if !inner() {
        return run_inside(
            &Host::new("dns-reload"),
            "records_change_before_join_returns_and_no_query_is_lost",
        );
    }
    let netlib = open();
    network(&netlib, "front", false);
    let (client, _) = container(&netlib, "front", "client", &[]);
    let (_, web_addr) = container(&netlib, "front", "web", &[]);

    // A client asks for `web` without pause while containers come and go.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (answered, lost) = std::thread::scope(|s| {
        let asker = s.spawn(|| {
            in_sandbox(&client, || {
                let (mut answered, mut lost) = (0, 0);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let packet = query_packet("web.", RecordType::A);
                    match udp_exchange(&packet, Duration::from_secs(3)) {
                        Ok(msg) => {
                            assert_eq!(addresses(&msg), [web_addr]);
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
            let (id, addr) = container(&netlib, "front", &name, &[]);
            let took = started.elapsed();
            // Served when join returned: no retry, no sleep.
            assert_eq!(a(&client, &name), [addr], "after {took:?}");
            netlib.destroy_sandbox(&id).unwrap();
            let msg = query_ok(&client, &name, RecordType::A);
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

    // A sandbox that leaves its DNS networks loses its redirect, not its namespace's
    // other rules.
    let (sb2, _) = container(&netlib, "front", "sb2", &[]);
    assert_eq!(a(&sb2, "web"), [web_addr]);
    sh(&format!(
        "nsenter --net={} nft add table ip theirs",
        pin(&sb2).display()
    ));
    netlib.leave(&sb2, "front").unwrap();
    let tables = sh(&format!(
        "nsenter --net={} nft list tables",
        pin(&sb2).display()
    ));
    assert_eq!(tables.trim(), "table ip theirs");
    assert!(query(&sb2, "web.", RecordType::A).is_err());
}

#[test]
fn the_responder_lives_with_its_networks_and_comes_back_when_killed() {
    if !inner() {
        return run_inside(
            &Host::new("dns-life"),
            "the_responder_lives_with_its_networks_and_comes_back_when_killed",
        );
    }
    let netlib = open();
    network(&netlib, "front", false);
    let (sb1, web_addr) = container(&netlib, "front", "web", &[]);
    let first = responder_pid();
    let rss = rss_kib(first);
    assert!(rss < 10 * 1024, "responder RSS {rss} KiB");

    // Killed: queries fail at once (nothing listens behind the redirect)...
    sh(&format!("kill -9 {first}"));
    assert!(dies(first));
    assert!(query(&sb1, "web.", RecordType::A).is_err());
    // ... and the next sync brings it back, serving every sandbox from the state.
    let out = expect_ok("rbox internal-dns sync", rbox(&["internal-dns", "sync"]));
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["served"], 1, "{report}");
    let second = responder_pid();
    assert_ne!(second, first);
    assert_eq!(a(&sb1, "web"), [web_addr]);

    // A monitor's `ensure` is a no-op while it runs, and brings it back when it does not.
    expect_ok("ensure", rbox(&["internal-dns", "ensure"]));
    assert_eq!(responder_pid(), second);
    sh(&format!("kill -9 {second}"));
    assert!(dies(second));
    expect_ok("ensure", rbox(&["internal-dns", "ensure"]));
    assert_ne!(responder_pid(), second);
    assert_eq!(a(&sb1, "web"), [web_addr]);

    // Its last container gone, it stays with the network: the next one finds it serving.
    let pid = responder_pid();
    netlib.destroy_sandbox(&sb1).unwrap();
    assert!(!dies(pid), "responder gone while its network exists");
    let (sb2, web2) = container(&netlib, "front", "web", &[]);
    assert_eq!(responder_pid(), pid);
    assert_eq!(a(&sb2, "web"), [web2]);
    netlib.destroy_sandbox(&sb2).unwrap();
    // The network removed, nothing is left to serve: it exits.
    netlib.remove_network("front").unwrap();
    assert!(responder_gone(), "responder files left when idle");
    assert!(dies(pid), "responder still running when idle");
    // With nothing to serve, neither a sync nor an ensure leaves one running.
    let out = expect_ok("sync", rbox(&["internal-dns", "sync"]));
    assert!(out.contains("\"exiting\":true"), "{out}");
    expect_ok("ensure", rbox(&["internal-dns", "ensure"]));
    assert!(responder_gone());
}

/// The lab host reaches `upstream`, a peer host whose dnsmasq answers example.test at
/// 10.99.0.53 (10.99.0.54 is the peer too, with nothing on port 53). The host's
/// resolv.conf names 10.99.0.53.
fn upstream_lab(name: &str, test: &str) {
    let host = Host::new(name);
    let peer = Host::new("upstream");
    host.link(
        "uplink",
        Some("10.99.0.1/24"),
        &peer,
        "eth0",
        Some("10.99.0.53/24"),
    );
    peer.sh_ok("ip addr add 10.99.0.54/24 dev eth0");
    let _dnsmasq = peer.dns_stub(
        "10.99.0.53",
        &["/example.test/10.20.30.40", "/invalid/"],
        &[],
    );
    host.set_resolv_conf("nameserver 10.99.0.53\n");
    run_inside(&host, test);
}

#[test]
fn other_names_are_forwarded_from_inside_the_sandbox() {
    if !inner() {
        return upstream_lab(
            "dns-fwd",
            "other_names_are_forwarded_from_inside_the_sandbox",
        );
    }
    let netlib = open();
    network(&netlib, "front", false);
    network(&netlib, "secret", true);
    let (sb1, web_addr) = container(&netlib, "front", "web", &[]);

    // Outside names come from the upstream, over UDP and TCP; ours still from us.
    assert_eq!(a(&sb1, "www.example.test"), [ip("10.20.30.40")]);
    let msg = in_sandbox(&sb1, || {
        tcp_exchange(&query_packet("a.example.test.", RecordType::A))
    })
    .unwrap();
    assert_eq!(addresses(&msg), [ip("10.20.30.40")]);
    assert_eq!(a(&sb1, "web"), [web_addr]);
    let msg = query_ok(&sb1, "nothing.invalid", RecordType::A);
    assert_eq!(msg.response_code, ResponseCode::NXDomain);

    // `--dns` replaces the host's servers: here one with nothing on port 53.
    let own = sandbox(&netlib, "own", &["10.99.0.54"]);
    join(&netlib, &own, "front", "own", &[]);
    let msg = query_ok(&own, "www.example.test", RecordType::A);
    assert_eq!(msg.response_code, ResponseCode::ServFail);

    // A sandbox on an --internal network has no way out, not even through the
    // responder: SERVFAIL at once, while its network's names resolve.
    let (int, int_addr) = container(&netlib, "secret", "int", &[]);
    let started = Instant::now();
    let msg = query_ok(&int, "www.example.test", RecordType::A);
    assert_eq!(msg.response_code, ResponseCode::ServFail);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(a(&int, "int"), [int_addr]);
}

#[test]
fn unreachable_upstreams_give_servfail_within_the_budget() {
    if !inner() {
        return upstream_lab(
            "dns-servfail",
            "unreachable_upstreams_give_servfail_within_the_budget",
        );
    }
    let netlib = open();
    network(&netlib, "front", false);
    // 10.99.0.77 does not exist: queries to it vanish.
    let dead = sandbox(&netlib, "dead", &["10.99.0.77"]);
    join(&netlib, &dead, "front", "dead", &[]);
    let started = Instant::now();
    let msg = query_ok(&dead, "www.example.test", RecordType::A);
    let took = started.elapsed();
    assert_eq!(msg.response_code, ResponseCode::ServFail);
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_millis(3000),
        "SERVFAIL after {took:?}, expected about the 2 s budget"
    );

    // A dead first server, then a good one: answered within the first one's share.
    let second = sandbox(&netlib, "second", &["10.99.0.77", "10.99.0.53"]);
    join(&netlib, &second, "front", "second", &[]);
    let started = Instant::now();
    assert_eq!(a(&second, "x.example.test"), [ip("10.20.30.40")]);
    assert!(started.elapsed() < Duration::from_millis(1500));

    // A closed port answers with ICMP: the next server is asked at once.
    let closed = sandbox(&netlib, "closed", &["10.99.0.54", "10.99.0.53"]);
    join(&netlib, &closed, "front", "closed", &[]);
    let started = Instant::now();
    assert_eq!(a(&closed, "y.example.test"), [ip("10.20.30.40")]);
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[test]
fn a_dns_server_of_the_container_keeps_port_53() {
    if !inner() {
        return run_inside(
            &Host::new("dns-own53"),
            "a_dns_server_of_the_container_keeps_port_53",
        );
    }
    let netlib = open();
    network(&netlib, "front", false);
    let (sb1, web_addr) = container(&netlib, "front", "web", &[]);
    // The container's own server binds every address on port 53.
    let _dnsmasq = Background(
        Command::new("nsenter")
            .arg(format!("--net={}", pin(&sb1).display()))
            .args([
                "dnsmasq",
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--user=root",
                "--pid-file=",
                "--conf-file=/dev/null",
                "--port=53",
                "--address=/own.test/10.1.2.3",
            ])
            .spawn()
            .unwrap(),
    );
    let listening =
        || sh(&format!("nsenter --net={} ss -uln", pin(&sb1).display())).contains("0.0.0.0:53 ");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !listening() {
        assert!(Instant::now() < deadline, "dnsmasq did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let own = || {
        in_sandbox(&sb1, || {
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
    assert_eq!(own(), [ip("10.1.2.3")]);
    assert_eq!(a(&sb1, "web"), [web_addr]);

    // A responder started after the container's server binds beside it just the same.
    expect_ok("stop", rbox(&["internal-dns", "stop"]));
    netlib.ensure_dns().unwrap();
    assert_eq!(a(&sb1, "web"), [web_addr]);
    assert_eq!(own(), [ip("10.1.2.3")]);
}

#[test]
fn garbage_and_floods_leave_it_answering() {
    if !inner() {
        return run_inside(
            &Host::new("dns-garbage"),
            "garbage_and_floods_leave_it_answering",
        );
    }
    let netlib = open();
    network(&netlib, "front", false);
    let (sb1, web_addr) = container(&netlib, "front", "web", &[]);
    let pid = responder_pid();
    in_sandbox(&sb1, || {
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
    in_sandbox(&sb1, || {
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
        assert_eq!(addresses(&msg), [web_addr]);
        drop(idle);
    });

    // Still there, still right, still small.
    assert_eq!(responder_pid(), pid);
    assert_eq!(a(&sb1, "web"), [web_addr]);
    // TCP takes new connections again once the idle ones are seen closed.
    let over_tcp = in_sandbox(&sb1, || {
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
    assert_eq!(addresses(&over_tcp.unwrap()), [web_addr]);
    // Small again once the freed heap is given back (within a second or so).
    let deadline = Instant::now() + Duration::from_secs(3);
    while rss_kib(pid) >= 10 * 1024 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let rss = rss_kib(pid);
    assert!(rss < 10 * 1024, "responder RSS {rss} KiB after the flood");
}

/// A sandbox whose namespace went away behind netlib's back (its pin unmounted) is
/// reported; the others, and new joins, are served.
#[test]
fn unreachable_sandboxes_are_reported_and_others_served() {
    if !inner() {
        return run_inside(
            &Host::new("dns-missing"),
            "unreachable_sandboxes_are_reported_and_others_served",
        );
    }
    let netlib = open();
    network(&netlib, "front", false);
    let (broken, _) = container(&netlib, "front", "broken", &[]);
    sh(&format!("umount -l {}", pin(&broken).display()));
    let (sb1, web_addr) = container(&netlib, "front", "web", &[]);
    assert_eq!(a(&sb1, "web"), [web_addr]);
    let out = expect_ok("sync", rbox(&["internal-dns", "sync"]));
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["served"], 1, "{report}");
    assert_eq!(report["unbound"][0]["id"], broken.as_str(), "{report}");
    // Its record goes with it, and the report is clean again.
    netlib.destroy_sandbox(&broken).unwrap();
    let out = expect_ok("sync", rbox(&["internal-dns", "sync"]));
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["unbound"], serde_json::json!([]), "{report}");
    assert_eq!(a(&sb1, "web"), [web_addr]);
}

#[test]
fn a_corrupt_state_fails_the_sync_and_keeps_the_records_served() {
    if !inner() {
        return run_inside(
            &Host::new("dns-bad"),
            "a_corrupt_state_fails_the_sync_and_keeps_the_records_served",
        );
    }
    let netlib = open();
    let front = network(&netlib, "front", false);
    let (sb1, web_addr) = container(&netlib, "front", "web", &[]);
    let records = Path::new(RUNROOT)
        .join("netlib/endpoints")
        .join(format!("{front}.json"));
    let good = fs::read(&records).unwrap();

    // While running: the reload fails, and the records loaded before are still served.
    fs::write(&records, "{ not json").unwrap();
    let out = rbox(&["internal-dns", "sync"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot load the DNS records"), "{err}");
    assert_eq!(a(&sb1, "web"), [web_addr]);

    // At start: the responder cannot load, says so, and nothing stays running.
    expect_ok("stop", rbox(&["internal-dns", "stop"]));
    let out = rbox(&["internal-dns", "sync"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("responder.log"), "{err}");
    assert!(responder_gone());

    // Repaired, it serves again.
    fs::write(&records, good).unwrap();
    netlib.ensure_dns().unwrap();
    assert_eq!(a(&sb1, "web"), [web_addr]);
}
