//! The engine's behaviour, container by container: exit codes, process settings, mounts,
//! security defaults, cgroup limits, logs, exec, stop/restart, inspect, wait, attach and
//! --init. Each test runs in its own simulated host.

mod containers_support;

use std::time::{Duration, Instant};

use containers_support::{
    assert_fork_bomb_stops, assert_unchanged, inspect, lab, output, run, snapshot, start_limited,
};
use rbox_tests::bin;

#[test]
fn exit_codes_are_dockers() {
    let h = lab("exit-codes");
    let before = snapshot(&h);
    let none = ["run", "--rm", "--network", "none", "busybox"];
    let with = |cmd: &[&str]| run(&h, &[&none[..], cmd].concat());
    assert_eq!(with(&["true"]).0, 0);
    assert_eq!(with(&["sh", "-c", "exit 3"]).0, 3);
    let (code, _, err) = with(&["/etc/passwd"]);
    assert_eq!(code, 126, "not executable: {err}");
    let (code, _, err) = with(&["no-such-command"]);
    assert_eq!(code, 127, "not found: {err}");
    assert!(err.contains("no-such-command"), "{err}");
    let (code, _, err) = run(&h, &["run", "--no-such-flag", "busybox", "true"]);
    assert_eq!(code, 125, "bad flag: {err}");
    let (code, _, err) = run(
        &h,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "localhost:1/no-such-image",
        ],
    );
    assert_eq!(code, 125, "unknown image: {err}");
    let (code, _, err) = run(
        &h,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--memory",
            "lots",
            "busybox",
            "true",
        ],
    );
    assert_eq!(code, 125, "bad value: {err}");
    assert!(err.contains("memory"), "{err}");
    // Failed runs, whatever the reason, leave nothing.
    assert_unchanged(&h, &before, "failed runs");
    // A container killed by a signal reports 128 + the signal (tini passes it on:
    // a PID 1 without a handler would ignore it).
    h.rbox_ok(&[
        "run",
        "-d",
        "--init",
        "--name",
        "victim",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    h.rbox_ok(&["kill", "-s", "USR1", "victim"]);
    assert_eq!(h.rbox_ok(&["wait", "victim"]).trim(), "138");
}

/// CVE-2019-5736 without a re-execution of rbox: a container's program that is, or
/// whose interpreter is, `/proc/self/exe` must not run rbox (and so reach its binary).
/// rbox here is a private copy: if the protection failed, only the copy is damaged.
#[test]
fn the_rbox_binary_is_out_of_the_containers_reach() {
    use std::os::unix::fs::PermissionsExt;
    let h = lab("cve-engine");
    let rbox = h.dir().join("rbox");
    std::fs::copy(bin("rbox"), &rbox).unwrap();
    let before = std::fs::read(&rbox).unwrap();
    let script = h.dir().join("attack");
    std::fs::write(&script, "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let volume = format!("{}:/attack:ro", script.display());
    let none = ["run", "--rm", "--network", "none"];
    for how in [
        &["--entrypoint", "/proc/self/exe", "busybox", "--version"][..],
        &["-v", &volume, "busybox", "/attack", "--version"],
    ] {
        let out = h
            .command(&rbox)
            .args([&none[..], how].concat())
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            !out.status.success() && !stdout.contains("rbox"),
            "{how:?} ran rbox in the container: {:?} {stdout} {stderr}",
            out.status
        );
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                out.status.code(),
                Some(127),
                "the exec stub refuses: {stderr}"
            );
        }
    }
    assert!(
        std::fs::read(&rbox).unwrap() == before,
        "the binary changed"
    );
}

#[test]
fn process_settings() {
    let h = lab("process");
    std::fs::write(h.dir().join("env.list"), "# comment\nFROM_FILE=yes\n").unwrap();
    let env_file = h.dir().join("env.list");
    let out = output(
        &h,
        &[
            "-e",
            "A=1",
            "-e",
            "B=two words",
            "--env-file",
            env_file.to_str().unwrap(),
        ],
        &["sh", "-c", "echo $A/$B/$FROM_FILE/$HOSTNAME"],
    );
    assert!(out.starts_with("1/two words/yes/"), "{out}");
    assert_eq!(
        output(&h, &["-w", "/tmp/new/dir"], &["pwd"]).trim(),
        "/tmp/new/dir"
    );
    assert_eq!(output(&h, &["-u", "nobody"], &["id", "-u"]).trim(), "65534");
    assert_eq!(
        output(&h, &["-u", "1234:55"], &["id"]).trim(),
        "uid=1234 gid=55 groups=55"
    );
    assert_eq!(
        output(&h, &["--entrypoint", "/bin/echo"], &["hi", "there"]).trim(),
        "hi there"
    );
    assert_eq!(
        output(&h, &["--hostname", "web-1"], &["hostname"]).trim(),
        "web-1"
    );
    let hosts = output(
        &h,
        &["--hostname", "web-1", "--add-host", "db:10.1.2.3"],
        &["cat", "/etc/hosts"],
    );
    assert!(
        hosts.contains("10.1.2.3")
            && hosts
                .lines()
                .any(|l| l.contains("10.1.2.3") && l.contains("db")),
        "{hosts}"
    );
    // Without a network the hostname has no address to stand for (Docker writes none);
    // on one, it names the container's address.
    assert!(!hosts.contains("web-1"), "{hosts}");
    let hosts = h.rbox_ok(&[
        "run",
        "--rm",
        "--hostname",
        "web-1",
        "busybox",
        "sh",
        "-c",
        "cat /etc/hosts; ip -o -4 addr show eth0",
    ]);
    let ip = hosts
        .split_whitespace()
        .find_map(|w| w.split_once('/').map(|(a, _)| a.to_string()))
        .unwrap_or_default();
    assert!(
        hosts
            .lines()
            .any(|l| l.starts_with(&format!("{ip}\t")) && l.contains("web-1")),
        "{hosts}"
    );
    // PID 1 in a new PID namespace; the host's processes are not visible.
    assert_eq!(output(&h, &[], &["sh", "-c", "echo $$"]).trim(), "1");
}

#[test]
fn bind_mounts_and_read_only_rootfs() {
    let h = lab("mounts");
    let data = h.dir().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("in.txt"), "from host").unwrap();
    let rw = format!("{}:/data", data.display());
    let ro = format!("{}:/data:ro", data.display());
    assert_eq!(
        output(
            &h,
            &["-v", &rw],
            &["sh", "-c", "cat /data/in.txt; echo back > /data/out.txt"]
        ),
        "from host"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("out.txt")).unwrap(),
        "back\n"
    );
    let (code, _, err) = run(
        &h,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &ro,
            "busybox",
            "touch",
            "/data/x",
        ],
    );
    assert_ne!(code, 0, "write to a read-only bind succeeded");
    assert!(err.contains("Read-only"), "{err}");
    assert!(!data.join("x").exists());
    let (code, _, _) = run(
        &h,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--read-only",
            "busybox",
            "touch",
            "/x",
        ],
    );
    assert_ne!(code, 0, "write to a read-only rootfs succeeded");
    // Bad -v: a clear error, nothing made.
    let before = snapshot(&h);
    for bad in [
        "relative:/data",
        "/no/such/host/dir:/data",
        &format!("{}:data", data.display()),
        &format!("{}:/d:bogus", data.display()),
    ] {
        let (code, _, err) = run(&h, &["run", "--rm", "-v", bad, "busybox", "true"]);
        assert_eq!(code, 125, "-v {bad}");
        assert!(err.contains("invalid volume"), "-v {bad}: {err}");
    }
    assert_unchanged(&h, &before, "bad -v");
}

/// Docker's default capability set as /proc/self/status shows it.
const DOCKER_CAPS: &str = "00000000a80425fb";

#[test]
fn capabilities() {
    let h = lab("caps");
    let caps = |flags: &[&str]| {
        output(
            &h,
            flags,
            &["sh", "-c", "grep CapEff /proc/self/status | cut -f2"],
        )
        .trim()
        .to_string()
    };
    assert_eq!(caps(&[]), DOCKER_CAPS);
    assert_eq!(caps(&["--cap-drop", "ALL"]), "0000000000000000");
    assert_eq!(caps(&["--cap-drop", "chown"]), "00000000a80425fa");
    let privileged = u64::from_str_radix(&caps(&["--privileged"]), 16).unwrap();
    assert!(
        privileged & (1 << 21) != 0,
        "privileged lacks CAP_SYS_ADMIN"
    );
    // NET_ADMIN lets the container change its network.
    let (code, _, _) = run(
        &h,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "ip",
            "addr",
            "add",
            "10.9.9.9/32",
            "dev",
            "lo",
        ],
    );
    assert_ne!(code, 0);
    output(
        &h,
        &["--cap-add", "NET_ADMIN"],
        &["ip", "addr", "add", "10.9.9.9/32", "dev", "lo"],
    );
    // A non-root user has no effective capabilities.
    assert_eq!(caps(&["-u", "nobody"]), "0000000000000000");
}

#[test]
fn seccomp_default_profile() {
    let h = lab("seccomp");
    let status = output(&h, &[], &["grep", "Seccomp:", "/proc/self/status"]);
    assert!(status.contains('2'), "no filter: {status}");
    // unshare(CLONE_NEWUSER) needs no capability: only the filter refuses it.
    let (code, _, err) = run(
        &h,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "unshare",
            "-U",
            "true",
        ],
    );
    assert_ne!(code, 0, "unshare allowed under the default profile");
    assert!(err.contains("Operation not permitted"), "{err}");
    output(
        &h,
        &["--security-opt", "seccomp=unconfined"],
        &["unshare", "-U", "true"],
    );
    // mount is refused without CAP_SYS_ADMIN (the profile allows it only with it).
    let (code, _, _) = run(
        &h,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "mount",
            "-t",
            "tmpfs",
            "t",
            "/tmp",
        ],
    );
    assert_ne!(code, 0);
    output(
        &h,
        &["--cap-add", "SYS_ADMIN"],
        &["mount", "-t", "tmpfs", "t", "/tmp"],
    );
    // A profile of one's own, in Docker's format.
    let profile = h.dir().join("profile.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let (code, _, err) = run(
        &h,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--security-opt",
            &opt,
            "busybox",
            "mkdir",
            "/x",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("Permission denied"), "{err}");
    assert!(
        output(
            &h,
            &["--security-opt", "no-new-privileges"],
            &["grep", "NoNewPrivs", "/proc/self/status"]
        )
        .contains('1')
    );
}

#[test]
fn cgroup_limits() {
    let h = lab("cgroups");
    let id = start_limited(&h);
    let id = id.as_str();
    let cg = format!("{}/{id}", h.cgroup_parent());
    let limit = h.sh_ok(&format!("cat /sys/fs/cgroup/memory/{cg}/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/{cg}/memory.max"));
    assert_eq!(limit.trim(), (64u64 << 20).to_string());
    let pids = h.sh_ok(&format!(
        "cat /sys/fs/cgroup/pids/{cg}/pids.max 2>/dev/null || cat /sys/fs/cgroup/{cg}/pids.max"
    ));
    assert_eq!(pids.trim(), "20");
    let quota = h.sh_ok(&format!("cat /sys/fs/cgroup/cpu/{cg}/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/{cg}/cpu.max"));
    assert_eq!(quota.trim(), "50000");
    // The container's own processes are all in it.
    let procs = h.sh_ok(&format!("cat /sys/fs/cgroup/pids/{cg}/cgroup.procs 2>/dev/null || cat /sys/fs/cgroup/{cg}/cgroup.procs"));
    assert_eq!(procs.lines().count(), 1, "{procs}");
    // A fork bomb stops at the limit.
    assert_fork_bomb_stops(&h, id);
    let inspected = inspect(&h, id);
    assert_eq!(inspected["HostConfig"]["Memory"], 64 << 20);
    assert_eq!(inspected["HostConfig"]["PidsLimit"], 20);
    assert_eq!(inspected["HostConfig"]["NanoCpus"], 500_000_000);
    h.rbox_ok(&["rm", "-f", id]);
    assert!(
        !h.sh(&format!("test -d /sys/fs/cgroup/pids/{cg}"))
            .status
            .success(),
        "cgroup left behind"
    );
}

#[test]
fn logs_tail_timestamps_and_follow() {
    let h = lab("logs");
    h.rbox_ok(&[
        "run",
        "--name",
        "talker",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo one; echo two; echo three >&2; sleep 0.2; echo four",
    ]);
    let all = h.rbox(&["logs", "talker"]);
    assert_eq!(String::from_utf8_lossy(&all.stdout), "one\ntwo\nfour\n");
    assert_eq!(String::from_utf8_lossy(&all.stderr), "three\n");
    assert_eq!(h.rbox_ok(&["logs", "--tail", "1", "talker"]), "four\n");
    let ts = h.rbox_ok(&["logs", "-t", "--tail", "1", "talker"]);
    assert!(ts.ends_with("Z four\n") && ts.starts_with("20"), "{ts}");
    // The json-file log, Docker's format.
    let id = inspect(&h, "talker")["Id"].as_str().unwrap().to_string();
    let line = h.sh_ok(&format!(
        "head -1 /var/lib/rbox/containers/{id}/{id}-json.log"
    ));
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (entry["log"].as_str(), entry["stream"].as_str()),
        (Some("one\n"), Some("stdout"))
    );
    // -f streams until the container stops.
    h.rbox_ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo tick $i; sleep 0.3; done",
    ]);
    let started = Instant::now();
    let followed = h.rbox_ok(&["logs", "-f", "ticker"]);
    assert_eq!(followed, "tick 1\ntick 2\ntick 3\n");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn exec_into_a_running_container() {
    let h = lab("exec");
    h.rbox_ok(&[
        "run",
        "-d",
        "--name",
        "box",
        "--network",
        "none",
        "-e",
        "FROM_RUN=1",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert_eq!(
        h.rbox_ok(&["exec", "box", "sh", "-c", "echo $FROM_RUN $EXTRA"])
            .trim(),
        "1"
    );
    assert_eq!(
        h.rbox_ok(&[
            "exec",
            "-e",
            "EXTRA=2",
            "box",
            "sh",
            "-c",
            "echo $FROM_RUN $EXTRA"
        ])
        .trim(),
        "1 2"
    );
    assert_eq!(
        h.rbox_ok(&["exec", "-w", "/etc", "box", "pwd"]).trim(),
        "/etc"
    );
    assert_eq!(
        h.rbox_ok(&["exec", "-u", "nobody", "box", "id", "-u"])
            .trim(),
        "65534"
    );
    // Same PID namespace as the container's first process.
    assert!(h.rbox_ok(&["exec", "box", "ps"]).contains("sleep 1000"));
    let (code, _, _) = run(&h, &["exec", "box", "sh", "-c", "exit 5"]);
    assert_eq!(code, 5);
    let (code, _, _) = run(&h, &["exec", "box", "no-such-command"]);
    assert_eq!(code, 127);
    // -it through a real terminal.
    let rbox = bin("rbox");
    let out = h.sh_ok(&format!(
        "script -qec '{} exec -it box sh -c \"tty; echo ok\"' /dev/null",
        rbox.display()
    ));
    assert!(out.contains("/dev/pts/") && out.contains("ok"), "{out}");
    // -d returns at once; the process runs on.
    h.rbox_ok(&[
        "exec",
        "-d",
        "box",
        "sh",
        "-c",
        "sleep 0.2; touch /tmp/detached",
    ]);
    assert!(h.wait_for(
        &format!("{} exec box test -e /tmp/detached", rbox.display()),
        Duration::from_secs(10)
    ));
    let (code, _, err) = run(&h, &["exec", "nosuch", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("no such container"), "{err}");
}

#[test]
fn stop_waits_then_kills_and_restart_runs_again() {
    let h = lab("stop");
    // A process that ends on SIGTERM stops at once with its own code.
    h.rbox_ok(&[
        "run",
        "-d",
        "--name",
        "polite",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 7' TERM; while true; do sleep 0.1; done",
    ]);
    let t = Instant::now();
    h.rbox_ok(&["stop", "polite"]);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        t.elapsed()
    );
    assert_eq!(inspect(&h, "polite")["State"]["ExitCode"], 7);
    // PID 1 ignores SIGTERM without a handler: stop -t 1 kills it after a second.
    h.rbox_ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    let t = Instant::now();
    h.rbox_ok(&["stop", "-t", "1", "stubborn"]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "stop -t 1 took {took:?}"
    );
    let s = inspect(&h, "stubborn");
    assert_eq!(
        (
            s["State"]["Status"].as_str(),
            s["State"]["ExitCode"].as_i64()
        ),
        (Some("exited"), Some(137))
    );
    // restart: running again, a new process.
    let first_pid = {
        h.rbox_ok(&["start", "stubborn"]);
        inspect(&h, "stubborn")["State"]["Pid"].as_i64().unwrap()
    };
    h.rbox_ok(&["restart", "-t", "0", "stubborn"]);
    let s = inspect(&h, "stubborn");
    assert_eq!(s["State"]["Running"], true);
    assert_ne!(s["State"]["Pid"].as_i64().unwrap(), first_pid);
    // --stop-signal is used by stop.
    h.rbox_ok(&[
        "run",
        "-d",
        "--name",
        "usr1",
        "--network",
        "none",
        "--stop-signal",
        "USR1",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 9' USR1; while true; do sleep 0.1; done",
    ]);
    h.rbox_ok(&["stop", "usr1"]);
    assert_eq!(inspect(&h, "usr1")["State"]["ExitCode"], 9);
}

#[test]
fn inspect_wait_and_ps() {
    let h = lab("inspect");
    h.rbox_ok(&[
        "run",
        "-d",
        "--name",
        "shortlived",
        "--network",
        "none",
        "-e",
        "X=1",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 5",
    ]);
    let v = inspect(&h, "shortlived");
    assert_eq!(v["Name"], "/shortlived");
    assert_eq!(v["State"]["Status"], "running");
    assert!(v["State"]["Pid"].as_i64().unwrap() > 0);
    assert_eq!(v["Path"], "sh");
    assert_eq!(v["Args"][0], "-c");
    assert!(
        v["Config"]["Env"]
            .as_array()
            .unwrap()
            .contains(&"X=1".into())
    );
    assert_eq!(v["Config"]["Image"], "busybox");
    assert!(v["Image"].as_str().unwrap().starts_with("sha256:"));
    assert!(v["State"]["StartedAt"].as_str().unwrap().starts_with("20"));
    assert_eq!(v["State"]["FinishedAt"], "0001-01-01T00:00:00Z");
    let ps = h.rbox_ok(&["ps"]);
    assert!(ps.starts_with("CONTAINER ID   IMAGE"), "{ps}");
    let row = ps.lines().find(|l| l.contains("shortlived")).unwrap();
    assert!(
        row.contains("Up ") && row.contains("\"sh -c sleep 1; exit…\""),
        "{row}"
    );
    assert_eq!(h.rbox_ok(&["wait", "shortlived"]).trim(), "5");
    let v = inspect(&h, "shortlived");
    assert_eq!(
        (
            v["State"]["Status"].as_str(),
            v["State"]["ExitCode"].as_i64()
        ),
        (Some("exited"), Some(5))
    );
    assert!(!h.rbox_ok(&["ps"]).contains("shortlived"));
    let all = h.rbox_ok(&["ps", "-a"]);
    assert!(
        all.lines()
            .any(|l| l.contains("shortlived") && l.contains("Exited (5)") && l.contains("ago")),
        "{all}"
    );
    let id = v["Id"].as_str().unwrap();
    assert_eq!(h.rbox_ok(&["ps", "-aq"]).trim(), &id[..12]);
    assert_eq!(h.rbox_ok(&["ps", "-aq", "--no-trunc"]).trim(), id);
    assert_eq!(
        h.rbox_ok(&["ps", "-aq", "--filter", "exited=5"]).trim(),
        &id[..12]
    );
    assert!(
        h.rbox_ok(&["ps", "-aq", "--filter", "status=running"])
            .trim()
            .is_empty()
    );
    // Id prefixes work everywhere names do.
    assert_eq!(inspect(&h, &id[..5])["Name"], "/shortlived");
    h.rbox_ok(&["create", "--name", "fresh", "busybox", "true"]);
    assert_eq!(inspect(&h, "fresh")["State"]["Status"], "created");
    assert!(
        h.rbox_ok(&["ps", "-a"])
            .lines()
            .any(|l| l.contains("fresh") && l.contains("Created"))
    );
    let pruned = h.rbox_ok(&["container", "prune", "-f"]);
    assert!(pruned.contains(id), "{pruned}");
    assert!(h.rbox_ok(&["ps", "-aq"]).trim().is_empty());
}

#[test]
fn attach_and_interactive_run() {
    let h = lab("attach");
    // Foreground -i: stdin goes in, output comes out, EOF ends it.
    let out = h.sh_ok(&format!(
        "echo hello | {} run -i --rm --network none busybox cat",
        bin("rbox").display()
    ));
    assert_eq!(out, "hello\n");
    // run -d -i keeps stdin for a later attach.
    h.rbox_ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "catter",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "read line; echo got $line; exit 4",
    ]);
    let attached = h
        .command(bin("rbox"))
        .args(["attach", "catter"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut child = attached;
        child.stdin.take().unwrap().write_all(b"ping\n").unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "got ping\n");
        assert_eq!(out.status.code(), Some(4));
    }
    // A terminal: -t output comes through a pty.
    let out = h.sh_ok(&format!(
        "script -qec '{} run -it --rm --network none busybox sh -c \"tty; stty size\"' /dev/null",
        bin("rbox").display()
    ));
    assert!(
        out.contains("/dev/pts/0") || out.contains("/dev/console"),
        "{out}"
    );
    // start -a of a stopped container streams its output and returns its code.
    h.rbox_ok(&[
        "create",
        "--name",
        "later",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo from start; exit 6",
    ]);
    let (code, out, _) = run(&h, &["start", "-a", "later"]);
    assert_eq!((code, out.as_str()), (6, "from start\n"));
}

#[test]
fn init_reaps_zombies_and_forwards_signals() {
    let h = lab("init");
    // Orphans of the command are reparented to PID 1; tini reaps them.
    let ps = output(
        &h,
        &["--init"],
        &[
            "sh",
            "-c",
            "sh -c 'sleep 0.1 &' ; sleep 0.5; ps -o pid,stat,comm",
        ],
    );
    assert!(
        !ps.lines().any(|l| l.contains(" Z")),
        "zombie left with --init:\n{ps}"
    );
    assert!(ps.contains("docker-init"), "{ps}");
    // The command's exit code passes through.
    assert_eq!(
        run(
            &h,
            &[
                "run",
                "--rm",
                "--init",
                "--network",
                "none",
                "busybox",
                "sh",
                "-c",
                "exit 4"
            ]
        )
        .0,
        4
    );
    // SIGTERM reaches the command (which, not being PID 1, dies of it).
    h.rbox_ok(&[
        "run",
        "-d",
        "--init",
        "--name",
        "sleeper",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    let t = Instant::now();
    h.rbox_ok(&["stop", "-t", "20", "sleeper"]);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "signal not forwarded: stop took {:?}",
        t.elapsed()
    );
    assert_eq!(inspect(&h, "sleeper")["State"]["ExitCode"], 143);
}
